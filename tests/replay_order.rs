//! Per-node order across a failure: writes that failed on the wire go to disk before a replay may
//! read the queue's head, so an entry queued earlier under a newer number is never merged into a
//! batch ahead of them.
//!
//! The node here is a scripted fake, because the fault is one a real influxd cannot produce on
//! demand: it holds a coalesced write, fails its health probes meanwhile (so that a newer write
//! is queued while the older ones are on the wire), then answers the held write 500.

mod common;

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::Duration,
};

use common::{eventually, Gateway};

/// The fake node's script and what it received.
#[derive(Default)]
struct Script {
    ping_ok: AtomicBool,
    released: Mutex<bool>,
    release: Condvar,
    bodies: Mutex<Vec<String>>,
}

impl Script {
    fn answer(&self, request_line: &str, body: &[u8]) -> String {
        const OK: &str =
            "HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\nContent-Length: 0\r\n\r\n";
        const FAILED: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"error\":\"injected\"}";
        if request_line.starts_with("GET /ping") {
            return if self.ping_ok.load(Ordering::SeqCst) {
                OK
            } else {
                FAILED
            }
            .to_owned();
        }
        let first = {
            let mut bodies = self.bodies.lock().expect("bodies");
            bodies.push(String::from_utf8_lossy(body).into_owned());
            bodies.len() == 1
        };
        if !first {
            return OK.to_owned();
        }
        // The first write is held until the test has a newer one queued, then fails.
        let mut released = self.released.lock().expect("released");
        while !*released {
            released = self.release.wait(released).expect("released");
        }
        FAILED.to_owned()
    }

    fn release(&self) {
        *self.released.lock().expect("released") = true;
        self.release.notify_all();
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("bodies").clone()
    }
}

/// Starts the fake node on a free loopback port; it lives until the test process ends.
fn scripted_node() -> (String, Arc<Script>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake node");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let script = Arc::new(Script::default());
    script.ping_ok.store(true, Ordering::SeqCst);
    let shared = Arc::clone(&script);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let script = Arc::clone(&shared);
            thread::spawn(move || {
                common::serve_requests(stream, |line, body| script.answer(line, body))
            });
        }
    });
    (url, script)
}

#[test]
fn writes_that_failed_on_the_wire_are_replayed_before_newer_queued_ones() {
    let (url, node) = scripted_node();
    let gateway = Gateway::start_urls(
        &[("influx1", url)],
        "health:\n  interval: 100ms\n  timeout: 100ms\nwrite:\n  batch:\n    max_delay: 1s\n",
    );
    let gw = gateway.url();
    // Three values of one point: whatever happens, the node must end with the last.
    let write = |value: u32| {
        let gw = gw.clone();
        thread::spawn(move || {
            common::post(
                &format!("{gw}/write?db=db&consistency=any"),
                format!("cpu v={value} 1000000000\n").as_bytes(),
                &[],
            )
        })
    };

    // 1 and 2 wait together for `write.batch.max_delay` and go as one request, which is held.
    let first = write(1);
    thread::sleep(Duration::from_millis(100));
    let second = write(2);
    assert!(
        eventually(Duration::from_secs(10), || !node.bodies().is_empty()),
        "the first request never reached the node"
    );
    let held = &node.bodies()[0];
    assert!(
        held.contains("v=1") && held.contains("v=2"),
        "1 and 2 were not sent as one request: {held:?}"
    );

    // The node stops answering its probes: 3 goes to disk while 1 and 2 are on the wire.
    node.ping_ok.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(10), || gateway.node_state("influx1")
            == "down"),
        "{}",
        gateway.health().1
    );
    let third = write(3).join().expect("third writer");
    assert_eq!(third.status, 204, "{}", third.body);

    // The held request fails: 1 and 2 go to disk under their own (older) numbers, then replay.
    node.ping_ok.store(true, Ordering::SeqCst);
    node.release();
    for writer in [first, second] {
        let reply = writer.join().expect("writer");
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    assert!(
        eventually(Duration::from_secs(20), || gateway.node_health("influx1")
            ["queue"]["entries"]
            == 0),
        "{}",
        gateway.node_health("influx1")
    );

    // After the failed request, the node got 1, 2 and 3 in that order, however they were batched.
    let replayed: Vec<String> = node.bodies()[1..]
        .iter()
        .flat_map(|body| body.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(
        replayed,
        [
            "cpu v=1 1000000000",
            "cpu v=2 1000000000",
            "cpu v=3 1000000000"
        ],
        "replayed bodies: {:?}",
        &node.bodies()[1..]
    );
}
