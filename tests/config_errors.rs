//! The binary's command line and its refusal of bad configurations: non-zero exit, one message that
//! names the key. No InfluxDB is needed: the gateway must refuse before contacting anything.

use std::{fs, process::Command};

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
}

/// Runs the gateway on `yaml`; returns its exit code and standard error.
fn run_with(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, yaml).unwrap();
    let output = gateway().arg("-c").arg(&path).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const NODE: &str = "nodes:\n  - name: influx1\n    url: \"http://127.0.0.1:8086\"\n";

#[test]
fn version_and_help() {
    let version = gateway().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("influx-gateway {}", env!("CARGO_PKG_VERSION"))
    );
    let help = gateway().arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--config <PATH>"), "{help}");
    assert!(help.contains("[default: config.yaml]"), "{help}");
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway().current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("influx-gateway: cannot read config.yaml: "),
        "{stderr}"
    );
}

#[test]
fn each_bad_config_names_its_key() {
    let cases = [
        (
            "nodes:\n  - name: a\n    url: \"http://127.0.0.1:1\"\n  - name: b\n    url: notaurl\n"
                .to_owned(),
            r#"nodes[1].url: "notaurl" is not an http(s) URL"#,
        ),
        (
            "nodes: []\n".to_owned(),
            "nodes: at least one node is required",
        ),
        (
            "listen: \"0.0.0.0:8080\"\n".to_owned(),
            "nodes: required, but missing",
        ),
        (
            "nodes:\n  - name: a\n    url: \"http://h:1\"\n  - name: a\n    url: \"http://h:2\"\n"
                .to_owned(),
            r#"nodes[1].name: duplicate node name "a" (also nodes[0])"#,
        ),
        (format!("{NODE}colour: blue\n"), "colour: unknown key"),
        (
            format!("{NODE}listen: \"127.0.0.1:9090\"\nadmin:\n  listen: \"0.0.0.0:9090\"\n"),
            "admin.listen: 0.0.0.0:9090 uses the port of `listen` (127.0.0.1:9090): give the admin API a port of its own",
        ),
        (
            format!("{NODE}admin:\n  listen: \"127.0.0.1:0\"\n"),
            "admin.listen: 127.0.0.1:0 has no port: the admin listener needs a port of its own",
        ),
        (
            format!("{NODE}admin:\n  listen: nowhere\n"),
            r#"admin.listen: "nowhere" is not a host:port address"#,
        ),
        (
            format!("{NODE}retry:\n  max_backof: 1s\n"),
            "retry.max_backof: unknown key; expected one of initial_backoff, max_backoff",
        ),
        (
            format!("{NODE}retry:\n  max_attempts_4xx: lots\n"),
            r#"retry.max_attempts_4xx: "lots" is not a whole number"#,
        ),
        (
            format!("{NODE}health:\n  interval: 5\n"),
            r#"health.interval: 5 has no unit (write it with one, e.g. "5s")"#,
        ),
        (
            format!("{NODE}queue:\n  max_bytes: 5\n"),
            r#"queue.max_bytes: 5 has no unit (write it with one, e.g. "5MiB")"#,
        ),
        (
            format!("{NODE}health:\n  interval: soon\n"),
            r#"health.interval: "soon" is not a duration"#,
        ),
        (
            format!("{NODE}write:\n  consistency: most\n"),
            "write.consistency: unknown variant `most`",
        ),
        (
            format!("{NODE}write:\n  max_body_size: huge\n"),
            r#"write.max_body_size: "huge" is not a size"#,
        ),
        (
            format!("{NODE}query:\n  timeout: 0s\n"),
            "query.timeout: must be greater than zero",
        ),
        ("nodes: [\n".to_owned(), "did not find expected"),
    ];
    for (yaml, expected) in cases {
        let (code, stderr) = run_with(&yaml);
        assert_eq!(code, Some(1), "{yaml:?} must be refused: {stderr}");
        assert!(
            stderr.contains(expected),
            "{yaml:?}: {stderr:?} should contain {expected:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one message: {stderr:?}");
        assert!(stderr.starts_with("influx-gateway: "), "{stderr:?}");
    }
}

#[test]
fn a_busy_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr) = run_with(&format!("listen: \"127.0.0.1:{port}\"\n{NODE}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_second_gateway_on_one_data_dir_is_told_which_process_holds_it_and_the_first_logs_no_trace() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = |port: u16| {
        format!(
            "listen: \"127.0.0.1:{port}\"\ndata_dir: \"{}\"\n{NODE}",
            data.display()
        )
    };
    let first_config = dir.path().join("first.yaml");
    fs::write(&first_config, yaml(0)).unwrap();
    // No RUST_LOG: what a user sees at the default `log_level: info`.
    let mut first = gateway()
        .arg("-c")
        .arg(&first_config)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let listening = line.contains("listening on");
        seen.push(line);
        if listening {
            break;
        }
    }
    let (code, stderr) = run_with(&yaml(0));
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is in use by another gateway (pid {}): each gateway needs a data_dir of its own",
            first.id()
        )),
        "{stderr}"
    );
    assert!(
        seen.iter()
            .all(|l| !l.contains("TRACE") && !l.contains("DEBUG")),
        "{seen:#?}"
    );
}
