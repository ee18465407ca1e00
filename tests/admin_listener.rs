//! `admin.listen`: the admin API (`/cluster/...`, `/debug/vars`, `/metrics`, the status page) only
//! on its own listener, the main one answering 404 for it; with gateway users, an admin is needed
//! on whichever listener; a port shared with `listen` is a configuration error.

mod common;

use common::{free_port, get, post, Gateway, Influxd};

fn status(url: &str) -> u16 {
    get(url).status
}

#[test]
fn the_admin_api_is_served_on_its_own_listener_only() {
    let node = Influxd::start("influx1");
    let port = free_port();
    let gateway = Gateway::start(
        &[&node],
        &format!("admin:\n  listen: \"127.0.0.1:{port}\"\n"),
    );
    let (main, admin) = (gateway.url(), format!("http://127.0.0.1:{port}"));

    for path in [
        "/cluster/jobs",
        "/metrics",
        "/debug/vars",
        "/",
        "/cluster/nodes/influx1/dead-letters",
    ] {
        let reply = get(&format!("{main}{path}"));
        assert_eq!(reply.status, 404, "{path} on the main listener");
        assert_eq!(reply.body, "404 page not found\n", "{path}");
        assert_eq!(
            status(&format!("{admin}{path}")),
            200,
            "{path} on the admin listener"
        );
    }
    let drain = post(&format!("{main}/cluster/nodes/influx1/drain"), b"", &[]);
    assert_eq!(drain.status, 404, "{}", drain.body);
    // Judged as routing reads the path: escapes do not disguise one.
    let disguised = post(&format!("{main}/%63luster/nodes/influx1/drain"), b"", &[]);
    assert_eq!(disguised.status, 404, "{}", disguised.body);
    assert_eq!(status(&format!("{main}/%64ebug/vars")), 404);
    assert_eq!(gateway.node_health("influx1")["mode"], "direct");

    // The main listener serves clients as ever; the admin one only the admin API and probes.
    gateway.query_ok("", "CREATE DATABASE x");
    gateway.write_ok("db=x", "m v=1 1");
    for url in [&main, &admin] {
        assert_eq!(status(&format!("{url}/ping")), 204, "{url}");
        assert_eq!(status(&format!("{url}/health")), 200, "{url}");
    }
    assert_eq!(status(&format!("{main}/query?q=SHOW+DATABASES")), 200);
    assert_eq!(status(&format!("{admin}/query?q=SHOW+DATABASES")), 404);
    assert_eq!(status(&format!("{admin}/%71uery?q=SHOW+DATABASES")), 404);
    let write = post(&format!("{admin}/write?db=x"), b"m v=2 2", &[]);
    assert_eq!(write.status, 404, "{}", write.body);
    assert!(gateway
        .log()
        .contains(&format!("listening on http://127.0.0.1:{port} (admin API)")));
}

#[test]
fn with_gateway_users_every_admin_endpoint_needs_an_admin_on_either_listener() {
    let node = Influxd::start("influx1");
    let root = bcrypt::hash("adm1n", 4).expect("bcrypt");
    let reader = bcrypt::hash("r3ad", 4).expect("bcrypt");
    let users = format!(
        "auth:\n  enabled: true\n  users:\n    - {{name: root, password_hash: '{root}', admin: true}}\n    - {{name: grafana, password_hash: '{reader}', read: [x]}}\n"
    );
    // On the main listener, and on an admin listener of its own.
    let port = free_port();
    let together = Gateway::start(&[&node], &users);
    let apart = Gateway::start(
        &[&node],
        &format!("{users}admin:\n  listen: \"127.0.0.1:{port}\"\n"),
    );
    for base in [together.url(), format!("http://127.0.0.1:{port}")] {
        for path in ["/cluster/jobs", "/metrics", "/debug/vars", "/"] {
            let url = |creds: &str| format!("{base}{path}{creds}");
            assert_eq!(status(&url("")), 401, "{base}{path}");
            assert_eq!(status(&url("?u=grafana&p=r3ad")), 403, "{base}{path}");
            assert_eq!(status(&url("?u=root&p=adm1n")), 200, "{base}{path}");
        }
        // A browser without credentials is asked for them.
        let page = get(&format!("{base}/"));
        assert_eq!(
            page.header("www-authenticate"),
            Some("Basic realm=\"influx-gateway\""),
            "{page:?}"
        );
        let drain = post(
            &format!("{base}/cluster/nodes/influx1/drain?u=grafana&p=r3ad"),
            b"",
            &[],
        );
        assert_eq!(drain.status, 403, "{}", drain.body);
    }
    assert_eq!(apart.node_health("influx1")["mode"], "direct");
}
