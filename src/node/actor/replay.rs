//! Replay: the node's backlog sent oldest first, merged where entries share their target, each
//! entry removed only after the node accepted it, dead-lettered after `retry.max_attempts_4xx`
//! refusals, and the node back to direct writes only once the queue is empty and that is on disk.
//! What an answer means for the queue is [`verdict`], a pure function.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Node;
use crate::node::{
    backoff::Backoff,
    client::{Delivery, Retry},
    op,
    queue::{self, Entry, QueueError, Record},
};

/// Most entries merged into one replayed request.
const MAX_REPLAY_ENTRIES: usize = 10_000;

/// How often a long replay logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Shortest wait before trying again to make a caught-up queue's removals durable.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// What the head of the queue offers the replayer.
enum Batch {
    /// Entries to send as one request, with their decoded records.
    Ready(Vec<Entry>, Vec<Record>),
    /// The head entry was dead-lettered; look again.
    Skipped,
    /// Nothing is queued.
    Empty,
}

/// The replayer's state.
pub(super) struct Replay {
    running: bool,
    /// No replay before this instant (backoff).
    not_before: Option<Instant>,
    timer: Option<SpawnHandle>,
    backoff: Backoff,
    /// Entries still to send one at a time: a merged batch was refused and its culprit must be
    /// found without refusing (or rewriting) the whole batch again for each entry.
    single: usize,
    /// Points replayed since `window_start`, for the rate.
    window_points: u64,
    window_start: Instant,
    /// When progress was last logged and the queue's size then, for the time left.
    progress: Option<(Instant, u64)>,
    /// Since when the head has been refused for a database or retention policy the node lacks.
    schema_wait: Option<Instant>,
}

impl Replay {
    /// A replayer at rest, backing off between `initial` and `max`.
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Replay {
            running: false,
            not_before: None,
            timer: None,
            backoff: Backoff::new(initial, max),
            single: 0,
            schema_wait: None,
            window_points: 0,
            window_start: Instant::now(),
            progress: None,
        }
    }

    /// New backoff bounds, from a reloaded configuration.
    pub(super) fn retune(&mut self, initial: Duration, max: Duration) {
        self.backoff = Backoff::new(initial, max);
    }

    /// The node is back: replay now rather than wait out a long backoff.
    pub(super) fn now(&mut self) {
        self.not_before = None;
    }
}

/// What a replayed batch's answer means for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Accepted: remove the entries.
    Remove,
    /// The node failed (unreachable, 5xx, timeout): wait the backoff, then send them again.
    Backoff,
    /// A merged batch was refused: send its entries one by one to find the one at fault,
    /// rather than refusing (or rewriting) the whole batch again for each entry.
    Singly {
        /// The node's answer.
        refusal: String,
    },
    /// One entry refused for a database or retention policy the node lacks (it was wiped or
    /// replaced): the backlog waits for them to be created there, without counting attempts.
    AwaitSchema {
        /// The node's answer.
        refusal: String,
    },
    /// One entry refused, attempts left: count the attempt and retry after the first backoff.
    Retry {
        /// Attempts made, this one included.
        attempts: u32,
        /// The node's answer.
        refusal: String,
    },
    /// One entry refused for the last time: to the dead letters, so that those behind it go on.
    DeadLetter {
        /// Why, for the letter.
        reason: String,
    },
}

/// How often a backlog waiting for a database its node lacks is tried again.
const SCHEMA_POLL: Duration = Duration::from_secs(1);

/// Judges the answer to a replayed batch of `entries` whose head was tried `attempts` times
/// before. A 4xx, or a failure the same request is bound to meet again (a body cut off), counts
/// an attempt; anything else transient only waits. A refusal for a missing database or retention
/// policy waits too while `patient` (a repair may be creating them).
fn verdict(
    delivery: &Delivery,
    entries: usize,
    attempts: u32,
    max_attempts: u32,
    patient: bool,
) -> Verdict {
    let refusal = match delivery {
        Delivery::Accepted(_) => return Verdict::Remove,
        Delivery::Rejected(answer) => answer.refusal(),
        Delivery::Failed(e) if e.retry() == Retry::Counted => e.to_string(),
        Delivery::Failed(_) | Delivery::Queued(_) => return Verdict::Backoff,
    };
    if entries > 1 {
        return Verdict::Singly { refusal };
    }
    if patient && lacks_schema(&refusal) {
        return Verdict::AwaitSchema { refusal };
    }
    let attempts = attempts + 1;
    if attempts >= max_attempts {
        Verdict::DeadLetter {
            reason: format!("refused {attempts} times: {refusal}"),
        }
    } else {
        Verdict::Retry { attempts, refusal }
    }
}

/// Whether a refusal says the node lacks the write's database or retention policy.
fn lacks_schema(refusal: &str) -> bool {
    refusal.contains("database not found") || refusal.contains("retention policy not found")
}

impl Node {
    /// Starts a replay if there is a backlog and nothing older is in memory or on the wire.
    pub(super) fn schedule_replay(&mut self, ctx: &mut Context<Self>) {
        if self.replay.running
            || self.closing
            || self.queue.in_maintenance()
            || self.queue.is_empty()
            || self.pipeline.in_flight() > 0
            || self.pipeline.waiting() > 0
        {
            return;
        }
        if let Some(at) = self.replay.not_before {
            let now = Instant::now();
            if at > now {
                if self.replay.timer.is_none() {
                    self.replay.timer = Some(ctx.run_later(at - now, |node, ctx| {
                        node.replay.timer = None;
                        node.schedule_replay(ctx);
                    }));
                }
                return;
            }
        }
        self.replay_head(ctx);
    }

    /// Replays the backlog now: the backoff under way is forgotten (an operator fixed the node).
    pub(super) fn replay_now(&mut self, ctx: &mut Context<Self>) {
        self.replay.not_before = None;
        self.replay.backoff.reset();
        if let Some(timer) = self.replay.timer.take() {
            ctx.cancel_future(timer);
        }
        self.schedule_replay(ctx);
    }

    fn retry_after(&mut self, delay: Duration) {
        self.replay.not_before = Some(Instant::now() + delay);
    }

    /// Sends the oldest entries, merged into one request where they share their target.
    fn replay_head(&mut self, ctx: &mut Context<Self>) {
        let limit = if self.replay.single > 0 {
            1
        } else {
            MAX_REPLAY_ENTRIES
        };
        let (entries, records) = loop {
            let batch = self
                .queue
                .head(limit, self.settings.replay_batch_bytes)
                .and_then(|head| self.take_batch(head));
            match batch {
                Ok(Batch::Ready(entries, records)) => break (entries, records),
                // The head was dead-lettered (corrupt or expired): look again.
                Ok(Batch::Skipped) => {}
                Ok(Batch::Empty) => return self.caught_up(ctx),
                Err(e) => return self.storage_trouble(&e, ctx),
            }
        };
        let attempts = records[0].attempts;
        let (op, points) = op::merge(records.into_iter().map(|r| r.op));
        self.replay.running = true;
        let request = self.send(op);
        ctx.spawn(request.into_actor(self).map(move |delivery, node, ctx| {
            node.replay.running = false;
            if let Err(e) = node.replayed(entries, attempts, points, delivery) {
                return node.storage_trouble(&e, ctx);
            }
            if node.queue.is_empty() {
                node.caught_up(ctx);
            } else {
                node.schedule_replay(ctx);
            }
        }));
    }

    /// The queue's storage failed: wait the longest backoff before touching it again, rather than
    /// spinning on the same entry.
    fn storage_trouble(&mut self, error: &QueueError, ctx: &mut Context<Self>) {
        log::error!(
            "node {}: queue storage failed, replay paused: {error}",
            self.status.name()
        );
        self.retry_after(self.settings.max_backoff);
        self.schedule_replay(ctx);
    }

    /// The entries at the head that can go in one request, or why there are none.
    fn take_batch(&mut self, head: Vec<Entry>) -> Result<Batch, QueueError> {
        let max_age_ms = self.settings.max_age.as_millis() as u64;
        let now = queue::now_ms();
        let mut entries = Vec::new();
        let mut records: Vec<Record> = Vec::new();
        for entry in head {
            let reason = match Record::decode(&entry.raw) {
                Ok(record) if now.saturating_sub(record.enqueued_at_ms) > max_age_ms => format!(
                    "older than queue.max_age ({})",
                    crate::units::format_duration(self.settings.max_age)
                ),
                Ok(record) => {
                    if records
                        .last()
                        .is_some_and(|last| !op::mergeable(&last.op, &record.op))
                    {
                        break;
                    }
                    records.push(record);
                    entries.push(entry);
                    continue;
                }
                Err(e) => e.to_string(),
            };
            if !entries.is_empty() {
                break; // deal with it when it is the head
            }
            self.queue.dead_letter(&entry, &reason)?;
            return Ok(Batch::Skipped);
        }
        Ok(if entries.is_empty() {
            Batch::Empty
        } else {
            Batch::Ready(entries, records)
        })
    }

    /// Acts on the node's answer to a replayed batch.
    fn replayed(
        &mut self,
        entries: Vec<Entry>,
        attempts: u32,
        points: u64,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        self.observe(&delivery);
        let patient = self
            .replay
            .schema_wait
            .is_none_or(|since| since.elapsed() < self.settings.schema_patience);
        let verdict = verdict(
            &delivery,
            entries.len(),
            attempts,
            self.settings.max_attempts_4xx,
            patient && !self.settings.schema_patience.is_zero(),
        );
        // Patience is spent once per backlog: a database that is not coming back (dropped behind
        // the gateway's back) has every entry counted as refused after that, until one lands or
        // the backlog runs out.
        if verdict == Verdict::Remove {
            self.replay.schema_wait = None;
        }
        if verdict == Verdict::Remove || !patient {
            self.status.set_awaiting_schema(false);
        }
        match verdict {
            Verdict::AwaitSchema { refusal } => {
                if self.replay.schema_wait.is_none() {
                    log::warn!(
                        "node {}: queued writes refused ({refusal}): the node lacks what its peers hold (wiped or replaced?); its backlog waits for a repair to create it",
                        self.status.name()
                    );
                    self.replay.schema_wait = Some(Instant::now());
                    self.status.set_awaiting_schema(true);
                }
                self.retry_after(SCHEMA_POLL);
            }
            Verdict::Remove => {
                self.queue.remove(entries.iter().map(|e| e.seq))?;
                self.replay.backoff.reset();
                self.replay.not_before = None;
                self.replay.single = self.replay.single.saturating_sub(entries.len());
                self.count_replayed(points);
            }
            Verdict::Backoff => {
                let delay = self.replay.backoff.next_delay();
                self.retry_after(delay);
            }
            Verdict::Singly { refusal } => {
                log::debug!(
                    "node {}: batch refused ({refusal}), replaying its {} entries singly",
                    self.status.name(),
                    entries.len()
                );
                self.replay.single = entries.len();
            }
            Verdict::Retry { attempts, refusal } => {
                let head = &entries[0];
                log::warn!(
                    "node {}: queued entry {} refused ({refusal}), attempt {attempts}",
                    self.status.name(),
                    head.seq
                );
                self.retry_after(self.settings.initial_backoff);
                self.queue.set_attempts(head, attempts)?;
            }
            Verdict::DeadLetter { reason } => {
                self.replay.single = self.replay.single.saturating_sub(1);
                self.queue.dead_letter(&entries[0], &reason)?;
            }
        }
        Ok(())
    }

    fn count_replayed(&mut self, points: u64) {
        self.status.add_replayed(points);
        self.replay.window_points += points;
        let elapsed = self.replay.window_start.elapsed();
        if elapsed >= Duration::from_secs(1) {
            self.status
                .set_replay_rate((self.replay.window_points as f64 / elapsed.as_secs_f64()) as u64);
            self.replay.window_points = 0;
            self.replay.window_start = Instant::now();
        }
        self.log_progress();
    }

    /// A long replay says every [`PROGRESS_EVERY`] how much is left and when it should be done.
    fn log_progress(&mut self) {
        let now = Instant::now();
        let left = self.queue.stats();
        let Some((since, bytes_then)) = self.replay.progress else {
            self.replay.progress = Some((now, left.bytes));
            return;
        };
        let elapsed = now.duration_since(since);
        if elapsed < PROGRESS_EVERY {
            return;
        }
        self.replay.progress = Some((now, left.bytes));
        let drained_per_second =
            bytes_then.saturating_sub(left.bytes) as f64 / elapsed.as_secs_f64();
        let eta = if drained_per_second > 0.0 {
            let seconds = (left.bytes as f64 / drained_per_second).ceil() as u64;
            format!(
                "about {} left",
                crate::units::format_duration(Duration::from_secs(seconds))
            )
        } else {
            "not draining yet".to_owned()
        };
        log::info!(
            "node {}: replaying its queue: {} entries ({} bytes) left, {} points/s, {eta}",
            self.status.name(),
            left.entries,
            left.bytes,
            self.status.snapshot().replay_rate_points_per_second,
        );
    }

    /// The replayer emptied the queue: once its removals are on disk, back to Direct.
    fn caught_up(&mut self, ctx: &mut Context<Self>) {
        self.replay.single = 0;
        // A backlog that ran out: the next one waits for a missing database afresh.
        self.replay.schema_wait = None;
        self.status.set_awaiting_schema(false);
        self.replay.window_points = 0;
        self.replay.window_start = Instant::now();
        self.replay.progress = None;
        self.status.set_replay_rate(0);
        if !self.settling {
            self.settle(ctx);
        }
    }

    /// Stays draining until every removal is on disk, then goes back to Direct.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        self.settling = true;
        let durable = self.queue.durable(self.queue.sync());
        ctx.spawn(durable.into_actor(self).map(|flushed, node, ctx| {
            if let Err(e) = flushed {
                log::warn!(
                    "node {}: caught up, but its queue's removals are not on disk ({e}); still queueing",
                    node.status.name()
                );
                ctx.run_later(node.settings.initial_backoff.max(SETTLE_RETRY), Self::settle);
                return;
            }
            node.settling = false;
            if node.queue.is_empty() {
                log::info!(
                    "node {}: caught up, queue empty, writing directly again",
                    node.status.name()
                );
            } else {
                node.schedule_replay(ctx); // written to while settling: keep draining
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{client::NodeResponse, ExchangeError};

    #[test]
    fn an_answer_decides_the_entries_fate() {
        let accepted = Delivery::Accepted(NodeResponse::of(204, ""));
        let refused = Delivery::Rejected(NodeResponse::of(
            404,
            r#"{"error":"database not found: \"x\""}"#,
        ));
        let down = Delivery::Failed(ExchangeError::Connect("refused".into()).into());
        let cut_off = Delivery::Failed(ExchangeError::CutOff(4 << 20).into());
        assert_eq!(verdict(&accepted, 5, 2, 3, true), Verdict::Remove);
        // A node that is down costs no attempt, however often.
        assert_eq!(verdict(&down, 1, 2, 3, true), Verdict::Backoff);
        // A batch is split before any entry is blamed.
        assert!(matches!(
            verdict(&refused, 2, 0, 3, true),
            Verdict::Singly { .. }
        ));
        // A database the node lacks is waited for while patience lasts, at no attempt's cost.
        assert!(matches!(
            verdict(&refused, 1, 2, 3, true),
            Verdict::AwaitSchema { .. }
        ));
        let conflict =
            Delivery::Rejected(NodeResponse::of(400, r#"{"error":"field type conflict"}"#));
        assert!(matches!(
            verdict(&conflict, 1, 0, 3, true),
            Verdict::Retry { attempts: 1, .. }
        ));
        assert!(matches!(
            verdict(&refused, 1, 0, 3, false),
            Verdict::Retry { attempts: 1, .. }
        ));
        assert!(matches!(
            verdict(&cut_off, 1, 1, 3, true),
            Verdict::Retry { attempts: 2, .. }
        ));
        let Verdict::DeadLetter { reason } = verdict(&refused, 1, 2, 3, false) else {
            panic!("not dead-lettered on the last attempt");
        };
        assert!(reason.starts_with("refused 3 times: "), "{reason}");
        assert!(matches!(
            verdict(&cut_off, 1, 0, 1, true),
            Verdict::DeadLetter { .. }
        ));
    }
}
