//! Repair against real influxd: a wiped replica is given back exactly what its peers hold, with
//! its databases, retention policies and continuous queries; a repair survives a kill -9 of the
//! gateway; a node serving one shard gets only that shard's series; bad requests get clear errors.

mod common;

use std::time::Duration;

use common::{eventually, exchange, post_form, Cluster, Gateway, Influxd, JOB_LIMIT};
use serde_json::Value;

/// The measurements and retention policies the exact test writes, as `(rp, measurement)`.
const SERIES: [(&str, &str); 4] = [
    ("autogen", "cpu"),
    ("autogen", "odd name,with=chars"),
    ("autogen", "events"),
    ("year", "cpu"),
];

/// Nanoseconds of the hour that starts `hours` hours before now, so that every point is within
/// the retention policies and spreads over several chunks.
fn hours_ago(hours: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let hour = 3_600_000_000_000;
    (now / hour - hours) * hour
}

/// Points of every field type, with names that need escaping, over `hours` hours.
fn varied_points(hours: i64) -> String {
    let mut body = String::new();
    for h in 0..hours {
        let base = hours_ago(hours - h);
        for i in 0..20i64 {
            let t = base + i * 60_000_000_000;
            let x = (h * 20 + i) as f64;
            body.push_str(&format!(
                "cpu,host=h{} usage={},count={}i,ok={},note=\"say \\\"hi\\\" \\\\ {i}\" {t}\n",
                i % 3,
                x / 3.0 + 0.1,
                -(h * 1_000_000_007 + i),
                i % 2 == 0
            ));
            body.push_str(&format!(
                "odd\\ name\\,with=chars,tag\\ key=v\\,1\\=x,z=last field\\ one={} {t}\n",
                x * 1e-7
            ));
            if i % 5 == 0 {
                body.push_str(&format!("events text=\"event {h}.{i}\" {t}\n"));
            }
        }
    }
    body
}

fn everything(node: &Influxd, rp: &str, m: &str) -> Value {
    let q = format!(
        "SELECT * FROM \"{rp}\".\"{}\" GROUP BY *",
        m.replace('"', "\\\"")
    );
    let reply = post_form(
        &format!("{}/query", node.url()),
        &[("db", "demo"), ("q", &q), ("epoch", "ns")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn show(node: &Influxd, q: &str) -> Value {
    node.query("demo", q)
}

/// Asserts that `target` holds exactly what `peer` holds: points, field types, policies, CQs.
fn assert_same(peer: &Influxd, target: &Influxd) {
    for (rp, m) in SERIES {
        let (theirs, ours) = (everything(peer, rp, m), everything(target, rp, m));
        assert!(
            theirs["results"][0]["series"].is_array(),
            "{rp}.{m} is empty on {}",
            peer.name
        );
        assert_eq!(
            ours, theirs,
            "{rp}.{m} differs between {} and {}",
            target.name, peer.name
        );
    }
    for q in [
        "SHOW FIELD KEYS",
        "SHOW RETENTION POLICIES ON demo",
        "SHOW CONTINUOUS QUERIES",
        "SHOW TAG KEYS",
    ] {
        assert_eq!(show(target, q), show(peer, q), "{q}");
    }
}

fn set_up(cluster: &Cluster) {
    cluster.create_database("demo");
    for q in [
        "CREATE RETENTION POLICY year ON demo DURATION 8760h REPLICATION 1 SHARD DURATION 48h",
        "CREATE CONTINUOUS QUERY cq_hourly ON demo BEGIN SELECT mean(usage) INTO cpu_hourly FROM cpu GROUP BY time(1h), host END",
    ] {
        let reply = cluster.gateway.query("demo", q);
        assert_eq!(reply.status, 200, "{q}: {}", reply.body);
    }
    let body = varied_points(5);
    cluster.gateway.write_ok("db=demo&consistency=all", &body);
    cluster
        .gateway
        .write_ok("db=demo&rp=year&consistency=all", &varied_points(3));
}

#[test]
fn a_wiped_node_is_given_back_exactly_what_its_peers_hold() {
    let mut cluster = Cluster::start(3, "repair:\n  auto: false\n  chunk: 1h\n");
    set_up(&cluster);
    cluster.nodes[2].wipe_and_restart();
    assert!(eventually(Duration::from_secs(10), || cluster
        .gateway
        .node_state("influx3")
        == "up"));

    let reply = cluster.gateway.start_repair("node=influx3");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let job = reply.json();
    assert_eq!(job["kind"], "repair");
    assert_eq!(job["state"], "running");
    assert_eq!(job["node"], "influx3");
    let id = job["id"].as_str().unwrap().to_owned();

    let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["divergent"], Value::Array(vec![]), "{job}");
    assert!(job["chunks_total"].as_u64().unwrap() >= 4 * 3, "{job}");
    assert_eq!(job["chunks_done"], job["chunks_total"], "{job}");
    assert_eq!(job["points_copied"], 5 * 44 + 3 * 44, "{job}");
    assert!(job["finished"].is_string(), "{job}");
    assert_same(&cluster.nodes[0], &cluster.nodes[2]);

    let listed = common::get(&format!("{}/cluster/jobs", cluster.gateway.url())).json();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    let metrics = common::get(&format!("{}/metrics", cluster.gateway.url())).body;
    for line in [
        "influx_gateway_repair_points_total{node=\"influx3\"} 352",
        "influx_gateway_repair_points_total{node=\"influx1\"} 0",
        "influx_gateway_repair_chunks_remaining{node=\"influx3\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn a_wiped_node_is_found_flagged_and_repaired_by_itself_and_a_kill_mid_repair_resumes_the_same_job()
{
    // Slow on purpose (50 points a second over many small chunks), so that the gateway can be
    // killed in the middle.
    let extra = "health:\n  interval: 200ms\nrepair:\n  chunk: 10m\n  max_points_per_second: 50\n";
    let mut cluster = Cluster::start(3, extra);
    set_up(&cluster);
    cluster.nodes[2].wipe_and_restart();

    // Found by comparing its databases with a peer's, flagged at once, then repaired.
    assert!(eventually(Duration::from_secs(20), || cluster
        .gateway
        .node_health("influx3")["repair"]
        .is_object()));
    let health = cluster.gateway.node_health("influx3");
    assert_eq!(health["mode"], "repairing", "{health}");
    assert_eq!(health["queue"]["needs_resync"], true, "{health}");
    let id = health["repair"]["id"].as_str().unwrap().to_owned();

    // Reads avoid it while it is repaired.
    for i in 0..10 {
        let reply = cluster
            .gateway
            .query_ok("demo", "SELECT count(usage) FROM cpu");
        assert_ne!(
            reply.header("x-influx-gateway-node"),
            Some("influx3"),
            "read {i}"
        );
    }

    assert!(eventually(Duration::from_secs(60), || cluster
        .gateway
        .job(&id)["chunks_done"]
        .as_u64()
        .unwrap_or(0)
        >= 3));
    // Live writes while it runs, before and after the kill.
    cluster.gateway.write_ok(
        "db=demo&consistency=all",
        &format!("cpu,host=live usage=1 {}\n", hours_ago(2) + 7),
    );
    cluster.gateway.kill();
    cluster.gateway.restart();
    let resumed = cluster.gateway.job(&id);
    assert!(
        resumed["chunks_done"].as_u64().unwrap() >= 3,
        "progress carried over: {resumed}"
    );
    assert_eq!(resumed["resumed"], 1, "{resumed}");
    cluster.gateway.write_ok(
        "db=demo&consistency=all",
        &format!("cpu,host=live usage=2 {}\n", hours_ago(1) + 7),
    );

    let job = cluster.gateway.wait_for_job(&id, Duration::from_secs(300));
    assert_eq!(job["state"], "done", "{job}");
    assert_same(&cluster.nodes[0], &cluster.nodes[2]);
    assert_same(&cluster.nodes[1], &cluster.nodes[2]);
    // A job resumed after a kill -9 cannot vouch for copies refused while the gateway was down:
    // it leaves the flag, and the automatic repair that follows clears it.
    assert!(
        job["incomplete"]
            .as_str()
            .is_some_and(|why| why.contains("resumed after the gateway was killed")),
        "{job}"
    );
    assert!(
        eventually(Duration::from_secs(120), || {
            let health = cluster.gateway.node_health("influx3");
            health["queue"]["needs_resync"] == false && health["mode"] == "direct"
        }),
        "{}",
        cluster.gateway.node_health("influx3")
    );
    assert_same(&cluster.nodes[0], &cluster.nodes[2]);
}

#[test]
fn a_node_serving_one_shard_gets_only_that_shards_series() {
    // influx2 holds both shards; influx3 only s2's customers.
    let extra = "repair:\n  auto: false\n  chunk: 1h\nshards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx2, influx3]\nroutes:\n  - measurement: http\n    by_tag: customer\n    shards: [s1, s2]\n";
    let mut cluster = Cluster::start(3, extra);
    cluster.create_database("demo");
    let t = hours_ago(1);
    let body: String = (0..40)
        .map(|i| format!("http,customer=c{i} hits={i}i {}\n", t + i))
        .collect();
    cluster.gateway.write_ok("db=demo&consistency=all", &body);
    let before = everything(&cluster.nodes[2], "autogen", "http");
    let on_influx3 = before["results"][0]["series"].as_array().unwrap().len();
    assert!(
        on_influx3 > 5 && on_influx3 < 35,
        "a share of the customers: {on_influx3}"
    );

    cluster.nodes[2].wipe_and_restart();
    assert!(eventually(Duration::from_secs(10), || cluster
        .gateway
        .node_state("influx3")
        == "up"));
    let reply = cluster.gateway.start_repair("node=influx3&source=influx2");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(everything(&cluster.nodes[2], "autogen", "http"), before);
    assert_eq!(job["points_copied"], on_influx3 as u64, "{job}");
}

#[test]
fn a_repaired_node_gets_back_its_shards_continuous_queries_and_no_other() {
    let extra = "repair:\n  auto: false\nshards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx3, influx4]\nroutes:\n  - {measurement: cpu, shard: s1}\n  - {measurement: cpu_hourly, shard: s1}\n  - {measurement: disk, shard: s2}\n  - {measurement: disk_hourly, shard: s2}\n";
    let mut cluster = Cluster::start(4, extra);
    cluster.create_database("demo");
    for (m, cq) in [("cpu", "cpu_hourly"), ("disk", "disk_hourly")] {
        cluster.gateway.query_ok(
            "demo",
            &format!(
                "CREATE CONTINUOUS QUERY {cq} ON demo BEGIN SELECT sum(v) INTO {cq} FROM {m} GROUP BY time(1h) END"
            ),
        );
    }
    let queries = |node: &Influxd| -> Vec<String> {
        node.values("", "SHOW CONTINUOUS QUERIES")
            .iter()
            .filter_map(|row| row[0].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(queries(&cluster.nodes[3]), ["disk_hourly"]);
    // Twice: the source of each repair is any up replica, in turn.
    for _ in 0..2 {
        cluster.nodes[3].wipe_and_restart();
        assert!(eventually(Duration::from_secs(10), || cluster
            .gateway
            .node_state("influx4")
            == "up"));
        let reply = cluster.gateway.start_repair("node=influx4");
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(queries(&cluster.nodes[3]), ["disk_hourly"], "{job}");
    }
}

#[test]
fn bad_repair_requests_get_clear_errors_and_a_cancelled_job_says_so() {
    let extra = "repair:\n  auto: false\n  chunk: 10m\n  max_points_per_second: 100\n";
    let mut cluster = Cluster::start(3, extra);
    set_up(&cluster);
    let gateway: &Gateway = &cluster.gateway;

    let reply = gateway.start_repair("node=influx9");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.error().contains("unknown node \"influx9\""),
        "{}",
        reply.body
    );
    let reply = gateway.start_repair("");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.error().contains("node is required"), "{}", reply.body);
    let reply = gateway.start_repair("node=influx3&since=yesterday");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.error().contains("since"), "{}", reply.body);
    let reply = gateway.start_repair("node=influx3&source=influx3");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = common::get(&format!("{}/cluster/jobs/nope", gateway.url()));
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.error().contains("nope"), "{}", reply.body);

    // Two repairs of one node: the second is refused, naming the first.
    let reply = gateway.start_repair("node=influx3");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let reply = gateway.start_repair("node=influx3");
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.error().contains(&id), "{}", reply.body);

    // Cancelled mid-way: it says so, and no chunk is counted that was not finished.
    assert!(eventually(Duration::from_secs(30), || gateway.job(&id)
        ["chunks_done"]
        .as_u64()
        .unwrap_or(0)
        >= 1));
    let cancelled = exchange(
        "DELETE",
        &format!("{}/cluster/jobs/{id}", gateway.url()),
        &[],
        b"",
    );
    assert_eq!(
        cancelled.status,
        200,
        "{}",
        String::from_utf8_lossy(&cancelled.body)
    );
    let job = gateway.job(&id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        job["chunks_done"].as_u64() < job["chunks_total"].as_u64(),
        "{job}"
    );
    let again = exchange(
        "DELETE",
        &format!("{}/cluster/jobs/{id}", gateway.url()),
        &[],
        b"",
    );
    assert_eq!(again.status, 409);

    // A node that is down cannot be repaired now.
    cluster.nodes[2].kill();
    assert!(eventually(Duration::from_secs(15), || cluster
        .gateway
        .node_state("influx3")
        == "down"));
    let reply = cluster.gateway.start_repair("node=influx3");
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.error().contains("is down"), "{}", reply.body);
}

/// Drops `demo` on `node` directly, so that it refuses what its peers accept.
fn drop_database_behind_the_gateways_back(node: &Influxd) {
    let dropped = post_form(
        &format!("{}/query", node.url()),
        &[("q", "DROP DATABASE demo")],
    );
    assert_eq!(dropped.status, 200, "{}", dropped.body);
}

fn refused_writes(cluster: &Cluster, n: u64) {
    for i in 0..n {
        let reply = cluster.gateway.write_ok(
            "db=demo",
            &format!("refused,case=c{i} v={i}i {}\n", hours_ago(1) + i as i64),
        );
        assert_eq!(
            reply.header("x-influx-gateway-missing-replicas"),
            Some("influx3"),
            "{reply:?}"
        );
    }
}

#[test]
fn dead_letters_can_be_listed_replayed_in_order_and_purged() {
    let cluster = Cluster::start(3, "repair:\n  auto: false\n");
    cluster.create_database("demo");
    drop_database_behind_the_gateways_back(&cluster.nodes[2]);
    refused_writes(&cluster, 5);
    let url = format!(
        "{}/cluster/nodes/influx3/dead-letters",
        cluster.gateway.url()
    );

    let listed = common::get(&url).json();
    assert_eq!(listed["total"], 5, "{listed}");
    assert_eq!(listed["needs_resync"], true, "{listed}");
    let first = &listed["dead_letters"][0];
    assert_eq!(first["kind"], "write", "{listed}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("database not found"),
        "{listed}"
    );
    assert!(
        first["target"].as_str().unwrap().contains("db=demo"),
        "{listed}"
    );
    assert_eq!(first["points"], 1, "{listed}");
    assert!(
        first["first_lines"][0]
            .as_str()
            .unwrap()
            .starts_with("refused,case=c0 v=0i"),
        "{listed}"
    );
    assert!(first["age_seconds"].is_u64(), "{listed}");
    let limited = common::get(&format!("{url}?limit=2")).json();
    assert_eq!(limited["dead_letters"].as_array().unwrap().len(), 2);

    // Still refused: they stay.
    let replay = common::post(&format!("{url}/replay"), b"", &[]);
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.json()["replayed"], 0, "{}", replay.body);
    assert_eq!(replay.json()["remaining"], 5, "{}", replay.body);

    // The database is back: all of them reach the node, in their order.
    let created = post_form(
        &format!("{}/query", cluster.nodes[2].url()),
        &[("q", "CREATE DATABASE demo")],
    );
    assert_eq!(created.status, 200);
    let replay = common::post(&format!("{url}/replay"), b"", &[]);
    assert_eq!(replay.json()["replayed"], 5, "{}", replay.body);
    assert_eq!(replay.json()["remaining"], 0, "{}", replay.body);
    let values = cluster.nodes[2].values("demo", "SELECT v FROM refused");
    assert_eq!(values.len(), 5, "{values:?}");

    // Purged: counted, and the node stays flagged (a repair clears it).
    drop_database_behind_the_gateways_back(&cluster.nodes[2]);
    refused_writes(&cluster, 3);
    let purged = exchange("DELETE", &url, &[], b"");
    assert_eq!(purged.status, 200);
    let purged: Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(purged["purged"], 3, "{purged}");
    assert_eq!(purged["needs_resync"], true, "{purged}");
    assert_eq!(common::get(&url).json()["total"], 0);
    let missing = common::get(&format!(
        "{}/cluster/nodes/influx9/dead-letters",
        cluster.gateway.url()
    ));
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[test]
fn dead_letters_are_bounded_oldest_dropped_first() {
    let cluster = Cluster::start(
        3,
        "repair:\n  auto: false\nqueue:\n  max_dead_letter_bytes: 1KiB\n",
    );
    cluster.create_database("demo");
    drop_database_behind_the_gateways_back(&cluster.nodes[2]);
    refused_writes(&cluster, 20);
    let listed = common::get(&format!(
        "{}/cluster/nodes/influx3/dead-letters",
        cluster.gateway.url()
    ))
    .json();
    assert!(listed["bytes"].as_u64().unwrap() <= 1024, "{listed}");
    let (total, dropped) = (
        listed["total"].as_u64().unwrap(),
        listed["dropped"].as_u64().unwrap(),
    );
    assert!(
        total > 0 && dropped > 0 && total + dropped == 20,
        "{listed}"
    );
    // The newest are the ones kept.
    let last = listed["dead_letters"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["first_lines"][0]
            .as_str()
            .unwrap()
            .starts_with("refused,case=c19 "),
        "{listed}"
    );
    assert_eq!(
        cluster.gateway.node_health("influx3")["queue"]["dead_letters_dropped"],
        dropped
    );
}

#[test]
fn a_field_whose_type_differs_between_shard_groups_keeps_each_chunks_type() {
    let mut cluster = Cluster::start(2, "repair:\n  auto: false\n  chunk: 1h\n");
    cluster.create_database("demo");
    let reply = cluster.gateway.query(
        "demo",
        "CREATE RETENTION POLICY hourly ON demo DURATION 48h REPLICATION 1 SHARD DURATION 1h",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // An integer field in one hour's shard group, a float one in the next (`3` among them, which
    // JSON writes like an integer): influxd keeps both, one type per shard group.
    let (ints, floats) = (hours_ago(3), hours_ago(2));
    let body = format!(
        "gauge,host=a v=1i {ints}\ngauge,host=a v=2i {}\ngauge,host=a v=2.5 {floats}\ngauge,host=a v=3 {}\n",
        ints + 1_000_000_000,
        floats + 1_000_000_000
    );
    cluster
        .gateway
        .write_ok("db=demo&rp=hourly&consistency=all", &body);
    let types = |node: &Influxd| show(node, "SHOW FIELD KEYS FROM hourly.gauge");
    assert_eq!(
        common::series_values(&types(&cluster.nodes[0])).len(),
        2,
        "{}",
        types(&cluster.nodes[0])
    );

    cluster.nodes[1].wipe_and_restart();
    assert!(eventually(Duration::from_secs(10), || cluster
        .gateway
        .node_state("influx2")
        == "up"));
    let reply = cluster.gateway.start_repair("node=influx2");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["points_copied"], 4, "{job}");
    let (peer, target) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_eq!(types(target), types(peer));
    assert_eq!(
        everything(target, "hourly", "gauge"),
        everything(peer, "hourly", "gauge")
    );
    // Each hour read alone keeps its type: the integer hour sums to an integer.
    for start in [ints, floats] {
        let q = format!(
            "SELECT sum(v) FROM hourly.gauge WHERE time >= {start} AND time < {}",
            start + 3_600_000_000_000
        );
        assert_eq!(show(target, &q), show(peer, &q), "{q}");
    }
}
