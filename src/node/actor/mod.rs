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

mod probe;
mod replay;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use futures_util::{future::Either, stream};
use tokio::sync::{mpsc, oneshot};

use super::{
    client::{self, Delivery, ExchangeError, GatewayError, NodeError, QueuedBecause, Retry},
    op::{self, Carries, Op},
    pipeline::{Answer, Conditions, Group, Landed, Limits, Pipeline},
    queue::{self, NodeQueue, QueueError},
    status::{NodeState, NodeStatus},
};
use replay::Replay;

/// Time allowed, beyond a request's timeout, for its answer's body to arrive.
const BODY_GRACE: Duration = Duration::from_secs(5);

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
    /// How long the backlog waits, when its head is refused for a database or retention policy
    /// the node lacks, for them to be created there (by a repair) before that entry counts as
    /// refused; zero: it counts at once.
    pub schema_patience: Duration,
    /// Largest replayed request body.
    pub replay_batch_bytes: u64,
    /// Most points coalesced into one live request (`write.batch.max_points`).
    pub batch_max_points: u64,
    /// How long a write may wait for others to coalesce with (`write.batch.max_delay`).
    pub batch_max_delay: Duration,
    /// TLS for an `https://` node.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Work for the node: do `op`, and say how it went on `reply`. Jobs reach the actor through their
/// own bounded channel ([`jobs`]), not its actix mailbox.
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

/// The message: an operator took the node out of service, or returned it; the queue says which.
/// Out of service, what waits in memory goes to disk and nothing is replayed; back, the backlog
/// is replayed at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Maintain;

/// The message: replay the queue now, without waiting out the current backoff.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// The message: the gateway is stopping; put everything still in memory on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

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
    /// The `/write` URL last sent, kept parsed.
    write_urls: client::WriteUrls,
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
        let replay = Replay::new(settings.initial_backoff, settings.max_backoff);
        let pipeline = Pipeline::new(Limits {
            max_in_flight: settings.max_in_flight,
            batch_max_points: settings.batch_max_points,
            capacity: settings.capacity,
        });
        Node {
            write_urls: client::WriteUrls::new(status.url()),
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

    /// Has the actor in `ctx` handle the jobs sent on `inbox`, one after the other as sent.
    pub fn take_jobs(mut inbox: mpsc::Receiver<Job>, ctx: &mut Context<Self>) {
        ctx.add_stream(stream::poll_fn(move |cx| inbox.poll_recv(cx)));
    }

    /// Why new work must go to disk rather than straight to the node, if it must.
    fn must_queue(&self) -> Option<QueuedBecause> {
        self.pipeline.must_queue(Conditions {
            closing: self.closing,
            maintenance: self.queue.in_maintenance(),
            down: self.status.state() == NodeState::Down,
            backlog: self.settling || !self.queue.is_empty(),
        })
    }

    /// Appends `work` to the disk queue in the order given, answering each once its append is
    /// durable, and only then considers a replay. A replay started between two appends would
    /// read a head missing the rest: it could merge an entry queued earlier under a newer number
    /// into a batch that skips an older one still to come, and the older value would reach the
    /// node last.
    fn put_on_disk(
        &mut self,
        work: impl IntoIterator<Item = Pending>,
        because: QueuedBecause,
        ctx: &mut Context<Self>,
    ) {
        for pending in work {
            self.append(pending, because.clone(), ctx);
        }
        self.schedule_replay(ctx);
    }

    /// Appends `pending` to the disk queue and answers it once the append is durable. A copy that
    /// cannot be stored is answered as such once the node is flagged `needs_resync` on disk.
    fn append(&mut self, pending: Pending, because: QueuedBecause, ctx: &mut Context<Self>) {
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
                return;
            }
            Err(QueueError::Full { bytes, limit }) => GatewayError::QueueFull { bytes, limit },
            Err(QueueError::DiskFull { free, reserve }) => GatewayError::DiskFull { free, reserve },
            Err(e) => {
                log::error!("node {}: cannot queue a write: {e}", self.status.name());
                GatewayError::Storage(e.to_string())
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
                Err(e) => not_stored(&queue, GatewayError::Storage(e.to_string())),
            };
            let _ = reply.send(answer);
        }));
    }

    /// Moves everything waiting in memory to disk, keeping its order.
    fn spill_waiting(&mut self, because: QueuedBecause, ctx: &mut Context<Self>) {
        let waiting = self.pipeline.spill();
        self.put_on_disk(waiting, because, ctx);
        self.status.set_waiting(0);
    }

    /// Puts waiting work on the wire while the in-flight limit and the ordering rules allow.
    /// Consecutive writes to the same database, retention policy and precision go as one request
    /// of at most `write.batch.max_points` points: the order is kept, and a node answering one
    /// large request beats the same node answering many small ones in turn.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.queue.in_maintenance() {
            // Drained (maybe since this work waited, or a refused group came back to wait):
            // nothing goes to the node directly any more.
            if self.pipeline.waiting() > 0 {
                self.spill_waiting(QueuedBecause::Maintenance, ctx);
            }
            return;
        }
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
                let (answer, because) = match &delivery {
                    Delivery::Failed(e) if e.retry() != Retry::Never => {
                        (Answer::Transient, Some(QueuedBecause::failure(e.clone())))
                    }
                    Delivery::Rejected(_) => (Answer::Refused, None),
                    _ => (Answer::Final, None),
                };
                match node.pipeline.land(id, answer) {
                    // The group and everything that waited go to disk, in order.
                    Landed::Queue(to_disk) => {
                        let because = because.unwrap_or(QueuedBecause::Down);
                        node.put_on_disk(to_disk, because, ctx);
                        node.status.set_waiting(0);
                    }
                    // The requester may have given up (timeout, client gone): the work was done.
                    Landed::Reply(group) => answer_each(group, delivery),
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

    fn send(&mut self, op: Op) -> impl Future<Output = Delivery> + 'static {
        let http = self.http.clone();
        let status = Arc::clone(&self.status);
        let (write_timeout, query_timeout) =
            (self.settings.write_timeout, self.settings.query_timeout);
        // awc bounds the wait for the answer's head; this also bounds a body that stalls.
        let limit = match op {
            Op::Write(_) => write_timeout,
            Op::Mutation(_) => query_timeout,
        } + BODY_GRACE;
        status.traffic().sent(&op);
        let exchange = match op {
            Op::Write(write) => {
                let url = self.write_urls.get(&write.target.query);
                Either::Left(async move { client::write(&http, &url, &write, write_timeout).await })
            }
            Op::Mutation(query) => {
                let node = Arc::clone(&status);
                Either::Right(async move {
                    client::query_buffered(&http, node.url(), &query, query_timeout).await
                })
            }
        };
        async move {
            let _in_flight = status.start_request();
            let delivery = tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Delivery::Failed(ExchangeError::Timeout(limit).into()));
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
}

/// Answers each piece of work a request carried with the node's answer; the last, nearly always
/// the only one, takes the answer itself rather than a copy.
fn answer_each(group: Group<Pending>, delivery: Delivery) {
    let mut group = group.into_iter();
    let last = group.next_back();
    for pending in group {
        let _ = pending.reply.send(delivery.clone());
    }
    if let Some(last) = last {
        let _ = last.reply.send(delivery);
    }
}

/// The answer for a copy that could not be stored. The node is flagged first, so that the copy is
/// known to be missing whatever happens next.
fn not_stored(queue: &NodeQueue, why: GatewayError) -> Delivery {
    match queue.refuse_copy() {
        Ok(()) => Delivery::Failed(why.into()),
        Err(e) => Delivery::Failed(NodeError::Gateway(GatewayError::Unflagged(format!(
            "{why}; and its needs_resync flag could not be stored: {e}"
        )))),
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
        self.replay
            .retune(retune.initial_backoff, retune.max_backoff);
        if settings.health_interval != retune.health_interval {
            settings.health_interval = retune.health_interval;
            if let Some(timer) = self.probe_timer.take() {
                ctx.cancel_future(timer);
            }
            self.probe_timer = Some(ctx.run_interval(retune.health_interval, Self::probe));
        }
    }
}

/// A node's bounded line of jobs: the sender for the gateway's handlers, the receiver for
/// [`Node::take_jobs`].
///
/// Its own channel rather than actix's mailbox because a mailbox message costs two allocations (the
/// boxed envelope and the queue's node) on every replica of every write; tokio's bounded channel
/// stores its messages in blocks of 32 that it reuses. Order is a channel's: jobs are handled in
/// the order they were sent.
pub fn jobs(capacity: usize) -> (mpsc::Sender<Job>, mpsc::Receiver<Job>) {
    mpsc::channel(capacity)
}

impl StreamHandler<Job> for Node {
    fn handle(&mut self, job: Job, ctx: &mut Self::Context) {
        let pending = Pending {
            seq: self.next_seq,
            op: job.op,
            reply: job.reply,
            arrived: Instant::now(),
        };
        self.next_seq += 1;
        if let Some(because) = self.must_queue() {
            self.put_on_disk([pending], because, ctx);
        } else {
            self.pipeline.push(pending);
            self.pump(ctx);
        }
    }

    /// The line closes only when the node's handle is gone, which stops the actor's thread too:
    /// until then the actor keeps its other work (replay, probes) going.
    fn finished(&mut self, _: &mut Self::Context) {}
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

impl Handler<Maintain> for Node {
    type Result = ();

    fn handle(&mut self, _: Maintain, ctx: &mut Self::Context) {
        if self.queue.in_maintenance() {
            // What is on the wire finishes; what waits goes behind the backlog to come.
            self.spill_waiting(QueuedBecause::Maintenance, ctx);
        } else {
            self.replay_now(ctx);
        }
    }
}

impl Handler<Flush> for Node {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.replay_now(ctx);
    }
}

impl Handler<Shutdown> for Node {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.closing = true;
        // What is on the wire goes to disk too, under its own numbers: a stuck node may never
        // answer it. If the node did apply it, the replay writes the same points again, which
        // InfluxDB absorbs; whatever else reached it meanwhile commutes with it or is queued behind.
        let held = self.pipeline.take_all();
        self.put_on_disk(held, QueuedBecause::Stopping, ctx);
        self.status.set_waiting(0);
    }
}
