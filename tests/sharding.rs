//! Measurement and tag sharding against four real influxd: two shards of two replicas each.

mod common;

use std::time::Duration;

use common::{eventually, get, post, Cluster, Influxd};
use serde_json::Value;

/// The example: cpu on s1; disk* and net_* on s2; http_requests spread by customer_id.
const SHARDING: &str = concat!(
    "health:\n  interval: 500ms\n  timeout: 300ms\n",
    "shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\n",
    include_str!("fixtures/example-routes.yaml")
);

/// Nodes of each shard, by index into `cluster.nodes`.
const S1: [usize; 2] = [0, 1];
const S2: [usize; 2] = [2, 3];

fn start() -> Cluster {
    let cluster = Cluster::start(4, SHARDING);
    cluster.create_database("db");
    cluster
}

/// `SELECT count(*)`'s first count on one node, read directly, or 0.
fn count(node: &Influxd, m: &str) -> u64 {
    node.query("db", &format!("SELECT count(*) FROM \"{m}\""))["results"][0]["series"][0]["values"]
        [0][1]
        .as_u64()
        .unwrap_or(0)
}

/// The shard `/route` names for a measurement (and a tag value).
fn routed_shard(cluster: &Cluster, params: &str) -> String {
    let reply = get(&format!("{}/route?db=db&{params}", cluster.gateway.url()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let shards = reply.json()["shards"].clone();
    assert_eq!(shards.as_array().map(Vec::len), Some(1), "{shards}");
    shards[0]["name"].as_str().unwrap_or_default().to_owned()
}

fn shard_nodes(shard: &str) -> [usize; 2] {
    if shard == "s1" {
        S1
    } else {
        S2
    }
}

#[test]
fn each_point_lands_on_every_replica_of_its_shard_and_nowhere_else() {
    let cluster = start();
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!("cpu,host=h{i} v={i} {}\n", i + 1));
        body.push_str(&format!("diskio,host=h{i} v={i} {}\n", i + 1));
        body.push_str(&format!("net_in,host=h{i} v={i} {}\n", i + 1));
        body.push_str(&format!(
            "http_requests,customer_id=c{} n={i}i {}\n",
            i % 10,
            i + 1
        ));
        body.push_str(&format!("mem,host=h{i} v={i} {}\n", i + 1));
    }
    cluster.gateway.write_ok("db=db", &body);

    for (m, shard) in [
        ("cpu", "s1".to_owned()),
        ("diskio", "s2".to_owned()),
        ("net_in", "s2".to_owned()),
        ("mem", routed_shard(&cluster, "measurement=mem")),
    ] {
        for (i, node) in cluster.nodes.iter().enumerate() {
            let expected = if shard_nodes(&shard).contains(&i) {
                20
            } else {
                0
            };
            assert_eq!(count(node, m), expected, "{m} on {}", node.name);
        }
    }
    // Every customer's points are on both replicas of the shard /route names, and only there.
    let mut seen = 0;
    for c in 0..10 {
        let shard = routed_shard(&cluster, &format!("measurement=http_requests&tag=c{c}"));
        for (i, node) in cluster.nodes.iter().enumerate() {
            let q = format!("SELECT count(n) FROM http_requests WHERE customer_id = 'c{c}'");
            let n = node.query("db", &q)["results"][0]["series"][0]["values"][0][1]
                .as_u64()
                .unwrap_or(0);
            let expected = if shard_nodes(&shard).contains(&i) {
                2
            } else {
                0
            };
            assert_eq!(n, expected, "customer c{c} on {}", node.name);
            seen += n;
        }
    }
    assert_eq!(seen, 40, "20 points, two replicas each");
}

#[test]
fn route_and_health_describe_the_shards() {
    let mut cluster = start();
    let url = cluster.gateway.url();
    let cpu = get(&format!("{url}/route?db=db&measurement=cpu")).json();
    assert_eq!(cpu["route"], "routes[0] (measurement \"cpu\")");
    assert_eq!(
        cpu["shards"],
        serde_json::json!([{"name": "s1", "replicas": ["influx1", "influx2"]}])
    );
    let spread = get(&format!("{url}/route?db=db&measurement=http_requests")).json();
    assert_eq!(spread["by_tag"], "customer_id");
    assert_eq!(
        spread["shards"].as_array().map(Vec::len),
        Some(2),
        "{spread}"
    );
    let missing = get(&format!("{url}/route?db=db"));
    assert_eq!(missing.status, 400);
    assert_eq!(missing.error(), "measurement is required");

    let (_, health) = cluster.gateway.health();
    assert_eq!(health["shards"][1]["name"], "s2");
    assert_eq!(
        health["shards"][1]["replicas"],
        serde_json::json!(["influx3", "influx4"])
    );
    assert_eq!(health["shards"][1]["replicas_up"], 2);
    cluster.nodes[2].kill();
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(5), || gateway.health().1["shards"][1]
            ["replicas_up"]
            == 1),
        "{}",
        gateway.health().1
    );
}

#[test]
fn a_line_without_a_measurement_is_reported_as_influxdb_reports_it() {
    let cluster = start();
    // A plain influxd is the reference for the wording: influx1, written directly.
    let direct = |body: &str| {
        post(
            &format!("{}/write?db=db&precision=s", cluster.nodes[0].url()),
            body.as_bytes(),
            &[],
        )
    };
    let body = "cpu v=1 100\n  ,bad v=2 2\ndiskio v=3 100\n";
    let reference = direct(body);
    let reply = cluster.gateway.write("db=db&precision=s", body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error(), reference.error());
    assert!(reply
        .error()
        .starts_with("partial write: unable to parse ',bad v=2 2'"));
    // The routable points were written, on their shards.
    assert!(eventually(Duration::from_secs(5), || count(
        &cluster.nodes[2],
        "diskio"
    ) == 1));

    let only_bad = ",bad v=2\n,worse v=3\n";
    let reply = cluster.gateway.write("db=db", only_bad);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error(), direct(only_bad).error());
}

#[test]
fn reads_of_one_shard_are_answered_by_its_replicas_with_fallback() {
    let mut cluster = start();
    let body: String = (0..10).map(|i| format!("cpu v={i} {}\n", i + 1)).collect();
    assert_eq!(
        cluster.gateway.write("db=db&consistency=all", &body).status,
        204
    );
    for _ in 0..4 {
        let reply = cluster.gateway.query_ok("db", "SELECT count(v) FROM cpu");
        let node = reply.header("x-influx-gateway-node").unwrap_or_default();
        assert!(["influx1", "influx2"].contains(&node), "answered by {node}");
        assert_eq!(reply.json()["results"][0]["series"][0]["values"][0][1], 10);
    }
    cluster.nodes[0].kill();
    for _ in 0..10 {
        let reply = cluster.gateway.query_ok("db", "SELECT count(v) FROM cpu");
        assert_eq!(reply.header("x-influx-gateway-node"), Some("influx2"));
        assert_eq!(reply.json()["results"][0]["series"][0]["values"][0][1], 10);
    }
}

#[test]
fn a_returning_replica_gets_its_shards_writes_and_only_those() {
    let mut cluster = start();
    cluster.nodes[3].kill();
    let body: String = (0..50)
        .map(|i| format!("diskio v={i} {}\ncpu v={i} {}\n", i + 1, i + 1))
        .collect();
    cluster.gateway.write_ok("db=db", &body);
    assert_eq!(
        cluster.gateway.node_health("influx4")["queue"]["entries"],
        1,
        "the copy for influx4 is queued"
    );
    cluster.nodes[3].restart();
    let node = &cluster.nodes[3];
    assert!(
        eventually(Duration::from_secs(20), || count(node, "diskio") == 50),
        "influx4 holds {} diskio points",
        count(node, "diskio")
    );
    assert_eq!(count(node, "cpu"), 0, "cpu belongs to s1");
}

/// Whether a node holds continuous query `name` (of any database).
fn has_query(node: &Influxd, name: &str) -> bool {
    node.values("", "SHOW CONTINUOUS QUERIES")
        .iter()
        .any(|row| row[0] == name)
}

#[test]
fn query_results_written_back_stay_on_the_shard_that_holds_their_data() {
    let cluster = start();
    let body: String = (0..30)
        .map(|i| format!("diskio v={i} {}\n", i + 1))
        .collect();
    cluster.gateway.write_ok("db=db", &body);

    // diskio and disk_max both live on s2: the query goes to s2's replicas only.
    let reply = cluster.gateway.query(
        "db",
        "CREATE CONTINUOUS QUERY disk_max ON db BEGIN SELECT max(v) INTO db.autogen.disk_max \
         FROM diskio GROUP BY time(1m) END",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let held: Vec<bool> = cluster
        .nodes
        .iter()
        .map(|n| has_query(n, "disk_max"))
        .collect();
    assert_eq!(held, [false, false, true, true]);
    // Listed through the gateway as a node holding it lists it, whichever replicas answer
    // (reads rotate): every database, the one without continuous queries too.
    cluster.gateway.query_ok("", "CREATE DATABASE other");
    let holder = cluster.nodes[2].query("", "SHOW CONTINUOUS QUERIES");
    let databases = holder["results"][0]["series"].as_array().map(Vec::len);
    assert_eq!(databases, Some(2), "{holder}");
    for _ in 0..4 {
        let listed = cluster
            .gateway
            .query_ok("", "SHOW CONTINUOUS QUERIES")
            .json();
        assert_eq!(listed, holder);
    }

    let reply = cluster
        .gateway
        .query("db", "SELECT * INTO disk_copy FROM diskio");
    assert_eq!(reply.status, 200, "{}", reply.body);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let expected = if S2.contains(&i) { 30 } else { 0 };
        assert_eq!(count(node, "disk_copy"), expected, "{}", node.name);
    }

    // Anything spanning shards is refused, naming where each part lives, and nothing is created.
    let reply = cluster.gateway.query(
        "db",
        "SELECT mean(v) INTO cpu FROM diskio GROUP BY time(1m)",
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply
            .error()
            .ends_with(": diskio on shard s2; cpu (INTO) on shard s1"),
        "{}",
        reply.error()
    );
    let reply = cluster.gateway.query(
        "db",
        "CREATE CONTINUOUS QUERY per_customer ON db BEGIN SELECT count(n) INTO diskreq \
         FROM http_requests GROUP BY time(1m) END",
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply
            .error()
            .ends_with(": http_requests spread over shards s1, s2; diskreq (INTO) on shard s2"),
        "{}",
        reply.error()
    );
    assert!(cluster.nodes.iter().all(|n| !has_query(n, "per_customer")));
    assert_eq!(count(&cluster.nodes[0], "cpu"), 0);

    // Dropped everywhere, and influxd takes the drop where the query never was.
    cluster
        .gateway
        .query_ok("db", "DROP CONTINUOUS QUERY disk_max ON db");
    assert!(cluster.nodes.iter().all(|n| !has_query(n, "disk_max")));
    let listed = cluster
        .gateway
        .query_ok("", "SHOW CONTINUOUS QUERIES")
        .json();
    assert_eq!(
        listed,
        cluster.nodes[0].query("", "SHOW CONTINUOUS QUERIES")
    );
    assert!(common::series_values(&listed).is_empty(), "{listed}");
}

#[test]
fn mutations_reach_every_node() {
    let cluster = start();
    cluster.gateway.query_ok("", "CREATE DATABASE other");
    for node in &cluster.nodes {
        let names: Vec<Value> = common::series_values(&node.query("", "SHOW DATABASES"));
        assert!(
            names.contains(&serde_json::json!(["other"])),
            "{}",
            node.name
        );
    }
}
