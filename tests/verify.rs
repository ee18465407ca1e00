//! Verify against real influxd: replicas changed behind the gateway's back are found, by
//! influxd's aggregates and point by point, and settled by the majority; two replicas that
//! disagree are reported, not chosen between; the CLI's exit code says which.

mod common;

use std::process::Command;

use common::{post_form, Cluster, Influxd, JOB_LIMIT};
use serde_json::Value;

fn now_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let hour = 3_600_000_000_000;
    (now / hour - 3) * hour
}

fn points(t0: i64) -> String {
    (0..300)
        .map(|i| {
            format!(
                "cpu,host=h{} usage={}.5,count={i}i {}\n",
                i % 3,
                i,
                t0 + i * 30_000_000_000
            )
        })
        .collect()
}

fn direct(node: &Influxd, q: &str) {
    let reply = post_form(
        &format!("{}/query", node.url()),
        &[("db", "demo"), ("q", q)],
    );
    assert_eq!(reply.status, 200, "{q}: {}", reply.body);
    assert!(!reply.body.contains("error"), "{q}: {}", reply.body);
}

fn write_direct(node: &Influxd, line: &str) {
    let reply = common::post(
        &format!("{}/write?db=demo&precision=ns", node.url()),
        line.as_bytes(),
        &[],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
}

fn all(node: &Influxd) -> Value {
    node.query("demo", "SELECT * FROM cpu GROUP BY *")
}

fn verify(cluster: &Cluster, params: &str) -> Value {
    let reply = common::post(
        &format!("{}/cluster/verify?{params}", cluster.gateway.url()),
        b"",
        &[],
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let job = cluster.gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "verify", "{job}");
    job
}

fn cli(cluster: &Cluster, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
        .args(args)
        .args(["--url", &cluster.gateway.url()])
        .output()
        .expect("run the CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn divergent(job: &Value) -> Vec<Value> {
    job["report"]["shards"][0]["divergent"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn verify_finds_a_deleted_point_and_a_changed_value_and_the_majority_settles_both() {
    let cluster = Cluster::start(3, "repair:\n  auto: false\n  chunk: 1h\n");
    cluster.create_database("demo");
    let t0 = now_hour();
    cluster
        .gateway
        .write_ok("db=demo&consistency=all", &points(t0));
    let oracle = all(&cluster.nodes[0]);

    let clean = verify(&cluster, "");
    assert_eq!(clean["report"]["consistent"], true, "{clean}");
    assert!(
        clean["report"]["shards"][0]["chunks_compared"]
            .as_u64()
            .unwrap()
            >= 3
    );

    // Behind the gateway's back: one point deleted on influx2, one value changed on influx3,
    // in different hours.
    direct(
        &cluster.nodes[1],
        &format!(
            "DELETE FROM cpu WHERE host = 'h1' AND time = {}",
            t0 + 30_000_000_000
        ),
    );
    write_direct(
        &cluster.nodes[2],
        &format!(
            "cpu,host=h0 usage=999.5,count=0i {}",
            t0 + 150 * 30_000_000_000
        ),
    );

    // Quick: influxd's counts and sums find both, without reading points.
    let quick = verify(&cluster, "");
    assert_eq!(quick["report"]["consistent"], false, "{quick}");
    let found = divergent(&quick);
    assert_eq!(found.len(), 2, "{quick}");
    assert_eq!(found[0]["replicas"]["influx2"]["points"], 119, "{quick}");
    assert_eq!(found[0]["replicas"]["influx1"]["points"], 120, "{quick}");
    assert!(!found[0]["repaired"].as_bool().unwrap());
    let metrics = common::get(&format!("{}/metrics", cluster.gateway.url())).body;
    assert!(
        metrics.contains("influx_gateway_verify_divergent_chunks{shard=\"all\"} 2"),
        "{metrics}"
    );
    let (code, text) = cli(&cluster, &["verify", "--exact"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("NOT consistent"), "{text}");

    // Settled: the point copied back, the value the majority holds written over the odd one.
    let settled = verify(&cluster, "repair=true");
    assert_eq!(settled["report"]["consistent"], true, "{settled}");
    assert!(
        divergent(&settled).iter().all(|d| d["repaired"] == true),
        "{settled}"
    );
    assert_eq!(settled["points_copied"], 2, "{settled}");
    for node in &cluster.nodes {
        assert_eq!(all(node), oracle, "{} after the settling", node.name);
    }
    let (code, text) = cli(&cluster, &["verify", "--exact"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("replicas are consistent"), "{text}");
    let (code, text) = cli(&cluster, &["jobs"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.matches("verify").count() >= 4, "{text}");

    let bad = common::post(
        &format!("{}/cluster/verify?shard=nope", cluster.gateway.url()),
        b"",
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.error().contains("unknown shard \"nope\""),
        "{}",
        bad.body
    );
}

/// Two replicas holding the same points, written through the gateway, and their first instant.
fn two_replicas() -> (Cluster, i64) {
    let cluster = Cluster::start(2, "repair:\n  auto: false\n  chunk: 1h\n");
    cluster.create_database("demo");
    let t0 = now_hour();
    cluster
        .gateway
        .write_ok("db=demo&consistency=all", &points(t0));
    (cluster, t0)
}

#[test]
fn two_replicas_that_disagree_are_reported_with_both_values_and_neither_is_chosen() {
    let (cluster, t0) = two_replicas();
    let changed_at = t0 + 10 * 30_000_000_000;
    write_direct(
        &cluster.nodes[1],
        &format!("cpu,host=h1 usage=7.5,count=10i {changed_at}"),
    );
    // And a point only influx1 holds: the union is still made.
    let extra = t0 + 20 * 30_000_000_000 + 1;
    write_direct(
        &cluster.nodes[0],
        &format!("cpu,host=h9 usage=1.5,count=1i {extra}"),
    );

    let job = verify(&cluster, "repair=true&exact=true");
    assert_eq!(job["report"]["consistent"], false, "{job}");
    let found = divergent(&job);
    assert_eq!(found.len(), 1, "{job}");
    assert_eq!(found[0]["repaired"], false, "{job}");
    let conflict = &found[0]["conflicts"][0];
    assert_eq!(conflict["time"], changed_at, "{job}");
    assert_eq!(conflict["series"], "cpu,host=h1", "{job}");
    assert_eq!(
        conflict["values"]["influx1"], "count=10i,usage=10.5",
        "{job}"
    );
    assert_eq!(
        conflict["values"]["influx2"], "count=10i,usage=7.5",
        "{job}"
    );
    assert_eq!(found[0]["conflicts"].as_array().unwrap().len(), 1, "{job}");

    let value = |node: &Influxd| {
        node.values(
            "demo",
            &format!("SELECT usage FROM cpu WHERE time = {changed_at}"),
        )
    };
    assert_eq!(value(&cluster.nodes[0])[0][1], 10.5, "left as it was");
    assert_eq!(value(&cluster.nodes[1])[0][1], 7.5, "left as it was");
    let copied = cluster.nodes[1].values("demo", "SELECT usage FROM cpu WHERE host = 'h9'");
    assert_eq!(
        copied.len(),
        1,
        "the point only influx1 held is copied to influx2"
    );
}

#[test]
fn replicas_holding_different_fields_of_one_point_are_merged_not_reported() {
    let (cluster, t0) = two_replicas();
    // Two later writes of one point, each setting another field, each reaching one replica only
    // (as when a node missed one of them): InfluxDB merges a point's fields, so the point is
    // both fields, and neither replica is wrong.
    let at = t0 + 40 * 30_000_000_000;
    write_direct(
        &cluster.nodes[0],
        &format!("cpu,host=h1 note=\"a,b=c\" {at}"),
    );
    write_direct(&cluster.nodes[1], &format!("cpu,host=h1 spare=3i {at}"));

    let job = verify(&cluster, "repair=true&exact=true");
    let found = divergent(&job);
    assert_eq!(found.len(), 1, "{job}");
    assert_eq!(found[0]["repaired"], true, "{job}");
    assert!(found[0].get("conflicts").is_none(), "{job}");
    assert_eq!(all(&cluster.nodes[0]), all(&cluster.nodes[1]));
    let point = cluster.nodes[1].values(
        "demo",
        &format!("SELECT count, note, spare, usage FROM cpu WHERE time = {at}"),
    );
    assert_eq!(point[0][2], "a,b=c", "{point:?}");
    assert_eq!(point[0][3], 3, "{point:?}");
    assert_eq!(point[0][1], 40, "the fields both held stay: {point:?}");
    let job = verify(&cluster, "exact=true");
    assert_eq!(job["report"]["consistent"], true, "{job}");
}
