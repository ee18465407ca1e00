//! The stock `influx` CLI (from Debian's influxdb-client) pointed at the gateway, as a user would.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{which, Cluster};
use serde_json::json;

fn influx_cli() -> Command {
    let binary = which("influx").unwrap_or_else(|| {
        panic!("the influx CLI is not on PATH: install it with `apt-get install influxdb-client`")
    });
    Command::new(binary)
}

/// Runs `influx -execute` against `port`; returns stdout, failing the test on a non-zero exit.
fn execute(port: u16, args: &[&str], statement: &str) -> String {
    let output = influx_cli()
        .args(["-host", "127.0.0.1", "-port", &port.to_string()])
        .args(args)
        .args(["-execute", statement])
        .stdin(Stdio::null())
        .output()
        .expect("run influx");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "influx -execute {statement:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Drives an interactive session: the CLI only reads commands like INSERT from a terminal, so it
/// runs under `script`, which gives it a pseudo-terminal fed from our pipe.
fn interactive(port: u16, db: &str, lines: &[&str]) -> String {
    let command = format!("influx -host 127.0.0.1 -port {port} -database {db}");
    let mut child = Command::new(which("script").expect("script (util-linux) is needed for a pty"))
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run influx under script");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in lines.iter().chain(&["exit"]) {
        writeln!(stdin, "{line}").expect("type into influx");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("influx session");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "interactive influx failed: {stdout}"
    );
    stdout
}

#[test]
fn the_influx_cli_works_through_the_gateway() {
    let cluster = Cluster::start(3, "write:\n  consistency: all\n");
    let port = cluster.gateway.port;

    execute(port, &[], "CREATE DATABASE clidb");
    let session = interactive(
        port,
        "clidb",
        &[
            "INSERT cpu,host=a v=1 1000000000",
            "INSERT cpu,host=b v=2 2000000000",
            "SELECT * FROM cpu",
        ],
    );
    assert!(
        session.contains("Connected to http://127.0.0.1:"),
        "{session}"
    );
    assert!(!session.contains("ERR:"), "{session}");

    let json_out = execute(
        port,
        &["-database", "clidb", "-format", "json"],
        "SELECT host, v FROM cpu",
    );
    let answer: serde_json::Value =
        serde_json::from_str(json_out.trim()).expect("-format json prints JSON");
    assert_eq!(
        answer["results"][0]["series"][0]["values"],
        json!([[1_000_000_000_u64, "a", 1], [2_000_000_000_u64, "b", 2]])
    );

    let databases = execute(port, &[], "SHOW DATABASES");
    assert!(
        databases.lines().any(|l| l.trim() == "clidb"),
        "{databases}"
    );

    for node in &cluster.nodes {
        assert_eq!(
            node.values("clidb", "SELECT count(v) FROM cpu"),
            vec![json!(["1970-01-01T00:00:00Z", 2])]
        );
    }
}
