//! One repair, from its plan to its last verified chunk.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    job::{self, Divergence, Kind, Plan, ReplicaCount, State, Task},
    lines::{Digest, Schema},
    meta::copy_meta,
    worker::{
        encode, walk, Batch, Compare, Copied, CopyError, Ending, Handed, Piece, Stop, Walk, Worker,
        BATCH_BYTES, BATCH_POINTS, COPIES, POLL,
    },
    Repairs, Running,
};
use crate::{node::NodeId, router::ShardId};

/// Why a repair does not clear a flag raised while it ran.
const FLAGGED_AGAIN: &str = "the node was flagged again while it was repaired";

/// How long a job waits for a replica to read from before it fails.
const SOURCE_WAIT: Duration = Duration::from_secs(60);

/// Runs `running` to its end (or to the gateway's stop), storing its progress after every chunk.
pub async fn run(repairs: Arc<Repairs>, running: Arc<Running>) {
    let job = running.job();
    let outcome = match (job.kind, job.node.as_deref()) {
        (Kind::Verify, _) => super::verify::run(&repairs, &running).await,
        (Kind::Rebalance, _) => super::rebalance::run(&repairs, &running).await,
        (Kind::Repair, Some(node)) => repair(&repairs, &running, node).await,
        (Kind::Repair, None) => Err(Stop::Failed("a repair names no node".to_owned())),
    };
    if let Some(node) = &job.node {
        repairs.mark_repairing(node, false);
    }
    let (state, error) = match outcome {
        Ok(Ending::Done) => (State::Done, None),
        Ok(Ending::Differs(error)) | Err(Stop::Failed(error)) => (State::Failed, Some(error)),
        Err(Stop::Cancelled) => (State::Cancelled, None),
        Err(Stop::ShuttingDown) => {
            log::info!(
                "job {}: stopped with the gateway; resumes at its next start",
                job.id
            );
            return;
        }
    };
    let record = {
        let mut record = running.lock();
        record.job.finish(state, error);
        record.clone()
    };
    let job = &record.job;
    if let Err(e) = repairs.store.save(&record).await {
        log::error!("job {}: cannot store its end: {e}", job.id);
    }
    if let Some(node) = &job.node {
        let flagged_again = job.incomplete.as_deref() == Some(FLAGGED_AGAIN);
        repairs.note_end(node, state, flagged_again);
    }
    let what = match &job.node {
        Some(node) => format!("{:?} of {node}", job.kind),
        None => format!("{:?}", job.kind),
    };
    match state {
        State::Done => log::warn!(
            "job {}: {what} done: {} points copied in {} chunks",
            job.id,
            job.points_copied,
            job.chunks_done
        ),
        State::Cancelled => log::warn!(
            "job {}: {what} cancelled at chunk {} of {}",
            job.id,
            job.chunks_done,
            job.chunks_total
        ),
        _ => log::error!(
            "job {}: {what} failed: {}",
            job.id,
            job.error.as_deref().unwrap_or_default()
        ),
    }
}

/// Repairs `node`; when it ends complete, clears the node's `needs_resync` unless it was flagged
/// again since the repair started.
async fn repair(repairs: &Repairs, running: &Running, node: &str) -> Result<Ending, Stop> {
    let gateway = repairs.gateway();
    let Some(target) = gateway
        .nodes()
        .iter()
        .position(|n| n.status().name() == node)
    else {
        return Err(Stop::Failed(format!(
            "node {node:?} is no longer configured"
        )));
    };
    let queue = gateway.nodes()[target].queue();
    let generation = queue.resync_generation();
    {
        let mut record = running.lock();
        let scope = &record.job.scope;
        if scope.db.is_some() || scope.since.is_some() || scope.until.is_some() {
            record
                .job
                .mark_incomplete("limited to part of the data (db, since or until)");
        }
    }
    let outcome = Repair::new(repairs, running, target).run().await;
    if queue.resync_generation() != generation {
        running.lock().job.mark_incomplete(FLAGGED_AGAIN);
    }
    if let Err(Stop::ShuttingDown) = outcome {
        let record = {
            let mut record = running.lock();
            record.stopped_cleanly = true;
            record.clone()
        };
        if let Err(e) = repairs.store.save(&record).await {
            log::error!("job {}: cannot store its stop: {e}", record.job.id);
        }
    }
    outcome?;
    let job = running.job();
    if !job.divergent.is_empty() {
        return Ok(Ending::Differs(format!(
            "{} chunks still differ after {COPIES} copies: see `divergent`",
            job.divergent.len()
        )));
    }
    if let Some(why) = &job.incomplete {
        log::warn!("node {node}: repaired, but needs_resync stays: {why}");
        return Ok(Ending::Done);
    }
    match queue.clear_resync(generation) {
        Ok(true) => log::warn!("node {node}: needs_resync cleared"),
        Ok(false) if queue.needs_resync() => log::warn!(
            "node {node}: flagged again while it was repaired: stays flagged for another repair"
        ),
        Ok(false) => {}
        Err(e) => log::error!("node {node}: cannot clear needs_resync: {e}"),
    }
    Ok(Ending::Done)
}

/// A repair under way.
struct Repair<'g> {
    w: Worker<'g>,
    target: NodeId,
}

impl<'g> Repair<'g> {
    fn new(repairs: &'g Repairs, running: &'g Running, target: NodeId) -> Self {
        Repair {
            w: Worker::new(repairs, running),
            target,
        }
    }

    async fn run(&mut self) -> Result<(), Stop> {
        let mut failures = 0;
        while let Err(e) = self.meta().await {
            self.w
                .patience("creating what the node lacks", e, &mut failures)
                .await?;
        }
        walk(self).await
    }

    /// The replicas to read `shard` from, best first: complete, not the target.
    fn sources(&self, shard: Option<ShardId>) -> Vec<NodeId> {
        let scope = self.w.running.lock().job.scope.clone();
        let order = match shard {
            Some(shard) => self.w.gateway.shard_read_order(shard),
            None => self.w.gateway.next_read_order(),
        };
        let candidates = order
            .into_iter()
            .filter(|&n| n != self.target)
            .filter(|&n| {
                scope
                    .source
                    .as_deref()
                    .is_none_or(|s| s == self.w.node_name(n))
            })
            .collect();
        self.w.complete(candidates)
    }

    /// A replica to read from, waiting a while for one to be up.
    async fn source(&self, shard: Option<ShardId>) -> Result<NodeId, Stop> {
        let deadline = Instant::now() + SOURCE_WAIT;
        loop {
            self.w.check()?;
            if let Some(&node) = self.sources(shard).first() {
                self.w.activity(None);
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(Stop::Failed(
                    "no other replica is up and complete to read from".to_owned(),
                ));
            }
            self.w.activity(Some(
                "waiting for a complete replica to read from".to_owned(),
            ));
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates on the target the databases, retention policies and continuous queries it lacks.
    /// Continuous queries live on their shard's nodes only: a peer of each shard the target
    /// serves is read (or the one source the job names).
    async fn meta(&mut self) -> Result<(), CopyError> {
        let scope = self.w.running.lock().job.scope.clone();
        let router = self.w.gateway.read_router();
        let mut sources = Vec::new();
        if scope.source.is_none() {
            for (shard, s) in router.shards().iter().enumerate() {
                if s.replicas.contains(&self.target) && s.replicas.len() > 1 {
                    let source = self.source(Some(shard)).await?;
                    if !sources.contains(&source) {
                        sources.push(source);
                    }
                }
            }
        }
        if sources.is_empty() {
            sources.push(self.source(None).await?);
        }
        for source in sources {
            copy_meta(&self.w, source, self.target, scope.db.as_deref(), router).await?;
        }
        Ok(())
    }

    /// Every stretch of data the target should hold, by shard, database, policy and measurement.
    async fn plan_tasks(&mut self) -> Result<Plan, CopyError> {
        self.w.activity(Some("planning".to_owned()));
        let scope = self.w.running.lock().job.scope.clone();
        let mut tasks = Vec::new();
        let shards: Vec<ShardId> = (0..self.w.gateway.read_router().shards().len())
            .filter(|&s| {
                self.w.gateway.read_router().shards()[s]
                    .replicas
                    .contains(&self.target)
            })
            .collect();
        for shard in shards {
            let name = self.w.gateway.read_router().shards()[shard].name.clone();
            if self.w.gateway.read_router().shards()[shard].replicas.len() < 2 {
                let warning = format!("shard {name} has no other replica: nothing to copy from");
                let mut record = self.w.running.lock();
                record.job.warnings.push(warning.clone());
                record.job.mark_incomplete(warning);
                continue;
            }
            let source = self.w.influx(self.source(Some(shard)).await?);
            for db in source.databases().await? {
                if scope.db.as_deref().is_some_and(|only| only != db) {
                    continue;
                }
                let measurements = source.measurements(&db).await?;
                for rp in source.retention_policies(&db).await? {
                    for m in &measurements {
                        let placement = self.w.gateway.read_router().placement(&db, m);
                        if !placement.shards().contains(&shard) {
                            continue;
                        }
                        let Some((first, last)) = source.bounds(&db, &rp.name, m).await? else {
                            continue;
                        };
                        if let Some((start, end)) = job::span(first, last, self.w.chunk, &scope) {
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
        self.w.activity(None);
        Ok(Plan::new(self.w.chunk, tasks))
    }

    /// Copies one chunk until the target's digest equals the source's, or [`COPIES`] times.
    async fn copy_chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        let Some(shard) = self
            .w
            .gateway
            .read_router()
            .shards()
            .iter()
            .position(|s| s.name == task.shard)
        else {
            return Err(Stop::Failed(format!(
                "shard {} is no longer configured: start a new repair",
                task.shard
            )));
        };
        // A repair limited in time copies only that part of a chunk.
        let scope = self.w.running.lock().job.scope.clone();
        let piece = Piece {
            task,
            shard,
            start: start.max(scope.since.unwrap_or(i64::MIN)),
            end: end.min(scope.until.unwrap_or(i64::MAX)),
        };
        let mut copied = Copied::default();
        for _ in 0..COPIES {
            let (source_id, refusal) = self.copy(&piece, schema, &mut copied).await?;
            // Both replicas read once every copy handed to them is applied, the source after
            // the target: a live write or delete that raced the copy is then seen on both, so a
            // value the copy brought back over a newer one shows as a difference, and the next
            // copy reads the newer one.
            self.w.wait_applied(self.target).await?;
            self.w.wait_applied(source_id).await?;
            // Two nodes read at once: the comparison costs the slower read, not both.
            let mut source_schema = schema.clone();
            let (target_digest, source_digest) = futures_util::future::join(
                self.w.digest(self.target, &piece, schema, Compare::Exact),
                self.w
                    .digest(source_id, &piece, &mut source_schema, Compare::Exact),
            )
            .await;
            let (target_digest, source_digest) = (target_digest?, source_digest?);
            if source_digest.finish() == target_digest.finish() {
                copied.divergence = None;
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
                self.w.node_name(self.target),
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
                (self.w.node_name(*node).to_owned(), ReplicaCount { points })
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
            conflicts: Vec::new(),
            repaired: false,
        }
    }

    /// Reads the chunk from a source replica and hands it to the target's actor; returns the
    /// source and the target's refusal if it refused a piece.
    async fn copy(
        &mut self,
        piece: &Piece<'_>,
        schema: &mut Schema,
        copied: &mut Copied,
    ) -> Result<(NodeId, Option<String>), Stop> {
        let mut failures = 0;
        loop {
            let source_id = self.source(Some(piece.shard)).await?;
            match self.copy_from(source_id, piece, schema, copied).await {
                Ok(refusal) => return Ok((source_id, refusal)),
                Err(CopyError::Stop(stop)) => return Err(stop),
                Err(CopyError::Source(e)) if e.is_retryable() && failures < 10 => {
                    failures += 1;
                    log::warn!(
                        "repair of {}: reading from {} failed, trying again: {e}",
                        self.w.node_name(self.target),
                        self.w.node_name(source_id)
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
    ) -> Result<Option<String>, CopyError> {
        let task = piece.task;
        let source = self.w.influx(source_id);
        let mut parts = self.w.parts(&source, piece).await?;
        let mut batch = Batch::default();
        let (mut refusal, mut handed) = (None, Handed::default());
        while let Some(part) = parts.next().await? {
            let encoded = encode(&source, task, &part, schema, &mut batch.body).await?;
            batch.encoded.merge(encoded);
            if batch.encoded.points >= BATCH_POINTS || batch.body.len() >= BATCH_BYTES {
                let full = std::mem::take(&mut batch);
                copied.points += full.encoded.points;
                let target = self.target;
                refusal = refusal.or(self.w.hand(target, task, full, &mut handed).await?);
            }
        }
        if batch.encoded.points > 0 {
            copied.points += batch.encoded.points;
            let target = self.target;
            refusal = refusal.or(self.w.hand(target, task, batch, &mut handed).await?);
        }
        Ok(refusal.or(self.w.collect(&mut handed, 0).await?))
    }
}

impl<'g> Walk<'g> for Repair<'g> {
    type Outcome = Copied;
    type Found = ();

    fn worker(&mut self) -> &mut Worker<'g> {
        &mut self.w
    }

    async fn plan(&mut self) -> Result<(Plan, ()), CopyError> {
        Ok((self.plan_tasks().await?, ()))
    }

    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        self.copy_chunk(task, start, end, schema).await
    }
}
