//! `GET /metrics` on a live cluster with one node killed: the exposition parses, and says what
//! happened.

mod common;

use std::{collections::HashMap, time::Duration};

use common::Cluster;

/// Samples of a Prometheus text exposition, keyed by `name{labels}` as written; every line that is
/// not a comment must be a sample.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(
            key.starts_with("influx_gateway_"),
            "unprefixed metric: {line:?}"
        );
        samples.insert(key.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_show_a_killed_node_and_its_growing_queue() {
    let mut cluster = Cluster::start(2, "health:\n  interval: 200ms\n  timeout: 200ms\n");
    cluster.create_database("m");
    let gw = cluster.gateway.url();
    assert_eq!(
        cluster.gateway.write("db=m", "cpu v=1 1\ncpu v=2 2").status,
        204
    );
    cluster.nodes[1].kill();
    for i in 3..8 {
        cluster.gateway.write_ok("db=m", &format!("cpu v={i} {i}"));
    }
    let down = common::eventually(Duration::from_secs(10), || {
        let samples = parse(&common::get(&format!("{gw}/metrics")).body);
        samples.get("influx_gateway_node_up{node=\"influx2\"}") == Some(&0.0)
    });
    assert!(down, "influx2 is reported down");

    let reply = common::get(&format!("{gw}/metrics"));
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let samples = parse(&reply.body);
    let get = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in:\n{}", reply.body))
    };
    assert_eq!(get("influx_gateway_node_up{node=\"influx1\"}"), 1.0);
    assert_eq!(
        get("influx_gateway_node_state{node=\"influx2\",state=\"down\"}"),
        1.0
    );
    assert_eq!(get("influx_gateway_queue_entries{node=\"influx1\"}"), 0.0);
    assert!(get("influx_gateway_queue_entries{node=\"influx2\"}") >= 1.0);
    assert!(get("influx_gateway_queue_bytes{node=\"influx2\"}") > 0.0);
    assert!(get("influx_gateway_node_failures_total{node=\"influx2\",cause=\"connect\"}") >= 1.0);
    assert_eq!(
        get("influx_gateway_node_points_sent_total{node=\"influx1\"}"),
        7.0
    );
    assert_eq!(
        get("influx_gateway_node_writes_sent_total{node=\"influx1\"}"),
        6.0
    );
    assert_eq!(
        get("influx_gateway_node_mutations_sent_total{node=\"influx1\"}"),
        1.0
    );
    assert_eq!(
        get("influx_gateway_http_requests_total{endpoint=\"/write\",code=\"204\"}"),
        6.0
    );
    assert_eq!(
        get("influx_gateway_http_request_duration_seconds_count{endpoint=\"/write\"}"),
        6.0
    );
    assert_eq!(
        get("influx_gateway_query_plans_total{plan=\"broadcast\"}"),
        1.0
    );

    // The node returns; its backlog drains and the metrics say so.
    cluster.nodes[1].restart();
    let drained = common::eventually(Duration::from_secs(30), || {
        let samples = parse(&common::get(&format!("{gw}/metrics")).body);
        samples.get("influx_gateway_queue_entries{node=\"influx2\"}") == Some(&0.0)
            && samples
                .get("influx_gateway_queue_replayed_points_total{node=\"influx2\"}")
                .is_some_and(|&n| n >= 5.0)
    });
    assert!(drained, "{}", common::get(&format!("{gw}/metrics")).body);
}
