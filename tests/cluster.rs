//! The gateway in front of real influxd processes: replicated writes, routed reads, broadcast
//! mutations, failover and health.

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    time::Duration,
    time::Instant,
};

use common::{eventually, exchange, get, head, post, series_values, Cluster};
use serde_json::json;

const POINTS: &str =
    "cpu,host=a v=1 1000000000\ncpu,host=b v=2 2000000000\ncpu,host=a v=3 3000000000\n";

fn expected_rows() -> Vec<serde_json::Value> {
    vec![
        json!(["1970-01-01T00:00:01Z", "a", 1]),
        json!(["1970-01-01T00:00:02Z", "b", 2]),
        json!(["1970-01-01T00:00:03Z", "a", 3]),
    ]
}

/// Every node holds exactly [`POINTS`] in `db`.
fn every_node_holds_the_points(cluster: &Cluster) {
    for node in &cluster.nodes {
        assert_eq!(
            node.values("db", "SELECT host, v FROM cpu"),
            expected_rows(),
            "on {}",
            node.name
        );
    }
}

#[test]
fn a_write_lands_on_every_node() {
    let cluster = Cluster::start(3, "");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);
    every_node_holds_the_points(&cluster);

    // With the default level (one) the answer may come before the slower replicas: they follow.
    cluster.gateway.write_ok("db=db", "mem v=7 1000000000\n");
    for node in &cluster.nodes {
        assert!(
            eventually(Duration::from_secs(10), || node
                .values("db", "SELECT v FROM mem")
                .len()
                == 1),
            "mem point missing on {}",
            node.name
        );
    }
}

#[test]
fn gzip_writes_are_decoded_once_and_replicated() {
    let cluster = Cluster::start(2, "");
    cluster.create_database("db");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(POINTS.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let url = format!("{}/write?db=db&consistency=all", cluster.gateway.url());
    let reply = post(&url, &body, &[("Content-Encoding", "gzip")]);
    assert_eq!(reply.status, 204, "{}", reply.body);
    every_node_holds_the_points(&cluster);
}

#[test]
fn precision_retention_policy_and_credentials_are_passed_on() {
    let cluster = Cluster::start(2, "");
    cluster.gateway.query_ok(
        "",
        "CREATE DATABASE db; CREATE RETENTION POLICY short ON db DURATION 2h REPLICATION 1",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    cluster.gateway.write_ok(
        "db=db&rp=short&precision=s&consistency=all&u=nobody&p=nothing",
        &format!("cpu v=1 {now}\n"),
    );
    for node in &cluster.nodes {
        let url = format!(
            "{}/query?db=db&epoch=s&q=SELECT+v+FROM+db.short.cpu",
            node.url()
        );
        let rows = series_values(&get(&url).json());
        assert_eq!(
            rows,
            vec![json!([now, 1])],
            "seconds precision kept on {}",
            node.name
        );
        assert!(
            node.values("db", "SELECT v FROM cpu").is_empty(),
            "default rp untouched on {}",
            node.name
        );
    }
}

#[test]
fn mutations_reach_every_node() {
    let cluster = Cluster::start(3, "");
    let reply = cluster.gateway.query_ok(
        "",
        "CREATE DATABASE one; CREATE DATABASE two; \
         CREATE RETENTION POLICY week ON one DURATION 7d REPLICATION 1",
    );
    assert_eq!(reply.json()["results"].as_array().map(Vec::len), Some(3));
    cluster.gateway.write_ok("db=one&consistency=all", POINTS);
    cluster
        .gateway
        .write_ok("db=one&consistency=all", "mem v=1 1000000000\n");
    cluster
        .gateway
        .query_ok("one", "DROP MEASUREMENT mem; DROP DATABASE two");

    for node in &cluster.nodes {
        let databases = node.values("", "SHOW DATABASES");
        assert!(
            databases.contains(&json!(["one"])),
            "{databases:?} on {}",
            node.name
        );
        assert!(
            !databases.contains(&json!(["two"])),
            "{databases:?} on {}",
            node.name
        );
        let policies = node.values("one", "SHOW RETENTION POLICIES ON one");
        assert!(
            policies.iter().any(|p| p[0] == "week"),
            "{policies:?} on {}",
            node.name
        );
        let measurements = node.values("one", "SHOW MEASUREMENTS");
        assert_eq!(measurements, vec![json!(["cpu"])], "on {}", node.name);
    }
}

#[test]
fn reads_rotate_over_healthy_nodes() {
    let cluster = Cluster::start(3, "");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let reply = cluster.gateway.query_ok("db", "SELECT host, v FROM cpu");
        assert_eq!(series_values(&reply.json()), expected_rows());
        let node = reply
            .header("x-influx-gateway-node")
            .expect("answering node named")
            .to_owned();
        *served.entry(node).or_default() += 1;
    }
    for node in &cluster.nodes {
        let count = served.get(&node.name).copied().unwrap_or(0);
        assert!(
            count >= 8,
            "{} served {count} of 30 reads: {served:?}",
            node.name
        );
    }
}

/// A replica known to lack data (here: its database dropped behind the gateway's back, as a wiped
/// or replaced disk would leave it) is not read from while its peers are up: every read is
/// answered in full, never `database not found` from that node.
#[test]
fn reads_avoid_a_replica_known_to_lack_data() {
    let cluster = Cluster::start(3, "");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);
    let influx3 = &cluster.nodes[2];
    let dropped = post(
        &format!("{}/query", influx3.url()),
        b"q=DROP+DATABASE+db",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(dropped.status, 200, "{}", dropped.body);
    // The next write finds out: influx3 refuses what its peers accept, and is flagged.
    let reply = cluster.gateway.write_ok("db=db", "mem v=1 1000000000\n");
    assert_eq!(
        reply.header("x-influx-gateway-missing-replicas"),
        Some("influx3"),
        "{reply:?}"
    );
    assert_eq!(
        cluster.gateway.node_health("influx3")["queue"]["needs_resync"],
        true
    );
    for i in 0..30 {
        let reply = cluster.gateway.query_ok("db", "SELECT host, v FROM cpu");
        assert_eq!(
            series_values(&reply.json()),
            expected_rows(),
            "read {i}: {}",
            reply.body
        );
        assert_ne!(
            reply.header("x-influx-gateway-node"),
            Some("influx3"),
            "read {i}"
        );
    }
}

#[test]
fn a_read_answered_database_not_found_by_a_wiped_replica_is_sent_to_the_next_one() {
    // Nothing has flagged influx3 yet (no write since, no automatic repair): only the answer
    // itself tells.
    let mut cluster = Cluster::start(3, "repair:\n  auto: false\n");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);
    cluster.nodes[2].wipe_and_restart();
    for i in 0..30 {
        let reply = cluster.gateway.query_ok("db", "SELECT host, v FROM cpu");
        assert_eq!(
            series_values(&reply.json()),
            expected_rows(),
            "read {i}: {}",
            reply.body
        );
        assert_ne!(
            reply.header("x-influx-gateway-node"),
            Some("influx3"),
            "read {i}"
        );
    }
    // Compressed answers too, and a database that no node has is still reported as missing.
    for i in 0..6 {
        let url = format!(
            "{}/query?db=db&q=SELECT+host,v+FROM+cpu",
            cluster.gateway.url()
        );
        let reply = exchange("GET", &url, &[("accept-encoding", "gzip")], b"");
        assert_eq!(reply.status, 200, "read {i}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "read {i}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&reply.body[..])
            .read_to_string(&mut text)
            .unwrap();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(series_values(&answer), expected_rows(), "read {i}: {text}");
    }
    let reply = cluster.gateway.query("nowhere", "SELECT * FROM cpu");
    assert!(
        reply.body.contains("database not found: nowhere"),
        "{}",
        reply.body
    );
}

#[test]
fn reads_stay_correct_with_a_node_killed() {
    // Probes are an hour apart: only a read that hits the dead node can find out, and must fall back.
    let mut cluster = Cluster::start(3, "health:\n  interval: 1h\n");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);

    cluster.nodes[1].kill();
    assert_eq!(
        cluster.gateway.node_state("influx2"),
        "up",
        "nothing has noticed yet"
    );
    for i in 0..50 {
        let reply = cluster.gateway.query("db", "SELECT host, v FROM cpu");
        assert_eq!(reply.status, 200, "read {i}: {}", reply.body);
        assert_eq!(series_values(&reply.json()), expected_rows(), "read {i}");
        assert_ne!(
            reply.header("x-influx-gateway-node"),
            Some("influx2"),
            "read {i}"
        );
    }
    assert_eq!(
        cluster.gateway.node_state("influx2"),
        "down",
        "a read fell back from influx2"
    );

    // Back: a write queued for it is replayed, which proves it up again.
    cluster.nodes[1].restart();
    cluster.gateway.write_ok("db=db", "mem v=1 1000000000\n");
    let gateway = &cluster.gateway;
    assert!(
        eventually(Duration::from_secs(10), || gateway.node_state("influx2")
            == "up"),
        "influx2 never came back up"
    );
    let node = &cluster.nodes[1];
    assert!(eventually(Duration::from_secs(10), || node
        .values("db", "SELECT v FROM mem")
        .len()
        == 1));
}

#[test]
fn health_reflects_a_killed_node_within_two_intervals() {
    let interval = Duration::from_secs(1);
    let mut cluster = Cluster::start(2, "health:\n  interval: 1s\n  timeout: 500ms\n");
    let gateway = &cluster.gateway;
    assert!(eventually(Duration::from_secs(5), || gateway
        .node_state("influx1")
        == "up"));
    let (status, health) = cluster.gateway.health();
    assert_eq!(status, 200);
    assert_eq!(health["status"], "pass");
    assert_eq!(health["nodes"][0]["url"], cluster.nodes[0].url());
    assert_eq!(health["nodes"][0]["in_flight"], 0);
    assert_eq!(
        health["shards"][0]["replicas"],
        json!(["influx1", "influx2"])
    );

    cluster.nodes[0].kill();
    let killed = Instant::now();
    let gateway = &cluster.gateway;
    assert!(
        eventually(2 * interval, || gateway.node_state("influx1") == "down"),
        "influx1 not down after {:?}",
        killed.elapsed()
    );
    let (status, health) = cluster.gateway.health();
    assert_eq!(status, 200, "one node is still up");
    let last_error = health["nodes"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(last_error.contains("cannot connect"), "{health}");
    assert!(cluster.gateway.log().contains("node influx1 is down"));

    cluster.nodes[1].kill();
    let gateway = &cluster.gateway;
    assert!(
        eventually(2 * interval, || gateway.health().0 == 503),
        "no node up must be 503"
    );
    assert_eq!(cluster.gateway.health().1["status"], "fail");
}

#[test]
fn consistency_levels_with_a_node_down() {
    let mut cluster = Cluster::start(2, "");
    cluster.create_database("db");
    cluster.nodes[1].kill();

    // `all` needs both to accept: influx2's copy is queued, not accepted.
    let reply = cluster
        .gateway
        .write("db=db&consistency=all", "cpu v=1 1000000000\n");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    let error = reply.error();
    assert_eq!(
        error,
        "write consistency \"all\" not met: shard \"all\": 1 of 2 replicas accepted, 2 needed, 1 queued"
    );

    let reply = cluster
        .gateway
        .write("db=db&consistency=quorum", "cpu v=1 1000000000\n");
    assert_eq!(reply.status, 503, "quorum of 2 is 2: {}", reply.body);

    for level in ["one", "any"] {
        let reply = cluster.gateway.write(
            &format!("db=db&consistency={level}"),
            "cpu v=2 2000000000\n",
        );
        assert_eq!(reply.status, 204, "{level}: {}", reply.body);
    }

    // With every node down only `any` holds: the write waits in both queues.
    cluster.nodes[0].kill();
    let reply = cluster.gateway.write("db=db", "cpu v=3 3000000000\n");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply
            .error()
            .contains("0 of 2 replicas accepted, 1 needed, 2 queued"),
        "{}",
        reply.body
    );
    cluster
        .gateway
        .write_ok("db=db&consistency=any", "cpu v=4 4000000000\n");

    let reply = cluster.gateway.query("db", "SELECT * FROM cpu");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply.error().starts_with("no InfluxDB node could answer"),
        "{}",
        reply.body
    );

    // Everything queued, even what was answered 503, reaches both nodes once they are back.
    cluster.nodes[0].restart();
    cluster.nodes[1].restart();
    for node in &cluster.nodes {
        let expected = vec![
            json!(["1970-01-01T00:00:01Z", 1]),
            json!(["1970-01-01T00:00:02Z", 2]),
            json!(["1970-01-01T00:00:03Z", 3]),
            json!(["1970-01-01T00:00:04Z", 4]),
        ];
        assert!(
            eventually(Duration::from_secs(20), || node
                .values("db", "SELECT v FROM cpu")
                == expected),
            "{} has {:?}",
            node.name,
            node.values("db", "SELECT v FROM cpu")
        );
    }
}

#[test]
fn ping_looks_like_influxdb() {
    let cluster = Cluster::start(1, "");
    let version = get(&format!("{}/ping", cluster.nodes[0].url()))
        .header("x-influxdb-version")
        .expect("influxd reports its version")
        .to_owned();
    let gateway = &cluster.gateway;
    assert!(eventually(Duration::from_secs(5), || gateway
        .node_state("influx1")
        == "up"));

    let reply = get(&format!("{}/ping", cluster.gateway.url()));
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("x-influxdb-version"), Some(version.as_str()));
    assert_eq!(reply.header("x-influxdb-build"), Some("OSS"));
    assert_eq!(head(&format!("{}/ping", cluster.gateway.url())).status, 204);
    let verbose = get(&format!("{}/ping?verbose=true", cluster.gateway.url()));
    assert_eq!(verbose.status, 200);
    assert_eq!(verbose.json(), json!({ "version": version }));
}

#[test]
fn query_parameters_and_chunked_answers_pass_through() {
    let cluster = Cluster::start(2, "");
    cluster.create_database("db");
    cluster.gateway.write_ok("db=db&consistency=all", POINTS);
    let base = cluster.gateway.url();

    let epoch = get(&format!("{base}/query?db=db&epoch=s&q=SELECT+v+FROM+cpu"));
    assert_eq!(epoch.status, 200, "{}", epoch.body);
    assert_eq!(
        series_values(&epoch.json()),
        vec![json!([1, 1]), json!([2, 2]), json!([3, 3])]
    );

    let params = r#"{"host":"b"}"#;
    let bound = common::post_form(
        &format!("{base}/query"),
        &[
            ("db", "db"),
            ("q", "SELECT v FROM cpu WHERE host = $host"),
            ("params", params),
        ],
    );
    assert_eq!(
        series_values(&bound.json()),
        vec![json!(["1970-01-01T00:00:02Z", 2])]
    );

    let chunked = get(&format!(
        "{base}/query?db=db&chunked=true&chunk_size=1&q=SELECT+v+FROM+cpu"
    ));
    assert_eq!(chunked.status, 200);
    let chunks: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&chunked.body)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("a stream of JSON objects");
    assert_eq!(chunks.len(), 3, "one chunk per row: {}", chunked.body);

    let direct = get(&format!(
        "{}/query?db=db&pretty=true&q=SELECT+v+FROM+cpu",
        cluster.nodes[0].url()
    ));
    let pretty = get(&format!(
        "{base}/query?db=db&pretty=true&q=SELECT+v+FROM+cpu"
    ));
    assert_eq!(
        pretty.body, direct.body,
        "pretty answers are passed through byte for byte"
    );
}

#[test]
fn queries_the_gateway_cannot_be_sure_of_reach_every_node() {
    // Without statement rules: with them, a `q` the gateway cannot read is refused (security.rs).
    let cluster = Cluster::start(2, "query:\n  deny: []\n");
    let base = cluster.gateway.url();
    // InfluxDB reads `q` from a form body before the URL.
    let reply = post(
        &format!("{base}/query?q=SHOW+DATABASES"),
        b"q=CREATE+DATABASE+from_body",
        &[("Content-Type", "Application/X-WWW-Form-Urlencoded")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A multipart body is not decoded by the gateway: broadcast.
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nCREATE DATABASE from_multipart\r\n--XyZ--\r\n";
    let reply = post(
        &format!("{base}/query"),
        multipart.as_bytes(),
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A cast to a reserved word before a division must not hide what follows.
    cluster.create_database("db");
    cluster.gateway.query_ok(
        "db",
        "SELECT v::field / 2 FROM cpu; CREATE DATABASE after_cast",
    );

    for node in &cluster.nodes {
        let databases = node.values("", "SHOW DATABASES");
        for db in ["from_body", "from_multipart", "after_cast"] {
            assert!(
                databases.contains(&json!([db])),
                "{db} missing on {}: {databases:?}",
                node.name
            );
        }
    }
}

#[test]
fn a_replica_that_refuses_what_its_peers_accept_is_flagged_not_fatal() {
    let cluster = Cluster::start(2, "");
    // The database exists on influx1 only, as if influx2 had lost it.
    let created = common::post_form(
        &format!("{}/query", cluster.nodes[0].url()),
        &[("q", "CREATE DATABASE solo")],
    );
    assert_eq!(created.status, 200);

    let reply = cluster.gateway.write("db=solo", "cpu v=1 1000000000\n");
    assert_eq!(
        reply.status, 204,
        "influx1 accepted, so `one` is met: {}",
        reply.body
    );
    assert!(
        reply.header("x-influxdb-version").is_some(),
        "InfluxDB's headers on every answer"
    );
    assert_eq!(
        cluster.nodes[0].values("solo", "SELECT v FROM cpu").len(),
        1
    );
    let gateway = &cluster.gateway;
    assert!(eventually(Duration::from_secs(5), || gateway
        .node_health("influx2")["queue"]["dead_letters"]
        == 1));
    assert_eq!(
        gateway.node_health("influx2")["queue"]["needs_resync"],
        true
    );
    assert!(gateway
        .log()
        .contains("refused a write its replicas accepted (404 database not found"));

    // With `all` the same write cannot be met, and nobody is told it was.
    let reply = cluster
        .gateway
        .write("db=solo&consistency=all", "cpu v=2 2000000000\n");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply
            .error()
            .contains("influx2: refused: 404 database not found"),
        "{}",
        reply.body
    );
}

#[test]
fn health_says_when_a_node_last_failed_and_that_it_recovered_since() {
    let mut cluster = Cluster::start(2, "health:\n  interval: 200ms\n");
    cluster.nodes[1].kill();
    assert!(eventually(Duration::from_secs(10), || cluster
        .gateway
        .node_state("influx2")
        == "down"));
    let down = cluster.gateway.node_health("influx2");
    assert!(
        down["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{down}"
    );
    assert!(down["last_error_at"].is_string(), "{down}");
    assert_eq!(down["recovered_since_error"], false, "{down}");
    cluster.nodes[1].restart();
    assert!(eventually(Duration::from_secs(10), || cluster
        .gateway
        .node_state("influx2")
        == "up"));
    let up = cluster.gateway.node_health("influx2");
    assert_eq!(
        up["last_error"], down["last_error"],
        "kept, as history: {up}"
    );
    assert_eq!(up["recovered_since_error"], true, "{up}");
    // InfluxDB's own shape beside the gateway's detail.
    let (status, health) = cluster.gateway.health();
    assert_eq!(status, 200);
    assert_eq!(health["name"], "influx-gateway");
    assert_eq!(health["status"], "pass");
    assert_eq!(health["checks"][1]["name"], "influx2", "{health}");
    assert_eq!(health["checks"][1]["status"], "pass", "{health}");
}
