//! Writes waiting for a node go as one request (`write.batch`), without changing what each client
//! is told: on real influxd, counted with the gateway's own metrics.

mod common;

use std::{thread, time::Duration};

use common::Cluster;
use serde_json::json;

fn metric(gateway: &common::Gateway, key: &str) -> f64 {
    let text = common::get(&format!("{}/metrics", gateway.url())).body;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn concurrent_writes_are_coalesced_and_each_client_hears_its_own_answer() {
    let cluster = Cluster::start(
        1,
        "write:\n  batch:\n    max_points: 1000\n    max_delay: 200ms\n",
    );
    cluster.create_database("co");
    let gw = cluster.gateway.url();
    let sent_before = metric(
        &cluster.gateway,
        "influx_gateway_node_writes_sent_total{node=\"influx1\"}",
    );

    let writers = |range: std::ops::Range<i32>, bad: i32| -> Vec<(i32, common::Reply)> {
        let clients: Vec<_> = range
            .map(|i| {
                let url = format!("{gw}/write?db=co");
                thread::spawn(move || {
                    let body = if i == bad {
                        format!("w,c={i} v={i} {i}\nw,c={i} v= 1000\n")
                    } else {
                        format!("w,c={i} v={i} {i}\n")
                    };
                    (i, common::post(&url, body.as_bytes(), &[]))
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect()
    };

    // 40 clients at once: far fewer than 40 requests reach the node.
    for (i, reply) in writers(0..40, -1) {
        assert_eq!(reply.status, 204, "client {i}: {}", reply.body);
    }
    let sent = metric(
        &cluster.gateway,
        "influx_gateway_node_writes_sent_total{node=\"influx1\"}",
    ) - sent_before;
    assert!(
        sent < 40.0,
        "40 concurrent writes within max_delay were sent as {sent} requests"
    );

    // 10 more, one with a line influxd refuses: the group is refused, so each write goes again
    // alone and each client gets its own answer.
    for (i, reply) in writers(40..50, 47) {
        if i == 47 {
            assert_eq!(reply.status, 400, "{}", reply.body);
            assert!(reply.error().starts_with("partial write"), "{}", reply.body);
        } else {
            assert_eq!(reply.status, 204, "client {i}: {}", reply.body);
        }
    }
    // Every good point is there, client 47's good line too.
    assert_eq!(
        cluster.nodes[0].values("co", "SELECT count(v) FROM w"),
        vec![json!(["1970-01-01T00:00:00Z", 50])]
    );
    assert!(common::eventually(Duration::from_secs(5), || {
        metric(
            &cluster.gateway,
            "influx_gateway_queue_entries{node=\"influx1\"}",
        ) == 0.0
    }));
}

#[test]
fn coalescing_keeps_the_order_of_writes_to_one_point() {
    let cluster = Cluster::start(2, "write:\n  batch:\n    max_delay: 100ms\n");
    cluster.create_database("order");
    // The same point rewritten 30 times in a row by one client: the last value must win
    // on every node, however the writes were grouped.
    for v in 0..30 {
        cluster.gateway.write_ok("db=order", &format!("p v={v} 1"));
    }
    for node in &cluster.nodes {
        assert_eq!(
            node.values("order", "SELECT v FROM p"),
            vec![json!(["1970-01-01T00:00:00.000000001Z", 29])]
        );
    }
}

#[test]
fn a_write_whose_last_line_is_left_open_is_never_joined_to_the_next() {
    // Write A ends in a comment whose last byte is a backslash, with no final newline. Joined
    // to write B with a newline between them, influxd would read that newline as escaped and B's
    // line as part of the comment: B answered 204 and not written. A and B wait together (one
    // request at a time, 300 ms to gather), live and then replayed after an outage.
    let mut cluster = Cluster::start(
        2,
        "write:\n  max_in_flight: 1\n  batch:\n    max_delay: 300ms\nhealth:\n  interval: 200ms\n  timeout: 200ms\n",
    );
    cluster.create_database("open");
    let send_both = |gw: &str, t: i64| {
        let url = format!("{gw}/write?db=open");
        let first = {
            let url = url.clone();
            thread::spawn(move || {
                common::post(&url, format!("j v=1 {t}\n# dir C:\\").as_bytes(), &[])
            })
        };
        thread::sleep(Duration::from_millis(50));
        let second = common::post(&url, format!("j v=2 {}", t + 1).as_bytes(), &[]);
        assert_eq!(first.join().expect("client").status, 204);
        assert_eq!(second.status, 204, "{}", second.body);
    };
    let gw = cluster.gateway.url();
    send_both(&gw, 10);
    cluster.nodes[1].kill();
    send_both(&gw, 20);
    cluster.nodes[1].restart();
    assert!(common::eventually(Duration::from_secs(15), || {
        metric(
            &cluster.gateway,
            "influx_gateway_queue_entries{node=\"influx2\"}",
        ) == 0.0
    }));
    for node in &cluster.nodes {
        assert_eq!(
            node.values("open", "SELECT v FROM j"),
            vec![
                json!(["1970-01-01T00:00:00.00000001Z", 1]),
                json!(["1970-01-01T00:00:00.000000011Z", 2]),
                json!(["1970-01-01T00:00:00.00000002Z", 1]),
                json!(["1970-01-01T00:00:00.000000021Z", 2]),
            ],
            "{}",
            node.name
        );
    }
}
