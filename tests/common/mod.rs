//! The shared integration-test harness: real `influxd` processes on free loopback ports in temporary
//! directories, SIGKILLed and restarted on demand, and the gateway binary in front of them.
//!
//! Nothing here is a mock. Where `influxd` is not installed the tests fail and say how to install it.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

/// How long a process may take to start answering `/ping`.
const STARTUP: Duration = Duration::from_secs(60);

/// Finds `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// The path of `influxd`, or a failure that says how to get it.
pub fn influxd_binary() -> PathBuf {
    which("influxd").unwrap_or_else(|| {
        panic!(
            "influxd is not on PATH: these tests need a real InfluxDB 1.x. \
             Install it with `apt-get install influxdb influxdb-client` (or run `bash .ci/run`)."
        )
    })
}

/// A free TCP port on 127.0.0.1, never one handed out before in this test binary: the port is
/// released before its user binds it, and the kernel may offer it again meanwhile, so that two
/// tests running side by side once got the same one (a gateway's bind then failed, and its tests
/// talked to another test's influxd).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("no loopback port left that was not handed out already")
}

/// A real influxd with its own directory and ports.
pub struct Influxd {
    /// Name used in the gateway's configuration.
    pub name: String,
    /// HTTP port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Certificate and key when it serves HTTPS.
    https: Option<(PathBuf, PathBuf)>,
    /// Whether it requires credentials (`[http] auth-enabled`).
    auth: bool,
}

impl Influxd {
    /// Starts one serving HTTPS with the PEM `cert` and `key`.
    pub fn start_https(name: &str, cert: &Path, key: &Path) -> Influxd {
        Self::start_with(name, Some((cert.to_owned(), key.to_owned())), false)
    }

    /// Starts one that requires credentials, with `admin` / `admin-pw` as its admin user.
    pub fn start_with_auth(name: &str) -> Influxd {
        let node = Self::start_with(name, None, true);
        // influxd lets the first admin user be created without credentials.
        let reply = post_form(
            &format!("{}/query", node.url()),
            &[(
                "q",
                "CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES",
            )],
        );
        assert_eq!(reply.status, 200, "create the admin user: {}", reply.body);
        node
    }

    /// Starts one and waits until it answers `/ping`. A port taken between choosing it and
    /// binding it (another test, another program) is retried with new ports.
    pub fn start(name: &str) -> Influxd {
        Self::start_with(name, None, false)
    }

    fn start_with(name: &str, https: Option<(PathBuf, PathBuf)>, auth: bool) -> Influxd {
        influxd_binary(); // fail with the install hint before creating anything
        let dir = tempfile::Builder::new()
            .prefix("influxd-")
            .tempdir()
            .expect("temp dir");
        let mut node = Influxd {
            name: name.to_owned(),
            port: 0,
            dir,
            child: None,
            https,
            auth,
        };
        for attempt in 1..=3 {
            node.port = free_port();
            node.write_config(free_port());
            match node.try_spawn() {
                Ok(()) => return node,
                Err(why) if attempt < 3 => {
                    eprintln!("influxd {name} did not start, retrying: {why}")
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    fn write_config(&self, rpc: u16) {
        let d = self.dir.path().display();
        let https = match &self.https {
            Some((cert, key)) => format!(
                "  https-enabled = true\n  https-certificate = \"{}\"\n  https-private-key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let auth = if self.auth {
            "  auth-enabled = true\n"
        } else {
            ""
        };
        // The template scripts/local-cluster and the benchmarks start their nodes with too.
        let config = include_str!("../../scripts/influxd.conf.template")
            .replace("@RPC_PORT@", &rpc.to_string())
            .replace("@DIR@", &d.to_string())
            .replace("@HTTP_PORT@", &self.port.to_string())
            .replace("@HTTP_EXTRA@", &format!("{https}{auth}"));
        fs::write(self.dir.path().join("influxdb.conf"), config).expect("write influxd config");
    }

    /// Base URL.
    pub fn url(&self) -> String {
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs it: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// SIGKILLs it, deletes its databases, points and metadata, and starts it again on the same
    /// port: a node whose disk was replaced.
    pub fn wipe_and_restart(&mut self) {
        self.kill();
        for part in ["meta", "data", "wal"] {
            let _ = fs::remove_dir_all(self.dir.path().join(part));
        }
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("influxd.log"))
            .expect("influxd log");
        let child = Command::new(influxd_binary())
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn influxd");
        self.child = Some(child);
        let log_path = self.dir.path().join("influxd.log");
        let started = wait_for_ping(&self.url(), self.child.as_mut(), &log_path, &self.name);
        if started.is_err() {
            self.kill();
        }
        started
    }

    /// Runs `q` directly against this node (not through the gateway) and returns the JSON.
    pub fn query(&self, db: &str, q: &str) -> Value {
        // influxd reads `u` and `p` from the URL only.
        let credentials = if self.auth { "?u=admin&p=admin-pw" } else { "" };
        let reply = post_form(
            &format!("{}/query{credentials}", self.url()),
            &[("db", db), ("q", q)],
        );
        assert_eq!(
            reply.status, 200,
            "direct query {q:?} on {}: {}",
            self.name, reply.body
        );
        reply.json()
    }

    /// The sorted values of the first column after time of `q`, read directly from this node.
    pub fn values(&self, db: &str, q: &str) -> Vec<Value> {
        series_values(&self.query(db, q))
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gateway binary under test, with its own config and data directory.
pub struct Gateway {
    /// HTTP port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Whether its YAML has a `tls:` section, so that it speaks HTTPS.
    https: bool,
}

impl Gateway {
    /// Starts the gateway in front of `nodes`; `extra` is appended to the YAML (other sections).
    pub fn start(nodes: &[&Influxd], extra: &str) -> Gateway {
        let nodes: Vec<(&str, String)> = nodes.iter().map(|n| (n.name.as_str(), n.url())).collect();
        Self::start_urls(&nodes, extra)
    }

    /// Starts the gateway in front of nodes given by name and URL.
    pub fn start_urls(nodes: &[(&str, String)], extra: &str) -> Gateway {
        let nodes: Vec<String> = nodes
            .iter()
            .map(|(name, url)| format!("  - name: {name}\n    url: \"{url}\"\n"))
            .collect();
        Self::start_node_yaml(&nodes.concat(), extra)
    }

    /// Starts the gateway with `nodes` as the YAML list under `nodes:` (for keys such as `ca_file`).
    pub fn start_node_yaml(nodes: &str, extra: &str) -> Gateway {
        Self::start_node_yaml_in(nodes, extra, None)
    }

    /// Starts the gateway in front of `nodes` with its queues in `data_dir` (e.g. a small tmpfs).
    pub fn start_with_data_dir(nodes: &[&Influxd], extra: &str, data_dir: &Path) -> Gateway {
        let nodes: Vec<String> = nodes
            .iter()
            .map(|n| format!("  - name: {}\n    url: \"{}\"\n", n.name, n.url()))
            .collect();
        Self::start_node_yaml_in(&nodes.concat(), extra, Some(data_dir))
    }

    fn start_node_yaml_in(nodes: &str, extra: &str, data_dir: Option<&Path>) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("gateway-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let data_dir = data_dir.map_or_else(|| dir.path().join("data"), Path::to_owned);
        let mut yaml = format!(
            "listen: \"127.0.0.1:{port}\"\ndata_dir: \"{}\"\nnodes:\n",
            data_dir.display()
        );
        yaml.push_str(nodes);
        yaml.push_str(extra);
        Self::start_with_yaml(dir, port, &yaml)
    }

    fn start_with_yaml(dir: TempDir, port: u16, yaml: &str) -> Gateway {
        fs::write(dir.path().join("config.yaml"), yaml).expect("write gateway config");
        let mut gateway = Gateway {
            port,
            dir,
            child: None,
            https: yaml.lines().any(|l| l.starts_with("tls:")),
        };
        gateway.spawn();
        gateway
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .expect("gateway log");
        let child = Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            // GATEWAY_LOG=influx_gateway=debug when chasing a failure.
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn influx-gateway");
        self.child = Some(child);
        let log_path = self.dir.path().join("gateway.log");
        if let Err(why) = wait_for_ping(
            &self.url(),
            self.child.as_mut(),
            &log_path,
            "influx-gateway",
        ) {
            panic!("{why}");
        }
    }

    /// SIGKILLs the gateway: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same configuration and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; returns the exit code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        self.send_term();
        self.wait_exit(limit)
    }

    /// Sends SIGTERM without waiting.
    pub fn send_term(&self) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the gateway to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the gateway did not exit within {limit:?} of SIGTERM:\n{}",
            self.log()
        );
    }

    /// Base URL.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its configuration file (edit it, then [`Gateway::restart`]).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// `POST /write` with line protocol; `params` is the query string without `?`.
    pub fn write(&self, params: &str, body: &str) -> Reply {
        post(
            &format!("{}/write?{params}", self.url()),
            body.as_bytes(),
            &[],
        )
    }

    /// `POST /query` with a form body, as the Go and Python clients send it.
    pub fn query(&self, db: &str, q: &str) -> Reply {
        post_form(&format!("{}/query", self.url()), &[("db", db), ("q", q)])
    }

    /// [`Self::write`], asserting the 204 (the answer's body is the failure message).
    pub fn write_ok(&self, params: &str, body: &str) -> Reply {
        let reply = self.write(params, body);
        assert_eq!(reply.status, 204, "{}", reply.body);
        reply
    }

    /// [`Self::query`], asserting the 200 (the answer's body is the failure message).
    pub fn query_ok(&self, db: &str, q: &str) -> Reply {
        let reply = self.query(db, q);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
    }

    /// `GET /health` as JSON.
    pub fn health(&self) -> (u16, Value) {
        let reply = get(&format!("{}/health", self.url()));
        let json = reply.json();
        (reply.status, json)
    }

    /// `/health`'s entry for node `name`.
    pub fn node_health(&self, name: &str) -> Value {
        let (_, health) = self.health();
        health["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// The state `/health` gives node `name`.
    pub fn node_state(&self, name: &str) -> String {
        let (_, health) = self.health();
        health["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
            .and_then(|n| n["state"].as_str())
            .unwrap_or("missing")
            .to_owned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("---- gateway log ----\n{}", self.log());
        }
    }
}

/// A tmpfs of a chosen size, mounted by the test: a disk that fills up on demand and grows back
/// when told. Needs root (CI runs as root); unmounted when dropped.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. "24m").
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("tmpfs-")
            .tempdir()
            .expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill a disk for real, and needs root (CI runs as root): mount failed with {status}"
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Shrinks it to what it holds now plus `free` bytes (rounded up to a page: tmpfs refuses a
    /// size below its contents).
    pub fn leave_free(&self, free: u64) {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.dir.path())
            .output()
            .expect("run df");
        let used: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("df: {:?}", String::from_utf8_lossy(&out.stdout)));
        self.resize(&format!("{}k", (used + free) / 1024 + 4));
    }

    /// Grows (or shrinks) it to `size` in place, keeping what it holds.
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount the tmpfs to {size}: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A fake node that accepts connections and never answers: the one fault a real influxd cannot
/// produce on demand. Returns its URL; it lives until the test process ends.
pub fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind black hole");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("black hole address")
    );
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream); // keep it open, say nothing
        }
    });
    url
}

/// A fake node that answers `/ping` at once and every `/write` with 204 only after `delay`: a
/// slow answer on demand, which a real influxd cannot give. It records the bodies it got, in the
/// order they arrived, and the most writes it held at once. Lives until the test process ends.
pub struct SlowNode {
    /// Its base URL.
    pub url: String,
    state: std::sync::Arc<SlowState>,
}

#[derive(Default)]
struct SlowState {
    bodies: Mutex<Vec<String>>,
    holding: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl SlowNode {
    /// Starts it on a free loopback port.
    pub fn start(delay: Duration) -> SlowNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind slow node");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("slow node address")
        );
        let state = std::sync::Arc::new(SlowState::default());
        let shared = std::sync::Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = std::sync::Arc::clone(&shared);
                thread::spawn(move || serve_slowly(stream, &state, delay));
            }
        });
        SlowNode { url, state }
    }

    /// The bodies of the writes received, in arrival order.
    pub fn bodies(&self) -> Vec<String> {
        self.state.bodies.lock().expect("bodies").clone()
    }

    /// The most writes it was answering at one time.
    pub fn most_at_once(&self) -> usize {
        self.state.most.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One keep-alive connection of a [`SlowNode`].
fn serve_slowly(stream: std::net::TcpStream, state: &SlowState, delay: Duration) {
    use std::sync::atomic::Ordering::SeqCst;
    serve_requests(stream, |request_line, body| {
        if request_line.starts_with("POST /write") {
            let now = state.holding.fetch_add(1, SeqCst) + 1;
            state.most.fetch_max(now, SeqCst);
            state
                .bodies
                .lock()
                .expect("bodies")
                .push(String::from_utf8_lossy(body).into_owned());
            thread::sleep(delay);
            state.holding.fetch_sub(1, SeqCst);
        }
        "HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\nContent-Length: 0\r\n\r\n".into()
    });
}

/// Serves one keep-alive connection of a fake node: each request's line and body (by
/// `Content-Length`) go to `answer`, and what it returns is written back whole, until the peer
/// closes.
pub fn serve_requests(stream: std::net::TcpStream, answer: impl Fn(&str, &[u8]) -> String) {
    use std::io::{BufRead, BufReader, Write};
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer
            .write_all(answer(&request_line, &body).as_bytes())
            .is_err()
        {
            return;
        }
    }
}

/// What the harness waits for a job to end.
pub const JOB_LIMIT: Duration = Duration::from_secs(120);

impl Gateway {
    /// `POST /cluster/repair?{params}`.
    pub fn start_repair(&self, params: &str) -> Reply {
        post(&format!("{}/cluster/repair?{params}", self.url()), b"", &[])
    }

    /// `GET /cluster/jobs/ID` as JSON.
    pub fn job(&self, id: &str) -> Value {
        let reply = get(&format!("{}/cluster/jobs/{id}", self.url()));
        assert_eq!(reply.status, 200, "job {id}: {}", reply.body);
        reply.json()
    }

    /// Waits until job `id` is no longer running and returns it.
    pub fn wait_for_job(&self, id: &str, limit: Duration) -> Value {
        let mut last = Value::Null;
        let ended = eventually(limit, || {
            last = self.job(id);
            last["state"] != "running"
        });
        assert!(ended, "job {id} still running after {limit:?}: {last}");
        last
    }
}

/// Three real nodes and a gateway in front of them.
pub struct Cluster {
    /// The nodes, named influx1..influxN.
    pub nodes: Vec<Influxd>,
    /// The gateway.
    pub gateway: Gateway,
}

impl Cluster {
    /// `n` nodes and a gateway with the extra YAML `extra`.
    pub fn start(n: usize, extra: &str) -> Cluster {
        let nodes: Vec<Influxd> = (1..=n)
            .map(|i| Influxd::start(&format!("influx{i}")))
            .collect();
        let gateway = Gateway::start(&nodes.iter().collect::<Vec<_>>(), extra);
        Cluster { nodes, gateway }
    }

    /// Creates `db` on every node through the gateway.
    pub fn create_database(&self, db: &str) {
        let reply = self.gateway.query("", &format!("CREATE DATABASE \"{db}\""));
        assert_eq!(reply.status, 200, "CREATE DATABASE {db}: {}", reply.body);
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON (fails the test if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` member of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {:?}", self.body))
            .to_owned()
    }
}

/// TLS for the test client: trusting only `ca` (PEM), or, without one, anything.
pub fn tls_config(ca: Option<&Path>) -> ureq::tls::TlsConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = ureq::tls::TlsConfig::builder().unversioned_rustls_crypto_provider(provider);
    match ca {
        Some(ca) => {
            let pem = fs::read(ca).expect("read the CA file");
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            builder
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
                .build()
        }
        None => builder.disable_verification(true).build(),
    }
}

fn tls_agent(ca: &Path) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls_config(Some(ca)))
        .build()
        .into()
}

/// `GET url` over HTTPS, trusting only the PEM CA `ca`.
pub fn get_tls(url: &str, ca: &Path) -> Reply {
    reply(tls_agent(ca).get(url).call(), url)
}

/// `POST url` over HTTPS, trusting only the PEM CA `ca`.
pub fn post_tls(url: &str, body: &[u8], ca: &Path) -> Reply {
    reply(tls_agent(ca).post(url).send(body), url)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Reply {
    let mut response = result.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// An HTTP answer with its body as bytes (gzip, CSV, anything).
#[derive(Debug)]
pub struct RawReply {
    /// Status code.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body as received.
    pub body: Vec<u8>,
}

impl RawReply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Any request: `method url` with extra headers and a body (none when empty and not POST).
pub fn exchange(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawReply {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let sent = if body.is_empty() && method != "POST" {
        request.body(()).map(|r| agent().run(r))
    } else {
        request.body(body.to_vec()).map(|r| agent().run(r))
    };
    let mut response = sent
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
    RawReply {
        status: response.status().as_u16(),
        headers,
        body: bytes,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call(), url)
}

/// `HEAD url`.
pub fn head(url: &str) -> Reply {
    reply(agent().head(url).call(), url)
}

/// `POST url` with a raw body and extra headers.
pub fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send(body), url)
}

/// `POST url` with an `application/x-www-form-urlencoded` body.
pub fn post_form(url: &str, fields: &[(&str, &str)]) -> Reply {
    reply(agent().post(url).send_form(fields.iter().copied()), url)
}

/// Every row of every series in a query answer, as `[time, v1, ...]` arrays in answer order.
pub fn series_values(answer: &Value) -> Vec<Value> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// `n` points of measurement `m`, numbered from `first`, one second apart.
pub fn batch(m: &str, first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("{m},host=h{} v={i} {}\n", i % 7, (i + 1) * 1_000_000_000))
        .collect()
}

/// The single count in `SELECT count(v) FROM m`, or 0.
pub fn count(node: &Influxd, db: &str, m: &str) -> u64 {
    node.values(db, &format!("SELECT count(v) FROM {m}"))
        .first()
        .and_then(|row| row[1].as_u64())
        .unwrap_or(0)
}

/// Waits until every node of `cluster` holds `expected` points of `m` in `db`.
pub fn wait_for_count(cluster: &Cluster, db: &str, m: &str, expected: u64, limit: Duration) {
    for node in &cluster.nodes {
        assert!(
            eventually(limit, || count(node, db, m) == expected),
            "{} holds {} {m} points, expected {expected}",
            node.name,
            count(node, db, m)
        );
    }
}

/// Polls `check` every 50 ms until it returns true or `limit` passes; returns whether it did.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_ping(
    url: &str,
    child: Option<&mut Child>,
    log: &Path,
    what: &str,
) -> Result<(), String> {
    let Some(child) = child else { return Ok(()) };
    let ping = format!("{url}/ping");
    // Readiness only: the tests that use TLS check certificates themselves.
    let probe: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(1)))
        .tls_config(tls_config(None))
        .build()
        .into();
    let started = Instant::now();
    while started.elapsed() < STARTUP {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} exited with {status} before answering /ping:\n{log}"
            ));
        }
        if probe
            .get(&ping)
            .call()
            .is_ok_and(|r| r.status().as_u16() == 204)
        {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let log = fs::read_to_string(log).unwrap_or_default();
    Err(format!(
        "{what} did not answer {ping} within {STARTUP:?}:\n{log}"
    ))
}
