//! The faults a chaos run found (issue 17), each reproduced against real influxd processes: a queue
//! disk that fills up (a real tmpfs, mounted by the test, filled by the gateway's own queue), a large
//! write that a node refuses before reading its body, and copies that never reach a node.

mod common;

use std::time::{Duration, Instant};

use common::{batch, count, eventually, post, Cluster, Gateway, Influxd, Reply, Tmpfs};

/// The header a 204 carries when some replica did not get the points.
const MISSING: &str = "x-influx-gateway-missing-replicas";

/// A batch of `n` points of `m` that compresses about as badly as real metrics, so that the queue
/// fills its disk in a few dozen writes.
fn noisy_batch(m: &str, first: u64, n: u64) -> String {
    let mut state = first.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (first..first + n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!(
                "{m},host=h{} v={i},w={state},x=\"{:x}\" {}\n",
                i % 7,
                state.rotate_left(17),
                (i + 1) * 1_000_000_000
            )
        })
        .collect()
}

/// Writes through `gateway` and checks it was answered without waiting out a deadline: the fault
/// was a 20 s hang followed by a 503, so "promptly" is well under one `write.timeout` (10 s).
fn prompt_write(gateway: &Gateway, params: &str, body: &str) -> Reply {
    let started = Instant::now();
    let reply = gateway.write(params, body);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{params}: answered after {:?}: {} {}",
        started.elapsed(),
        reply.status,
        reply.body
    );
    reply
}

/// The text of the first message of the first result of a query's answer.
fn first_message(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["results"][0]["messages"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Creates `db` on `node` alone, bypassing the gateway.
fn create_directly(node: &Influxd, db: &str) {
    let reply = post(
        &format!("{}/query", node.url()),
        format!("q=CREATE+DATABASE+{db}").as_bytes(),
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Three nodes and a gateway whose queues live on `disk`.
fn cluster_on(disk: &Tmpfs, extra: &str) -> Cluster {
    let nodes: Vec<Influxd> = (1..=3)
        .map(|i| Influxd::start(&format!("influx{i}")))
        .collect();
    let gateway = Gateway::start_with_data_dir(
        &nodes.iter().collect::<Vec<_>>(),
        extra,
        &disk.path().join("data"),
    );
    Cluster { nodes, gateway }
}

/// With influx3 down, writes batches of `filled` until a 204 says influx3's copy was not stored;
/// returns the points answered before that (all queued for influx3). The last batch, 5,000 more,
/// is on the other two only.
fn fill_the_queue_disk(cluster: &Cluster) -> u64 {
    let mut queued = 0;
    for i in 0..400 {
        let reply = prompt_write(
            &cluster.gateway,
            "db=chaos",
            &noisy_batch("filled", queued, 5_000),
        );
        assert_eq!(reply.status, 204, "batch {i}: {}", reply.body);
        match reply.header(MISSING) {
            None => queued += 5_000,
            Some(missing) => {
                assert_eq!(missing, "influx3", "{reply:?}");
                assert!(queued > 0, "nothing was queued before the disk filled");
                return queued;
            }
        }
    }
    panic!(
        "400 batches and the queue's disk never filled: {}",
        cluster.gateway.node_health("influx3")
    );
}

/// Checks, after the disk filled, that copies are refused as when `queue.max_bytes` is reached:
/// every level whose acceptances are met answers 204 at once, naming influx3; a mutation too.
fn copies_are_refused_promptly(cluster: &Cluster) {
    let gateway = &cluster.gateway;
    for (i, level) in ["any", "one", "quorum", "any", "one"].iter().enumerate() {
        let body = batch("refused", i as u64 * 100, 100);
        let reply = prompt_write(gateway, &format!("db=chaos&consistency={level}"), &body);
        assert_eq!(reply.status, 204, "{level}: {}", reply.body);
        assert_eq!(reply.header(MISSING), Some("influx3"), "{level}: {reply:?}");
    }
    let started = Instant::now();
    let reply = gateway.query_ok("", "CREATE DATABASE during");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let text = first_message(&reply);
    assert!(
        text.starts_with("node influx3 did not get the statement: ")
            && text.ends_with("it is flagged as needing a resync"),
        "{}",
        reply.body
    );
    let health = gateway.node_health("influx3");
    assert_eq!(health["queue"]["needs_resync"], true, "{health}");
    assert!(
        health["queue"]["refused_full"].as_u64() > Some(0),
        "{health}"
    );
    let (_, all) = gateway.health();
    assert!(
        all["message"]
            .as_str()
            .is_some_and(|m| m.contains("influx3 needs a resync")),
        "{all}"
    );
}

/// A cluster on a tmpfs of `size` whose queue disk was filled by influx3's backlog, checked to
/// refuse copies promptly, then sent SIGTERM (which must exit within the shutdown grace, 2 ×
/// `write.timeout` + 1 s), restarted with `grown` room, and checked to remember influx3's flag.
/// Returns it with the points queued for influx3 before the disk filled, and the exit code.
fn fill_stop_and_restart(size: &str, reserve: u64, grown: &str) -> (Tmpfs, Cluster, u64, i32) {
    let disk = Tmpfs::mount(size);
    let mut cluster = cluster_on(
        &disk,
        &format!("health:\n  interval: 1s\nqueue:\n  min_free_disk: {reserve}B\n"),
    );
    cluster.create_database("chaos");
    cluster.nodes[2].kill();
    let queued = fill_the_queue_disk(&cluster);
    // A copy smaller than the one refused could still fit above the reserve: leave less than the
    // reserve free, so that every copy is refused, but not much less: the reserve is sled's room
    // for its own writes (segment cleaning, the records of removals), which a disk shrunk to what
    // it holds would make fail, and sled then refuses everything until reopened.
    disk.leave_free(reserve.saturating_sub(1 << 20));
    // The gateway trusts a measurement of the free space for 250 ms: the one taken as the disk
    // filled may still say a small copy fits, as it did then (a 100-point copy where a
    // 5,000-point one did not). Past that, every copy measures the shrunk disk.
    std::thread::sleep(Duration::from_millis(400));
    copies_are_refused_promptly(&cluster);
    let code = cluster.gateway.terminate(Duration::from_secs(21));
    let code = code.unwrap_or_else(|| panic!("killed by a signal: {}", cluster.gateway.log()));
    disk.resize(grown);
    cluster.gateway.restart();
    let health = cluster.gateway.node_health("influx3");
    assert_eq!(
        health["queue"]["needs_resync"], true,
        "the flag survives a restart: {health}"
    );
    (disk, cluster, queued, code)
}

/// Restarts influx3 and waits for its backlog to drain.
fn drain_influx3(cluster: &mut Cluster) {
    cluster.nodes[2].restart();
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(120), || gateway.node_health("influx3")
            ["queue"]["entries"]
            == 0),
        "{}",
        gateway.node_health("influx3")
    );
}

#[test]
fn a_full_queue_disk_refuses_copies_promptly_and_recovers_by_itself() {
    let (disk, mut cluster, queued, code) = fill_stop_and_restart("32m", 16 << 20, "32m");
    assert_eq!(code, 0, "{}", cluster.gateway.log());
    // Space comes back while the gateway runs: the backlog drains, new copies are stored again.
    disk.resize("128m");
    drain_influx3(&mut cluster);
    for node in &cluster.nodes[..2] {
        let held = count(node, "chaos", "filled");
        assert_eq!(held, queued + 5_000, "{}", node.name);
    }
    assert_eq!(count(&cluster.nodes[2], "chaos", "filled"), queued);
    let gateway = &cluster.gateway;
    let reply = prompt_write(gateway, "db=chaos", &batch("after", 0, 100));
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.header(MISSING), None, "{reply:?}");
    let influx3 = &cluster.nodes[2];
    assert!(eventually(Duration::from_secs(30), || count(
        influx3, "chaos", "after"
    ) == 100));
    assert!(
        !gateway.log().contains("replay paused"),
        "the queue's storage failed:\n{}",
        gateway.log()
    );
}

#[test]
fn a_disk_filled_past_the_reserve_still_answers_promptly_and_loses_nothing_acknowledged() {
    // No reserve: the disk fills for real and sled's own writes fail with ENOSPC. sled then
    // refuses everything until reopened, so SIGTERM reports the failed last flush (exit 1);
    // the restart, with room again, replays everything acknowledged.
    let (_disk, mut cluster, queued, _code) = fill_stop_and_restart("24m", 0, "128m");
    drain_influx3(&mut cluster);
    let on_influx3 = count(&cluster.nodes[2], "chaos", "filled");
    assert!(
        on_influx3 >= queued,
        "influx3 holds {on_influx3} of {queued} acknowledged points"
    );
}

/// `n` lines for `db`, about 40 bytes each: with 300,000 a body of 12 MB, far more than the
/// 256 KiB influxd drains before closing a connection whose request it refused unread.
fn large_body(n: u64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "big,t=t{} v={i}i {}\n",
                i % 100,
                1_600_000_000_000_000_000 + i
            )
        })
        .collect()
}

#[test]
fn a_large_write_a_node_refuses_unread_is_a_refusal_not_a_stalled_queue() {
    // influx3 lacks a database its peers hold on purpose: no automatic repair may give it back.
    let mut cluster = Cluster::start(
        3,
        "health:\n  interval: 1s\nretry:\n  initial_backoff: 100ms\n  max_backoff: 1s\nrepair:\n  auto: false\n",
    );
    cluster.create_database("healthy");
    for node in &cluster.nodes[..2] {
        create_directly(node, "poison");
    }
    let body = large_body(300_000);
    assert!(body.len() > 10_000_000, "{} bytes", body.len());

    // Sent straight to influx3, its 404 is read, and it is a refusal the others contradict: the
    // client hears 204 naming influx3, and influx3 is flagged at once.
    let reply = cluster.gateway.write_ok("db=poison", &body);
    assert_eq!(reply.header(MISSING), Some("influx3"), "{reply:?}");
    let health = cluster.gateway.node_health("influx3");
    assert_eq!(health["queue"]["needs_resync"], true, "{health}");
    assert_eq!(
        health["queue"]["entries"], 0,
        "nothing queued for it: {health}"
    );
    // Smaller than the size sent with the expectation, larger than what influxd drains: the
    // connection breaks, and the same request without its body tells the 404.
    let reply = cluster.gateway.write_ok("db=poison", &large_body(50_000));
    assert_eq!(reply.header(MISSING), Some("influx3"), "{reply:?}");
    cluster.gateway.write_ok("db=healthy", "small v=1 1\n");
    assert_eq!(count(&cluster.nodes[2], "healthy", "small"), 1);

    // Queued while influx3 is down and replayed when it returns: the 404 is a 404 there too,
    // retried `max_attempts_4xx` times and dead-lettered, and the write behind it arrives.
    cluster.nodes[2].kill();
    cluster.gateway.write_ok("db=poison", &body);
    cluster.gateway.write_ok("db=healthy", "small v=2 2\n");
    assert!(cluster.gateway.node_health("influx3")["queue"]["entries"].as_u64() >= Some(2));
    cluster.nodes[2].restart();
    // 3 attempts 100 ms apart, then the next entry: far within a minute, where the fault held
    // the queue for 4.6 minutes and would have held it for ever.
    let influx3 = &cluster.nodes[2];
    assert!(
        eventually(Duration::from_secs(60), || count(
            influx3, "healthy", "small"
        ) == 2),
        "{}",
        cluster.gateway.node_health("influx3")
    );
    // influxd applies the point before the gateway hears its 204 and removes the entry.
    assert!(
        eventually(Duration::from_secs(10), || cluster
            .gateway
            .node_health("influx3")["queue"]["entries"]
            == 0),
        "{}",
        cluster.gateway.node_health("influx3")
    );
    let health = cluster.gateway.node_health("influx3");
    assert!(
        health["queue"]["dead_letters"].as_u64() >= Some(2),
        "{health}"
    );
    let log = cluster.gateway.log();
    assert!(
        log.contains("moved to dead letters: refused 3 times: 404 database not found: \"poison\""),
        "{log}"
    );
    assert!(!log.contains("Broken pipe"), "{log}");
}

#[test]
fn a_node_back_without_its_databases_holds_its_backlog_until_a_repair_recreates_them() {
    let mut cluster = Cluster::start(
        2,
        "health:\n  interval: 500ms\nretry:\n  initial_backoff: 50ms\n  max_backoff: 200ms\n",
    );
    cluster.create_database("db");
    cluster.gateway.query_ok(
        "db",
        "CREATE RETENTION POLICY week ON db DURATION 7d REPLICATION 1",
    );
    cluster.nodes[1].kill();
    for i in 0..5 {
        let reply = cluster.gateway.write_ok("db=db", &batch("cpu", i * 10, 10));
        assert_eq!(
            reply.header(MISSING),
            None,
            "queued is not missing: {reply:?}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let recent: String = (0..10)
        .map(|i| format!("mem,host=a v={i} {}\n", now - i))
        .collect();
    cluster
        .gateway
        .write_ok("db=db&rp=week&precision=s", &recent);
    // Its disk was replaced: it comes back empty, and every queued write gets 404. The backlog
    // waits rather than being dead-lettered; the node is flagged, avoided by reads, and the
    // repair that follows creates the database and the policy first, so the backlog lands.
    cluster.nodes[1].wipe_and_restart();
    let gateway = &cluster.gateway;
    let influx2 = &cluster.nodes[1];
    assert!(
        eventually(Duration::from_secs(60), || count(influx2, "db", "cpu")
            == 50
            && count(influx2, "db", "week.mem") == 10),
        "{}\n{}",
        gateway.node_health("influx2"),
        gateway.log()
    );
    assert!(
        eventually(Duration::from_secs(30), || gateway.node_health("influx2")
            ["queue"]["entries"]
            == 0),
        "{}",
        gateway.node_health("influx2")
    );
    let health = gateway.node_health("influx2");
    assert_eq!(
        health["queue"]["dead_letters"], 0,
        "nothing dead-lettered: {health}"
    );
    let log = gateway.log();
    assert!(log.contains("its backlog waits for a repair"), "{log}");
    assert!(
        log.contains("node influx2 lacks databases its peers hold"),
        "{log}"
    );
    // The repair ends and clears the flag; the node then answers reads like its peer.
    assert!(
        eventually(Duration::from_secs(60), || gateway.node_health("influx2")
            ["queue"]["needs_resync"]
            == false),
        "{}",
        gateway.node_health("influx2")
    );
    assert_eq!(count(&cluster.nodes[0], "db", "cpu"), 50);
}

#[test]
fn a_mutation_queued_behind_a_backlog_says_the_node_is_draining_not_down() {
    // A write influx2 refuses (its database exists only on influx1), queued while influx2 is down,
    // holds influx2's queue for about ten attempts a second apart once it is back: long enough
    // to send a statement while it is up and draining. Without `repair.auto`, which would
    // otherwise create the database there at once and let the backlog land.
    let mut cluster = Cluster::start(
        2,
        "health:\n  interval: 500ms\nretry:\n  initial_backoff: 1s\n  max_attempts_4xx: 10\nrepair:\n  auto: false\n",
    );
    create_directly(&cluster.nodes[0], "only1");
    cluster.nodes[1].kill();
    cluster.gateway.write_ok("db=only1", "m v=1 1\n");
    cluster.nodes[1].restart();
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(10), || {
            let node = gateway.node_health("influx2");
            node["state"] == "up" && node["mode"] == "draining"
        }),
        "{}",
        gateway.node_health("influx2")
    );
    let reply = gateway.query_ok("", "CREATE DATABASE later");
    let text = first_message(&reply);
    assert!(
        text.starts_with("node influx2 is up but replaying its queue: the statement is queued"),
        "{}",
        reply.body
    );
}
