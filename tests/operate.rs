//! Operating the gateway: `check-config`, and a configuration reload on SIGHUP that applies what
//! is safe and reports what needs a restart.

mod common;

use std::{fs, process::Command, time::Duration};

use common::{Gateway, Influxd};

fn check_config(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    fs::write(&path, yaml).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_resolved_cluster_or_names_the_fault() {
    let (ok, out, err) = check_config(
        "nodes:\n  - {name: a, url: 'http://10.0.0.1:8086/'}\n  - {name: b, url: 'http://10.0.0.2:8086'}\n  - {name: c, url: 'https://10.0.0.3:8086'}\nshards:\n  - {name: s1, replicas: [a, b]}\n  - {name: s2, replicas: [c]}\nroutes:\n  - {measurement: cpu, shard: s1}\n  - {measurement_prefix: disk, shard: s2}\n  - {measurement_regex: '^net_', by_tag: host}\n",
    );
    assert!(ok, "{err}");
    for expected in [
        "  a                http://10.0.0.1:8086\n",
        "  c                https://10.0.0.3:8086\n",
        "  s1               a, b\n",
        "  s2               c\n",
        "  1. measurement = \"cpu\" -> shard s1\n",
        "  2. measurement starts with \"disk\" -> shard s2\n",
        "  3. measurement =~ /^net_/ -> by tag \"host\" over every shard\n",
        "  otherwise: stable hash of (db, measurement) over every shard\n",
        ": OK\n",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }

    let (ok, out, err) = check_config(
        "nodes:\n  - {name: a, url: 'http://10.0.0.1:8086'}\nlimits:\n  max_statements: 0\n",
    );
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("limits.max_statements: must be greater than zero"),
        "{err}"
    );
    let (ok, _, err) = check_config("nodes: [{name: a, url: 'http://h:1'}]\nlog_level: loud\n");
    assert!(!ok);
    assert!(err.contains("log_level: \"loud\" is not one of"), "{err}");
}

#[test]
fn sighup_applies_limits_and_retry_and_reports_what_needs_a_restart() {
    let node = Influxd::start("n1");
    let gateway = Gateway::start(&[&node], "limits:\n  max_statements: 10\n");
    let three = "SHOW DATABASES; SHOW DATABASES; SHOW DATABASES";
    assert_eq!(gateway.query("", three).status, 200);

    let config = fs::read_to_string(gateway.config_path()).expect("read config");
    let changed = config
        .replace("max_statements: 10", "max_statements: 2")
        .replace("name: n1", "name: renamed")
        + "retry:\n  initial_backoff: 50ms\n  max_backoff: 1s\nhealth:\n  interval: 1s\n";
    fs::write(gateway.config_path(), changed).expect("write config");
    let pid = gateway.pid().expect("gateway runs");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());

    assert!(
        common::eventually(Duration::from_secs(10), || {
            gateway.query("", three).status == 400
        }),
        "the new statement limit is in force:\n{}",
        gateway.log()
    );
    let reply = gateway.query("", three);
    assert!(
        reply.error().contains("at most 2 statements"),
        "{}",
        reply.body
    );
    let log = gateway.log();
    assert!(
        log.contains("SIGHUP: nodes changed: restart required"),
        "{log}"
    );
    assert!(
        log.contains("SIGHUP: applied health, limits, retry"),
        "{log}"
    );
    // The node kept its old name: the rename waits for a restart, and the data it holds would then
    // be placed on a node of another name: the log and `/health` say a rebalance will be needed.
    assert!(
        log.contains("once a restart applies them, a rebalance is needed"),
        "{log}"
    );
    let health = gateway.health().1;
    assert_eq!(health["nodes"][0]["name"], "n1");
    assert_eq!(health["rebalance"]["needed"], false, "{health}");
    assert_eq!(
        health["rebalance"]["after_restart"], "all = [renamed]",
        "{health}"
    );
    assert_eq!(gateway.query("", "SHOW DATABASES").status, 200);

    // A broken file changes nothing, and says so.
    fs::write(gateway.config_path(), "nodes: [").expect("write config");
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(common::eventually(Duration::from_secs(10), || {
        gateway
            .log()
            .contains("configuration not reloaded, still running the previous one")
    }));
    assert_eq!(gateway.query("", three).status, 400);
}
