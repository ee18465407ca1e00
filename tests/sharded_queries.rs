//! Queries across shards, through the gateway, compared byte for byte with one plain influxd that
//! holds all the data (the oracle).
//!
//! The cluster has two shards of one replica each; `http_requests` is spread over both by
//! `customer_id`, so its series live on either shard and aggregates over it must be recombined.
//! Every value is an integer or a half, so float sums do not depend on the order of addition, and
//! every point has its own timestamp, so no order between ties is assumed.

mod common;

use common::{post, post_form, Gateway, Influxd};

const SHARDING: &str = concat!(
    "shards:\n  - name: s1\n    replicas: [influx1]\n  - name: s2\n    replicas: [influx2]\n",
    include_str!("fixtures/example-routes.yaml")
);

/// Start of the data, in seconds; points are seven seconds apart.
const T0: u64 = 1_600_000_000;
const STEP: u64 = 7;

struct Setup {
    _nodes: Vec<Influxd>,
    oracle: Influxd,
    gateway: Gateway,
}

fn data() -> String {
    let mut body = String::new();
    let mut k = 0u64;
    let mut next = || {
        k += 1;
        T0 + k * STEP
    };
    for i in 0..40u64 {
        let host = format!("h{}", i % 4);
        let region = if i % 3 == 0 { "east" } else { "west" };
        body.push_str(&format!(
            "cpu,host={host},region={region} v={},n={}i {}\n",
            (i % 9) as f64 / 2.0,
            i % 5,
            next()
        ));
        body.push_str(&format!(
            "diskio,host={host} v={},used={}i {}\n",
            (i % 7) as f64,
            i * 3 % 11,
            next()
        ));
        body.push_str(&format!("net_in,host={host} v={} {}\n", i % 6, next()));
        body.push_str(&format!("mem,host={host} v={}i {}\n", i % 8, next()));
        for c in 0..3u64 {
            let customer = (i + c) % 10;
            let method = if (i + c) % 4 == 0 { "POST" } else { "GET" };
            body.push_str(&format!(
                "http_requests,customer_id=c{customer},method={method} n={}i,latency={} {}\n",
                (i * 7 + c) % 13,
                ((i + c) % 11) as f64 / 2.0,
                next()
            ));
        }
    }
    body
}

/// Two shards sharing a replica: influx3 holds the series of both.
const OVERLAPPING: &str = concat!(
    "shards:\n  - name: s1\n    replicas: [influx1, influx3]\n  - name: s2\n    replicas: [influx2, influx3]\n",
    include_str!("fixtures/example-routes.yaml")
);

fn setup() -> Setup {
    setup_with(&["influx1", "influx2"], SHARDING)
}

fn setup_with(names: &[&str], sharding: &str) -> Setup {
    let nodes: Vec<Influxd> = names.iter().map(|n| Influxd::start(n)).collect();
    let oracle = Influxd::start("oracle");
    let gateway = Gateway::start(&nodes.iter().collect::<Vec<_>>(), sharding);
    for url in [gateway.url(), oracle.url()] {
        let reply = post_form(&format!("{url}/query"), &[("q", "CREATE DATABASE db")]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = post(
            &format!("{url}/write?db=db&precision=s"),
            data().as_bytes(),
            &[],
        );
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    Setup {
        _nodes: nodes,
        oracle,
        gateway,
    }
}

/// A time range covering all the data, for `GROUP BY time(...)`.
fn range() -> String {
    format!(
        "time >= {}s AND time < {}s",
        T0 - T0 % 600,
        T0 + 400 * STEP + 600
    )
}

fn statements() -> Vec<String> {
    let r = range();
    let mut list: Vec<String> = [
        // Schema, unioned across shards.
        "SHOW MEASUREMENTS",
        "SHOW MEASUREMENTS LIMIT 2 OFFSET 1",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /^(cpu|http)/",
        "SHOW TAG KEYS",
        "SHOW TAG KEYS FROM http_requests",
        "SHOW TAG VALUES WITH KEY = host",
        "SHOW TAG VALUES FROM http_requests WITH KEY = customer_id",
        "SHOW TAG VALUES FROM http_requests WITH KEY IN (customer_id, method) LIMIT 5",
        "SHOW FIELD KEYS",
        "SHOW FIELD KEYS FROM http_requests",
        "SHOW SERIES",
        "SHOW SERIES FROM http_requests WHERE method = 'POST'",
        "SHOW DATABASES",
        "SHOW RETENTION POLICIES",
        // One shard: passed through.
        "SELECT * FROM cpu WHERE host = 'h1'",
        "SELECT mean(v) FROM diskio GROUP BY host",
        // Raw rows across shards.
        "SELECT v FROM cpu, diskio",
        // Wildcards over measurements on both shards: every series gets the union's columns.
        "SELECT * FROM cpu, diskio",
        "SELECT * FROM cpu, http_requests LIMIT 3",
        "SELECT count(*) FROM cpu, http_requests",
        "SELECT v FROM cpu, diskio GROUP BY *",
        "SELECT count(n), count(latency) FROM cpu, http_requests",
        "SELECT count(*) FROM cpu, http_requests fill(0)",
        "SELECT * FROM /^(net_|disk)/",
        "SELECT v FROM cpu, diskio LIMIT 3",
        "SELECT v FROM cpu, diskio ORDER BY time DESC LIMIT 2",
        "SELECT v FROM cpu, diskio, net_in GROUP BY host SLIMIT 3 SOFFSET 2",
        "SELECT * FROM http_requests",
        "SELECT n FROM http_requests WHERE method = 'GET' LIMIT 5 OFFSET 2",
        "SELECT n, latency FROM http_requests ORDER BY time DESC LIMIT 4",
        "SELECT n FROM http_requests GROUP BY customer_id LIMIT 2",
        // Aggregates over series spread across shards.
        "SELECT count(n) FROM http_requests",
        "SELECT sum(n), min(n), max(n) FROM http_requests",
        "SELECT mean(latency) FROM http_requests",
        "SELECT mean(n) AS avg, count(latency) FROM http_requests",
        "SELECT spread(latency) FROM http_requests",
        "SELECT first(n) FROM http_requests",
        "SELECT first(n), last(n), count(n) FROM http_requests GROUP BY method",
        "SELECT last(latency) FROM http_requests",
        "SELECT count(n) FROM http_requests GROUP BY method",
        "SELECT max(latency) FROM http_requests WHERE method = 'POST'",
        "SELECT min(n) FROM http_requests GROUP BY method",
        "SELECT v FROM cpu, diskio, net_in GROUP BY host SLIMIT 2 SOFFSET 1",
        "SELECT v FROM cpu, diskio GROUP BY host SOFFSET 1",
        "SHOW SERIES LIMIT 5 OFFSET 3",
        "SELECT * FROM http_requests WHERE customer_id = 'c1' OR customer_id = 'c2' ORDER BY time DESC",
        // Grouped by the shard tag: each series on one shard, any function is exact.
        "SELECT percentile(latency, 90) FROM http_requests GROUP BY customer_id",
        "SELECT median(n), count(n) FROM http_requests GROUP BY *",
        // Aggregates across measurements on different shards.
        "SELECT max(v) FROM cpu, diskio",
        "SELECT count(v) FROM /./",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for q in [
        "SELECT count(n) FROM http_requests WHERE {r} GROUP BY time(10m)",
        "SELECT sum(n) FROM http_requests WHERE {r} GROUP BY time(10m) fill(none)",
        "SELECT mean(latency) FROM http_requests WHERE {r} GROUP BY time(5m), method fill(none)",
        "SELECT min(n), max(n) FROM http_requests WHERE {r} GROUP BY time(10m) fill(0)",
        "SELECT spread(n) FROM http_requests WHERE {r} GROUP BY time(15m)",
        "SELECT count(n) FROM http_requests WHERE {r} AND method = 'GET' GROUP BY time(10m) LIMIT 3",
        "SELECT mean(v) FROM cpu, diskio WHERE {r} GROUP BY time(10m) fill(none)",
        "SELECT count(*) FROM cpu, diskio WHERE {r} GROUP BY time(10m)",
        "SELECT sum(*) FROM cpu, diskio WHERE {r} GROUP BY time(10m) fill(none)",
        "SELECT count(n), mean(latency) FROM http_requests WHERE {r} AND customer_id = 'c3' GROUP BY time(5m) fill(previous)",
        "SELECT count(n) FROM http_requests WHERE {r} AND method = 'POST' GROUP BY time(5m) fill(5)",
        "SELECT sum(latency) FROM http_requests WHERE {r} GROUP BY time(10m), method ORDER BY time DESC",
        "SELECT max(n) FROM http_requests WHERE {r} GROUP BY time(20m), method SLIMIT 1",
        "SELECT first(n), last(latency) FROM http_requests WHERE {r} GROUP BY time(10m)",
        "SELECT first(latency), count(n) FROM http_requests WHERE {r} GROUP BY time(5m), method fill(none)",
        "SELECT last(n) FROM http_requests WHERE {r} AND customer_id = 'c7' GROUP BY time(5m) fill(previous)",
        "SELECT mean(latency) FROM http_requests WHERE {r} AND method = 'POST' GROUP BY time(5m) fill(linear)",
        "SELECT sum(n) FROM http_requests WHERE {r} AND customer_id = 'c4' GROUP BY time(5m) fill(linear)",
    ] {
        list.push(q.replace("{r}", &r));
    }
    list.push("SELECT count(n) FROM http_requests; SELECT v FROM cpu LIMIT 1".to_owned());
    list
}

fn ask(url: &str, q: &str, epoch: Option<&str>) -> (u16, String) {
    let mut form = vec![("db", "db"), ("q", q)];
    if let Some(epoch) = epoch {
        form.push(("epoch", epoch));
    }
    let reply = post_form(&format!("{url}/query"), &form);
    (reply.status, reply.body)
}

#[test]
fn answers_across_shards_equal_one_influxd_holding_everything() {
    let setup = setup();
    let statements = statements();
    assert!(statements.len() >= 40, "{} statements", statements.len());
    let mut differences = Vec::new();
    for q in &statements {
        for epoch in [None, Some("ms")] {
            let expected = ask(&setup.oracle.url(), q, epoch);
            let got = ask(&setup.gateway.url(), q, epoch);
            if got != expected {
                differences.push(format!(
                    "{q} (epoch {epoch:?})\n  oracle:  {expected:?}\n  gateway: {got:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        statements.len() * 2,
        differences.join("\n")
    );
}

#[test]
fn a_node_serving_two_shards_is_asked_for_each_shards_series_only() {
    // influx3 is a replica of both shards: asked for s1, it would answer with s2's series too,
    // for `http_requests` (spread by a tag), for `FROM cpu, diskio` and for a regex alike. Each
    // read rotates over the replicas, so every statement is asked twice.
    let setup = setup_with(&["influx1", "influx2", "influx3"], OVERLAPPING);
    let all = statements();
    let several = all
        .iter()
        .filter(|q| q.contains("FROM cpu, diskio") || q.contains("FROM /"))
        .count();
    assert!(all.len() >= 40 && several >= 8, "{} statements", all.len());
    let mut differences = Vec::new();
    for q in &all {
        let expected = ask(&setup.oracle.url(), q, None);
        for _ in 0..2 {
            let got = ask(&setup.gateway.url(), q, None);
            if got != expected {
                differences.push(format!("{q}\n  oracle:  {expected:?}\n  gateway: {got:?}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} answers differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn what_cannot_be_merged_exactly_is_refused_by_name() {
    let setup = setup();
    for (q, function) in [
        (
            "SELECT percentile(latency, 90) FROM http_requests",
            "percentile",
        ),
        ("SELECT median(n) FROM http_requests", "median"),
        ("SELECT stddev(latency) FROM http_requests", "stddev"),
        ("SELECT count(distinct(n)) FROM http_requests", "distinct"),
        (
            "SELECT derivative(mean(n), 1m) FROM http_requests WHERE time > 0 GROUP BY time(1m)",
            "derivative",
        ),
    ] {
        let (status, body) = ask(&setup.gateway.url(), q, None);
        assert_eq!(status, 200, "{q}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let error = answer["results"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(function) && error.contains("s1") && error.contains("s2"),
            "{q}: {body}"
        );
    }
}
