//! What the operator forbids does not pass: the `query.deny` statement filter, against real influxd.

mod common;

use common::Cluster;

fn users(cluster: &Cluster) -> Vec<Vec<serde_json::Value>> {
    cluster
        .nodes
        .iter()
        .map(|node| common::series_values(&node.query("", "SHOW USERS")))
        .collect()
}

#[test]
fn denied_statements_never_reach_a_node() {
    let cluster = Cluster::start(2, "");
    for q in [
        "CREATE USER bob WITH PASSWORD 'x'",
        "SHOW DATABASES; /* quiet */ create   user bob with password 'x'",
    ] {
        let reply = cluster.gateway.query("", q);
        assert_eq!(reply.status, 403, "{q}: {}", reply.body);
        assert!(
            reply
                .error()
                .ends_with("is refused by the gateway's query.deny rule \"CREATE USER\""),
            "{}",
            reply.body
        );
        assert!(reply.header("x-influxdb-error").is_some());
    }
    // A `q` the gateway cannot read cannot be checked: refused.
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nCREATE USER eve WITH PASSWORD 'x'\r\n--XyZ--\r\n";
    let reply = common::post(
        &format!("{}/query", cluster.gateway.url()),
        multipart.as_bytes(),
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply
        .error()
        .starts_with("the gateway cannot check this query against query.deny"));
    assert!(
        users(&cluster).iter().all(Vec::is_empty),
        "no node saw any of it"
    );
    // What is not denied still works.
    cluster.gateway.query_ok("", "CREATE DATABASE people");
}

#[test]
fn an_empty_deny_list_lets_user_management_through_to_every_node() {
    let cluster = Cluster::start(2, "query:\n  deny: []\n");
    cluster
        .gateway
        .query_ok("", "CREATE USER bob WITH PASSWORD 'x'");
    for list in users(&cluster) {
        assert_eq!(list, vec![serde_json::json!(["bob", false])]);
    }
}

fn hash_with_the_cli(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_influx-gateway"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run influx-gateway hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write the password");
    let output = child.wait_with_output().expect("hash-password finishes");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("a hash is text")
        .trim()
        .to_owned()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn databases(cluster: &Cluster) -> Vec<Vec<serde_json::Value>> {
    cluster
        .nodes
        .iter()
        .map(|node| common::series_values(&node.query("", "SHOW DATABASES")))
        .collect()
}

#[test]
fn gateway_users_are_checked_before_any_node_is_asked() {
    let admin = hash_with_the_cli("adm1n pass");
    let reader = bcrypt::hash("r3ad", 4).expect("bcrypt");
    let writer = hash_with_the_cli("wr1te");
    let cluster = Cluster::start(
        2,
        &format!(
            "auth:\n  enabled: true\n  users:\n    - {{name: root, password_hash: '{admin}', admin: true}}\n    - {{name: grafana, password_hash: '{reader}', read: [app]}}\n    - {{name: telegraf, password_hash: '{writer}', read: [app], write: [app]}}\n"
        ),
    );
    let gw = cluster.gateway.url();
    let create = |creds: &str| {
        common::post(
            &format!("{gw}/query?q=CREATE+DATABASE+app{creds}"),
            b"",
            &[],
        )
    };

    // Nobody, or a wrong password: 401 in InfluxDB's words, and no node saw anything.
    let reply = create("");
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.error(), "unable to parse authentication credentials");
    let reply = create("&u=root&p=wrong");
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.error(), "authorization failed");
    let reply = create("&u=grafana&p=r3ad");
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(databases(&cluster).iter().all(Vec::is_empty));
    // /ping stays open, as on influxd.
    assert_eq!(common::get(&format!("{gw}/ping")).status, 204);

    let reply = create("&u=root&p=adm1n+pass");
    assert_eq!(reply.status, 200, "{}", reply.body);
    for list in databases(&cluster) {
        assert_eq!(list, vec![serde_json::json!(["app"])]);
    }

    // Writes: the right per database, through both write APIs and every credential form.
    let telegraf = basic("telegraf", "wr1te");
    let reply = common::post(
        &format!("{gw}/write?db=app"),
        b"cpu v=1 1",
        &[("Authorization", telegraf.as_str())],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = common::post(
        &format!("{gw}/api/v2/write?bucket=app/autogen&org=x&precision=s"),
        b"cpu v=2 2",
        &[("Authorization", "Token telegraf:wr1te")],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = common::post(
        &format!("{gw}/api/v2/write?bucket=app&precision=s"),
        b"cpu v=3 3",
        &[("Authorization", "Token telegraf:nope")],
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    let reply = common::post(
        &format!("{gw}/write?db=app&u=grafana&p=r3ad"),
        b"cpu v=4 4",
        &[],
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.error().contains("may not write to database \"app\""));

    // Reads: grafana reads app, and nothing else.
    let grafana = basic("grafana", "r3ad");
    let read = |q: &str| {
        common::post(
            &format!("{gw}/query?db=app"),
            format!("q={}", urlencode(q)).as_bytes(),
            &[
                ("Authorization", grafana.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        )
    };
    let reply = read("SELECT v FROM cpu");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        common::series_values(&reply.json()),
        vec![
            serde_json::json!(["1970-01-01T00:00:00.000000001Z", 1]),
            serde_json::json!(["1970-01-01T00:00:02Z", 2])
        ]
    );
    for denied in [
        "SELECT * FROM other..cpu",
        "SELECT v FROM cpu; DROP MEASUREMENT cpu",
        "SHOW USERS",
    ] {
        let reply = read(denied);
        assert_eq!(reply.status, 403, "{denied}: {}", reply.body);
    }
    for node in &cluster.nodes {
        assert_eq!(
            node.values("app", "SELECT count(v) FROM cpu"),
            vec![serde_json::json!(["1970-01-01T00:00:00Z", 2])]
        );
    }

    // The gateway's internals are for admins.
    let vars = |creds: &str| common::get(&format!("{gw}/debug/vars{creds}")).status;
    assert_eq!(vars(""), 401);
    assert_eq!(vars("?u=grafana&p=r3ad"), 403);
    assert_eq!(vars("?u=root&p=adm1n+pass"), 200);
    // And so are jobs and dead letters.
    for path in ["/cluster/jobs", "/cluster/nodes/influx1/dead-letters"] {
        let get = |creds: &str| common::get(&format!("{gw}{path}{creds}")).status;
        assert_eq!(get(""), 401, "{path}");
        assert_eq!(get("?u=grafana&p=r3ad"), 403, "{path}");
        assert_eq!(get("?u=root&p=adm1n+pass"), 200, "{path}");
    }
    let start = |creds: &str| common::post(&format!("{gw}/cluster/verify{creds}"), b"", &[]).status;
    assert_eq!(start(""), 401);
    assert_eq!(start("?u=telegraf&p=wr1te"), 403);
    // Maintenance too: refused before anything changes.
    for action in ["drain", "resume", "flush", "rebalance"] {
        let path = if action == "rebalance" {
            format!("{gw}/cluster/rebalance")
        } else {
            format!("{gw}/cluster/nodes/influx1/{action}")
        };
        let post = |creds: &str| common::post(&format!("{path}{creds}"), b"", &[]).status;
        assert_eq!(post(""), 401, "{path}");
        assert_eq!(post("?u=grafana&p=r3ad"), 403, "{path}");
    }
    let health = common::get(&format!("{gw}/health")).json();
    assert_eq!(health["nodes"][0]["mode"], "direct", "{health}");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn limits_refuse_with_influxdb_shaped_answers() {
    // A black hole stands in for a node that never answers: the one fault a real influxd cannot
    // produce on demand. It keeps two reads under way for the per-client limit to bite.
    let hole = common::black_hole();
    let gateway = common::Gateway::start_urls(
        &[("hole", hole)],
        "query:\n  timeout: 4s\nlimits:\n  max_statements: 3\n  max_concurrent_requests_per_client: 2\n  max_header_size: 1KiB\n",
    );
    let gw = gateway.url();

    let reply = gateway.query(
        "db",
        "SHOW DATABASES; SHOW DATABASES; SHOW DATABASES; SHOW DATABASES",
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.error().contains("at most 3 statements"),
        "{}",
        reply.body
    );

    let big = "x".repeat(2000);
    let reply = common::exchange(
        "GET",
        &format!("{gw}/query?q=SHOW+DATABASES"),
        &[("X-Padding", &big)],
        b"",
    );
    assert_eq!(reply.status, 431);
    assert!(String::from_utf8_lossy(&reply.body).contains("limits.max_header_size"));

    let queries_seen = || {
        let vars = common::get(&format!("{gw}/debug/vars"));
        vars.json()["gateway_http:endpoint=/query"]["values"]["req"]
            .as_u64()
            .unwrap_or_else(|| panic!("no /query counter in {}", vars.body))
    };
    let before = queries_seen();
    let hanging: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{gw}/query?db=db&q=SELECT+*+FROM+cpu");
            std::thread::spawn(move || common::get(&url).status)
        })
        .collect();
    assert!(common::eventually(
        std::time::Duration::from_secs(3),
        || { queries_seen() == before + 2 }
    ));
    let reply = common::get(&format!("{gw}/query?db=db&q=SELECT+*+FROM+mem"));
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply
        .error()
        .contains("limits.max_concurrent_requests_per_client"));
    // A load balancer still sees the gateway alive.
    assert_eq!(common::get(&format!("{gw}/ping")).status, 204);
    for request in hanging {
        assert_eq!(request.join().expect("request thread"), 503);
    }
    // The slots were given back.
    assert_eq!(
        common::get(&format!("{gw}/query?q=SHOW+DATABASES")).status,
        503,
        "refused by the black hole's timeout, not by the limit"
    );
}

#[test]
fn credentials_pass_through_to_nodes_that_require_them_or_are_replaced_by_node_credentials() {
    let nodes: Vec<common::Influxd> = (1..=2)
        .map(|i| common::Influxd::start_with_auth(&format!("locked{i}")))
        .collect();
    let refs: Vec<&common::Influxd> = nodes.iter().collect();

    // Without gateway users the nodes decide, and their refusal reaches the client as they said it.
    let open = common::Gateway::start(&refs, "");
    let gw = open.url();
    let reply = common::post(&format!("{gw}/query?q=CREATE+DATABASE+a"), b"", &[]);
    assert_eq!(reply.status, 401, "{}", reply.body);
    let reply = common::post(
        &format!("{gw}/query?q=CREATE+DATABASE+a&u=admin&p=admin-pw"),
        b"",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let admin = basic("admin", "admin-pw");
    let reply = common::post(
        &format!("{gw}/write?db=a"),
        b"m v=1 1",
        &[("Authorization", admin.as_str())],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = common::post(&format!("{gw}/write?db=a&u=admin&p=wrong"), b"m v=2 2", &[]);
    assert_eq!(reply.status, 401, "{}", reply.body);
    drop(open);

    // With gateway users, the client's credentials are the gateway's; the nodes get
    // node_credentials instead.
    let hash = bcrypt::hash("app-pw", 4).expect("bcrypt");
    let own = common::Gateway::start(
        &refs,
        &format!(
            "auth:\n  enabled: true\n  users:\n    - {{name: app, password_hash: '{hash}', read: [a], write: [a]}}\n  node_credentials: {{username: admin, password: admin-pw}}\n"
        ),
    );
    let gw = own.url();
    let reply = common::post(&format!("{gw}/write?db=a&u=app&p=app-pw"), b"m v=3 3", &[]);
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = common::get(&format!(
        "{gw}/query?db=a&u=app&p=app-pw&q=SELECT+count(v)+FROM+m"
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        common::series_values(&reply.json()),
        vec![serde_json::json!(["1970-01-01T00:00:00Z", 2])]
    );
    for node in &nodes {
        assert_eq!(
            node.values("a", "SELECT count(v) FROM m"),
            vec![serde_json::json!(["1970-01-01T00:00:00Z", 2])]
        );
    }
}

/// Password hashing never runs on an HTTP worker's event loop: while wrong passwords are checked
/// against a costly bcrypt hash on every worker at once, `/ping` keeps answering. Bounded by what
/// one check costs on this machine, measured first, so that a loaded machine cannot fail it.
#[test]
fn slow_password_checks_do_not_stall_other_requests() {
    use std::time::{Duration, Instant};

    let hash = bcrypt::hash("right", 11).expect("bcrypt");
    let cluster = Cluster::start(
        1,
        &format!(
            "auth:\n  enabled: true\n  users:\n    - {{name: slow, password_hash: '{hash}'}}\n"
        ),
    );
    let gw = cluster.gateway.url();
    let login = move |i: usize| {
        let reply = common::get(&format!("{gw}/query?q=SHOW+DATABASES&u=slow&p=wrong{i}"));
        assert_eq!(reply.status, 401, "{}", reply.body);
    };
    let started = Instant::now();
    login(0);
    let one_check = started.elapsed();

    // Wrong passwords are never cached: each of these hashes again, two per worker.
    let logins: Vec<_> = (1..=4)
        .map(|i| {
            let login = login.clone();
            std::thread::spawn(move || login(i))
        })
        .collect();
    let gw = cluster.gateway.url();
    let mut slowest = Duration::ZERO;
    let mut pings = 0;
    while !logins.iter().all(|t| t.is_finished()) && pings < 200 {
        let sent = Instant::now();
        assert_eq!(common::get(&format!("{gw}/ping")).status, 204);
        slowest = slowest.max(sent.elapsed());
        pings += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    for login in logins {
        login.join().expect("login thread");
    }
    assert!(pings >= 3, "{pings} pings during the checks");
    assert!(
        slowest < one_check / 4,
        "a /ping waited {slowest:?} while passwords were checked (one check: {one_check:?})"
    );
}
