//! `SHOW QUERIES` and `KILL QUERY` through the gateway against real influxd: every node's queries
//! are listed, each id made the gateway's by the node's place, and a `KILL QUERY` of an id is sent
//! to the node owning it; an id nobody owns gets influxd's own error.

mod common;

use common::Cluster;

#[test]
fn show_queries_lists_every_node_and_kill_query_goes_to_the_owner() {
    let cluster = Cluster::start(3, "");
    let reply = cluster.gateway.query_ok("", "SHOW QUERIES");
    let answer = reply.json();
    let series = &answer["results"][0]["series"][0];
    assert_eq!(
        series["columns"],
        serde_json::json!(["qid", "query", "database", "duration", "status"]),
        "{answer}"
    );
    let ids: Vec<u64> = series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_u64().unwrap())
        .collect();
    // Each node lists the SHOW QUERIES it was running, under an id naming it.
    let owners: Vec<u64> = ids.iter().map(|id| id / 1_000_000_000_000).collect();
    assert_eq!(owners, [1, 2, 3], "{answer}");

    // That query has ended on influx2: the owner says so, in the gateway's id.
    let id = ids[1];
    let reply = cluster.gateway.query_ok("", &format!("KILL QUERY {id}"));
    assert_eq!(
        reply.json()["results"][0]["error"],
        format!("no such query id: {id}"),
        "{}",
        reply.body
    );
    // An id no node could have made: influxd's own answer.
    let reply = cluster.gateway.query_ok("", "KILL QUERY 7");
    assert_eq!(
        reply.json()["results"][0]["error"],
        "no such query id: 7",
        "{}",
        reply.body
    );
    let reply = cluster.gateway.query_ok("", "KILL QUERY 9000000000001");
    assert_eq!(
        reply.json()["results"][0]["error"],
        "no such query id: 9000000000001"
    );

    // With a node down, the others' queries are listed and the answer says whose are missing.
    let mut cluster = cluster;
    cluster.nodes[2].kill();
    let answer = cluster.gateway.query_ok("", "SHOW QUERIES").json();
    assert_eq!(
        answer["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        answer["results"][0]["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("influx3"),
        "{answer}"
    );
}
