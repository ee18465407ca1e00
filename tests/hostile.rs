//! A few thousand malformed and hostile requests against a gateway in front of three real influxd,
//! while a well-behaved client keeps writing. Afterwards the gateway still serves, and every write
//! it acknowledged, before and during the run, is on every node.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::Cluster;
use flate2::{write::GzEncoder, Compression};

/// Rounds over every kind of hostile request.
const ROUNDS: usize = 110;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// Sends raw bytes, optionally pausing half-way; returns the status the gateway answered, or
/// `None` if it closed the connection or said nothing within a second (a request whose body never
/// ends is left hanging, as a slow client would leave it).
fn raw(port: u16, parts: &[&[u8]], pause: Duration) -> Option<u16> {
    raw_waiting(port, parts, pause, Duration::from_secs(1))
}

fn raw_waiting(port: u16, parts: &[&[u8]], pause: Duration, wait: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            thread::sleep(pause);
        }
        if stream.write_all(part).is_err() {
            break;
        }
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 64 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).and_then(|s| s.parse().ok())
}

fn request(method: &str, target: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn hostile_requests_neither_stop_the_gateway_nor_lose_acknowledged_writes() {
    let cluster = Cluster::start(
        3,
        "write:\n  max_body_size: 1MB\nlimits:\n  body_timeout: 2s\n",
    );
    cluster.create_database("safe");
    let port = cluster.gateway.port;
    let gw = cluster.gateway.url();

    // The well-behaved client: numbered points, remembering which were acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, gw) = (Arc::clone(&stop), gw.clone());
        thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let started = Instant::now();
            for i in 0..100_000u64 {
                if stop.load(Ordering::Acquire) || started.elapsed() > Duration::from_secs(300) {
                    break;
                }
                let body = format!("good,w=1 n={i}i {}\n", i + 1);
                if common::post(&format!("{gw}/write?db=safe"), body.as_bytes(), &[]).status == 204
                {
                    acknowledged.push(i);
                }
            }
            acknowledged
        })
    };

    let bomb = gzip(&vec![b'a'; 50_000_000]);
    let mut truncated = gzip(b"cpu v=1 1\n".repeat(1000).as_slice());
    truncated.truncate(truncated.len() / 2);
    let ten_thousand = "SELECT 1;".repeat(10_000);
    let deep = format!(
        "SELECT {}1{} FROM cpu",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    let long_name = format!("{} v=1", "m".repeat(500_000));
    let kinds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("bad UTF-8 in q", vec![request("GET", "/query?db=safe&q=SELECT%FF%FE+*+FROM+cpu", &[], b"")]),
        ("bad UTF-8 in a body", vec![request("POST", "/write?db=safe", &[], b"cpu\xff\xfe v=1 1\n")]),
        ("NUL bytes in line protocol", vec![request("POST", "/write?db=safe", &[], b"c\0pu v=1 1\nx\0 \0=\0\n")]),
        ("NUL bytes in q", vec![request("GET", "/query?db=safe&q=SELECT%00*%00FROM%00cpu", &[], b"")]),
        ("a huge header", vec![request("GET", "/query?q=SHOW+DATABASES", &[("X-Huge", "h".repeat(100_000))], b"")]),
        ("many headers", vec![request("GET", "/ping", &(0..200).map(|i| ("X-Many", i.to_string())).collect::<Vec<_>>(), b"")]),
        ("a truncated gzip body", vec![request("POST", "/write?db=safe", &[("Content-Encoding", "gzip".into())], &truncated)]),
        ("a gzip bomb", vec![request("POST", "/write?db=safe", &[("Content-Encoding", "gzip".into())], &bomb)]),
        ("10k statements", vec![request("POST", "/query?db=safe", &[("Content-Type", "application/x-www-form-urlencoded".into())], format!("q={}", url::form_urlencoded::byte_serialize(ten_thousand.as_bytes()).collect::<String>()).as_bytes())]),
        ("deep parentheses", vec![request("GET", &format!("/query?db=safe&q={}", url::form_urlencoded::byte_serialize(deep.as_bytes()).collect::<String>()), &[], b"")]),
        ("a 500 kB measurement", vec![request("POST", "/write?db=safe", &[], long_name.as_bytes())]),
        ("a body larger than allowed", vec![request("POST", "/write?db=safe", &[], &vec![b'x'; 2_000_000])]),
        ("a lying Content-Length", vec![request("POST", "/write?db=safe", &[("Content-Length", "99999999999999999999".into())], b"cpu v=1")]),
        ("a bad chunk size", vec![b"POST /write?db=safe HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\ncpu v=1\r\n0\r\n\r\n".to_vec()]),
        ("garbage", vec![b"\x16\x03\x01\x02\x00GARBAGE\r\n\r\n".to_vec()]),
        ("a 64 kB URL", vec![request("GET", &format!("/query?q={}", "a".repeat(65_536)), &[], b"")]),
        ("an unknown method", vec![request("BREW", "/write?db=safe", &[], b"")]),
        ("a denied statement in disguise", vec![request("GET", "/query?q=select+1;/*x*/gRaNt+all+TO+%22bob%22", &[], b"")]),
        ("a slow body, then silence", vec![request("POST", "/write?db=safe", &[("Content-Length", "100".into())], b"cpu v=1"), b" 1\n".to_vec()]),
        ("a multipart query", vec![request("POST", "/query", &[("Content-Type", "multipart/form-data; boundary=X".into())], b"--X\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nDROP DATABASE safe\r\n--X--\r\n")]),
    ];

    let mut answered = std::collections::BTreeMap::<&str, Vec<Option<u16>>>::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        for (name, parts) in &kinds {
            // The slow ones are slow only some of the time, to bound the run.
            let pause = if round % 10 == 0 {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            };
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            // A body that never ends costs a second of waiting: only every tenth round.
            if name.contains("silence") && round % 10 != 0 {
                continue;
            }
            let status = raw(port, &parts, pause);
            answered.entry(name).or_default().push(status);
        }
        assert_eq!(
            common::get(&format!("{gw}/ping")).status,
            204,
            "round {round}"
        );
    }
    let sent: usize = answered.values().map(Vec::len).sum();
    eprintln!("{sent} hostile requests in {:?}", started.elapsed());
    assert!(sent >= 2_000);

    // Each kind was refused as it should be (or, for transport-level garbage, dropped), never
    // answered with a server error.
    for (name, statuses) in &answered {
        for status in statuses {
            assert!(
                status.is_none_or(|s| s < 500 || s == 503),
                "{name}: answered {status:?}"
            );
        }
    }
    let first = |name: &str| answered[name][0];
    assert_eq!(first("a gzip bomb"), Some(413));
    assert_eq!(first("a body larger than allowed"), Some(413));
    assert_eq!(first("10k statements"), Some(400));
    assert_eq!(first("a denied statement in disguise"), Some(403));
    assert_eq!(first("a multipart query"), Some(400));
    assert_eq!(first("a truncated gzip body"), Some(400));
    // influxd echoes the bad line, NUL and all, in a header no HTTP client can read: still the
    // request's fault, and never queued (it would hold every later write behind it).
    assert_eq!(first("NUL bytes in line protocol"), Some(400));

    stop.store(true, Ordering::Release);
    let acknowledged = writer.join().expect("writer thread");
    assert!(!acknowledged.is_empty());

    // A body that stops half-way is given up on, not waited for for ever.
    let stalled = request(
        "POST",
        "/write?db=safe",
        &[("Content-Length", "100".into())],
        b"cpu",
    );
    let status = raw_waiting(port, &[&stalled], Duration::ZERO, Duration::from_secs(10));
    assert_eq!(status, Some(408));

    // Nothing hostile was left queued for any node.
    let drained = common::eventually(Duration::from_secs(30), || {
        let health = cluster.gateway.health().1;
        health["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.iter().all(|n| n["queue"]["entries"] == 0))
    });
    assert!(drained, "{}", cluster.gateway.health().1);

    // The gateway still serves reads and writes.
    let reply = cluster.gateway.write("db=safe", "after v=1 1");
    assert_eq!(
        reply.status,
        204,
        "{}\n{}",
        reply.body,
        cluster.gateway.health().1
    );
    cluster
        .gateway
        .query_ok("safe", "SELECT count(v) FROM after");

    // Every acknowledged point is on every node, and the database the multipart query tried to
    // drop is still there.
    for node in &cluster.nodes {
        let complete = common::eventually(Duration::from_secs(60), || {
            let values = node.values("safe", "SELECT n FROM good");
            let have: std::collections::HashSet<i64> =
                values.iter().filter_map(|row| row[1].as_i64()).collect();
            acknowledged.iter().all(|i| have.contains(&(*i as i64)))
        });
        assert!(
            complete,
            "{}: missing acknowledged points ({} acknowledged)",
            node.name,
            acknowledged.len()
        );
    }
}
