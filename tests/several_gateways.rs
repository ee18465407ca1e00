//! Several gateways in front of the same nodes, each with its own `data_dir`, against real influxd:
//! writes alternate between two gateways while a node is down and one gateway is SIGKILLed and
//! restarted; every acknowledged point ends on every replica, and a verify through either gateway
//! finds them consistent. A gateway lost for good with writes still queued for a down node: a new
//! gateway and `verify --repair` heal the node, as the README's runbook says.

mod common;

use std::time::Duration;

use common::{batch, count, eventually, post, Gateway, Influxd, JOB_LIMIT};
use serde_json::Value;

fn verify(gateway: &Gateway, params: &str) -> Value {
    let reply = post(
        &format!("{}/cluster/verify?{params}", gateway.url()),
        b"",
        &[],
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let job = gateway.wait_for_job(&id, JOB_LIMIT);
    assert_eq!(job["state"], "done", "{job}");
    job
}

fn queue_entries(gateway: &Gateway, node: &str) -> u64 {
    gateway.node_health(node)["queue"]["entries"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn writes_through_two_gateways_reach_every_replica_through_a_node_outage_and_a_gateway_kill() {
    let mut nodes: Vec<Influxd> = (1..=3)
        .map(|i| Influxd::start(&format!("influx{i}")))
        .collect();
    let fast =
        "health:\n  interval: 300ms\nretry:\n  initial_backoff: 50ms\n  max_backoff: 500ms\n";
    let mut one = Gateway::start(&nodes.iter().collect::<Vec<_>>(), fast);
    let two = Gateway::start(&nodes.iter().collect::<Vec<_>>(), fast);
    one.query_ok("", "CREATE DATABASE db");
    nodes[2].kill();

    let mut acked = 0;
    for i in 0..20u64 {
        if i == 8 {
            // One gateway dies with writes for influx3 in its queue, and comes back.
            assert!(queue_entries(&one, "influx3") >= 1);
            one.kill();
        }
        if i == 14 {
            one.restart();
        }
        let through = if i % 2 == 0 && !(8..14).contains(&i) {
            &one
        } else {
            &two
        };
        through.write_ok("db=db", &batch("cpu", i * 10, 10));
        acked += 10;
    }
    nodes[2].restart();
    for gateway in [&one, &two] {
        assert!(
            eventually(Duration::from_secs(60), || queue_entries(
                gateway, "influx3"
            ) == 0),
            "{}",
            gateway.node_health("influx3")
        );
    }
    for node in &nodes {
        assert_eq!(count(node, "db", "cpu"), acked, "{}", node.name);
    }
    for gateway in [&one, &two] {
        let job = verify(gateway, "exact=true");
        assert_eq!(job["report"]["consistent"], true, "{job}");
    }
}

#[test]
fn a_gateway_lost_with_a_backlog_is_replaced_and_verify_repair_heals_the_node() {
    let mut nodes: Vec<Influxd> = (1..=3)
        .map(|i| Influxd::start(&format!("influx{i}")))
        .collect();
    let lost = Gateway::start(&nodes.iter().collect::<Vec<_>>(), "");
    lost.query_ok("", "CREATE DATABASE db");
    lost.write_ok("db=db", &batch("cpu", 0, 50));
    nodes[2].kill();
    lost.write_ok("db=db", &batch("cpu", 50, 50));
    assert!(queue_entries(&lost, "influx3") >= 1);
    // Its disk is gone: the queue holding influx3's copies with it.
    drop(lost);
    nodes[2].restart();

    // The runbook: start a new gateway, then `verify --repair`.
    let new = Gateway::start(&nodes.iter().collect::<Vec<_>>(), "");
    assert_eq!(
        count(&nodes[2], "db", "cpu"),
        50,
        "influx3 missed the last 50"
    );
    let job = verify(&new, "repair=true");
    let found = job["report"]["shards"][0]["divergent"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!found.is_empty(), "it differed: {job}");
    assert!(found.iter().all(|d| d["repaired"] == true), "{job}");
    for node in &nodes {
        assert_eq!(count(node, "db", "cpu"), 100, "{}", node.name);
    }
    let job = verify(&new, "exact=true");
    assert_eq!(job["report"]["consistent"], true, "{job}");
}
