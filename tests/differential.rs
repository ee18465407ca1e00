//! The gateway is indistinguishable from InfluxDB: the same writes and queries go to a plain
//! influxd and to a one-node gateway in front of another influxd, and the answers must match —
//! status, content type and encoding, `X-Influxdb-Error`, and the body byte for byte (for
//! `chunked=true` that includes where each chunk ends, one JSON document per chunk).
//!
//! Every difference found is a new case here. Answers that cannot match by nature (request ids,
//! dates, `SHOW DIAGNOSTICS`, `SHOW QUERIES`) are left out.

mod common;

use std::io::Read;

use common::{exchange, Gateway, Influxd, RawReply};

/// One request, sent the same way to both.
struct Case {
    method: &'static str,
    /// Query parameters, encoded by the test.
    params: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, &'static str)>,
    /// Sent as an urlencoded form (POST) instead of in the URL.
    form: bool,
}

fn get(db: &str, q: &str) -> Case {
    with(&[("db", db), ("q", q)])
}

fn post(db: &str, q: &str) -> Case {
    Case {
        method: "POST",
        form: true,
        ..get(db, q)
    }
}

fn with(params: &[(&'static str, &str)]) -> Case {
    Case {
        method: "GET",
        params: params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.to_string()))
            .collect(),
        headers: Vec::new(),
        form: false,
    }
}

impl Case {
    fn param(mut self, name: &'static str, value: &str) -> Case {
        self.params.push((name, value.to_owned()));
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }

    fn send(&self, base: &str) -> RawReply {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let mut headers = self.headers.clone();
        if self.form {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
            exchange(
                self.method,
                &format!("{base}/query"),
                &headers,
                encoded.as_bytes(),
            )
        } else {
            exchange(
                self.method,
                &format!("{base}/query?{encoded}"),
                &headers,
                b"",
            )
        }
    }

    fn describe(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {} {:?}", self.method, params.join("&"), self.headers)
    }
}

/// The parts of an answer that must be equal; the body is decompressed when gzip.
fn comparable(reply: &RawReply) -> (u16, Option<String>, Option<String>, Option<String>, String) {
    let encoding = reply.header("content-encoding").map(str::to_owned);
    let body = if encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&reply.body[..])
            .read_to_string(&mut text)
            .expect("a gzip answer decodes");
        text
    } else {
        String::from_utf8_lossy(&reply.body).into_owned()
    };
    (
        reply.status,
        reply.header("content-type").map(str::to_owned),
        encoding,
        reply.header("x-influxdb-error").map(str::to_owned),
        body,
    )
}

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// 200 cpu points over 4 hosts and 2 regions, 50 mem points, a few odd ones.
fn dataset() -> String {
    let mut lines = String::new();
    for i in 0..200i64 {
        let host = ["a", "b", "c", "d"][(i % 4) as usize];
        let region = if i % 4 < 2 { "east" } else { "west" };
        let t = T0 + i * 15_000_000_000;
        lines.push_str(&format!(
            "cpu,host={host},region={region} usage_idle={},usage_user={},n={}i,up={} {t}\n",
            (i * 37 % 100) as f64 + 0.5,
            (i * 11 % 50) as f64 / 4.0,
            i * 3 % 17,
            i % 3 != 0,
        ));
    }
    for i in 0..50i64 {
        let t = T0 + i * 60_000_000_000;
        lines.push_str(&format!(
            "mem,host=h{} used={}i,label=\"l{}\" {t}\n",
            i % 3,
            1000 + i * 7,
            i % 5
        ));
    }
    lines.push_str(&format!(
        "weird\\ name,tag\\,key=v\\=1 \"q\"=1 {T0}\nevents,kind=deploy msg=\"a \\\"quoted\\\" text\" {}\n",
        T0 + 1
    ));
    lines
}

/// Writes that both must answer alike, in order, after the dataset.
fn write_cases() -> Vec<(&'static str, String)> {
    vec![
        ("db=diff", "cpu,host=z usage_idle=1 1".into()),
        ("db=diff", "cpu,host=z usage_idle=\"text\" 2".into()),
        ("db=diff", "cpu,host=z usage_idle=1 x".into()),
        ("db=diff", "this is not line protocol".into()),
        ("db=diff", "ok v=1 1\nbad v= 2\nok v=3 3\n".into()),
        ("db=nope", "cpu v=1".into()),
        ("db=diff&rp=nope", "cpu v=1".into()),
        ("db=diff&precision=s", "prec v=1 1767225600".into()),
        ("db=diff&precision=ms", "prec v=2 1767225600001".into()),
        ("db=diff&precision=x", "prec v=3 1".into()),
        ("", "cpu v=1".into()),
        ("db=diff", String::new()),
    ]
}

fn query_cases() -> Vec<Case> {
    let mut cases = vec![
        // SHOW, every kind that answers the same on two servers with the same data.
        get("", "SHOW DATABASES"),
        get("diff", "SHOW MEASUREMENTS"),
        get("diff", "SHOW MEASUREMENTS WITH MEASUREMENT =~ /^c/"),
        get("diff", "SHOW MEASUREMENTS LIMIT 1 OFFSET 1"),
        get("diff", "SHOW SERIES"),
        get("diff", "SHOW SERIES FROM cpu WHERE host = 'a'"),
        get("diff", "SHOW TAG KEYS"),
        get("diff", "SHOW TAG KEYS FROM cpu"),
        get("diff", "SHOW TAG VALUES WITH KEY = host"),
        get("diff", "SHOW TAG VALUES FROM cpu WITH KEY IN (\"host\", \"region\")"),
        get("diff", "SHOW FIELD KEYS"),
        get("diff", "SHOW FIELD KEYS FROM mem"),
        get("", "SHOW RETENTION POLICIES ON diff"),
        get("", "SHOW RETENTION POLICIES"),
        get("", "SHOW USERS"),
        get("", "SHOW CONTINUOUS QUERIES"),
        get("diff", "SHOW SERIES CARDINALITY"),
        get("diff", "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = host"),
        // Raw reads.
        get("diff", "SELECT * FROM cpu"),
        get("diff", "SELECT * FROM cpu LIMIT 3 OFFSET 2"),
        get("diff", "SELECT usage_idle, host FROM cpu WHERE host = 'a' AND usage_idle > 50"),
        get("diff", "SELECT * FROM cpu ORDER BY time DESC LIMIT 5"),
        get("diff", "SELECT * FROM mem WHERE label = 'l1'"),
        get("diff", "SELECT usage_idle * 2 + usage_user FROM cpu LIMIT 4"),
        get("diff", "SELECT * FROM /c.*/ LIMIT 2"),
        get("diff", "SELECT * FROM cpu, mem LIMIT 2"),
        get("", "SELECT * FROM diff.autogen.mem LIMIT 2"),
        get("", "SELECT * FROM diff..mem LIMIT 2"),
        get("diff", "SELECT * FROM \"weird name\""),
        get("diff", "SELECT * FROM events"),
        get(
            "diff",
            "SELECT * FROM cpu WHERE time >= '2026-01-01T00:10:00Z' AND time < '2026-01-01T00:12:00Z'",
        ),
        // Aggregates and selectors.
        get("diff", "SELECT count(*) FROM cpu"),
        get("diff", "SELECT mean(usage_idle), sum(n), min(usage_user), max(usage_user) FROM cpu"),
        get("diff", "SELECT spread(usage_idle), stddev(usage_idle), median(usage_idle) FROM cpu"),
        get("diff", "SELECT percentile(usage_idle, 90), mode(n) FROM cpu"),
        get("diff", "SELECT first(usage_idle), last(usage_idle) FROM cpu GROUP BY host"),
        get("diff", "SELECT distinct(n) FROM cpu"),
        get("diff", "SELECT count(distinct(n)) FROM cpu"),
        get("diff", "SELECT top(usage_idle, 3), bottom(usage_idle, 2) FROM cpu"),
        get("diff", "SELECT top(usage_idle, host, 2) FROM cpu"),
        get("diff", "SELECT max(usage_idle), host FROM cpu"),
        // GROUP BY and fill.
        get("diff", "SELECT mean(usage_idle) FROM cpu WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:30:00Z' GROUP BY time(5m)"),
        get("diff", "SELECT count(n) FROM cpu WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T01:30:00Z' GROUP BY time(20m), region"),
        get("diff", "SELECT mean(usage_idle) FROM cpu GROUP BY *"),
        get("diff", "SELECT mean(used) FROM mem WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T02:00:00Z' GROUP BY time(7m) fill(none)"),
        get("diff", "SELECT mean(used) FROM mem WHERE time >= '2026-01-01T00:30:00Z' AND time < '2026-01-01T02:00:00Z' GROUP BY time(7m) fill(0)"),
        get("diff", "SELECT mean(used) FROM mem WHERE time >= '2026-01-01T00:30:00Z' AND time < '2026-01-01T02:00:00Z' GROUP BY time(7m) fill(previous)"),
        get("diff", "SELECT mean(used) FROM mem WHERE time >= '2026-01-01T00:30:00Z' AND time < '2026-01-01T02:00:00Z' GROUP BY time(7m) fill(linear)"),
        get("diff", "SELECT mean(used) FROM mem WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:30:00Z' GROUP BY time(10m, 3m)"),
        get("diff", "SELECT mean(usage_idle) FROM cpu GROUP BY host SLIMIT 2 SOFFSET 1"),
        // Transformations and subqueries.
        get("diff", "SELECT derivative(usage_idle, 1m) FROM cpu WHERE host = 'b' LIMIT 5"),
        get("diff", "SELECT non_negative_derivative(max(used), 5m) FROM mem WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:50:00Z' GROUP BY time(10m)"),
        get("diff", "SELECT difference(n), cumulative_sum(n) FROM cpu WHERE host = 'c' LIMIT 5"),
        get("diff", "SELECT moving_average(usage_idle, 3) FROM cpu WHERE host = 'd' LIMIT 5"),
        get("diff", "SELECT elapsed(used, 1m) FROM mem LIMIT 3"),
        get("diff", "SELECT max(m) FROM (SELECT mean(usage_idle) AS m FROM cpu GROUP BY host)"),
        get("diff", "SELECT * FROM (SELECT usage_idle FROM cpu WHERE host = 'a') LIMIT 3"),
        // Several statements, bound parameters.
        get("diff", "SELECT count(n) FROM cpu; SHOW MEASUREMENTS; SELECT last(used) FROM mem"),
        get("diff", "SELECT usage_idle FROM cpu WHERE host = $h LIMIT 2").param("params", r#"{"h":"b"}"#),
        get("diff", "SELECT usage_idle FROM cpu WHERE n > $n LIMIT 2").param("params", r#"{"n":14}"#),
        get("diff", "SELECT * FROM cpu WHERE host = $h").param("params", "{not json"),
        // Errors.
        get("diff", "SELECT nope FROM cpu"),
        get("diff", "SELECT * FROM nope"),
        get("nope", "SELECT * FROM cpu"),
        get("", "SELECT * FROM cpu"),
        get("diff", "SELEC * FROM cpu"),
        get("diff", "SELECT"),
        get("diff", "SELECT mean(label) FROM mem"),
        get("diff", "SELECT count(n) FROM cpu; SELEKT 1; SHOW DATABASES"),
        get("diff", "SELECT * FROM cpu GROUP BY time(1m)"),
        get("diff", "SELECT mean(usage_idle) FROM cpu GROUP BY time(0s)"),
        get("diff", "DROP MEASUREMENT"),
        with(&[("db", "diff")]),
        with(&[("db", "diff"), ("q", "")]),
        // Mutations, through GET (InfluxDB warns) and POST.
        get("", "CREATE DATABASE made_by_get"),
        post("", "CREATE DATABASE made_by_post"),
        post("", "CREATE RETENTION POLICY short ON made_by_post DURATION 1h REPLICATION 1"),
        get("", "SHOW RETENTION POLICIES ON made_by_post"),
        post("", "DROP DATABASE made_by_get"),
        post("", "DROP DATABASE never_existed"),
        get("", "SHOW DATABASES"),
        post("diff", "SELECT count(used) FROM mem"),
        // Formats.
        get("diff", "SELECT * FROM mem LIMIT 3").param("pretty", "true"),
        get("diff", "SELECT * FROM cpu LIMIT 7").param("chunked", "true"),
        get("diff", "SELECT * FROM cpu LIMIT 7").param("chunked", "true").param("chunk_size", "2"),
        get("diff", "SELECT * FROM cpu GROUP BY host LIMIT 3").param("chunked", "true").param("chunk_size", "2"),
        get("diff", "SHOW MEASUREMENTS; SELECT count(*) FROM mem").param("chunked", "true"),
        get("diff", "SELECT nope FROM cpu; SELECT count(*) FROM mem").param("chunked", "true"),
        get("diff", "SELECT * FROM cpu LIMIT 5").param("chunked", "false"),
        get("diff", "SELECT * FROM cpu LIMIT 3").header("Accept", "application/csv"),
        get("diff", "SHOW TAG VALUES WITH KEY = host").header("Accept", "application/csv"),
        get("diff", "SELECT * FROM cpu LIMIT 50").header("Accept-Encoding", "gzip"),
        get("diff", "SELECT * FROM cpu LIMIT 50").header("Accept-Encoding", "gzip").param("chunked", "true").param("chunk_size", "10"),
        get("diff", "SELECT nope FROM").header("Accept-Encoding", "gzip"),
    ];
    for epoch in ["ns", "n", "u", "µ", "ms", "s", "m", "h", "bogus"] {
        cases.push(get("diff", "SELECT usage_idle FROM cpu LIMIT 2").param("epoch", epoch));
    }
    cases
}

#[test]
fn a_one_node_gateway_answers_like_influxdb() {
    let plain = Influxd::start("plain");
    let behind = Influxd::start("behind");
    let gateway = Gateway::start(&[&behind], "");
    let targets = [plain.url(), gateway.url()];

    for base in &targets {
        let created = exchange(
            "POST",
            &format!("{base}/query?q=CREATE+DATABASE+diff"),
            &[],
            b"",
        );
        assert_eq!(created.status, 200);
        let written = exchange(
            "POST",
            &format!("{base}/write?db=diff"),
            &[],
            dataset().as_bytes(),
        );
        assert_eq!(
            written.status,
            204,
            "{}",
            String::from_utf8_lossy(&written.body)
        );
    }

    let mut differences = Vec::new();
    let mut compared = 0;
    for (params, body) in write_cases() {
        let [a, b] = targets.clone().map(|base| {
            comparable(&exchange(
                "POST",
                &format!("{base}/write?{params}"),
                &[],
                body.as_bytes(),
            ))
        });
        compared += 1;
        if a != b {
            differences.push(format!(
                "write {params} {body:?}\n  influxd: {a:?}\n  gateway: {b:?}"
            ));
        }
    }
    for case in query_cases() {
        let [a, b] = targets.clone().map(|base| comparable(&case.send(&base)));
        compared += 1;
        if a != b {
            differences.push(format!(
                "{}\n  influxd: {a:?}\n  gateway: {b:?}",
                case.describe()
            ));
        }
    }
    assert!(compared >= 60, "only {compared} cases");
    assert!(
        differences.is_empty(),
        "{} of {compared} answers differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
