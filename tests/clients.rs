//! Real client libraries, unchanged, pointed at the gateway: the Python 1.x and 2.x clients, the
//! `influx` CLI's import and CSV output, and Telegraf's write conversation. Every test reads the
//! data back from each influxd directly, so a client that only seems to work through the gateway
//! (an answer made up by the gateway, a write that reached one node) fails.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{which, Cluster, Influxd};
use serde_json::{json, Value};

/// Replicas are compared right after the client returns, so the gateway must answer only once
/// every node has the write.
const ALL: &str = "write:\n  consistency: all\n";

const INSTALL: &str =
    "python3 -m venv .ci/venv && .ci/venv/bin/pip install influxdb influxdb-client";

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has both client libraries: `INFLUX_GATEWAY_PYTHON`, else `.ci/venv`. A missing
/// library fails the test rather than skipping it, so CI cannot pass without running the clients.
fn python() -> PathBuf {
    // A configured interpreter is never silently replaced by the venv: that would hide the mistake.
    let candidate = std::env::var_os("INFLUX_GATEWAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_root().join(".ci/venv/bin/python"));
    let probe = Command::new(&candidate)
        .args(["-c", "import influxdb, influxdb_client"])
        .stdin(Stdio::null())
        .output();
    let why = match probe {
        Ok(output) if output.status.success() => return candidate,
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    panic!(
        "{} cannot import the `influxdb` and `influxdb-client` packages: {why}\n\
         Install them from the crate root with `{INSTALL}` (or run `bash .ci/run`), \
         or set INFLUX_GATEWAY_PYTHON to a python that has them.",
        candidate.display()
    )
}

/// Runs `tests/clients/{script}` against the gateway; returns its stdout parsed as JSON.
fn run_script(python: &Path, script: &str, cluster: &Cluster, db: &str) -> Value {
    let path = crate_root().join("tests/clients").join(script);
    let output = Command::new(python)
        .arg(&path)
        .args(["127.0.0.1", &cluster.gateway.port.to_string(), db])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    let stdout = succeeded(&output, script);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout:?}"))
}

/// Stdout of a finished client, failing the test with everything it said if it did not exit 0.
fn succeeded(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} exited with {}:\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `q` run directly on `node` with `epoch=ns`, as `[time, columns...]` rows.
fn node_rows_ns(node: &Influxd, db: &str, q: &str) -> Vec<Value> {
    let reply = common::post_form(
        &format!("{}/query", node.url()),
        &[("db", db), ("q", q), ("epoch", "ns")],
    );
    assert_eq!(reply.status, 200, "{q:?} on {}: {}", node.name, reply.body);
    common::series_values(&reply.json())
}

fn measurements(node: &Influxd, db: &str) -> Vec<Value> {
    node.values(db, "SHOW MEASUREMENTS")
}

#[test]
fn the_python_influxdb_1x_client_works_through_the_gateway() {
    let python = python();
    let cluster = Cluster::start(3, ALL);

    let printed = run_script(&python, "influxdb_v1.py", &cluster, "pyv1");

    assert_eq!(
        printed["points"],
        json!([
            {"time": 1_700_000_000_000_u64, "host": "server01", "region": "eu-west",
             "usage": 0.64, "cores": 4, "note": "hello, \"world\"", "ok": true},
            {"time": 1_700_000_001_000_u64, "host": "server02", "region": "us east",
             "usage": 0.5, "cores": null, "note": null, "ok": null},
            {"time": 1_700_000_002_250_u64, "host": "server01", "region": "eu-west",
             "usage": 0.75, "cores": 4, "note": null, "ok": null},
            {"time": 1_700_000_003_500_u64, "host": "server,03", "region": "ap=south",
             "usage": 1.25, "cores": null, "note": null, "ok": false},
        ]),
        "query through the gateway"
    );
    assert_eq!(
        printed["measurements_before"],
        json!([{"name": "cpu"}, {"name": "scratch"}])
    );
    assert_eq!(printed["measurements_after"], json!([{"name": "cpu"}]));

    // Columns: time, cores, host, note, ok, region, usage.
    let expected = vec![
        json!([
            "2023-11-14T22:13:20Z",
            4,
            "server01",
            "hello, \"world\"",
            true,
            "eu-west",
            0.64
        ]),
        json!([
            "2023-11-14T22:13:21Z",
            null,
            "server02",
            null,
            null,
            "us east",
            0.5
        ]),
        json!([
            "2023-11-14T22:13:22.25Z",
            4,
            "server01",
            null,
            null,
            "eu-west",
            0.75
        ]),
        json!([
            "2023-11-14T22:13:23.5Z",
            null,
            "server,03",
            null,
            false,
            "ap=south",
            1.25
        ]),
    ];
    for node in &cluster.nodes {
        assert_eq!(
            node.values("pyv1", "SELECT * FROM cpu"),
            expected,
            "points on {}",
            node.name
        );
        assert_eq!(
            measurements(node, "pyv1"),
            vec![json!(["cpu"])],
            "the dropped measurement must be gone from {}",
            node.name
        );
    }
}

#[test]
fn the_python_influxdb_2x_client_writes_through_api_v2_write() {
    let python = python();
    let cluster = Cluster::start(3, ALL);
    cluster.create_database("pyv2");

    let printed = run_script(&python, "influxdb_v2.py", &cluster, "pyv2");
    assert_eq!(
        printed,
        json!({
            "written": 4,
            "health": ["influx-gateway", "pass", ["influx1", "influx2", "influx3"]]
        })
    );

    // Columns: time, door, floor, people, temp.
    let expected = vec![
        json!([1_700_000_000_000_000_000_u64, null, "1", 3, 21.5]),
        json!([1_700_000_001_000_000_000_u64, null, "2", null, 19.75]),
        json!([1_700_000_002_123_456_789_u64, null, "1", null, 22.25]),
        json!([1_700_000_003_000_000_001_u64, "open", "2", null, 19.5]),
    ];
    for node in &cluster.nodes {
        assert_eq!(
            node_rows_ns(node, "pyv2", "SELECT * FROM room"),
            expected,
            "points on {}",
            node.name
        );
        assert_eq!(measurements(node, "pyv2"), vec![json!(["room"])]);
    }
}

fn influx_cli(port: u16) -> Command {
    let binary = which("influx").unwrap_or_else(|| {
        panic!("the influx CLI is not on PATH: install it with `apt-get install influxdb-client`")
    });
    let mut command = Command::new(binary);
    command
        .args(["-host", "127.0.0.1", "-port", &port.to_string()])
        .stdin(Stdio::null());
    command
}

#[test]
fn the_influx_cli_imports_a_file_and_prints_csv() {
    let cluster = Cluster::start(3, ALL);
    let file = crate_root().join("tests/clients/import.txt");

    let import = influx_cli(cluster.gateway.port)
        .arg("-import")
        .arg("-path")
        .arg(&file)
        .args(["-precision", "s"])
        .output()
        .expect("run influx -import");
    // The counts prove the DDL section ran and that every line was sent, none skipped as unparsable.
    let log = succeeded(&import, "influx -import");
    assert!(log.contains("Processed 1 commands"), "{log}");
    assert!(log.contains("Processed 4 inserts"), "{log}");
    assert!(log.contains("Failed 0 inserts"), "{log}");

    let select = "SELECT * FROM weather GROUP BY city";
    let csv = |port: u16| {
        let output = influx_cli(port)
            .args([
                "-database",
                "importdb",
                "-format",
                "csv",
                "-execute",
                select,
            ])
            .output()
            .expect("run influx -format csv");
        succeeded(&output, "influx -format csv")
    };
    let through_gateway = csv(cluster.gateway.port);
    // One header per series: that is the CLI's CSV, not a gateway artefact.
    assert_eq!(
        through_gateway,
        "name,tags,time,humidity,sky,temp\n\
         weather,city=new york,1700000000000000000,55,light snow,-2.25\n\
         weather,city=new york,1700000060000000000,60,,-1.5\n\
         name,tags,time,humidity,sky,temp\n\
         weather,city=paris,1700000000000000000,80,,12.5\n\
         weather,city=paris,1700000060000000000,78,,13\n"
    );
    for node in &cluster.nodes {
        assert_eq!(
            csv(node.port),
            through_gateway,
            "the same command run on {} directly",
            node.name
        );
        assert_eq!(
            node.values("importdb", "SELECT count(temp) FROM weather"),
            vec![json!(["1970-01-01T00:00:00Z", 4])],
            "points on {}",
            node.name
        );
    }
}

#[test]
fn telegraf_gzip_writes_create_the_database_on_not_found() {
    let cluster = Cluster::start(3, ALL);
    let body = "cpu,cpu=cpu-total,host=h1 usage_idle=97.5,usage_user=1.25 1700000000000000000\n\
                mem,host=h1 used=1234i,available_percent=55.5 1700000000000000000\n\
                cpu,cpu=cpu-total,host=h1 usage_idle=96.25,usage_user=2.5 1700000010000000000\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip the body");
    let gzipped = gz.finish().expect("finish gzip");
    // What Telegraf 1.28's influxdb output sends: no precision (its timestamps are nanoseconds).
    let write = |base: &str| {
        common::exchange(
            "POST",
            &format!("{base}/write?db=telegraf"),
            &[
                ("Content-Encoding", "gzip"),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("User-Agent", "Telegraf/1.28"),
            ],
            &gzipped,
        )
    };

    let refused = write(&cluster.gateway.url());
    let refused_text = String::from_utf8_lossy(&refused.body).into_owned();
    assert_eq!(refused.status, 404, "{refused_text}");
    let error: Value = serde_json::from_str(&refused_text)
        .unwrap_or_else(|e| panic!("the 404 is not JSON ({e}): {refused_text:?}"));
    let error = error["error"].as_str().unwrap_or_default();
    // Telegraf creates the database only when this substring is in the `error` member.
    assert!(
        error.contains("database not found"),
        "Telegraf would not create the database on {refused_text:?}"
    );
    let direct = write(&cluster.nodes[0].url());
    assert_eq!(
        (refused.status, refused_text.trim()),
        (direct.status, String::from_utf8_lossy(&direct.body).trim()),
        "the gateway's 404 next to plain influxd's"
    );

    let created = common::post(
        &format!("{}/query", cluster.gateway.url()),
        b"q=CREATE+DATABASE+%22telegraf%22",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Telegraf/1.28"),
        ],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json(), json!({"results": [{"statement_id": 0}]}));

    let accepted = write(&cluster.gateway.url());
    assert_eq!(
        accepted.status,
        204,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    for node in &cluster.nodes {
        assert_eq!(
            node_rows_ns(node, "telegraf", "SELECT * FROM cpu"),
            vec![
                json!([1_700_000_000_000_000_000_u64, "cpu-total", "h1", 97.5, 1.25]),
                json!([1_700_000_010_000_000_000_u64, "cpu-total", "h1", 96.25, 2.5]),
            ],
            "cpu on {}",
            node.name
        );
        assert_eq!(
            node_rows_ns(node, "telegraf", "SELECT * FROM mem"),
            vec![json!([1_700_000_000_000_000_000_u64, 55.5, "h1", 1234])],
            "mem on {}",
            node.name
        );
    }
}
