//! Rebalance against real influxd: after the shards and routes change (a restart with a new
//! configuration), reads follow where the data is until it has moved, every read during the move
//! sees every acknowledged point exactly once, the new shards end holding everything and the old
//! replicas nothing of what moved; a kill -9 mid-rebalance resumes the same job and loses nothing.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use common::{eventually, get, post, Cluster, Gateway, Influxd, JOB_LIMIT};
use serde_json::Value;

const DB: &str = "moving";

/// Before: `cpu` on influx1 alone, `mem` spread by host over s1 and s2.
const BEFORE: &str = "shards:
  - {name: s1, replicas: [influx1]}
  - {name: s2, replicas: [influx2, influx3]}
routes:
  - {measurement: cpu, shard: s1}
  - {measurement: cpu_hourly, shard: s1}
  - {measurement: mem, by_tag: host, shards: [s1, s2]}
";

/// After a node is added: `cpu` moves to the two-node shard, and `mem` is spread over a third
/// shard too, on the new node (some hosts come from influx1, others from influx2 and influx3).
const AFTER: &str = "shards:
  - {name: s1, replicas: [influx1]}
  - {name: s2, replicas: [influx2, influx3]}
  - {name: s3, replicas: [influx4]}
routes:
  - {measurement: cpu, shard: s2}
  - {measurement: cpu_hourly, shard: s2}
  - {measurement: mem, by_tag: host, shards: [s1, s2, s3]}
";

const HOUR: i64 = 3_600_000_000_000;

/// The start of the hour `hours` hours ago (ns), so that points spread over several chunks.
fn hours_ago(hours: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    (now / HOUR - hours) * HOUR
}

/// `cpu` and `mem` points over three hours, with tags that need escaping and a tag some series
/// lack; `seq` numbers them so that every batch writes new points.
fn points(seq: u64, n: u64) -> String {
    let base = hours_ago(3);
    let mut body = String::new();
    for i in seq..seq + n {
        let t = base + (i as i64 % 10_800) * 1_000_000_000 + (i as i64 / 10_800);
        let host = format!("h{}", i % 12);
        body.push_str(&format!(
            "cpu,host=a\\ {host},region=x\\,{} v={i}i {t}\n",
            i % 3
        ));
        if i % 4 == 0 {
            body.push_str(&format!("mem,host={host} v={i}i {t}\n"));
        } else {
            body.push_str(&format!("mem,host={host},dc=d{} v={i}i {t}\n", i % 2));
        }
    }
    body
}

/// `(count, sum)` of `v` in `m`, through the gateway or a node.
fn totals(values: Vec<Value>) -> (u64, i64) {
    values
        .first()
        .map(|row| (row[1].as_u64().unwrap_or(0), row[2].as_i64().unwrap_or(0)))
        .unwrap_or((0, 0))
}

fn gateway_totals(gateway: &Gateway, m: &str) -> (u64, i64) {
    let reply = gateway.query_ok(DB, &format!("SELECT count(v), sum(v) FROM {m}"));
    totals(common::series_values(&reply.json()))
}

/// `(count, sum)` of `v` per measurement, from one statement reading several through the gateway.
fn gateway_totals_each(gateway: &Gateway, q: &str) -> BTreeMap<String, (u64, i64)> {
    let reply = gateway.query_ok(DB, q);
    let answer = reply.json();
    let series = answer["results"][0]["series"].as_array().cloned();
    series
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            let values = s["values"].as_array().cloned().unwrap_or_default();
            (name, totals(values))
        })
        .collect()
}

/// Statements reading `cpu` and `mem` at once, which may live on different shards.
const BOTH: [&str; 2] = [
    "SELECT count(v), sum(v) FROM cpu, mem",
    "SELECT count(v), sum(v) FROM /^(cpu|mem)$/",
];

fn node_totals(node: &Influxd, m: &str) -> (u64, i64) {
    totals(node.values(DB, &format!("SELECT count(v), sum(v) FROM {m}")))
}

/// What was written: per measurement, `(count, sum)`.
fn expected(first: u64, n: u64) -> BTreeMap<&'static str, (u64, i64)> {
    let mut totals = BTreeMap::new();
    let sum: i64 = (first..first + n).map(|i| i as i64).sum();
    totals.insert("cpu", (n, sum));
    totals.insert("mem", (n, sum));
    totals
}

/// The hosts of `mem` node `node` holds.
fn hosts_on(node: &Influxd) -> Vec<String> {
    node.values(DB, "SHOW TAG VALUES FROM mem WITH KEY = host")
        .iter()
        .filter_map(|row| row[1].as_str().map(str::to_owned))
        .collect()
}

/// The nodes `/route` says hold `mem` points of `host`.
fn route_of(gateway: &Gateway, host: &str) -> Vec<String> {
    let reply = get(&format!(
        "{}/route?db={DB}&measurement=mem&tag={host}",
        gateway.url()
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["shards"][0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Four nodes, the gateway in front of the first three with `BEFORE` and `extra`.
fn start(extra: &str) -> Cluster {
    let nodes: Vec<Influxd> = (1..=4)
        .map(|i| Influxd::start(&format!("influx{i}")))
        .collect();
    let gateway = Gateway::start(
        &nodes[..3].iter().collect::<Vec<_>>(),
        &format!("{BEFORE}{extra}"),
    );
    Cluster { nodes, gateway }
}

/// Adds the fourth node and replaces `BEFORE` with `AFTER` in the gateway's configuration, then
/// starts it again (after a SIGKILL).
fn add_node_and_shard(cluster: &mut Cluster) {
    let gateway = &mut cluster.gateway;
    gateway.kill();
    let path = gateway.config_path();
    let yaml = fs::read_to_string(&path).unwrap();
    assert!(yaml.contains(BEFORE));
    let added = format!(
        "  - name: influx4\n    url: \"{}\"\n{AFTER}",
        cluster.nodes[3].url()
    );
    fs::write(&path, yaml.replace(BEFORE, &added)).unwrap();
    gateway.restart();
}

/// Starts a rebalance once no other job runs (it runs alone, and a node just added lacks the
/// database, which `repair.auto` may be mending).
fn start_rebalance(gateway: &Gateway) -> String {
    let idle = eventually(JOB_LIMIT, || {
        let jobs = get(&format!("{}/cluster/jobs", gateway.url())).json();
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] != "running")
    });
    assert!(idle, "a job is still running");
    let reply = post(&format!("{}/cluster/rebalance", gateway.url()), b"", &[]);
    assert_eq!(reply.status, 202, "{}", reply.body);
    let job = reply.json();
    assert_eq!(job["kind"], "rebalance", "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// Checks that every node holds exactly what the configured layout places on it.
fn assert_placed(cluster: &Cluster, total: (u64, i64)) {
    let [n1, n2, n3, n4] = &cluster.nodes[..] else {
        panic!()
    };
    // `cpu` left influx1 for s2 = influx2 + influx3.
    assert_eq!(node_totals(n1, "cpu"), (0, 0), "cpu left on influx1");
    assert_eq!(node_totals(n4, "cpu"), (0, 0), "cpu on influx4");
    assert!(
        n1.values(DB, "SHOW SERIES FROM cpu").is_empty(),
        "cpu series left on influx1"
    );
    assert_eq!(node_totals(n2, "cpu"), total);
    assert_eq!(node_totals(n3, "cpu"), total);
    // Each node holds exactly the `mem` hosts now placed on it.
    let mut mem = (0, 0);
    for host in (0..12).map(|h| format!("h{h}")) {
        let placed = route_of(&cluster.gateway, &host);
        for node in &cluster.nodes {
            let holds = hosts_on(node).contains(&host);
            assert_eq!(
                holds,
                placed.contains(&node.name),
                "mem host {host} on {}: placed on {placed:?}",
                node.name
            );
        }
        let on = cluster.nodes.iter().find(|n| n.name == placed[0]).unwrap();
        let (count, sum) = totals(on.values(
            DB,
            &format!("SELECT count(v), sum(v) FROM mem WHERE host = '{host}'"),
        ));
        mem = (mem.0 + count, mem.1 + sum);
    }
    assert_eq!(mem, total, "mem points over their new shards");
}

#[test]
fn a_route_change_moves_the_data_and_no_read_misses_or_doubles_a_point() {
    let mut cluster = start("repair:\n  chunk: 10m\n");
    cluster.create_database(DB);
    let gateway = &cluster.gateway;
    gateway.write_ok(&format!("db={DB}"), &points(0, 3000));
    let mut written = 3000;

    add_node_and_shard(&mut cluster);
    let gateway = &cluster.gateway;
    // The new node lacks the database its peers hold: `repair.auto` creates it there.
    let databases = |node: &Influxd| node.values("", "SHOW DATABASES");
    assert!(
        eventually(JOB_LIMIT, || databases(&cluster.nodes[3])
            .iter()
            .any(|row| row[0] == DB)),
        "{}",
        gateway.log()
    );
    let (_, health) = gateway.health();
    assert_eq!(health["rebalance"]["needed"], true, "{health}");
    assert!(
        health["message"]
            .as_str()
            .unwrap()
            .contains("a rebalance is needed"),
        "{health}"
    );
    assert!(
        gateway.log().contains("a rebalance is needed"),
        "{}",
        gateway.log()
    );
    let route = get(&format!("{}/route?db={DB}&measurement=cpu", gateway.url())).json();
    assert_eq!(route["shards"][0]["name"], "s2", "{route}");
    assert_eq!(route["data_on"][0]["name"], "s1", "{route}");
    // Query results written back would be computed from data still on its way: refused.
    let reply = gateway.query(DB, "SELECT * INTO cpu_hourly FROM cpu");
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.error().contains("run a rebalance"), "{}", reply.body);
    // Until the data has moved, reads find it where it was, and new writes land there too.
    for m in ["cpu", "mem"] {
        assert_eq!(gateway_totals(gateway, m), expected(0, written)[m], "{m}");
    }
    gateway.write_ok(&format!("db={DB}"), &points(written, 500));
    written += 500;
    for m in ["cpu", "mem"] {
        assert_eq!(gateway_totals(gateway, m), expected(0, written)[m], "{m}");
    }

    // During the move: a writer adds points, a reader checks every answer holds every point
    // acknowledged before it asked, and none twice.
    let acked = Arc::new(AtomicU64::new(written));
    let done = Arc::new(AtomicBool::new(false));
    let url = gateway.url();
    let writer = {
        let (acked, done, url) = (acked.clone(), done.clone(), url.clone());
        thread::spawn(move || {
            let mut next = acked.load(Ordering::SeqCst);
            for _ in 0..200 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let reply = post(
                    &format!("{url}/write?db={DB}"),
                    points(next, 20).as_bytes(),
                    &[],
                );
                assert_eq!(reply.status, 204, "{}", reply.body);
                next += 20;
                acked.store(next, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let id = start_rebalance(gateway);
    let mut reads = 0;
    loop {
        let running = gateway.job(&id)["state"] == "running";
        for m in ["cpu", "mem"] {
            let before = acked.load(Ordering::SeqCst);
            let (count, _) = gateway_totals(gateway, m);
            let after = acked.load(Ordering::SeqCst);
            assert!(
                (before..=after + 20).contains(&count),
                "{m}: a read during the move saw {count} points, {before}..={after} acknowledged"
            );
            reads += 1;
        }
        // A statement reading both at once asks each shard for its own measurements by name:
        // a node holding copies on their way in must not answer for them.
        for q in BOTH {
            let before = acked.load(Ordering::SeqCst);
            let each = gateway_totals_each(gateway, q);
            let after = acked.load(Ordering::SeqCst);
            for m in ["cpu", "mem"] {
                let (count, _) = each.get(m).copied().unwrap_or_default();
                assert!(
                    (before..=after + 20).contains(&count),
                    "{q}: {m} during the move had {count} points, {before}..={after} acknowledged"
                );
            }
        }
        if !running {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let written = acked.load(Ordering::SeqCst);
    let job = gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert!(reads >= 4, "the move was read during: {reads} reads");
    assert!(job["chunks_total"].as_u64().unwrap() > 3, "{job}");
    assert!(job["points_copied"].as_u64().unwrap() >= 3500, "{job}");
    assert!(job["series_removed"].as_u64().unwrap() > 0, "{job}");

    // After: the configured layout holds everything, the old replicas nothing of what moved.
    for m in ["cpu", "mem"] {
        assert_eq!(gateway_totals(gateway, m), expected(0, written)[m], "{m}");
        for q in BOTH {
            let each = gateway_totals_each(gateway, q);
            assert_eq!(each.get(m), Some(&expected(0, written)[m]), "{q}: {m}");
        }
    }
    assert_placed(&cluster, expected(0, written)["cpu"]);
    let (_, health) = gateway.health();
    assert!(health.get("rebalance").is_none(), "{health}");
    let route = get(&format!("{}/route?db={DB}&measurement=cpu", gateway.url())).json();
    assert!(route.get("data_on").is_none(), "{route}");

    // Settled for good: a restart keeps following the new layout, and writes go there only.
    cluster.gateway.restart();
    let gateway = &cluster.gateway;
    let (_, health) = gateway.health();
    assert!(health.get("rebalance").is_none(), "{health}");
    gateway.write_ok(&format!("db={DB}"), &points(written, 100));
    assert_placed(&cluster, expected(0, written + 100)["cpu"]);
}

#[test]
fn a_rebalance_killed_midway_resumes_and_loses_nothing() {
    // Slow enough to be caught in the middle: 10 chunks of 300 points each, 1,000 points a second.
    let rate = "repair:\n  chunk: 20m\n  max_points_per_second: 1000\n";
    let mut cluster = start(rate);
    cluster.create_database(DB);
    cluster
        .gateway
        .write_ok(&format!("db={DB}"), &points(0, 6000));
    // Nothing changed yet: a rebalance has nothing to move, and says so.
    let id = start_rebalance(&cluster.gateway);
    let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["chunks_total"], 0, "{job}");
    assert!(job["warnings"][0]
        .as_str()
        .unwrap()
        .contains("nothing to move"));

    add_node_and_shard(&mut cluster);
    let id = start_rebalance(&cluster.gateway);
    let gateway = &cluster.gateway;
    // One rebalance at a time, and nothing else beside it.
    let again = post(&format!("{}/cluster/rebalance", gateway.url()), b"", &[]);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains(&id), "{}", again.body);
    let repair = gateway.start_repair("node=influx2");
    assert_eq!(repair.status, 409, "{}", repair.body);
    assert!(repair.body.contains("rebalance"), "{}", repair.body);
    assert!(
        eventually(JOB_LIMIT, || gateway.job(&id)["chunks_done"]
            .as_u64()
            .unwrap()
            >= 2),
        "{}",
        gateway.job(&id)
    );
    let before_kill = gateway.job(&id);
    assert_eq!(before_kill["state"], "running", "{before_kill}");

    cluster.gateway.restart();
    let gateway = &cluster.gateway;
    // Reads still follow where the data was, and find all of it.
    for m in ["cpu", "mem"] {
        assert_eq!(gateway_totals(gateway, m), expected(0, 6000)[m], "{m}");
    }
    let resumed = gateway.job(&id);
    assert!(resumed["resumed"].as_u64().unwrap() >= 1, "{resumed}");
    assert!(
        resumed["chunks_done"].as_u64() >= before_kill["chunks_done"].as_u64(),
        "{resumed}"
    );
    let job = gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    for m in ["cpu", "mem"] {
        assert_eq!(gateway_totals(gateway, m), expected(0, 6000)[m], "{m}");
    }
    assert_placed(&cluster, expected(0, 6000)["cpu"]);
}

#[test]
fn with_rebalance_auto_a_changed_layout_is_moved_at_start_by_itself() {
    let mut cluster = start("");
    cluster.create_database(DB);
    cluster
        .gateway
        .write_ok(&format!("db={DB}"), &points(0, 1000));
    // A continuous query lives with its measurements, on s1's one node, and moves with them.
    cluster.gateway.query_ok(
        DB,
        "CREATE CONTINUOUS QUERY cpu_hourly ON moving BEGIN \
         SELECT sum(v) INTO cpu_hourly FROM cpu GROUP BY time(1h), * END",
    );
    let has_query = |node: &Influxd| {
        node.values("", "SHOW CONTINUOUS QUERIES")
            .iter()
            .any(|row| row[0] == "cpu_hourly")
    };
    let holders =
        |cluster: &Cluster| -> Vec<bool> { cluster.nodes.iter().map(has_query).collect() };
    assert_eq!(holders(&cluster), [true, false, false, false]);
    let path = cluster.gateway.config_path();
    let yaml = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{yaml}rebalance:\n  auto: true\n")).unwrap();
    add_node_and_shard(&mut cluster);
    let gateway = &cluster.gateway;
    let mut job = Value::Null;
    assert!(
        eventually(JOB_LIMIT, || {
            let jobs = get(&format!("{}/cluster/jobs", gateway.url())).json();
            job = jobs["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kind"] == "rebalance")
                .cloned()
                .unwrap_or(Value::Null);
            job["state"] == "done"
        }),
        "{job}\n{}",
        gateway.log()
    );
    assert_eq!(
        job["reason"], "shards or routes changed (rebalance.auto)",
        "{job}"
    );
    assert_placed(&cluster, expected(0, 1000)["cpu"]);
    assert_eq!(holders(&cluster), [false, true, true, false], "{job}");
}
