//! The rest of InfluxDB's HTTP surface as clients use it: the 2.x write API, the Flux refusal,
//! mutations sent with GET, expvar counters, gzip and chunked answers, on real influxd.

mod common;

use std::{io::Read, time::Duration};

use common::{exchange, Cluster, Gateway, Influxd};
use serde_json::json;

fn text(reply: &common::RawReply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[test]
fn the_v2_write_api_lands_on_every_node() {
    let cluster = Cluster::start(2, "");
    cluster.create_database("metrics");
    cluster.gateway.query_ok(
        "",
        "CREATE RETENTION POLICY week ON metrics DURATION INF REPLICATION 1",
    );
    let gw = cluster.gateway.url();
    let v2 = |query: &str, body: &str, token: &str| {
        exchange(
            "POST",
            &format!("{gw}/api/v2/write?{query}"),
            &[("Authorization", token)],
            body.as_bytes(),
        )
    };
    // 2.x spells microseconds `us`; a 2.x API token (no `:`) carries no 1.x credentials.
    assert_eq!(
        v2(
            "bucket=metrics&org=ignored&precision=s",
            "cpu v=1 10",
            "Token a:b"
        )
        .status,
        204
    );
    assert_eq!(
        v2(
            "bucket=metrics/autogen&precision=us",
            "cpu v=2 20000000",
            "Token api-token"
        )
        .status,
        204
    );
    assert_eq!(
        v2(
            "bucket=metrics/week&precision=ms",
            "cpu v=3 30000",
            "Token a:b"
        )
        .status,
        204
    );

    let reply = v2("org=x", "cpu v=1", "Token a:b");
    assert_eq!(reply.status, 400);
    assert!(
        text(&reply).contains("bucket is required"),
        "{}",
        text(&reply)
    );
    let reply = v2("bucket=metrics&precision=h", "cpu v=1", "Token a:b");
    assert_eq!(reply.status, 400);
    assert!(
        text(&reply).contains("invalid precision"),
        "{}",
        text(&reply)
    );
    let reply = v2("bucket=nope", "cpu v=1", "Token a:b");
    assert_eq!(reply.status, 404, "{}", text(&reply));
    assert!(text(&reply).contains("database not found"));
    // influxd 1.6 answers a missing retention policy with 500; it is still the request's fault,
    // passed back in influxd's words, and nothing is queued.
    let reply = v2("bucket=metrics/nope", "cpu v=1", "Token a:b");
    assert_eq!(reply.status, 500, "{}", text(&reply));
    assert!(text(&reply).contains("retention policy not found: nope"));
    let health = cluster.gateway.health().1;
    for node in health["nodes"].as_array().expect("nodes") {
        assert_eq!(node["queue"]["entries"], 0, "{health}");
    }

    for node in &cluster.nodes {
        assert_eq!(
            node.values("metrics", "SELECT v FROM autogen.cpu"),
            vec![
                json!(["1970-01-01T00:00:10Z", 1]),
                json!(["1970-01-01T00:00:20Z", 2])
            ]
        );
        assert_eq!(
            node.values("metrics", "SELECT v FROM week.cpu"),
            vec![json!(["1970-01-01T00:00:30Z", 3])]
        );
    }

    for method in ["GET", "POST"] {
        let reply = exchange(
            method,
            &format!("{gw}/api/v2/query?org=x"),
            &[],
            b"from(bucket:\"x\")",
        );
        assert_eq!(reply.status, 501);
        assert!(
            text(&reply).contains("send InfluxQL to /query"),
            "{}",
            text(&reply)
        );
        assert!(reply.header("x-influxdb-error").is_some());
    }
}

#[test]
fn a_mutation_sent_with_get_is_applied_everywhere_with_influxdb_s_warning() {
    let cluster = Cluster::start(2, "");
    let reply = common::get(&format!(
        "{}/query?q=CREATE+DATABASE+by_get",
        cluster.gateway.url()
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["results"][0]["messages"][0]["text"],
        "deprecated use of 'CREATE DATABASE by_get' in a read only context, please use a POST request instead"
    );
    for node in &cluster.nodes {
        assert_eq!(
            common::series_values(&node.query("", "SHOW DATABASES")),
            vec![json!(["by_get"])]
        );
    }
}

#[test]
fn debug_vars_has_influxdb_s_expvar_shape() {
    let cluster = Cluster::start(2, "");
    cluster.create_database("d");
    let gw = cluster.gateway.url();
    assert_eq!(
        common::post(&format!("{gw}/write?db=d"), b"m v=1", &[]).status,
        204
    );
    let vars = common::get(&format!("{gw}/debug/vars")).json();
    assert!(vars["system"]["uptime"].is_u64(), "{vars}");
    assert!(vars["cmdline"].is_array());
    let writes = &vars["gateway_http:endpoint=/write"];
    assert_eq!(writes["name"], "gateway_http");
    assert_eq!(writes["tags"]["endpoint"], "/write");
    assert_eq!(writes["values"]["req"], 1);
    for node in &cluster.nodes {
        let entry = &vars[format!("gateway_node:node={}", node.name)];
        assert_eq!(entry["name"], "gateway_node", "{vars}");
        assert_eq!(entry["values"]["up"], 1);
        assert_eq!(entry["values"]["queueEntries"], 0);
    }
}

#[test]
fn a_merged_answer_is_gzipped_when_asked() {
    let nodes: Vec<Influxd> = (1..=2).map(|i| Influxd::start(&format!("s{i}"))).collect();
    let gateway = Gateway::start(
        &nodes.iter().collect::<Vec<_>>(),
        "shards:\n  - {name: one, replicas: [s1]}\n  - {name: two, replicas: [s2]}\nroutes:\n  - {measurement: a, shard: one}\n  - {measurement: b, shard: two}\n",
    );
    let gw = gateway.url();
    assert_eq!(
        common::post(&format!("{gw}/query?q=CREATE+DATABASE+z"), b"", &[]).status,
        200
    );
    assert_eq!(
        common::post(&format!("{gw}/write?db=z"), b"a v=1 1\nb v=2 2\n", &[]).status,
        204
    );
    let reply = exchange(
        "GET",
        &format!("{gw}/query?db=z&q=SELECT+*+FROM+a,b"),
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let mut body = String::new();
    flate2::read::GzDecoder::new(&reply.body[..])
        .read_to_string(&mut body)
        .expect("gzip");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer["results"][0]["series"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_million_point_chunked_answer_streams_through_in_flat_memory() {
    const POINTS: usize = 1_000_000;
    const BATCH: usize = 50_000;
    let node = Influxd::start("big");
    let gateway = Gateway::start(&[&node], "");
    assert_eq!(
        common::post(
            &format!("{}/query?q=CREATE+DATABASE+big", node.url()),
            b"",
            &[]
        )
        .status,
        200
    );
    // Loaded straight into the node: this test is about the read path.
    for batch in 0..POINTS / BATCH {
        let mut body = String::with_capacity(BATCH * 32);
        for i in batch * BATCH..(batch + 1) * BATCH {
            body.push_str(&format!(
                "m,h=h{} v={i}i {}\n",
                i % 10,
                i as u64 * 1_000_000
            ));
        }
        let reply = common::post(
            &format!("{}/write?db=big", node.url()),
            body.as_bytes(),
            &[],
        );
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    let pid = gateway.pid().expect("gateway runs");
    let before = rss(pid);

    let url = format!(
        "{}/query?db=big&chunked=true&q=SELECT+v+FROM+m",
        gateway.url()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut response = agent.get(&url).call().expect("chunked query");
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed, not sized"
    );
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let (mut bytes, mut rows, mut peak) = (0u64, 0usize, before);
    let mut buffer = vec![0u8; 1 << 16];
    let mut line = Vec::new();
    loop {
        let n = reader.read(&mut buffer).expect("read the stream");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        for &b in &buffer[..n] {
            if b == b'\n' {
                let chunk: serde_json::Value =
                    serde_json::from_slice(&line).expect("one JSON per chunk");
                rows += chunk["results"][0]["series"][0]["values"]
                    .as_array()
                    .map_or(0, Vec::len);
                line.clear();
            } else {
                line.push(b);
            }
        }
        peak = peak.max(rss(pid));
    }
    eprintln!(
        "{rows} rows, {bytes} bytes, RSS {} MiB -> peak {} MiB",
        before >> 20,
        peak >> 20
    );
    assert_eq!(rows, POINTS);
    assert!(bytes > 30_000_000, "{bytes} bytes");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 32 * 1024 * 1024,
        "the gateway grew by {} MiB while passing {} MiB on",
        growth >> 20,
        bytes >> 20
    );
}
