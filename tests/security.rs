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
    let reply = cluster.gateway.query("", "CREATE DATABASE people");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn an_empty_deny_list_lets_user_management_through_to_every_node() {
    let cluster = Cluster::start(2, "query:\n  deny: []\n");
    let reply = cluster
        .gateway
        .query("", "CREATE USER bob WITH PASSWORD 'x'");
    assert_eq!(reply.status, 200, "{}", reply.body);
    for list in users(&cluster) {
        assert_eq!(list, vec![serde_json::json!(["bob", false])]);
    }
}
