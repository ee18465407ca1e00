//! Dead letters an operator can act on: listed with what they hold, put back in the node's order,
//! purged, and bounded by `queue.max_dead_letter_bytes` (oldest dropped first, counted).
//!
//! A letter is stored under its sequence number as `reason length, reason, record`, the record as
//! the queue stored it, so that it decodes to the very operation the node refused.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{key_seq, now_ms, record::Record, NodeQueue, QueueError};
use crate::node::Op;

/// Lines of a write shown per letter.
const SHOWN_LINES: usize = 3;
/// Longest line shown, in bytes.
const SHOWN_LINE_BYTES: usize = 200;

/// What `GET /cluster/nodes/NAME/dead-letters` shows of one letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its sequence number in the node's order.
    pub seq: u64,
    /// Why the node did not get it.
    pub reason: String,
    /// `write` or `mutation`.
    pub kind: &'static str,
    /// Bytes stored.
    pub bytes: u64,
    /// Seconds since it was first queued.
    pub age_seconds: Option<u64>,
    /// `db`, `rp`, `precision` of a write; the query string of a mutation.
    pub target: String,
    /// Points of a write.
    pub points: u64,
    /// Its first lines (a write's line protocol, a mutation's body).
    pub first_lines: Vec<String>,
}

/// One letter decoded, for replay.
pub struct Letter {
    /// Its key.
    pub seq: u64,
    /// The operation the node did not get.
    pub op: Op,
}

/// Splits a stored letter into its reason and its record.
fn split(value: &[u8]) -> (String, &[u8]) {
    let len = value
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let reason = value
        .get(4..4 + len)
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    (reason, value.get(4 + len..).unwrap_or_default())
}

impl NodeQueue {
    /// Dead letters: `(seq, reason)` of each, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<(u64, String)>, QueueError> {
        let mut letters = Vec::new();
        for item in self.inner.dead.iter() {
            let (key, value) = item?;
            letters.push((key_seq(&key), split(&value).0));
        }
        Ok(letters)
    }

    /// The first `limit` dead letters, oldest first, described; and how many there are.
    pub fn describe_dead_letters(
        &self,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, u64), QueueError> {
        let mut shown = Vec::new();
        for item in self.inner.dead.iter().take(limit) {
            let (key, value) = item?;
            let (reason, raw) = split(&value);
            let mut letter = DeadLetter {
                seq: key_seq(&key),
                reason,
                kind: "unreadable",
                bytes: value.len() as u64,
                age_seconds: super::record::enqueued_at_ms(raw)
                    .map(|at| now_ms().saturating_sub(at) / 1000),
                target: String::new(),
                points: 0,
                first_lines: Vec::new(),
            };
            match Record::decode(raw).map(|r| r.op) {
                Ok(Op::Write(write)) => {
                    letter.kind = "write";
                    letter.target = write.target.query.clone();
                    letter.points = write.points;
                    letter.first_lines = first_lines(&write.body);
                }
                Ok(Op::Mutation(query)) => {
                    letter.kind = "mutation";
                    letter.target = query.query_string.clone();
                    letter.first_lines = first_lines(&query.body);
                }
                Err(e) => letter.reason.push_str(&format!(" ({e})")),
            }
            shown.push(letter);
        }
        Ok((shown, self.inner.dead_held.load(Ordering::Acquire)))
    }

    /// Up to `limit` dead letters after `after` (from the oldest when `None`), oldest first, for
    /// replay, with the key of the last one looked at; unreadable ones are left where they are
    /// and counted.
    pub fn dead_letter_ops(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Letter>, Option<u64>, u64), QueueError> {
        let (mut letters, mut last, mut unreadable) = (Vec::new(), None, 0);
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        for item in self.inner.dead.range(start.to_be_bytes()..).take(limit) {
            let (key, value) = item?;
            let seq = key_seq(&key);
            last = Some(seq);
            match Record::decode(split(&value).1) {
                Ok(record) => letters.push(Letter { seq, op: record.op }),
                Err(_) => unreadable += 1,
            }
        }
        Ok((letters, last, unreadable))
    }

    /// Removes dead letter `seq` (replayed or purged).
    pub fn remove_dead_letter(&self, seq: u64) -> Result<bool, QueueError> {
        let removed = self.inner.dead.remove(seq.to_be_bytes())?;
        if let Some(value) = &removed {
            self.inner
                .dead_bytes
                .fetch_sub(value.len() as u64, Ordering::AcqRel);
            self.inner.dead_held.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(removed.is_some())
    }

    /// Removes every dead letter; returns how many. The node stays flagged `needs_resync`: what
    /// they held is still missing there.
    pub fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        let mut purged = 0;
        for item in self.inner.dead.iter() {
            let (key, _) = item?;
            if self.remove_dead_letter(key_seq(&key))? {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Counts a letter just stored and drops the oldest while they hold more than
    /// `queue.max_dead_letter_bytes`.
    pub(super) fn stored_dead_letter(&self, bytes: u64) {
        self.inner.dead_held.fetch_add(1, Ordering::AcqRel);
        let held = self.inner.dead_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if held <= self.inner.max_dead_letter_bytes {
            return;
        }
        let mut dropped = 0;
        while self.inner.dead_bytes.load(Ordering::Acquire) > self.inner.max_dead_letter_bytes {
            let oldest = match self.inner.dead.first() {
                Ok(Some((key, _))) => key_seq(&key),
                _ => break,
            };
            match self.remove_dead_letter(oldest) {
                Ok(true) => dropped += 1,
                _ => break,
            }
        }
        if dropped > 0 {
            self.inner
                .dead_letters_dropped
                .fetch_add(dropped, Ordering::AcqRel);
            log::error!(
                "node {}: {dropped} oldest dead letters dropped (queue.max_dead_letter_bytes); what they held is for a repair to copy",
                self.inner.name
            );
        }
    }
}

fn first_lines(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .take(SHOWN_LINES)
        .map(|line| String::from_utf8_lossy(&line[..line.len().min(SHOWN_LINE_BYTES)]).into_owned())
        .collect()
}
