//! One repair, from its plan to its last verified chunk.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    influx::{ident, Influx, InfluxError, RetentionPolicy},
    job::{self, Divergence, Plan, ReplicaCount, RunProgress, State, Task},
    lines::{self, Digest, EncodeError, Encoded, Schema, SeriesPart},
    Running,
};
use crate::{
    gateway::Gateway,
    line_protocol::TimeSpan,
    node::{
        client::{self, GatewayError},
        Delivery, NodeError, NodeId, NodeState, NodeWrite, Op, WriteTarget,
    },
    router::{Placement, ShardId},
};

/// Times a chunk is copied before it is listed as divergent.
pub const COPIES: u32 = 3;

/// A piece of a chunk handed to the target at once.
const BATCH_POINTS: u64 = 5_000;
const BATCH_BYTES: usize = 1024 * 1024;

/// How often a job waiting for a node looks again.
const POLL: Duration = Duration::from_millis(250);

/// How long a job waits for a replica to read from before it fails.
const SOURCE_WAIT: Duration = Duration::from_secs(60);

/// Connections the repair thread keeps per node.
const CONNECTIONS: usize = 4;

/// Why a job stopped before its end.
enum Stop {
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

/// Runs `running` to its end (or to the gateway's stop), storing its progress after every chunk.
pub async fn run(gateway: Arc<Gateway>, running: Arc<Running>) {
    let job = running.job();
    let Some(target) = gateway
        .nodes()
        .iter()
        .position(|n| n.status().name() == job.node)
    else {
        gateway.repairs().mark_repairing(&job.node, false);
        finish(
            &gateway,
            &running,
            State::Failed,
            Some(format!("node {:?} is no longer configured", job.node)),
            None,
        )
        .await;
        return;
    };
    let mut repair = Repair::new(&gateway, &running, target);
    let generation = gateway.nodes()[target].queue().resync_generation();
    let outcome = repair.run().await;
    gateway.repairs().mark_repairing(&job.node, false);
    match outcome {
        Ok(()) => {
            let divergent = running.lock().job.divergent.len();
            if divergent == 0 {
                finish(&gateway, &running, State::Done, None, Some(generation)).await;
            } else {
                let error = format!(
                    "{divergent} chunks still differ after {COPIES} copies: see `divergent`"
                );
                finish(&gateway, &running, State::Failed, Some(error), None).await;
            }
        }
        Err(Stop::Cancelled) => finish(&gateway, &running, State::Cancelled, None, None).await,
        Err(Stop::Failed(error)) => {
            finish(&gateway, &running, State::Failed, Some(error), None).await
        }
        Err(Stop::ShuttingDown) => {
            log::info!(
                "job {}: stopped with the gateway; resumes at its next start",
                job.id
            );
        }
    }
}

/// Ends the job in `state`; a job done clears the node's `needs_resync` unless it was flagged
/// again since `generation`.
async fn finish(
    gateway: &Gateway,
    running: &Running,
    state: State,
    error: Option<String>,
    generation: Option<u64>,
) {
    let record = {
        let mut record = running.lock();
        record.job.finish(state, error.clone());
        record.clone()
    };
    let job = &record.job;
    if let Err(e) = gateway.repairs().store.save(&record).await {
        log::error!("job {}: cannot store its end: {e}", job.id);
    }
    gateway.repairs().note_end(&job.node, state);
    match state {
        State::Done => {
            log::warn!(
                "job {}: {} repaired: {} points copied in {} chunks",
                job.id,
                job.node,
                job.points_copied,
                job.chunks_done
            );
            let node = gateway
                .nodes()
                .iter()
                .find(|n| n.status().name() == job.node);
            if let (Some(node), Some(generation)) = (node, generation) {
                match node.queue().clear_resync(generation) {
                    Ok(true) => log::warn!("node {}: needs_resync cleared", job.node),
                    Ok(false) if node.queue().needs_resync() => log::warn!(
                        "node {}: flagged again while it was repaired: stays flagged for another repair",
                        job.node
                    ),
                    Ok(false) => {}
                    Err(e) => log::error!("node {}: cannot clear needs_resync: {e}", job.node),
                }
            }
        }
        State::Cancelled => log::warn!(
            "job {}: cancelled at chunk {} of {}",
            job.id,
            job.chunks_done,
            job.chunks_total
        ),
        _ => log::error!(
            "job {}: repair of {} failed: {}",
            job.id,
            job.node,
            error.unwrap_or_default()
        ),
    }
}

/// A repair under way.
struct Repair<'g> {
    gateway: &'g Gateway,
    running: &'g Running,
    target: NodeId,
    http: awc::Client,
    authorization: Option<actix_web::http::header::HeaderValue>,
    chunk: i64,
    started: Instant,
    run: RunProgress,
    /// Points this run has handed to the target, for the rate limit.
    sent: u64,
}

impl<'g> Repair<'g> {
    fn new(gateway: &'g Gateway, running: &'g Running, target: NodeId) -> Self {
        let config = gateway.config();
        Repair {
            gateway,
            running,
            target,
            http: client::http_client(gateway.query_tls(), CONNECTIONS),
            authorization: config
                .auth
                .node_credentials
                .as_ref()
                .and_then(crate::auth::basic),
            chunk: i64::try_from(config.repair.chunk.as_nanos()).unwrap_or(i64::MAX),
            started: Instant::now(),
            run: RunProgress::default(),
            sent: 0,
        }
    }

    async fn run(&mut self) -> Result<(), Stop> {
        self.meta().await?;
        let plan = self.running.lock().plan.clone();
        let mut plan = match plan {
            Some(plan) => plan,
            None => {
                let plan = self.plan().await?;
                let record = {
                    let mut record = self.running.lock();
                    record.job.chunks_total = plan.chunks_total();
                    record.plan = Some(plan.clone());
                    record.clone()
                };
                self.save(&record).await?;
                plan
            }
        };
        let mut schemas: BTreeMap<usize, Schema> = BTreeMap::new();
        while let Some((task, start, end)) = plan.current() {
            let task = task.clone();
            let schema = schemas.entry(plan.task).or_default();
            let copied = self.chunk(&task, start, end, schema).await?;
            plan.advance();
            schemas.retain(|&t, _| t >= plan.task);
            self.run.chunks += 1;
            let record = {
                let mut record = self.running.lock();
                record.job.chunks_done += 1;
                record.job.points_copied += copied.points;
                record.job.divergent.extend(copied.divergence);
                record
                    .job
                    .measure(&self.run, self.started.elapsed().as_secs_f64());
                record.plan = Some(plan.clone());
                record.clone()
            };
            self.save(&record).await?;
        }
        Ok(())
    }

    async fn save(&self, record: &super::store::Record) -> Result<(), Stop> {
        self.gateway
            .repairs()
            .store
            .save(record)
            .await
            .map_err(|e| Stop::Failed(format!("cannot store progress: {e}")))
    }

    fn node_name(&self, node: NodeId) -> &str {
        self.gateway.nodes()[node].status().name()
    }

    fn influx(&self, node: NodeId) -> Influx {
        Influx::new(
            self.http.clone(),
            self.gateway.nodes()[node].status().url(),
            self.authorization.clone(),
            self.gateway.config().query.timeout,
        )
    }

    fn check(&self) -> Result<(), Stop> {
        if self.gateway.repairs().stopping() {
            Err(Stop::ShuttingDown)
        } else if self.running.cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    fn activity(&self, what: Option<String>) {
        self.running.lock().job.activity = what;
    }

    /// The replicas to read `shard` from, best first: up, complete, not the target.
    fn sources(&self, shard: Option<ShardId>) -> Vec<NodeId> {
        let scope = self.running.lock().job.scope.clone();
        let order = match shard {
            Some(shard) => self.gateway.shard_read_order(shard),
            None => self.gateway.next_read_order(),
        };
        order
            .into_iter()
            .filter(|&n| n != self.target)
            .filter(|&n| {
                scope
                    .source
                    .as_deref()
                    .is_none_or(|s| s == self.node_name(n))
            })
            .filter(|&n| {
                let node = &self.gateway.nodes()[n];
                node.status().state() != NodeState::Down
                    && !node.queue().needs_resync()
                    && self
                        .gateway
                        .repairs()
                        .repairing(node.status().name())
                        .is_none()
            })
            .collect()
    }

    /// A replica to read from, waiting a while for one to be up.
    async fn source(&self, shard: Option<ShardId>) -> Result<NodeId, Stop> {
        let deadline = Instant::now() + SOURCE_WAIT;
        loop {
            self.check()?;
            if let Some(&node) = self.sources(shard).first() {
                self.activity(None);
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(Stop::Failed(
                    "no other replica is up and complete to read from".to_owned(),
                ));
            }
            self.activity(Some(
                "waiting for a complete replica to read from".to_owned(),
            ));
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates on the target the databases, retention policies and continuous queries it lacks.
    async fn meta(&mut self) -> Result<(), Stop> {
        let source_id = self.source(None).await?;
        let (source, target) = (self.influx(source_id), self.influx(self.target));
        let scope = self.running.lock().job.scope.clone();
        let mut warnings = Vec::new();
        let databases: Vec<String> = source
            .databases()
            .await?
            .into_iter()
            .filter(|db| scope.db.as_deref().is_none_or(|only| only == db))
            .collect();
        if let Some(db) = &scope.db {
            if !databases.contains(db) {
                return Err(Stop::Failed(format!(
                    "database {db:?} not found on {}",
                    self.node_name(source_id)
                )));
            }
        }
        let present = target.databases().await?;
        for db in &databases {
            if !present.contains(db) {
                target
                    .execute(None, &format!("CREATE DATABASE {}", ident(db)))
                    .await?;
                log::info!(
                    "repair of {}: database {db} created",
                    self.node_name(self.target)
                );
            }
            let theirs = target.retention_policies(db).await?;
            for rp in source.retention_policies(db).await? {
                let statement = match theirs.iter().find(|t| t.name == rp.name) {
                    None => Some(policy_statement("CREATE", db, &rp)),
                    Some(t) if t != &rp => Some(policy_statement("ALTER", db, &rp)),
                    Some(_) => None,
                };
                if let Some(statement) = statement {
                    target.execute(Some(db), &statement).await?;
                }
            }
        }
        let theirs = target.continuous_queries().await?;
        for cq in source.continuous_queries().await? {
            if !databases.contains(&cq.db) {
                continue;
            }
            if !theirs.iter().any(|t| t.db == cq.db && t.name == cq.name) {
                target.execute(Some(&cq.db), &cq.query).await?;
            }
        }
        let users = target.users().await?;
        for user in source.users().await? {
            if !users.contains(&user) {
                warnings.push(format!(
                    "user {user:?} exists on {} but not on {}: users and grants cannot be copied \
                     (their passwords cannot be read back); create it there by hand",
                    self.node_name(source_id),
                    self.node_name(self.target)
                ));
            }
        }
        let mut record = self.running.lock();
        for warning in warnings {
            if !record.job.warnings.contains(&warning) {
                record.job.warnings.push(warning);
            }
        }
        Ok(())
    }

    /// Every stretch of data the target should hold, by shard, database, policy and measurement.
    async fn plan(&mut self) -> Result<Plan, Stop> {
        self.activity(Some("planning".to_owned()));
        let scope = self.running.lock().job.scope.clone();
        let mut tasks = Vec::new();
        let shards: Vec<ShardId> = (0..self.gateway.router().shards().len())
            .filter(|&s| {
                self.gateway.router().shards()[s]
                    .replicas
                    .contains(&self.target)
            })
            .collect();
        for shard in shards {
            let name = self.gateway.router().shards()[shard].name.clone();
            if self.gateway.router().shards()[shard].replicas.len() < 2 {
                let warning = format!("shard {name} has no other replica: nothing to copy from");
                self.running.lock().job.warnings.push(warning);
                continue;
            }
            let source = self.influx(self.source(Some(shard)).await?);
            for db in source.databases().await? {
                if scope.db.as_deref().is_some_and(|only| only != db) {
                    continue;
                }
                let measurements = source.measurements(&db).await?;
                for rp in source.retention_policies(&db).await? {
                    for m in &measurements {
                        let placement = self.gateway.router().placement(&db, m);
                        if !placement.shards().contains(&shard) {
                            continue;
                        }
                        let Some((first, last)) = source.bounds(&db, &rp.name, m).await? else {
                            continue;
                        };
                        if let Some((start, end)) = job::span(first, last, self.chunk, &scope) {
                            tasks.push(Task {
                                shard: name.clone(),
                                db: db.clone(),
                                rp: rp.name.clone(),
                                measurement: m.clone(),
                                start,
                                end,
                            });
                        }
                    }
                }
            }
        }
        self.activity(None);
        Ok(Plan::new(self.chunk, tasks))
    }

    /// Copies one chunk until the target's digest equals the source's, or [`COPIES`] times.
    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        let Some(shard) = self
            .gateway
            .router()
            .shards()
            .iter()
            .position(|s| s.name == task.shard)
        else {
            return Err(Stop::Failed(format!(
                "shard {} is no longer configured: start a new repair",
                task.shard
            )));
        };
        let piece = Piece {
            task,
            shard,
            start,
            end,
        };
        let mut copied = Copied::default();
        for _ in 0..COPIES {
            let (source_id, source_digest, refusal) =
                self.copy(&piece, schema, &mut copied).await?;
            self.wait_applied().await?;
            let target_digest = self.digest(&piece, schema).await?;
            if source_digest.finish() == target_digest.finish() {
                return Ok(copied);
            }
            let refused = refusal.is_some();
            let counts = [(source_id, &source_digest), (self.target, &target_digest)];
            copied.divergence = Some(self.divergence(&piece, counts, refusal));
            if refused {
                // The same points would be refused again: no use copying them once more.
                return Ok(copied);
            }
        }
        if let Some(d) = &copied.divergence {
            log::warn!(
                "repair of {}: {}.{}.{} [{}, {}) still differs after {COPIES} copies",
                self.node_name(self.target),
                d.db,
                d.rp,
                d.measurement,
                d.start,
                d.end
            );
        }
        Ok(copied)
    }

    /// What `counts` (replica and its digest) say of a chunk that differs.
    fn divergence(
        &self,
        piece: &Piece<'_>,
        counts: [(NodeId, &Digest); 2],
        refusal: Option<String>,
    ) -> Divergence {
        let replicas = counts
            .iter()
            .map(|(node, digest)| {
                let points = digest.finish().0;
                (self.node_name(*node).to_owned(), ReplicaCount { points })
            })
            .collect();
        Divergence {
            db: piece.task.db.clone(),
            rp: piece.task.rp.clone(),
            measurement: piece.task.measurement.clone(),
            start: job::rfc3339_ns(piece.start),
            end: job::rfc3339_ns(piece.end),
            replicas,
            refusal,
        }
    }

    /// Reads the chunk from a source replica and hands it to the target's actor; returns the
    /// source, its digest of the chunk, and the target's refusal if it refused a piece.
    async fn copy(
        &mut self,
        piece: &Piece<'_>,
        schema: &mut Schema,
        copied: &mut Copied,
    ) -> Result<(NodeId, Digest, Option<String>), Stop> {
        let mut failures = 0;
        loop {
            let source_id = self.source(Some(piece.shard)).await?;
            match self.copy_from(source_id, piece, schema, copied).await {
                Ok((digest, refusal)) => return Ok((source_id, digest, refusal)),
                Err(CopyError::Stop(stop)) => return Err(stop),
                Err(CopyError::Source(e)) if e.is_retryable() && failures < 10 => {
                    failures += 1;
                    log::warn!(
                        "repair of {}: reading from {} failed, trying again: {e}",
                        self.node_name(self.target),
                        self.node_name(source_id)
                    );
                    tokio::time::sleep(POLL).await;
                }
                Err(CopyError::Source(e)) => return Err(e.into()),
            }
        }
    }

    async fn copy_from(
        &mut self,
        source_id: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
        copied: &mut Copied,
    ) -> Result<(Digest, Option<String>), CopyError> {
        let Piece {
            task,
            shard,
            start,
            end,
        } = *piece;
        let source = self.influx(source_id);
        let mut reader = source
            .chunk(&task.db, &task.rp, &task.measurement, start, end)
            .await?;
        let mut digest = Digest::default();
        let mut batch = Batch::default();
        let mut refusal = None;
        while let Some(part) = reader.next().await? {
            if !self.keeps(&task.db, shard, &part) {
                continue;
            }
            let before = batch.body.len();
            let encoded = encode(&source, task, &part, schema, &mut batch.body).await?;
            digest.update(&batch.body[before..], encoded.points);
            batch.encoded.merge(encoded);
            if batch.encoded.points >= BATCH_POINTS || batch.body.len() >= BATCH_BYTES {
                let full = std::mem::take(&mut batch);
                refusal = refusal.or(self.deliver(task, full, copied).await?);
            }
        }
        if batch.encoded.points > 0 {
            refusal = refusal.or(self.deliver(task, batch, copied).await?);
        }
        Ok((digest, refusal))
    }

    /// The target's digest of the chunk, of the series placed on `shard`.
    async fn digest(&mut self, piece: &Piece<'_>, schema: &mut Schema) -> Result<Digest, Stop> {
        let Piece {
            task,
            shard,
            start,
            end,
        } = *piece;
        let target = self.influx(self.target);
        let mut failures = 0;
        'again: loop {
            self.check()?;
            let mut digest = Digest::default();
            let mut lines = Vec::new();
            let result: Result<(), CopyError> = async {
                let mut reader = target
                    .chunk(&task.db, &task.rp, &task.measurement, start, end)
                    .await?;
                while let Some(part) = reader.next().await? {
                    if !self.keeps(&task.db, shard, &part) {
                        continue;
                    }
                    lines.clear();
                    let encoded = encode(&target, task, &part, schema, &mut lines).await?;
                    digest.update(&lines, encoded.points);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return Ok(digest),
                Err(CopyError::Stop(stop)) => return Err(stop),
                Err(CopyError::Source(e)) if e.is_retryable() && failures < 10 => {
                    failures += 1;
                    // The target went away: what was sent waits in its queue; read it when back.
                    self.wait_applied().await?;
                    tokio::time::sleep(POLL).await;
                    continue 'again;
                }
                Err(CopyError::Source(e)) => return Err(e.into()),
            }
        }
    }

    /// Whether a series read from a replica belongs to `shard` under the current routes.
    fn keeps(&self, db: &str, shard: ShardId, part: &SeriesPart) -> bool {
        match self.gateway.router().placement(db, &part.name) {
            Placement::Shard(s) => s == shard,
            Placement::ByTag { key, shards } => {
                let value = part.tag(key.name()).unwrap_or("");
                self.gateway.router().shard_for_tag(shards, value) == shard
            }
        }
    }

    /// Hands a piece to the target's actor; returns the target's refusal, if it refused it.
    async fn deliver(
        &mut self,
        task: &Task,
        batch: Batch,
        copied: &mut Copied,
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
        let node = &self.gateway.nodes()[self.target];
        loop {
            self.check()?;
            match node.deliver(Op::Write(write.clone())).await {
                Delivery::Accepted(_) | Delivery::Queued(_) => break,
                Delivery::Rejected(answer) => {
                    return Ok(Some(answer.refusal()));
                }
                Delivery::Failed(NodeError::Gateway(GatewayError::Busy(_))) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Delivery::Failed(e) => {
                    self.check()?;
                    return Err(CopyError::Stop(Stop::Failed(format!(
                        "cannot hand a piece to {}: {e}",
                        self.node_name(self.target)
                    ))));
                }
            }
        }
        copied.points += write.points;
        self.sent += write.points;
        self.run.points += write.points;
        self.throttle().await;
        Ok(None)
    }

    /// Sleeps as long as this run is ahead of `repair.max_points_per_second`.
    async fn throttle(&self) {
        let rate = self.gateway.config().repair.max_points_per_second;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }

    /// Waits until the target's queue is empty: whatever was queued for it has been applied (or
    /// dead-lettered, which the comparison then finds).
    async fn wait_applied(&self) -> Result<(), Stop> {
        let node = &self.gateway.nodes()[self.target];
        while !node.queue().is_empty() {
            self.check()?;
            self.activity(Some(format!(
                "waiting for {}'s queue to be replayed ({})",
                node.status().name(),
                node.status().state().as_str()
            )));
            tokio::time::sleep(POLL).await;
        }
        self.activity(None);
        Ok(())
    }
}

/// One chunk of one task, on the shard whose series it copies.
#[derive(Clone, Copy)]
struct Piece<'t> {
    task: &'t Task,
    shard: ShardId,
    start: i64,
    end: i64,
}

/// What copying one chunk did.
#[derive(Debug, Default)]
struct Copied {
    points: u64,
    divergence: Option<Divergence>,
}

/// A piece of a chunk, as line protocol.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    encoded: Encoded,
}

enum CopyError {
    Source(InfluxError),
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

/// Encodes `part`, reading the measurement's field types again once if a field is unknown (it
/// was created after they were read).
async fn encode(
    node: &Influx,
    task: &Task,
    part: &SeriesPart,
    schema: &mut Schema,
    out: &mut Vec<u8>,
) -> Result<Encoded, CopyError> {
    let mark = out.len();
    match lines::encode(part, schema, out) {
        Ok(encoded) => Ok(encoded),
        Err(EncodeError::UnknownField(_)) => {
            out.truncate(mark);
            *schema = node.schema(&task.db, &task.rp, &task.measurement).await?;
            lines::encode(part, schema, out).map_err(|e| {
                CopyError::Stop(Stop::Failed(format!(
                    "{}.{}.{}: {e}",
                    task.db, task.rp, task.measurement
                )))
            })
        }
        Err(e) => Err(CopyError::Stop(Stop::Failed(format!(
            "{}.{}.{}: {e}",
            task.db, task.rp, task.measurement
        )))),
    }
}

/// `CREATE` or `ALTER` a retention policy to match `rp`.
fn policy_statement(verb: &str, db: &str, rp: &RetentionPolicy) -> String {
    format!(
        "{verb} RETENTION POLICY {} ON {} DURATION {} REPLICATION {} SHARD DURATION {}{}",
        ident(&rp.name),
        ident(db),
        rp.duration,
        rp.replication.max(1),
        rp.shard_duration,
        if rp.default { " DEFAULT" } else { "" }
    )
}
