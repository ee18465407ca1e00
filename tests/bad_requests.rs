//! Bad requests get InfluxDB-shaped errors (`{"error":"..."}`) with InfluxDB's status codes, and
//! errors from influxd itself come back as influxd sent them.

mod common;

use common::{get, post, Cluster};

#[test]
fn bad_requests_get_influxdb_shaped_errors() {
    let cluster = Cluster::start(1, "write:\n  max_body_size: 1KiB\n");
    cluster.create_database("db");
    let base = cluster.gateway.url();
    let check = |reply: common::Reply, status: u16, error: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{}",
            reply.body
        );
        let message = reply.error();
        assert!(
            message.contains(error),
            "{message:?} should contain {error:?}"
        );
        assert_eq!(reply.header("x-influxdb-error"), Some(message.as_str()));
    };

    // Answered by the gateway.
    check(
        cluster.gateway.write("", "cpu v=1"),
        400,
        "database is required",
    );
    check(
        cluster.gateway.write("db=db&consistency=two", "cpu v=1"),
        400,
        "invalid consistency \"two\"",
    );
    let url = format!("{base}/write?db=db");
    check(
        post(&url, b"not gzip", &[("Content-Encoding", "gzip")]),
        400,
        "gzip: ",
    );
    check(
        post(&url, &[b'x'; 2048], &[]),
        413,
        "http: request body too large",
    );
    check(
        post(&url, &[b'x'; 2048], &[("Transfer-Encoding", "chunked")]),
        413,
        "too large",
    );
    // Unknown paths and methods: influxd's (Go's) plain-text answers, byte for byte.
    let plain = |reply: common::Reply, status: u16, body: &str| {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.body, body);
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        reply
    };
    plain(get(&format!("{base}/nowhere")), 404, "404 page not found\n");
    let refused = plain(
        get(&format!("{base}/write?db=db")),
        405,
        "Method Not Allowed\n",
    );
    assert_eq!(refused.header("allow"), Some("POST"));
    let refused = plain(
        post(&format!("{base}/health"), b"", &[]),
        405,
        "Method Not Allowed\n",
    );
    assert_eq!(refused.header("allow"), Some("GET"));

    // A client that accepts msgpack (the Python `influxdb` client) gets errors in msgpack, as
    // influxd gives them: {"error": "..."} as a one-entry map.
    let msgpack = [("accept", "application/x-msgpack")];
    let reply = common::exchange("POST", &format!("{base}/write"), &msgpack, b"cpu v=1");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/x-msgpack"));
    let mut expected = vec![0x81, 0xa5];
    expected.extend_from_slice(b"error");
    expected.push(0xa0 | "database is required".len() as u8);
    expected.extend_from_slice(b"database is required");
    assert_eq!(reply.body, expected);
    let reply = common::exchange(
        "POST",
        &format!("{base}/write?db=nope"),
        &msgpack,
        b"cpu v=1",
    );
    assert_eq!(reply.status, 404, "a node's JSON error, passed on");
    assert_eq!(reply.header("content-type"), Some("application/x-msgpack"));
    assert!(reply.body.starts_with(&[0x81, 0xa5, b'e']));
    assert!(String::from_utf8_lossy(&reply.body).contains("database not found: \"nope\""));

    // Answered by influxd and passed on as it was.
    check(
        cluster.gateway.write("db=nope", "cpu v=1"),
        404,
        "database not found: \"nope\"",
    );
    check(
        cluster.gateway.write("db=db", "cpu v=1\ncpu v="),
        400,
        "unable to parse",
    );
    assert_eq!(cluster.gateway.write("db=db", "cpu v=1i 1\n").status, 204);
    check(
        cluster.gateway.write("db=db", "cpu v=1.5 2\n"),
        400,
        "field type conflict",
    );
    check(
        get(&format!("{base}/query?db=db")),
        400,
        "missing required parameter \"q\"",
    );
    let syntax = get(&format!("{base}/query?db=db&q=SELEC+1"));
    assert_eq!(syntax.status, 400, "{}", syntax.body);
    assert!(
        syntax.error().starts_with("error parsing query"),
        "{}",
        syntax.body
    );
    let unterminated = get(&format!("{base}/query?db=db&q=SELECT+%27x"));
    assert_eq!(unterminated.status, 400, "{}", unterminated.body);

    // Still serving after all of that.
    assert_eq!(get(&format!("{base}/ping")).status, 204);
}
