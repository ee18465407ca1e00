//! `scripts/local-cluster`, as a new user runs it: any ports, a taken one named, everything kept
//! under its state directory, the gateway on loopback. The gateway binary under test stands in for
//! the release build the script would otherwise make.

mod common;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{eventually, free_port, get};

fn script(state: &Path, args: &[String]) -> Command {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/local-cluster"
    ));
    command
        .args(args)
        .env("LOCAL_CLUSTER_BIN", env!("CARGO_BIN_EXE_influx-gateway"))
        .env("LOCAL_CLUSTER_STATE", state)
        .stdin(Stdio::null());
    command
}

/// Kills the script's process group on drop, so that nothing it started outlives the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM runs the script's cleanup, which stops every process it started.
        terminate(self.0.id());
        let _ = self.0.wait();
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

#[test]
fn a_taken_port_is_named() {
    let state = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let ports = format!("{},{port},{}", free_port(), free_port());
    let out = script(state.path(), &["--node-ports".into(), ports])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "port {port} (influx2's HTTP API) is already in use"
        )),
        "{stderr}"
    );
    let out = script(state.path(), &["--gateway-port".into(), port.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port} (the gateway's) is already in use")),
        "{stderr}"
    );
}

#[test]
fn the_cluster_runs_on_the_ports_asked_for_with_its_state_in_one_place() {
    let state = tempfile::tempdir().unwrap();
    let gateway = free_port();
    let nodes = [free_port(), free_port(), free_port()];
    let args = vec![
        "--gateway-port".to_owned(),
        gateway.to_string(),
        "--node-ports".to_owned(),
        format!("{},{},{}", nodes[0], nodes[1], nodes[2]),
    ];
    let log = std::fs::File::create(state.path().join("script.log")).unwrap();
    let child = script(state.path(), &args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _running = Running(child);
    let url = format!("http://127.0.0.1:{gateway}");
    let up = eventually(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", gateway)).is_ok()
            && get(&format!("{url}/health")).status == 200
            && get(&format!("{url}/health")).json()["message"] == "3 of 3 nodes up"
    });
    let output = std::fs::read_to_string(state.path().join("script.log")).unwrap_or_default();
    assert!(up, "{output}");
    let health = get(&format!("{url}/health")).json();
    for (i, port) in nodes.iter().enumerate() {
        assert_eq!(
            health["nodes"][i]["url"],
            format!("http://127.0.0.1:{port}"),
            "{health}"
        );
    }
    // Everything under the state directory, the gateway's queues too; on loopback only.
    let config = std::fs::read_to_string(state.path().join("config.yaml")).unwrap();
    assert!(
        config.contains(&format!("listen: \"127.0.0.1:{gateway}\"")),
        "{config}"
    );
    assert!(state.path().join("gateway").join("queue").is_dir());
    for node in ["influx1", "influx2", "influx3"] {
        assert!(state.path().join(node).join("influxdb.conf").is_file());
    }
    let log = state.path().join("script.log");
    let told = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&format!("influx -port {gateway}"))
    });
    assert!(
        told,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
