//! Planned maintenance of a node against real influxd: a drained node gets its writes queued and
//! no reads while its peer serves them, stays drained across a gateway restart, and gets its
//! backlog when resumed; a drain that would leave a shard unread is refused unless forced; a flush
//! replays a backlog without waiting out the backoff; every bad request gets a clear error and
//! changes nothing.

mod common;

use std::{process::Command, time::Duration};

use common::{batch, count, eventually, post, Cluster};
use serde_json::Value;

fn action(cluster: &Cluster, node: &str, what: &str) -> (u16, Value) {
    let reply = post(
        &format!("{}/cluster/nodes/{node}/{what}", cluster.gateway.url()),
        b"",
        &[],
    );
    let json = reply.json();
    (reply.status, json)
}

fn mode(cluster: &Cluster, node: &str) -> String {
    cluster.gateway.node_health(node)["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_drained_node_is_queued_for_and_not_read_until_resumed_even_across_a_restart() {
    let mut cluster = Cluster::start(2, "health:\n  interval: 500ms\n");
    cluster.create_database("db");

    // Bad requests first: each a clear error, nothing changed.
    let (status, answer) = action(&cluster, "nosuch", "drain");
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("nosuch"),
        "{answer}"
    );
    let (status, answer) = action(&cluster, "influx2", "resume");
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "node \"influx2\" is not drained");
    let (status, answer) = action(&cluster, "influx2", "flush");
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("nothing queued"));
    let reply = common::get(&format!(
        "{}/cluster/nodes/influx2/drain",
        cluster.gateway.url()
    ));
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(mode(&cluster, "influx2"), "direct");

    let (status, answer) = action(&cluster, "influx2", "drain");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["mode"], "maintenance", "{answer}");
    assert_eq!(mode(&cluster, "influx2"), "maintenance");
    let (status, answer) = action(&cluster, "influx2", "drain");
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("already drained"));
    // The last replica serving reads cannot be drained without force.
    let (status, answer) = action(&cluster, "influx1", "drain");
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("shard all with no replica serving reads"),
        "{answer}"
    );
    assert_eq!(mode(&cluster, "influx1"), "direct");

    // Writes are acknowledged and queued for the drained node; reads go to its peer only.
    for i in 0..5 {
        cluster.gateway.write_ok("db=db", &batch("cpu", i * 10, 10));
    }
    assert_eq!(count(&cluster.nodes[0], "db", "cpu"), 50);
    assert_eq!(count(&cluster.nodes[1], "db", "cpu"), 0);
    let health = cluster.gateway.node_health("influx2");
    assert!(health["queue"]["entries"].as_u64() >= Some(1), "{health}");
    for _ in 0..6 {
        let reply = cluster.gateway.query_ok("db", "SELECT count(v) FROM cpu");
        assert_eq!(reply.header("x-influx-gateway-node"), Some("influx1"));
        assert_eq!(common::series_values(&reply.json())[0][1], 50);
    }

    // A restart keeps it drained, its queue kept.
    cluster.gateway.restart();
    assert_eq!(mode(&cluster, "influx2"), "maintenance");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&cluster.nodes[1], "db", "cpu"), 0, "nothing replayed");

    // Resumed through the CLI: the backlog lands, and reads may go to it again.
    let out = Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
        .args(["node", "resume", "influx2", "--url", &cluster.gateway.url()])
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("node influx2: up"));
    assert!(
        eventually(Duration::from_secs(30), || count(
            &cluster.nodes[1],
            "db",
            "cpu"
        ) == 50),
        "{}",
        cluster.gateway.node_health("influx2")
    );
    assert!(eventually(Duration::from_secs(10), || mode(
        &cluster, "influx2"
    ) == "direct"));
    let answered: Vec<String> = (0..6)
        .map(|_| {
            let reply = cluster.gateway.query_ok("db", "SELECT count(v) FROM cpu");
            reply
                .header("x-influx-gateway-node")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(answered.iter().any(|n| n == "influx2"), "{answered:?}");
    // Forced, the last replica may be drained too: writes are then queued on both.
    let reply = post(
        &format!(
            "{}/cluster/nodes/influx1/drain?force=true",
            cluster.gateway.url()
        ),
        b"",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (status, answer) = action(&cluster, "influx2", "drain");
    assert_eq!(status, 409, "its peer is drained now: {answer}");
    let reply = post(
        &format!(
            "{}/cluster/nodes/influx2/drain?force=true",
            cluster.gateway.url()
        ),
        b"",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // As with every replica down: queued everywhere, acknowledged at `consistency=any` only.
    let reply = cluster.gateway.write("db=db", &batch("cpu", 50, 10));
    assert_eq!(reply.status, 503, "{}", reply.body);
    cluster
        .gateway
        .write_ok("db=db&consistency=any", &batch("cpu", 50, 10));
    for node in ["influx1", "influx2"] {
        assert_eq!(action(&cluster, node, "resume").0, 200);
    }
    common::wait_for_count(&cluster, "db", "cpu", 60, Duration::from_secs(30));
}

#[test]
fn a_flush_replays_a_backlog_without_waiting_out_the_backoff() {
    // The backoff after the node's outage and the probe interval are long on purpose: the
    // gateway would not try the node again for a minute; an operator who just fixed it flushes.
    let mut cluster = Cluster::start(
        2,
        "health:\n  interval: 60s\nretry:\n  initial_backoff: 60s\n  max_backoff: 120s\n",
    );
    cluster.create_database("db");
    cluster.nodes[1].kill();
    for i in 0..3 {
        cluster.gateway.write_ok("db=db", &batch("cpu", i * 10, 10));
    }
    // The failed write and a failed replay put the next try a minute away.
    std::thread::sleep(Duration::from_secs(1));
    cluster.nodes[1].restart();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&cluster.nodes[1], "db", "cpu"), 0, "not replayed yet");
    assert!(cluster.gateway.node_health("influx2")["queue"]["entries"].as_u64() >= Some(1));
    let out = Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
        .args(["node", "flush", "influx2", "--url", &cluster.gateway.url()])
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 entries"),
        "{out:?}"
    );
    assert_eq!(count(&cluster.nodes[1], "db", "cpu"), 30);
}
