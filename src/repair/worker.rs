//! What every job does with the nodes, whatever its kind: read a chunk of a replica (its points,
//! their digest, or influxd's own aggregates of them), hand line protocol to a node's actor at the
//! configured rate, wait until a node has applied what it was handed, and store the job's progress.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use futures_util::future::{FutureExt, LocalBoxFuture};

use super::{
    influx::{ident, ChunkReader, Influx, InfluxError},
    job::{Divergence, Plan, RunProgress, Task},
    lines::{self, Digest, EncodeError, Encoded, FieldType, Schema, SeriesPart},
    store::Record,
    Repairs, Running,
};
use crate::{
    gateway::Gateway,
    line_protocol::TimeSpan,
    node::{
        client::{self, GatewayError},
        Delivery, NodeError, NodeId, NodeState, NodeWrite, Op, WriteTarget,
    },
    router::{Placement, Router, ShardId},
};

/// Pieces handed to nodes whose answers a job awaits at once.
pub const HANDED: usize = 4;

/// Pieces handed to nodes' actors and not answered yet, oldest first.
#[derive(Default)]
pub struct Handed {
    answers: std::collections::VecDeque<(NodeId, u64, LocalBoxFuture<'static, Delivery>)>,
}

/// Times a chunk is copied before it is listed as divergent.
pub const COPIES: u32 = 3;

/// A piece of a chunk handed to a node at once.
pub const BATCH_POINTS: u64 = 5_000;
/// The same, in bytes.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// How often a job waiting for a node looks again.
pub const POLL: Duration = Duration::from_millis(250);

/// Times a read that failed for want of an answer is tried again before the job fails.
pub const READ_ATTEMPTS: u32 = 10;

/// Tries of a read whose node may simply be gone (verify leaves it out then).
const QUICK_ATTEMPTS: u32 = 3;

/// Connections the job thread keeps per node.
const CONNECTIONS: usize = 4;

/// How a job that ran to its end ended.
pub enum Ending {
    /// Complete.
    Done,
    /// Complete, but with chunks that still differ: failed, with this.
    Differs(String),
}

/// Why a job stopped before its end.
pub enum Stop {
    /// `DELETE /cluster/jobs/ID`.
    Cancelled,
    /// The gateway is stopping: the job stays `running`, to resume at the next start.
    ShuttingDown,
    /// Anything else: the job fails with this.
    Failed(String),
}

impl From<InfluxError> for Stop {
    fn from(e: InfluxError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// A read that failed: the node's fault (maybe passing), or the job's end.
pub enum CopyError {
    /// The node did not answer as hoped.
    Source(InfluxError),
    /// The job must stop.
    Stop(Stop),
}

impl From<InfluxError> for CopyError {
    fn from(e: InfluxError) -> Self {
        CopyError::Source(e)
    }
}

impl From<Stop> for CopyError {
    fn from(stop: Stop) -> Self {
        CopyError::Stop(stop)
    }
}

/// One chunk of one task, on the shard whose series it covers.
#[derive(Clone, Copy)]
pub struct Piece<'t> {
    /// The task.
    pub task: &'t Task,
    /// The shard (its index in the layout the job reads by: the earlier one for a rebalance).
    pub shard: ShardId,
    /// First instant (ns).
    pub start: i64,
    /// Instant after the last (ns).
    pub end: i64,
}

impl Piece<'_> {
    /// Opens its points on `influx`, every series apart, to be read a series part at a time.
    pub async fn open(&self, influx: &Influx) -> Result<ChunkReader, InfluxError> {
        let task = self.task;
        influx
            .chunk(&task.db, &task.rp, &task.measurement, self.start, self.end)
            .await
    }
}

/// A piece of a chunk, as line protocol.
#[derive(Default)]
pub struct Batch {
    /// The lines.
    pub body: Vec<u8>,
    /// Their points and span.
    pub encoded: Encoded,
}

/// How replicas are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Every point, read and hashed.
    Exact,
    /// influxd's `count` of every field and `sum` of numeric ones, per series: no point read.
    Quick,
}

/// What copying one chunk did, for a repair or a rebalance.
#[derive(Debug, Default)]
pub struct Copied {
    /// Points handed to nodes.
    pub points: u64,
    /// How it still differs after the last copy, if it does.
    pub divergence: Option<Divergence>,
}

impl Counted for Copied {
    fn count(self, _: &Task, record: &mut Record) {
        record.job.points_copied += self.points;
        record.job.divergent.extend(self.divergence);
    }
}

/// What one chunk of a job did, counted in the job.
pub(crate) trait Counted {
    /// Counts it in `record`, for the chunk of `task`.
    fn count(self, task: &Task, record: &mut Record);
}

/// A chunk's points on one replica: `(series key, time)` to field set, all escaped.
pub type Points = BTreeMap<(Vec<u8>, i64), Vec<u8>>;

/// The shared machinery of a job under way.
pub struct Worker<'g> {
    /// The gateway.
    pub gateway: &'g Gateway,
    /// The jobs.
    pub repairs: &'g Repairs,
    /// The job.
    pub running: &'g Running,
    http: awc::Client,
    authorization: Option<HeaderValue>,
    /// Chunk length (ns).
    pub chunk: i64,
    /// When this run started.
    pub started: Instant,
    /// What this run did.
    pub run: RunProgress,
}

impl<'g> Worker<'g> {
    /// For `running`, on the job thread.
    pub fn new(repairs: &'g Repairs, running: &'g Running) -> Self {
        let gateway = repairs.gateway();
        let config = gateway.config();
        Worker {
            gateway,
            repairs,
            running,
            http: client::http_client(gateway.query_tls(), CONNECTIONS),
            authorization: config
                .auth
                .node_credentials
                .as_ref()
                .and_then(crate::auth::basic),
            chunk: i64::try_from(config.repair.chunk.as_nanos()).unwrap_or(i64::MAX),
            started: Instant::now(),
            run: RunProgress::default(),
        }
    }

    /// Stores `record` (flushed before this returns).
    pub async fn save(&self, record: &Record) -> Result<(), Stop> {
        self.repairs
            .store
            .save(record)
            .await
            .map_err(|e| Stop::Failed(format!("cannot store progress: {e}")))
    }

    /// Counts a chunk done and stores the job with `update` applied.
    pub async fn chunk_done(&mut self, update: impl FnOnce(&mut Record)) -> Result<(), Stop> {
        self.run.chunks += 1;
        let record = {
            let mut record = self.running.lock();
            record.job.chunks_done += 1;
            update(&mut record);
            record
                .job
                .measure(&self.run, self.started.elapsed().as_secs_f64());
            record.clone()
        };
        self.save(&record).await
    }

    /// The node's name.
    pub fn node_name(&self, node: NodeId) -> &str {
        self.gateway.nodes()[node].status().name()
    }

    /// The node, as jobs query it.
    pub fn influx(&self, node: NodeId) -> Influx {
        Influx::new(
            self.http.clone(),
            self.gateway.nodes()[node].status().url(),
            self.authorization.clone(),
            self.gateway.config().query.timeout,
        )
    }

    /// Whether the job must stop now.
    pub fn check(&self) -> Result<(), Stop> {
        if self.repairs.stopping() {
            Err(Stop::ShuttingDown)
        } else if self.running.cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Says what the job waits for (`None`: nothing).
    pub fn activity(&self, what: Option<String>) {
        self.running.lock().job.activity = what;
    }

    /// Of `candidates` (in read order), the replicas a job may read as complete, best first: up,
    /// not flagged, not under repair, not drained, and those with nothing queued first (a
    /// replica with writes still queued for it lacks them yet).
    pub fn complete(&self, candidates: Vec<NodeId>) -> Vec<NodeId> {
        let nodes = self.gateway.nodes();
        let mut complete: Vec<NodeId> = candidates
            .into_iter()
            .filter(|&n| {
                let node = &nodes[n];
                node.status().state() != NodeState::Down
                    && !node.queue().needs_resync()
                    && !node.status().is_repairing()
                    && !node.queue().in_maintenance()
            })
            .collect();
        complete.sort_by_key(|&n| !nodes[n].queue().is_empty());
        complete
    }

    /// Whether a series read from a replica belongs to `shard` under the current routes.
    pub fn keeps(&self, db: &str, shard: ShardId, part: &SeriesPart) -> bool {
        keeps(self.gateway.read_router(), db, shard, part)
    }

    /// Opens the piece's chunk on `influx`, to be read a series part at a time, only the series
    /// placed on the piece's shard.
    pub async fn parts(
        &self,
        influx: &Influx,
        piece: &Piece<'_>,
    ) -> Result<Parts<'g>, InfluxError> {
        let task = piece.task;
        Ok(Parts {
            reader: piece.open(influx).await?,
            router: self.gateway.read_router(),
            db: task.db.clone(),
            shard: piece.shard,
        })
    }

    /// After `what` failed for want of an answer from some node: waits a little longer each time
    /// and says to try again, at most [`READ_ATTEMPTS`] times, or says why the job stops.
    pub async fn patience(
        &self,
        what: &str,
        error: CopyError,
        failures: &mut u32,
    ) -> Result<(), Stop> {
        match error {
            CopyError::Stop(stop) => Err(stop),
            CopyError::Source(e) if e.is_retryable() && *failures < READ_ATTEMPTS => {
                *failures += 1;
                log::warn!("{what}: {e}; trying again");
                self.activity(Some(format!("{what}: waiting for a node ({e})")));
                tokio::time::sleep(POLL * 4 * *failures).await;
                self.check()
            }
            CopyError::Source(e) => Err(e.into()),
        }
    }

    /// After a failed read from `node`: waits for the node (and for what was handed to it) and
    /// says to read again, at most [`READ_ATTEMPTS`] times, or says why the job stops.
    pub async fn after_failure(
        &self,
        node: NodeId,
        error: CopyError,
        failures: &mut u32,
    ) -> Result<(), Stop> {
        match error {
            CopyError::Stop(stop) => Err(stop),
            CopyError::Source(e) if e.is_retryable() && *failures < READ_ATTEMPTS => {
                *failures += 1;
                log::debug!(
                    "reading from {} failed, trying again: {e}",
                    self.node_name(node)
                );
                self.wait_applied(node).await?;
                tokio::time::sleep(POLL).await;
                Ok(())
            }
            CopyError::Source(e) => Err(e.into()),
        }
    }

    /// `node`'s digest of the chunk, of the series placed on the piece's shard.
    pub async fn digest(
        &self,
        node: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
        compare: Compare,
    ) -> Result<Digest, Stop> {
        let influx = self.influx(node);
        let mut failures = 0;
        loop {
            self.check()?;
            match self.read_digest(&influx, piece, schema, compare).await {
                Ok(digest) => return Ok(digest),
                Err(e) => self.after_failure(node, e, &mut failures).await?,
            }
        }
    }

    /// Like [`Self::digest`], but a node that cannot be read after a few quick tries is `None`
    /// rather than waited for: a verify leaves it out of the comparison.
    pub async fn try_digest(
        &self,
        node: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
        compare: Compare,
    ) -> Result<Option<Digest>, Stop> {
        let influx = self.influx(node);
        for attempt in 0..QUICK_ATTEMPTS {
            self.check()?;
            match self.read_digest(&influx, piece, schema, compare).await {
                Ok(digest) => return Ok(Some(digest)),
                Err(CopyError::Stop(stop)) => return Err(stop),
                Err(CopyError::Source(e)) if e.is_retryable() => {
                    log::debug!(
                        "{} left out of a comparison for now: {e}",
                        self.node_name(node)
                    );
                    tokio::time::sleep(POLL * (attempt + 1)).await;
                }
                Err(CopyError::Source(e)) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn read_digest(
        &self,
        influx: &Influx,
        piece: &Piece<'_>,
        schema: &mut Schema,
        compare: Compare,
    ) -> Result<Digest, CopyError> {
        match compare {
            Compare::Exact => self.exact_digest(influx, piece, schema).await,
            Compare::Quick => self.quick_digest(influx, piece, schema).await,
        }
    }

    async fn exact_digest(
        &self,
        influx: &Influx,
        piece: &Piece<'_>,
        schema: &mut Schema,
    ) -> Result<Digest, CopyError> {
        let task = piece.task;
        let mut digest = Digest::default();
        let mut lines = Vec::new();
        let mut parts = self.parts(influx, piece).await?;
        while let Some(part) = parts.next().await? {
            lines.clear();
            let encoded = encode(influx, task, &part, schema, &mut lines).await?;
            digest.update(&lines, encoded.points);
        }
        Ok(digest)
    }

    /// `count` of every field and `sum` of the numeric ones, per series, hashed; its point count
    /// is the largest field count of each series, summed.
    async fn quick_digest(
        &self,
        influx: &Influx,
        piece: &Piece<'_>,
        schema: &mut Schema,
    ) -> Result<Digest, CopyError> {
        let task = piece.task;
        schema.refresh(influx.schema(&task.db, &task.rp, &task.measurement).await?);
        let mut aggregates = vec!["count(*)".to_owned()];
        for (field, kind) in schema.fields() {
            if matches!(
                kind,
                FieldType::Float | FieldType::Integer | FieldType::Unsigned
            ) {
                aggregates.push(format!("sum({})", ident(field)));
            }
        }
        let q = format!(
            "SELECT {} FROM {}.{} WHERE time >= {} AND time < {} GROUP BY *",
            aggregates.join(", "),
            ident(&task.rp),
            ident(&task.measurement),
            piece.start,
            piece.end
        );
        let mut digest = Digest::default();
        for part in influx.select(&task.db, &q).await? {
            if !self.keeps(&task.db, piece.shard, &part) {
                continue;
            }
            let counted = part.columns.iter().position(|c| c.starts_with("count_"));
            for row in &part.values {
                let points = part
                    .columns
                    .iter()
                    .zip(row)
                    .filter(|(c, _)| c.starts_with("count_"))
                    .filter_map(|(_, v)| v.as_u64())
                    .max()
                    .unwrap_or(0);
                if counted.is_some() && points == 0 {
                    continue;
                }
                let mut text = serde_json::to_vec(&(&part.name, &part.tags, &part.columns))
                    .unwrap_or_default();
                text.extend_from_slice(&serde_json::to_vec(&row[1..]).unwrap_or_default());
                digest.update(&text, points);
            }
        }
        Ok(digest)
    }

    /// `node`'s points of the chunk placed on the piece's shard, at most `limit` of them; `None`
    /// when there are more.
    pub async fn points(
        &self,
        node: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
        limit: usize,
    ) -> Result<Option<Points>, Stop> {
        let influx = self.influx(node);
        let mut failures = 0;
        loop {
            self.check()?;
            match self.read_points(&influx, piece, schema, limit).await {
                Ok(points) => return Ok(points),
                Err(e) => self.after_failure(node, e, &mut failures).await?,
            }
        }
    }

    async fn read_points(
        &self,
        influx: &Influx,
        piece: &Piece<'_>,
        schema: &mut Schema,
        limit: usize,
    ) -> Result<Option<Points>, CopyError> {
        let task = piece.task;
        let mut points = Points::new();
        let mut parts = self.parts(influx, piece).await?;
        while let Some(part) = parts.next().await? {
            // Field types first, so that the walk below knows every column.
            encode(influx, task, &part, schema, &mut Vec::new()).await?;
            let walked = lines::for_each_point(&part, schema, |key, time, fields| {
                points.insert((key.to_vec(), time), fields.to_vec());
            });
            walked.map_err(|e| CopyError::Stop(Stop::Failed(e.to_string())))?;
            if points.len() > limit {
                return Ok(None);
            }
        }
        Ok(Some(points))
    }

    /// Hands a piece to `node`'s actor and waits for its answer; returns the node's refusal,
    /// if it refused it. See [`Worker::hand`].
    pub async fn deliver(
        &mut self,
        node: NodeId,
        task: &Task,
        batch: Batch,
    ) -> Result<Option<String>, CopyError> {
        let mut handed = Handed::default();
        let refused = self.hand(node, task, batch, &mut handed).await?;
        Ok(refused.or(self.collect(&mut handed, 0).await?))
    }

    /// Hands a piece to `node`'s actor, so that it is ordered with live writes and queued if
    /// the node fails, without waiting for its answer: reading the next piece overlaps the node
    /// writing this one. At most [`HANDED`] answers are awaited at once; returns the refusal of
    /// a piece answered meanwhile, if any. Sleeps as long as the job is ahead of
    /// `repair.max_points_per_second`.
    pub async fn hand(
        &mut self,
        node: NodeId,
        task: &Task,
        batch: Batch,
        handed: &mut Handed,
    ) -> Result<Option<String>, CopyError> {
        let query = format!(
            "db={}&rp={}&precision=ns",
            url::form_urlencoded::byte_serialize(task.db.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(task.rp.as_bytes()).collect::<String>()
        );
        let span = match batch.encoded.span {
            Some((first, last)) => TimeSpan::Range { first, last },
            None => TimeSpan::Nothing,
        };
        let write = NodeWrite {
            target: Arc::new(WriteTarget {
                query,
                authorization: self.authorization.clone(),
            }),
            body: Bytes::from(batch.body),
            span,
            points: batch.encoded.points,
            ends_cleanly: true,
        };
        let handle = &self.gateway.nodes()[node];
        let mut refused = None;
        loop {
            self.check()?;
            let mut answer = handle.deliver(Op::Write(write.clone())).boxed_local();
            match (&mut answer).now_or_never() {
                // The mailbox is full: wait for an answer of ours, or a moment, and again.
                Some(Delivery::Failed(NodeError::Gateway(GatewayError::Busy(_)))) => {
                    if handed.answers.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    } else {
                        refused =
                            refused.or(self.collect(handed, handed.answers.len() - 1).await?);
                    }
                }
                Some(delivery) => {
                    refused = refused.or(self.judge(node, write.points, delivery)?);
                    break;
                }
                None => {
                    handed.answers.push_back((node, write.points, answer));
                    break;
                }
            }
        }
        self.run.points += write.points;
        refused = refused.or(self.collect(handed, HANDED).await?);
        self.throttle().await;
        Ok(refused)
    }

    /// Awaits handed pieces' answers until at most `left` are outstanding; returns the first
    /// refusal among them.
    pub async fn collect(
        &mut self,
        handed: &mut Handed,
        left: usize,
    ) -> Result<Option<String>, CopyError> {
        let mut refused = None;
        while handed.answers.len() > left {
            let Some((node, points, answer)) = handed.answers.pop_front() else {
                break;
            };
            let delivery = answer.await;
            refused = refused.or(self.judge(node, points, delivery)?);
        }
        Ok(refused)
    }

    /// What a node's answer to a handed piece means for the job.
    fn judge(
        &self,
        node: NodeId,
        points: u64,
        delivery: Delivery,
    ) -> Result<Option<String>, CopyError> {
        match delivery {
            Delivery::Accepted(_) | Delivery::Queued(_) => {
                self.repairs.count_copied(node, points);
                Ok(None)
            }
            Delivery::Rejected(answer) => Ok(Some(answer.refusal())),
            Delivery::Failed(e) => {
                self.check()?;
                Err(CopyError::Stop(Stop::Failed(format!(
                    "cannot hand a piece to {}: {e}",
                    self.node_name(node)
                ))))
            }
        }
    }

    async fn throttle(&self) {
        let rate = self.gateway.config().repair.max_points_per_second;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.run.points as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }

    /// Waits until `node`'s queue is empty: whatever was queued for it has been applied (or
    /// dead-lettered, which a comparison then finds).
    pub async fn wait_applied(&self, node: NodeId) -> Result<(), Stop> {
        let handle = &self.gateway.nodes()[node];
        while !handle.queue().is_empty() {
            self.check()?;
            if handle.queue().in_maintenance() {
                return Err(Stop::Failed(format!(
                    "{} was drained for maintenance: its queue is held; run the job again once it is resumed",
                    handle.status().name()
                )));
            }
            self.activity(Some(format!(
                "waiting for {}'s queue to be replayed ({})",
                handle.status().name(),
                handle.status().state().as_str()
            )));
            tokio::time::sleep(POLL).await;
        }
        self.activity(None);
        Ok(())
    }
}

/// A job that walks its plan chunk by chunk: repair and verify.
pub(crate) trait Walk<'g> {
    /// What one chunk did.
    type Outcome: Counted;
    /// What planning found beside the plan (a verify's report, its shards listed).
    type Found;
    /// The shared machinery.
    fn worker(&mut self) -> &mut Worker<'g>;
    /// Makes the plan.
    async fn plan(&mut self) -> Result<(Plan, Self::Found), CopyError>;
    /// Keeps what planning found in the job (nothing, unless said otherwise).
    fn keep_found(_found: Self::Found, _record: &mut Record) {}
    /// Handles the chunk `[start, end)` of `task`.
    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Self::Outcome, Stop>;
}

/// Walks `job`'s plan from where it stands, making it first when there is none. The plan and the
/// job's progress are stored after every chunk: a job killed anywhere resumes at the next chunk.
pub(crate) async fn walk<'g, J: Walk<'g>>(job: &mut J) -> Result<(), Stop> {
    let running = job.worker().running;
    let stored = running.lock().plan.clone();
    let mut plan = match stored {
        Some(plan) => plan,
        None => {
            let mut failures = 0;
            let (plan, found) = loop {
                match job.plan().await {
                    Ok(planned) => break planned,
                    Err(e) => job.worker().patience("planning", e, &mut failures).await?,
                }
            };
            let record = {
                let mut record = running.lock();
                record.job.chunks_total = plan.chunks_total();
                J::keep_found(found, &mut record);
                record.plan = Some(plan.clone());
                record.clone()
            };
            job.worker().save(&record).await?;
            plan
        }
    };
    // A task's field types are read once, for all its chunks.
    let mut schemas: BTreeMap<usize, Schema> = BTreeMap::new();
    while let Some((task, start, end)) = plan.current() {
        let task = task.clone();
        let schema = schemas.entry(plan.task).or_default();
        schema.enter_chunk(start, end);
        let outcome = job.chunk(&task, start, end, schema).await?;
        plan.advance();
        schemas.retain(|&t, _| t >= plan.task);
        let position = plan.clone();
        job.worker()
            .chunk_done(|record| {
                outcome.count(&task, record);
                record.plan = Some(position);
            })
            .await?;
    }
    Ok(())
}

/// A chunk's series parts placed on one shard, as [`Worker::parts`] opens them.
pub struct Parts<'r> {
    reader: ChunkReader,
    router: &'r Router,
    db: String,
    shard: ShardId,
}

impl Parts<'_> {
    /// The next series part placed on the shard, or `None` at the end of the answer.
    pub async fn next(&mut self) -> Result<Option<SeriesPart>, InfluxError> {
        while let Some(part) = self.reader.next().await? {
            if keeps(self.router, &self.db, self.shard, &part) {
                return Ok(Some(part));
            }
        }
        Ok(None)
    }
}

/// Whether a series of `db` read from a replica belongs to `shard` under `router`'s routes.
fn keeps(router: &Router, db: &str, shard: ShardId, part: &SeriesPart) -> bool {
    shard_of(router, db, part) == shard
}

/// The shard a series of `db` read from a replica is on under `router`'s routes.
pub fn shard_of(router: &Router, db: &str, part: &SeriesPart) -> ShardId {
    match router.placement(db, &part.name) {
        Placement::Shard(shard) => shard,
        Placement::ByTag { key, shards } => {
            router.shard_for_tag(shards, part.tag(key.name()).unwrap_or(""))
        }
    }
}

/// Encodes `part`, reading the measurement's field types again once if a field is unknown (it
/// was created after they were read).
pub async fn encode(
    node: &Influx,
    task: &Task,
    part: &SeriesPart,
    schema: &mut Schema,
    out: &mut Vec<u8>,
) -> Result<Encoded, CopyError> {
    let mark = out.len();
    let failed = |e: EncodeError| {
        CopyError::Stop(Stop::Failed(format!(
            "{}.{}.{}: {e}",
            task.db, task.rp, task.measurement
        )))
    };
    resolve(node, task, &part.columns, schema).await?;
    match lines::encode(part, schema, out) {
        Ok(encoded) => Ok(encoded),
        Err(EncodeError::UnknownField(_)) => {
            out.truncate(mark);
            schema.refresh(node.schema(&task.db, &task.rp, &task.measurement).await?);
            resolve(node, task, &part.columns, schema).await?;
            lines::encode(part, schema, out).map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Asks `node` the type each field of `columns` whose type differs between shard groups has in
/// the chunk being read.
async fn resolve(
    node: &Influx,
    task: &Task,
    columns: &[String],
    schema: &mut Schema,
) -> Result<(), CopyError> {
    schema.enter_node(node.url());
    let Some((chunk, fields)) = schema.unresolved(columns) else {
        return Ok(());
    };
    for field in fields {
        let integers = match schema.get(field) {
            Some(FieldType::Unsigned) => FieldType::Unsigned,
            _ => FieldType::Integer,
        };
        let asked = node
            .field_type(
                &task.db,
                &task.rp,
                &task.measurement,
                field,
                chunk,
                integers,
            )
            .await?;
        // No value of it in the chunk: any type will do, and it is not asked again.
        if let Some(kind) = asked.or(schema.get(field)) {
            schema.resolve(field, kind);
        }
    }
    Ok(())
}
