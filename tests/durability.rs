//! The durable per-node queue against real influxd processes killed with SIGKILL: a write answered
//! 204 is on every node in the end, whatever was killed in between, and in the order it was sent.

mod common;

use std::time::Duration;

use common::{batch, count, eventually, get, wait_for_count, Cluster, Influxd};
use serde_json::json;

/// Writes `batches` batches of `size` points of `m` through the gateway; each must be answered 204.
fn write_batches(cluster: &Cluster, m: &str, batches: u64, size: u64) {
    for i in 0..batches {
        let reply = cluster.gateway.write("db=db", &batch(m, i * size, size));
        assert_eq!(reply.status, 204, "batch {i} of {m}: {}", reply.body);
    }
}

#[test]
fn a_node_killed_mid_stream_gets_every_point_back() {
    let mut cluster = Cluster::start(3, "health:\n  interval: 500ms\n  timeout: 300ms\n");
    cluster.create_database("db");
    for i in 0..200 {
        if i == 60 {
            cluster.nodes[1].kill();
        }
        if i == 140 {
            cluster.nodes[1].restart();
        }
        let reply = cluster.gateway.write("db=db", &batch("cpu", i * 10, 10));
        assert_eq!(reply.status, 204, "batch {i}: {}", reply.body);
    }
    wait_for_count(&cluster, "db", "cpu", 2000, Duration::from_secs(30));
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(10), || gateway
            .log()
            .contains("node influx2: caught up")),
        "influx2 never returned to direct writes"
    );
    let health = cluster.gateway.node_health("influx2");
    assert_eq!(health["mode"], "direct", "{health}");
    assert_eq!(health["queue"]["entries"], 0, "{health}");
    assert!(health["replayed_points"].as_u64() > Some(0), "{health}");
}

#[test]
fn the_gateway_killed_with_a_backlog_loses_nothing() {
    let mut cluster = Cluster::start(2, "");
    cluster.create_database("db");
    cluster.nodes[1].kill();
    write_batches(&cluster, "cpu", 50, 20);
    assert_eq!(
        cluster.gateway.node_health("influx2")["queue"]["entries"],
        50
    );

    // No flush, no goodbye: only what the queue made durable before each 204 survives.
    cluster.gateway.kill();
    cluster.nodes[1].restart();
    cluster.gateway.restart();
    wait_for_count(&cluster, "db", "cpu", 1000, Duration::from_secs(30));
    assert!(cluster
        .gateway
        .log()
        .contains("queued entries from before the restart will be replayed"));
}

#[test]
fn a_rewritten_point_ends_identical_on_every_replica() {
    // The relay's caveat: a point rewritten while a replica drains its backlog must not be
    // overwritten on that replica by the older value replayed after it. Small replay batches make
    // the drain slow enough to rewrite the point in the middle of it.
    let mut cluster = Cluster::start(
        2,
        "health:\n  interval: 1h\nretry:\n  initial_backoff: 200ms\n  max_backoff: 200ms\n\
         queue:\n  replay_batch_size: 1KiB\n",
    );
    cluster.create_database("db");
    cluster.nodes[1].kill();
    write_batches(&cluster, "bulk", 400, 50);
    // Written just before influx2 returns: last in its backlog.
    assert_eq!(
        cluster.gateway.write("db=db", "x v=1 42000000000\n").status,
        204
    );
    cluster.nodes[1].restart();
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(20), || {
            let health = gateway.node_health("influx2");
            health["state"] == "up" && health["mode"] == "draining"
        }),
        "influx2 never seen up and draining: {}",
        gateway.node_health("influx2")
    );
    // x=1 is still queued; the rewrite must queue behind it, not overtake it.
    assert_eq!(
        cluster.gateway.write("db=db", "x v=2 42000000000\n").status,
        204
    );
    assert_eq!(
        cluster.gateway.node_health("influx2")["mode"],
        "draining",
        "rewrite was not mid-drain"
    );

    wait_for_count(&cluster, "db", "bulk", 20_000, Duration::from_secs(60));
    for node in &cluster.nodes {
        assert!(
            eventually(Duration::from_secs(30), || node
                .values("db", "SELECT v FROM x")
                == vec![json!(["1970-01-01T00:00:42Z", 2])]),
            "{} holds {:?}",
            node.name,
            node.values("db", "SELECT v FROM x")
        );
    }
}

#[test]
fn a_database_created_while_a_node_is_down_reaches_it_before_its_points() {
    let mut cluster = Cluster::start(2, "");
    cluster.nodes[1].kill();
    let reply = cluster.gateway.query_ok("", "CREATE DATABASE later");
    let message = &reply.json()["results"][0]["messages"][0];
    assert_eq!(message["level"], "warning", "{}", reply.body);
    let text = message["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("node influx2 is down: the statement is queued"),
        "{text}"
    );

    for i in 0..5 {
        cluster
            .gateway
            .write_ok("db=later", &batch("cpu", i * 10, 10));
    }
    cluster.nodes[1].restart();
    wait_for_count(&cluster, "later", "cpu", 50, Duration::from_secs(30));
    let health = cluster.gateway.node_health("influx2");
    assert_eq!(
        health["queue"]["dead_letters"], 0,
        "nothing refused: {health}"
    );
}

#[test]
fn a_poison_entry_is_dead_lettered_and_the_entries_behind_it_arrive() {
    let mut cluster = Cluster::start(2, "retry:\n  initial_backoff: 50ms\n  max_backoff: 200ms\n");
    cluster.create_database("db");
    // influx2 alone has `m` as an integer field: a float for it is a type conflict there only.
    let direct = common::post(
        &format!("{}/write?db=db", cluster.nodes[1].url()),
        b"m v=1i 1\n",
        &[],
    );
    assert_eq!(direct.status, 204, "{}", direct.body);
    cluster.nodes[1].kill();

    // Another precision: the poison is never merged with the good batches, so they can only reach
    // influx2 once the entry in front of them has been dealt with.
    let poison = cluster.gateway.write("db=db&precision=s", "m v=1.5 2\n");
    assert_eq!(poison.status, 204, "{}", poison.body);
    write_batches(&cluster, "ok", 5, 10);
    cluster.nodes[1].restart();
    wait_for_count(&cluster, "db", "ok", 50, Duration::from_secs(30));
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(10), || {
            let queue = &gateway.node_health("influx2")["queue"];
            queue["dead_letters"] == 1 && queue["entries"] == 0
        }),
        "{}",
        gateway.node_health("influx2")
    );
    assert!(cluster
        .gateway
        .log()
        .contains("moved to dead letters: refused 3 times: 400"));
}

#[test]
fn a_full_queue_refuses_copies_and_the_gateway_keeps_serving() {
    let mut cluster = Cluster::start(2, "queue:\n  max_bytes: 4KiB\n");
    cluster.create_database("db");
    cluster.nodes[1].kill();
    let body = batch("cpu", 0, 20); // about 600 bytes
    for i in 0..20 {
        // `one` is met by influx1 even when influx2's queue refuses its copy.
        let reply = cluster.gateway.write("db=db", &body);
        assert_eq!(reply.status, 204, "write {i}: {}", reply.body);
    }
    let health = cluster.gateway.node_health("influx2");
    assert!(health["queue"]["bytes"].as_u64() <= Some(4096), "{health}");
    assert!(
        health["queue"]["refused_full"].as_u64() > Some(0),
        "{health}"
    );
    assert_eq!(health["queue"]["needs_resync"], true, "{health}");

    // `all` cannot be met; the error says why.
    let reply = cluster.gateway.write("db=db&consistency=all", &body);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply.error().contains("influx2: queue full ("),
        "{}",
        reply.body
    );
    assert_eq!(reply.header("retry-after"), Some("1"));

    // Reads and influx1 are unaffected.
    cluster.gateway.query_ok("db", "SELECT count(v) FROM cpu");
    assert_eq!(count(&cluster.nodes[0], "db", "cpu"), 20);
}

#[test]
fn sigterm_stops_cleanly_and_keeps_the_queue() {
    let mut cluster = Cluster::start(2, "");
    cluster.create_database("db");
    cluster.nodes[1].kill();
    write_batches(&cluster, "cpu", 10, 10);
    assert_eq!(cluster.gateway.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        cluster.gateway.log().contains("stopped cleanly"),
        "{}",
        cluster.gateway.log()
    );

    cluster.nodes[1].restart();
    cluster.gateway.restart();
    wait_for_count(&cluster, "db", "cpu", 100, Duration::from_secs(30));
}

#[test]
fn an_orphaned_queue_is_reported_and_kept() {
    let mut cluster = Cluster::start(2, "");
    cluster.create_database("db");
    cluster.nodes[1].kill();
    assert_eq!(
        cluster.gateway.write("db=db", &batch("cpu", 0, 10)).status,
        204
    );
    cluster.gateway.kill();

    // The same data directory, but influx2 is no longer configured.
    let config = cluster.gateway.config_path();
    let yaml = std::fs::read_to_string(&config).unwrap();
    let start = yaml.find("  - name: influx2").unwrap();
    let end = start + yaml[start..].find("url:").unwrap();
    let end = end + yaml[end..].find('\n').unwrap() + 1;
    std::fs::write(&config, format!("{}{}", &yaml[..start], &yaml[end..])).unwrap();
    cluster.gateway.restart();

    let (_, health) = cluster.gateway.health();
    let orphans = health["orphan_queues"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(orphans.len(), 1, "{health}");
    assert_eq!(orphans[0]["node"], "influx2");
    assert_eq!(orphans[0]["entries"], 1);
    assert!(cluster
        .gateway
        .log()
        .contains("belongs to no configured node; kept"));
    let ping = get(&format!("{}/ping", cluster.gateway.url()));
    assert_eq!(ping.status, 204);
}

#[test]
fn sigterm_answers_writes_held_for_a_stuck_node_from_its_queue() {
    // influx2 starts as a fake node that accepts connections and never answers (a black hole, which
    // a real influxd cannot be on demand). Writes for it pile up in its actor, on the wire (eight:
    // the default `write.max_in_flight`) and waiting behind; at SIGTERM they must all be moved to
    // its queue and answered, then replayed later into a real influx2.
    let influx1 = Influxd::start("influx1");
    let extra = "health:\n  interval: 1h\n  timeout: 1h\nwrite:\n  timeout: 20s\n";
    let mut gateway = common::Gateway::start_urls(
        &[
            ("influx1", influx1.url()),
            ("influx2", common::black_hole()),
        ],
        extra,
    );
    let created = common::post_form(
        &format!("{}/query", influx1.url()),
        &[("q", "CREATE DATABASE db")],
    );
    assert_eq!(created.status, 200);

    let answers: Vec<(u16, Duration)> = std::thread::scope(|scope| {
        let gateway = &gateway;
        let writers: Vec<_> = (0..9)
            .map(|i| {
                scope.spawn(move || {
                    let reply = gateway.write("db=db&consistency=any", &batch("cpu", i * 10, 10));
                    (reply.status, std::time::Instant::now())
                })
            })
            .collect();
        // All nine are stuck: on the wire, unanswered, or waiting behind.
        std::thread::sleep(Duration::from_millis(700));
        let health = gateway.node_health("influx2");
        assert_eq!(health["in_flight"], 8, "{health}");
        assert_eq!(health["waiting"], 1, "{health}");
        let signalled = std::time::Instant::now();
        gateway.send_term();
        writers
            .into_iter()
            .map(|w| w.join().unwrap())
            .map(|(status, at)| (status, at - signalled))
            .collect()
    });
    assert!(
        answers.iter().all(|&(status, _)| status == 204),
        "{answers:?}"
    );
    // Every one is answered from the queue at once, not after the 20 s write timeout.
    let prompt = answers
        .iter()
        .filter(|&&(_, after)| after < Duration::from_secs(10))
        .count();
    assert_eq!(prompt, 9, "answers after SIGTERM: {answers:?}");
    assert_eq!(gateway.wait_exit(Duration::from_secs(60)), Some(0));

    // Bring up a real influx2 and point the gateway's influx2 at it: the queue is replayed there.
    let influx2 = Influxd::start("influx2");
    let created = common::post_form(
        &format!("{}/query", influx2.url()),
        &[("q", "CREATE DATABASE db")],
    );
    assert_eq!(created.status, 200);
    let config = gateway.config_path();
    let yaml = std::fs::read_to_string(&config).unwrap();
    let fake = yaml
        .lines()
        .filter(|l| l.contains("url:"))
        .nth(1)
        .unwrap()
        .to_owned();
    std::fs::write(
        &config,
        yaml.replace(&fake, &format!("    url: \"{}\"", influx2.url())),
    )
    .unwrap();
    gateway.restart();
    assert!(
        eventually(Duration::from_secs(30), || count(&influx2, "db", "cpu")
            == 90),
        "influx2 holds {} points",
        count(&influx2, "db", "cpu")
    );
    assert_eq!(count(&influx1, "db", "cpu"), 90);
}
