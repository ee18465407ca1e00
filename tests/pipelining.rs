//! Writes that cannot overwrite each other go to a node together (`write.max_in_flight`, default
//! 8); writes that could, go one after the other in the order the gateway accepted them.
//!
//! The node here is a fake that answers each write only after a delay — a slow answer on demand is
//! the fault a real influxd cannot give — and counts how many writes it holds at once. That the
//! order holds on real nodes is checked in `tests/coalescing.rs` (rewrites of one point) and
//! `tests/durability.rs` (the relay's overwrite caveat) under the same default.

mod common;

use std::{thread, time::Duration};

use common::{Gateway, SlowNode};

const DELAY: Duration = Duration::from_millis(800);

/// Posts each body to a gateway in front of a fresh slow node, each from its own thread, `gap`
/// after the one before; waits for every answer (each must be 204) and returns the node.
fn write_from_clients(bodies: Vec<String>, gap: Duration) -> SlowNode {
    let node = SlowNode::start(DELAY);
    let gateway = Gateway::start_urls(&[("slow", node.url.clone())], "");
    let clients: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let url = format!("{}/write?db=p", gateway.url());
            let start = gap * i as u32;
            thread::spawn(move || {
                thread::sleep(start);
                (body.clone(), common::post(&url, body.as_bytes(), &[]))
            })
        })
        .collect();
    for client in clients {
        let (body, reply) = client.join().expect("client thread");
        assert_eq!(reply.status, 204, "{body:?}: {}", reply.body);
    }
    node
}

/// Every line the node received, in arrival order.
fn lines(node: &SlowNode) -> Vec<String> {
    node.bodies()
        .iter()
        .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn writes_with_disjoint_time_spans_are_on_the_wire_together() {
    let bodies = (1..=4)
        .map(|i| format!("cpu v={i} {i}000000000\n"))
        .collect();
    let node = write_from_clients(bodies, Duration::ZERO);
    assert!(
        node.most_at_once() >= 3,
        "4 writes of 4 different seconds: at most {} on the wire at once",
        node.most_at_once()
    );
    assert_eq!(lines(&node).len(), 4);
}

#[test]
fn writes_that_could_overwrite_each_other_go_one_at_a_time() {
    let cases = [
        // The same point, rewritten by five clients at once.
        (
            "the same timestamp",
            (1..=5)
                .map(|i| format!("cpu v={i} 1000000000\n"))
                .collect::<Vec<_>>(),
        ),
        // Points influxd stamps on arrival: their time depends on the order.
        (
            "no timestamp",
            (1..=4).map(|i| format!("cpu v={i}\n")).collect(),
        ),
    ];
    for (what, bodies) in cases {
        let count = bodies.len();
        let node = write_from_clients(bodies, Duration::ZERO);
        assert_eq!(
            node.most_at_once(),
            1,
            "{what}: several on the wire together"
        );
        assert_eq!(lines(&node).len(), count, "{what}");
        // The first goes at once; the others, which could only wait for each other, go together.
        assert_eq!(node.bodies().len(), 2, "{what}: {:?}", node.bodies());
    }
}

#[test]
fn a_write_that_overlaps_one_on_the_wire_waits_for_it_and_keeps_its_place() {
    // `first` is on the wire; `beside` commutes with it and joins it; `after` rewrites a point of
    // `first`, so it waits until the node has answered `first`.
    let first = "cpu v=1 5000000000\ncpu v=1 6000000000".to_owned();
    let beside = "cpu v=2 9000000000".to_owned();
    let after = "cpu v=3 5000000000".to_owned();
    let node = write_from_clients(vec![first, beside, after], Duration::from_millis(200));
    assert_eq!(
        lines(&node),
        [
            "cpu v=1 5000000000",
            "cpu v=1 6000000000",
            "cpu v=2 9000000000",
            "cpu v=3 5000000000"
        ]
    );
    assert_eq!(node.most_at_once(), 2);
}
