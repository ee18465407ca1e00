//! Model-based property test of the durable queue: random sequences of appends, acknowledgements,
//! dead-lettering, attempt updates and restarts (the store closed between append and
//! acknowledgement, then reopened) must leave the sled queue exactly like a plain in-memory model.
//! Crashes proper (SIGKILL of the gateway) are tested against real processes in `durability.rs`.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use influx_gateway::{
    line_protocol::TimeSpan,
    node::{
        queue::{NodeQueue, QueueError, QueueStore, Record},
        NodeWrite, Op, WriteTarget,
    },
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Action {
    Append(usize),
    AckHead(usize),
    DeadLetterHead,
    CountAttempt,
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        // Up to three 4 KiB chunks, so that records span several stored values.
        4 => (0usize..10_000).prop_map(Action::Append),
        2 => (1usize..4).prop_map(Action::AckHead),
        1 => Just(Action::DeadLetterHead),
        1 => Just(Action::CountAttempt),
        1 => Just(Action::Reopen),
    ]
}

/// What the queue should hold: `(seq, body, attempts)` oldest first, stored size of each.
#[derive(Default)]
struct Model {
    pending: VecDeque<(u64, Vec<u8>, u32, u64)>,
    dead: Vec<u64>,
    next_seq: u64,
}

const LIMIT: u64 = 48 * 1024;

/// Bytes the queue counts for a record of `op`: the stored (compressed) record, whose length
/// does not depend on when it was queued or how often it was tried.
fn stored_size(op: &Op) -> u64 {
    let record = Record {
        enqueued_at_ms: 0,
        attempts: 0,
        op: op.clone(),
    };
    record.encode().len() as u64
}

fn write(body: &[u8]) -> Op {
    Op::Write(NodeWrite {
        target: Arc::new(WriteTarget {
            query: "db=model".to_owned(),
            authorization: None,
        }),
        body: Bytes::copy_from_slice(body),
        span: TimeSpan::Unknown,
        points: 1,
        ends_cleanly: true,
    })
}

/// `len` bytes that do not compress (records are stored compressed), so that a record of
/// 10,000 bytes still spans three stored chunks.
fn body_of(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn open(dir: &std::path::Path) -> (QueueStore, NodeQueue) {
    // Within one process sled releases its file lock from background threads shortly after the
    // last handle is dropped, so a reopen right away may find it still held (a restarted gateway
    // is a new process and never does). Wait for it, boundedly.
    let started = std::time::Instant::now();
    let store = loop {
        match QueueStore::open(dir, 0) {
            Ok(store) => break store,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open store: {e:?}"),
        }
    };
    let queue = store.node("n1", LIMIT, u64::MAX).expect("open queue");
    (store, queue)
}

fn check(queue: &NodeQueue, model: &Model) -> Result<(), TestCaseError> {
    let head = queue.head(usize::MAX, u64::MAX).expect("read head");
    let seqs: Vec<u64> = head.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = model.pending.iter().map(|p| p.0).collect();
    prop_assert_eq!(&seqs, &expected, "order");
    for (entry, (_, body, attempts, _)) in head.iter().zip(&model.pending) {
        let record = Record::decode(&entry.raw).expect("decodes");
        let Op::Write(write) = record.op else {
            return Err(TestCaseError::fail("not a write"));
        };
        prop_assert_eq!(&write.body[..], &body[..]);
        prop_assert_eq!(record.attempts, *attempts);
    }
    let stats = queue.stats();
    prop_assert_eq!(stats.entries, model.pending.len() as u64);
    prop_assert_eq!(stats.bytes, model.pending.iter().map(|p| p.3).sum::<u64>());
    prop_assert!(stats.bytes <= LIMIT);
    prop_assert_eq!(queue.is_empty(), model.pending.is_empty());
    let dead: Vec<u64> = queue
        .dead_letters()
        .expect("dead letters")
        .iter()
        .map(|d| d.0)
        .collect();
    prop_assert_eq!(&dead, &model.dead);
    prop_assert_eq!(stats.dead_letters, model.dead.len() as u64);
    // A dead letter is a copy the node never got: flagged at the first, and across reopens.
    prop_assert_eq!(stats.needs_resync, !model.dead.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_queue_behaves_like_its_model(actions in proptest::collection::vec(action(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut queue) = open(dir.path());
        let mut model = Model::default();
        for action in actions {
            match action {
                Action::Append(len) => {
                    let seq = model.next_seq;
                    model.next_seq += 1;
                    let body = body_of(seq, len);
                    let op = write(&body);
                    let size = stored_size(&op);
                    let queued: u64 = model.pending.iter().map(|p| p.3).sum();
                    match queue.append(seq, &op) {
                        Ok(ticket) => {
                            prop_assert!(queued + size <= LIMIT, "accepted beyond the limit");
                            runtime.block_on(queue.durable(ticket)).expect("flushed");
                            model.pending.push_back((seq, body, 0, size));
                        }
                        Err(QueueError::Full { bytes, limit }) => {
                            prop_assert_eq!((bytes, limit), (queued, LIMIT));
                            prop_assert!(queued + size > LIMIT, "refused below the limit");
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Action::AckHead(n) => {
                    let head = queue.head(n, u64::MAX).unwrap();
                    queue.remove(head.iter().map(|e| e.seq)).unwrap();
                    for _ in 0..head.len() {
                        model.pending.pop_front();
                    }
                }
                Action::DeadLetterHead => {
                    if let Some(entry) = queue.head(1, u64::MAX).unwrap().pop() {
                        queue.dead_letter(&entry, "model says so").unwrap();
                        let (seq, ..) = model.pending.pop_front().unwrap();
                        model.dead.push(seq);
                    }
                }
                Action::CountAttempt => {
                    if let Some(entry) = queue.head(1, u64::MAX).unwrap().pop() {
                        let attempts = model.pending[0].2 + 1;
                        queue.set_attempts(&entry, attempts).unwrap();
                        model.pending[0].2 = attempts;
                    }
                }
                Action::Reopen => {
                    // Whatever was appended but not acknowledged must come back, in order.
                    drop(queue);
                    store.close().unwrap();
                    drop(store);
                    (store, queue) = open(dir.path());
                    // Numbering resumes above every key still stored, so new entries sort last.
                    let next = queue.next_seq().unwrap();
                    let stored = model.pending.iter().map(|p| p.0).chain(model.dead.iter().copied());
                    prop_assert!(stored.into_iter().all(|seq| seq < next));
                    model.next_seq = next;
                }
            }
            check(&queue, &model)?;
        }
    }
}
