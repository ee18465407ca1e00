//! The actor that owns all ordered traffic to one InfluxDB node.
//!
//! Every write and mutation for the node is numbered by the actor as it arrives; that number is
//! its place in the node's order and its key on disk. The actor is in one of two modes:
//!
//! - **Direct** (queue empty, node not known down): work waits in a short in-memory line and goes
//!   on the wire oldest first, at most `max_in_flight` at a time, and a write only beside writes
//!   it commutes with (their [`TimeSpan`](crate::line_protocol::TimeSpan)s are disjoint: no point
//!   of one can overwrite a point of the other), so that the node ends up as if it had applied
//!   them one by one. A mutation waits for the writes before it and holds back the writes after
//!   it. Those decisions are the [`Pipeline`]'s, a pure type tested without a network; the actor
//!   does the I/O around them.
//! - **Draining** (queue not empty, or node down): new work is appended to the disk queue and
//!   answered once the append is flushed. The replayer sends the oldest entries in batches, removes
//!   them after a 2xx, backs off with jitter on failure, and dead-letters an entry refused
//!   `max_attempts_4xx` times. It starts only when nothing older is in memory or on the wire.
//!
//! A direct request that fails (cannot connect, 5xx, timeout) is appended under its own number, in
//! front of anything newer, and everything still waiting in memory follows it to disk. The actor
//! goes back to Direct only here, between two messages, when the replayer finds the queue empty:
//! no write can overtake the backlog. Handlers never await the network; durability comes from the
//! queue, not from the actor surviving.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{
    backoff::Backoff,
    client::{self, Delivery, NodeError, QueuedBecause},
    op::{self, Carries, Op},
    pipeline::{Answer, Conditions, Landed, Limits, Pipeline},
    queue::{self, Entry, NodeQueue, QueueError, Record},
    status::{NodeState, NodeStatus},
};

/// Time allowed, beyond a request's timeout, for its answer's body to arrive.
const BODY_GRACE: Duration = Duration::from_secs(5);

/// Most entries merged into one replayed request.
const MAX_REPLAY_ENTRIES: usize = 10_000;

/// How often a long replay logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Shortest wait before trying again to make a caught-up queue's removals durable.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// Timeouts and limits of one node actor.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// How often `/ping` is probed.
    pub health_interval: Duration,
    /// How long a probe may take.
    pub health_timeout: Duration,
    /// How long one write may take.
    pub write_timeout: Duration,
    /// How long a mutation may take to be answered.
    pub query_timeout: Duration,
    /// Requests on the wire at once.
    pub max_in_flight: usize,
    /// Writes and mutations that may wait in memory before new ones go to disk.
    pub capacity: usize,
    /// First wait after a failed replay.
    pub initial_backoff: Duration,
    /// Longest wait between replays.
    pub max_backoff: Duration,
    /// 4xx answers an entry may get before it is dead-lettered.
    pub max_attempts_4xx: u32,
    /// Age after which a queued entry is dead-lettered instead of replayed.
    pub max_age: Duration,
    /// Largest replayed request body.
    pub replay_batch_bytes: u64,
    /// Most points coalesced into one live request (`write.batch.max_points`).
    pub batch_max_points: u64,
    /// How long a write may wait for others to coalesce with (`write.batch.max_delay`).
    pub batch_max_delay: Duration,
    /// TLS for an `https://` node.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The message: do `op`, and say how it went on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Job {
    /// The work.
    pub op: Op,
    /// Where the outcome goes; the requester may have stopped listening.
    pub reply: oneshot::Sender<Delivery>,
}

/// The message: keep `op` as a dead letter; the node refused it while its replicas accepted it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refused {
    /// The refused write.
    pub op: Op,
    /// The node's answer, as text.
    pub reason: String,
    /// Told `true` once the node is flagged `needs_resync` on disk (the dead letter itself is
    /// kept when the disk has room), `false` if even the flag could not be stored.
    pub reply: oneshot::Sender<bool>,
}

/// The message: the gateway is stopping; put everything still in memory on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What the head of the queue offers the replayer.
enum Batch {
    /// Entries to send as one request, with their decoded records.
    Ready(Vec<Entry>, Vec<Record>),
    /// The head entry was dead-lettered; look again.
    Skipped,
    /// Nothing is queued.
    Empty,
}

/// Work accepted by the actor, with its place in the node's order.
struct Pending {
    seq: u64,
    op: Op,
    reply: oneshot::Sender<Delivery>,
    /// When the actor received it, for `write.batch.max_delay`.
    arrived: Instant,
}

impl Carries for Pending {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn op(&self) -> &Op {
        &self.op
    }
}

/// One InfluxDB node.
pub struct Node {
    status: Arc<NodeStatus>,
    queue: NodeQueue,
    http: awc::Client,
    settings: NodeSettings,
    next_seq: u64,
    /// What waits in memory and what is on the wire.
    pipeline: Pipeline<Pending>,
    replay: Replay,
    probing: bool,
    /// The periodic `/ping`, restarted when `health.interval` is reloaded.
    probe_timer: Option<SpawnHandle>,
    /// Wakes the pump when `write.batch.max_delay` has passed for the oldest waiting write.
    batch_timer: Option<SpawnHandle>,
    closing: bool,
    /// The queue was found empty and the removals are being flushed: until they are durable the
    /// node stays draining, so that a crash cannot bring a replayed entry back behind a newer
    /// direct write.
    settling: bool,
}

/// The replayer's state.
struct Replay {
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
}

impl Node {
    /// An actor for the node whose shared status is `status`, with its queue reopened.
    pub fn new(
        status: Arc<NodeStatus>,
        queue: NodeQueue,
        next_seq: u64,
        settings: NodeSettings,
    ) -> Self {
        // One client per node: its own pool of keep-alive connections, sized to what is on the wire.
        let http = client::http_client(settings.tls.as_ref(), settings.max_in_flight + 2);
        let replay = Replay {
            running: false,
            not_before: None,
            timer: None,
            backoff: Backoff::new(settings.initial_backoff, settings.max_backoff),
            single: 0,
            window_points: 0,
            window_start: Instant::now(),
            progress: None,
        };
        let pipeline = Pipeline::new(Limits {
            max_in_flight: settings.max_in_flight,
            batch_max_points: settings.batch_max_points,
            capacity: settings.capacity,
        });
        Node {
            status,
            queue,
            http,
            settings,
            next_seq,
            pipeline,
            replay,
            probing: false,
            probe_timer: None,
            batch_timer: None,
            closing: false,
            settling: false,
        }
    }

    /// Why new work must go to disk rather than straight to the node, if it must.
    fn must_queue(&self) -> Option<QueuedBecause> {
        self.pipeline.must_queue(Conditions {
            closing: self.closing,
            down: self.status.state() == NodeState::Down,
            backlog: self.settling || !self.queue.is_empty(),
        })
    }

    /// Appends `pending` to the disk queue and answers it once the append is durable. A copy that
    /// cannot be stored is answered as such once the node is flagged `needs_resync` on disk.
    fn enqueue(&mut self, pending: Pending, because: QueuedBecause, ctx: &mut Context<Self>) {
        let was_empty = self.queue.is_empty();
        let unstored = match self.queue.append(pending.seq, &pending.op) {
            Ok(ticket) => {
                if was_empty {
                    log::info!(
                        "node {}: queueing writes on disk until it catches up",
                        self.status.name()
                    );
                }
                self.reply_when_durable(ticket, pending.reply, because, ctx);
                self.schedule_replay(ctx);
                return;
            }
            Err(QueueError::Full { bytes, limit }) => NodeError::QueueFull { bytes, limit },
            Err(QueueError::DiskFull { free, reserve }) => NodeError::DiskFull { free, reserve },
            Err(e) => {
                log::error!("node {}: cannot queue a write: {e}", self.status.name());
                NodeError::Storage(e.to_string())
            }
        };
        let _ = pending.reply.send(not_stored(&self.queue, unstored));
    }

    /// Answers `reply` once `ticket` is on disk, without holding up the actor.
    fn reply_when_durable(
        &self,
        ticket: queue::Ticket,
        reply: oneshot::Sender<Delivery>,
        because: QueuedBecause,
        ctx: &mut Context<Self>,
    ) {
        let durable = self.queue.durable(ticket);
        let queue = self.queue.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let answer = match durable.await {
                Ok(()) => Delivery::Queued(because),
                // In sled's memory but not on disk: it may yet be replayed, but nobody may count
                // on it.
                Err(e) => not_stored(&queue, NodeError::Storage(e.to_string())),
            };
            let _ = reply.send(answer);
        }));
    }

    /// Moves everything waiting in memory to disk, keeping its order.
    fn spill_waiting(&mut self, because: QueuedBecause, ctx: &mut Context<Self>) {
        for pending in self.pipeline.spill() {
            self.enqueue(pending, because.clone(), ctx);
        }
        self.status.set_waiting(0);
    }

    /// Puts waiting work on the wire while the in-flight limit and the ordering rules allow.
    /// Consecutive writes to the same database, retention policy and precision go as one request
    /// of at most `write.batch.max_points` points: the order is kept, and a node answering one
    /// large request beats the same node answering many small ones in turn.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.pipeline.front_may_go() {
            if self.should_wait_for_more(ctx) {
                break;
            }
            let group = self.pipeline.take_group();
            let Some(op) = op::coalesce(&group) else {
                break;
            };
            let id = self.pipeline.launch(group);
            let request = self.send(op);
            ctx.spawn(request.into_actor(self).map(move |delivery, node, ctx| {
                node.observe(&delivery);
                let answer = match &delivery {
                    Delivery::Failed(e) if e.is_transient() => Answer::Transient,
                    Delivery::Rejected(_) => Answer::Refused,
                    _ => Answer::Final,
                };
                match node.pipeline.land(id, answer) {
                    Landed::Queue(to_disk) => {
                        // The group and everything after it go to disk, in order.
                        let because = match delivery {
                            Delivery::Failed(e) => QueuedBecause::failure(e),
                            _ => QueuedBecause::Down,
                        };
                        for pending in to_disk {
                            node.enqueue(pending, because.clone(), ctx);
                        }
                        node.status.set_waiting(0);
                    }
                    // The requester may have given up (timeout, client gone): the work was done.
                    Landed::Reply(group) => {
                        for pending in group {
                            let _ = pending.reply.send(delivery.clone());
                        }
                    }
                    // Gone: a stop queued it already.
                    Landed::Retry | Landed::Gone => {}
                }
                node.pump(ctx);
                node.schedule_replay(ctx);
            }));
        }
        self.status.set_waiting(self.pipeline.waiting());
    }

    /// With `write.batch.max_delay`, holds a lone write back until enough points wait or the
    /// oldest has waited that long; the pump is woken then. Only while nothing is on the wire:
    /// otherwise the answer to what is in flight wakes the pump anyway.
    fn should_wait_for_more(&mut self, ctx: &mut Context<Self>) -> bool {
        let delay = self.settings.batch_max_delay;
        if delay.is_zero()
            || self.pipeline.in_flight() > 0
            || self.pipeline.sending_alone()
            || self.closing
        {
            return false;
        }
        let Some(front) = self.pipeline.front() else {
            return false;
        };
        if front.op.is_mutation() {
            return false;
        }
        let waited = front.arrived.elapsed();
        let max = self.settings.batch_max_points;
        if waited >= delay || self.pipeline.coalescible_points(max) >= max {
            return false;
        }
        if self.batch_timer.is_none() {
            self.batch_timer = Some(ctx.run_later(delay - waited, |node, ctx| {
                node.batch_timer = None;
                node.pump(ctx);
            }));
        }
        true
    }

    fn send(&self, op: Op) -> impl Future<Output = Delivery> + 'static {
        let http = self.http.clone();
        let status = Arc::clone(&self.status);
        let (write_timeout, query_timeout) =
            (self.settings.write_timeout, self.settings.query_timeout);
        // awc bounds the wait for the answer's head; this also bounds a body that stalls.
        let limit = match op {
            Op::Write(_) => write_timeout,
            Op::Mutation(_) => query_timeout,
        } + BODY_GRACE;
        async move {
            let _in_flight = status.start_request();
            status.traffic().sent(&op);
            let exchange = async {
                match op {
                    Op::Write(write) => {
                        client::write(&http, status.url(), &write, write_timeout).await
                    }
                    Op::Mutation(query) => {
                        client::query_buffered(&http, status.url(), &query, query_timeout).await
                    }
                }
            };
            let delivery = tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Delivery::Failed(NodeError::Timeout(limit)));
            status.traffic().outcome(&delivery);
            delivery
        }
    }

    /// Lets every answer inform the node's health, not only the probes.
    fn observe(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Accepted(_) | Delivery::Rejected(_) => self.status.mark_up(None),
            Delivery::Failed(e) if e.is_unreachable() => self.status.mark_down(&e.to_string()),
            Delivery::Failed(e) => self.status.record_error(&e.to_string()),
            Delivery::Queued(_) => {}
        }
    }

    /// Starts a replay if there is a backlog and nothing older is in memory or on the wire.
    fn schedule_replay(&mut self, ctx: &mut Context<Self>) {
        if self.replay.running
            || self.closing
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
        // A 4xx, or a failure that the same request is bound to meet again, counts an attempt.
        let refusal = match delivery {
            Delivery::Accepted(_) => {
                self.queue.remove(entries.iter().map(|e| e.seq))?;
                self.replay.backoff.reset();
                self.replay.not_before = None;
                self.replay.single = self.replay.single.saturating_sub(entries.len());
                self.count_replayed(points);
                return Ok(());
            }
            Delivery::Rejected(answer) => answer.refusal(),
            Delivery::Failed(e) if e.repeats() => e.to_string(),
            Delivery::Failed(_) | Delivery::Queued(_) => {
                let delay = self.replay.backoff.next_delay();
                self.retry_after(delay);
                return Ok(());
            }
        };
        if entries.len() > 1 {
            // Which entry is at fault? Replay the batch's entries one by one.
            log::debug!(
                "node {}: batch refused ({refusal}), replaying its {} entries singly",
                self.status.name(),
                entries.len()
            );
            self.replay.single = entries.len();
            return Ok(());
        }
        let attempts = attempts + 1;
        let head = &entries[0];
        if attempts >= self.settings.max_attempts_4xx {
            self.replay.single = self.replay.single.saturating_sub(1);
            self.queue
                .dead_letter(head, &format!("refused {attempts} times: {refusal}"))?;
        } else {
            log::warn!(
                "node {}: queued entry {} refused ({refusal}), attempt {attempts}",
                self.status.name(),
                head.seq
            );
            self.retry_after(self.settings.initial_backoff);
            self.queue.set_attempts(head, attempts)?;
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

    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return; // the previous probe is still out: a slow node must not pile probes up
        }
        self.probing = true;
        let http = self.http.clone();
        let status = Arc::clone(&self.status);
        let timeout = self.settings.health_timeout;
        let probe = async move { client::ping(&http, status.url(), timeout).await };
        ctx.spawn(probe.into_actor(self).map(|result, node, ctx| {
            node.probing = false;
            match result {
                Ok(version) => {
                    node.status.mark_up(version.as_deref());
                    // Back: replay now rather than wait out a long backoff.
                    node.replay.not_before = None;
                    node.schedule_replay(ctx);
                }
                Err(e) => {
                    node.status.mark_down(&e.to_string());
                    node.spill_waiting(QueuedBecause::Down, ctx);
                }
            }
        }));
    }
}

/// The answer for a copy that could not be stored. The node is flagged first, so that the copy is
/// known to be missing whatever happens next.
fn not_stored(queue: &NodeQueue, why: NodeError) -> Delivery {
    match queue.refuse_copy() {
        Ok(()) => Delivery::Failed(why),
        Err(e) => Delivery::Failed(NodeError::Unflagged(format!(
            "{why}; and its needs_resync flag could not be stored: {e}"
        ))),
    }
}

impl Actor for Node {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.capacity);
        if !self.queue.is_empty() {
            log::info!(
                "node {}: {} queued entries from before the restart will be replayed",
                self.status.name(),
                self.queue.stats().entries
            );
        }
        self.probe(ctx);
        self.probe_timer = Some(ctx.run_interval(self.settings.health_interval, Self::probe));
        self.schedule_replay(ctx);
    }
}

/// New health and retry settings, from a configuration reloaded on SIGHUP.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Retune {
    /// `health.interval`.
    pub health_interval: Duration,
    /// `health.timeout`.
    pub health_timeout: Duration,
    /// `retry.initial_backoff`.
    pub initial_backoff: Duration,
    /// `retry.max_backoff`.
    pub max_backoff: Duration,
    /// `retry.max_attempts_4xx`.
    pub max_attempts_4xx: u32,
}

impl Handler<Retune> for Node {
    type Result = ();

    fn handle(&mut self, retune: Retune, ctx: &mut Self::Context) {
        let settings = &mut self.settings;
        settings.health_timeout = retune.health_timeout;
        settings.initial_backoff = retune.initial_backoff;
        settings.max_backoff = retune.max_backoff;
        settings.max_attempts_4xx = retune.max_attempts_4xx;
        // The next wait starts from the new initial backoff rather than where the old one was.
        self.replay.backoff = Backoff::new(retune.initial_backoff, retune.max_backoff);
        if settings.health_interval != retune.health_interval {
            settings.health_interval = retune.health_interval;
            if let Some(timer) = self.probe_timer.take() {
                ctx.cancel_future(timer);
            }
            self.probe_timer = Some(ctx.run_interval(retune.health_interval, Self::probe));
        }
    }
}

impl Handler<Job> for Node {
    type Result = ();

    fn handle(&mut self, job: Job, ctx: &mut Self::Context) {
        let pending = Pending {
            seq: self.next_seq,
            op: job.op,
            reply: job.reply,
            arrived: Instant::now(),
        };
        self.next_seq += 1;
        if let Some(because) = self.must_queue() {
            self.enqueue(pending, because, ctx);
        } else {
            self.pipeline.push(pending);
            self.pump(ctx);
        }
    }
}

impl Handler<Refused> for Node {
    type Result = ();

    fn handle(&mut self, refused: Refused, _: &mut Self::Context) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let flagged = match self.queue.keep_refused(seq, &refused.op, &refused.reason) {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "node {}: cannot flag it as needing a resync after it refused a write: {e}",
                    self.status.name()
                );
                false
            }
        };
        let _ = refused.reply.send(flagged);
    }
}

impl Handler<Shutdown> for Node {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.closing = true;
        // What is on the wire goes to disk too, under its own numbers: a stuck node may never
        // answer it. If the node did apply it, the replay writes the same points again, which
        // InfluxDB absorbs; whatever else reached it meanwhile commutes with it or is queued behind.
        for pending in self.pipeline.take_all() {
            self.enqueue(pending, QueuedBecause::Stopping, ctx);
        }
        self.status.set_waiting(0);
    }
}
