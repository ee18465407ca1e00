//! One verify: every shard's replicas compared chunk by chunk, through influxd's own aggregates
//! (quick) or every point (exact), and with `repair`, what differs settled ([`super::settle`]).

use super::{
    influx::InfluxError,
    job::{
        self, Conflict, Divergence, Plan, ReplicaCount, Report, ShardReport, Spans, Task,
        CONFLICTS_SHOWN,
    },
    lines::{Digest, Schema},
    settle::settle,
    store::Record,
    worker::{
        walk, Batch, Compare, CopyError, Counted, Ending, Piece, Stop, Walk, Worker, BATCH_POINTS,
    },
    Repairs, Running,
};
use crate::{
    node::{NodeId, NodeState},
    router::ShardId,
};

/// How long a divergent chunk must hold still before it is settled.
const SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Most points per replica a chunk may hold to be settled in memory; a larger one is reported
/// for a repair of the node that lacks data.
const SETTLE_LIMIT: usize = 200_000;

/// Runs a verify to its end.
pub async fn run(repairs: &Repairs, running: &Running) -> Result<Ending, Stop> {
    let scope = running.lock().job.scope.clone();
    let mut verify = Verify {
        w: Worker::new(repairs, running),
        compare: if scope.exact {
            Compare::Exact
        } else {
            Compare::Quick
        },
        repair: scope.repair,
    };
    verify.run().await
}

struct Verify<'g> {
    w: Worker<'g>,
    compare: Compare,
    repair: bool,
}

impl Verify<'_> {
    async fn run(&mut self) -> Result<Ending, Stop> {
        walk(self).await?;
        let mut record = self.w.running.lock();
        let report = record.job.report.get_or_insert_with(Report::default);
        report.consistent = report
            .shards
            .iter()
            .all(|s| s.chunks_not_compared == 0 && s.divergent.iter().all(|d| d.repaired));
        Ok(Ending::Done)
    }

    /// Every stretch any replica of a shard in scope holds.
    async fn plan_tasks(&mut self) -> Result<(Plan, Report), CopyError> {
        self.w.activity(Some("planning".to_owned()));
        let scope = self.w.running.lock().job.scope.clone();
        let router = self.w.gateway.read_router();
        let mut report = Report::default();
        let mut spans = Spans::default();
        for (shard, config) in router.shards().iter().enumerate() {
            if scope
                .shard
                .as_deref()
                .is_some_and(|only| only != config.name)
            {
                continue;
            }
            report.shards.push(ShardReport {
                shard: config.name.clone(),
                replicas: self
                    .w
                    .gateway
                    .replica_names(config)
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                ..ShardReport::default()
            });
            if config.replicas.len() < 2 {
                continue; // nothing to compare with
            }
            for &node in &config.replicas {
                let handle = &self.w.gateway.nodes()[node];
                if handle.status().state() == NodeState::Down || handle.queue().in_maintenance() {
                    continue;
                }
                self.holdings(node, shard, &config.name, &scope, &mut spans)
                    .await?;
            }
        }
        self.w.activity(None);
        Ok((spans.plan(self.w.chunk, &scope), report))
    }

    /// Adds what `node` holds of `shard` to `spans`.
    async fn holdings(
        &self,
        node: NodeId,
        shard: ShardId,
        name: &str,
        scope: &job::Scope,
        spans: &mut Spans,
    ) -> Result<(), InfluxError> {
        let influx = self.w.influx(node);
        for db in influx.databases().await? {
            if scope.db.as_deref().is_some_and(|only| only != db) {
                continue;
            }
            let measurements = influx.measurements(&db).await?;
            for rp in influx.retention_policies(&db).await? {
                for m in &measurements {
                    let placement = self.w.gateway.read_router().placement(&db, m);
                    if !placement.shards().contains(&shard) {
                        continue;
                    }
                    let Some((first, last)) = influx.bounds(&db, &rp.name, m).await? else {
                        continue;
                    };
                    let key = (name.to_owned(), db.clone(), rp.name.clone(), m.clone());
                    spans.widen(key, first, last);
                }
            }
        }
        Ok(())
    }

    /// Compares one chunk on every replica that is up, and settles it if asked and it differs.
    async fn compare_chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Outcome, Stop> {
        let gateway = self.w.gateway;
        let Some(shard) = gateway
            .read_router()
            .shards()
            .iter()
            .position(|s| s.name == task.shard)
        else {
            return Err(Stop::Failed(format!(
                "shard {} is no longer configured",
                task.shard
            )));
        };
        let piece = Piece {
            task,
            shard,
            start,
            end,
        };
        let replicas = &gateway.read_router().shards()[shard].replicas;
        let mut up: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|&n| {
                // A drained node's queue is held: compared once it is resumed.
                let node = &gateway.nodes()[n];
                node.status().state() != NodeState::Down && !node.queue().in_maintenance()
            })
            .collect();
        // What was handed to a replica and not applied yet is not a difference.
        for &node in &up {
            self.w.wait_applied(node).await?;
        }
        let digests = self.digests(&mut up, &piece, schema, self.compare).await?;
        let mut outcome = Outcome {
            left_out: up.len() < replicas.len(),
            ..Outcome::default()
        };
        if up.len() < 2 {
            return Ok(outcome);
        }
        outcome.compared = true;
        if same(&digests) {
            return Ok(outcome);
        }
        let mut divergence = self.divergence(&piece, &up, &digests);
        if self.repair {
            // Settled only if it holds still: a chunk live writes are changing is compared
            // again by the next verify rather than settled from a moving picture.
            tokio::time::sleep(SETTLE_PAUSE).await;
            let again = self
                .digests(&mut up.clone(), &piece, schema, self.compare)
                .await?;
            let still = again.len() == digests.len()
                && again
                    .iter()
                    .zip(&digests)
                    .all(|(a, b)| a.finish() == b.finish());
            if still {
                outcome.written = self.settle(&piece, &up, schema, &mut divergence).await?;
            } else {
                divergence.refusal = Some(
                    "changing under live writes: not settled, compared again next time".to_owned(),
                );
            }
        }
        outcome.divergence = Some(divergence);
        Ok(outcome)
    }

    /// The digests of the replicas in `nodes`; a replica that cannot be read now is left out
    /// of `nodes` (and of the comparison).
    async fn digests(
        &self,
        nodes: &mut Vec<NodeId>,
        piece: &Piece<'_>,
        schema: &mut Schema,
        compare: Compare,
    ) -> Result<Vec<Digest>, Stop> {
        let mut digests = Vec::with_capacity(nodes.len());
        let mut read = Vec::with_capacity(nodes.len());
        for &node in nodes.iter() {
            if let Some(digest) = self.w.try_digest(node, piece, schema, compare).await? {
                digests.push(digest);
                read.push(node);
            }
        }
        *nodes = read;
        Ok(digests)
    }

    fn divergence(&self, piece: &Piece<'_>, nodes: &[NodeId], digests: &[Digest]) -> Divergence {
        Divergence {
            db: piece.task.db.clone(),
            rp: piece.task.rp.clone(),
            measurement: piece.task.measurement.clone(),
            start: job::rfc3339_ns(piece.start),
            end: job::rfc3339_ns(piece.end),
            replicas: nodes
                .iter()
                .zip(digests)
                .map(|(&n, d)| {
                    (
                        self.w.node_name(n).to_owned(),
                        ReplicaCount {
                            points: d.finish().0,
                        },
                    )
                })
                .collect(),
            refusal: None,
            conflicts: Vec::new(),
            repaired: false,
        }
    }

    /// Writes to each replica what the majority (or the union) says it lacks, then compares the
    /// chunk again, point by point; returns the points written.
    async fn settle(
        &mut self,
        piece: &Piece<'_>,
        nodes: &[NodeId],
        schema: &mut Schema,
        divergence: &mut Divergence,
    ) -> Result<u64, Stop> {
        let mut held = Vec::with_capacity(nodes.len());
        for &node in nodes {
            match self.w.points(node, piece, schema, SETTLE_LIMIT).await? {
                Some(points) => held.push(points),
                None => {
                    divergence.refusal = Some(format!(
                        "more than {SETTLE_LIMIT} points on {}: too many to settle here; repair the replica that lacks them",
                        self.w.node_name(node)
                    ));
                    return Ok(0);
                }
            }
        }
        let settlement = settle(&held);
        let mut written = 0;
        for (&node, (body, encoded)) in nodes.iter().zip(settlement.writes) {
            if encoded.points == 0 {
                continue;
            }
            written += encoded.points;
            for batch in pieces(&body) {
                let delivered = self.w.deliver(node, piece.task, batch).await;
                let refusal = delivered.map_err(|e| match e {
                    CopyError::Stop(stop) => stop,
                    CopyError::Source(e) => e.into(),
                })?;
                if let Some(refusal) = refusal {
                    divergence.refusal = Some(format!("{}: {refusal}", self.w.node_name(node)));
                }
            }
        }
        divergence.conflicts = settlement
            .conflicts
            .iter()
            .take(CONFLICTS_SHOWN)
            .map(|conflict| Conflict {
                series: String::from_utf8_lossy(&conflict.key).into_owned(),
                time: conflict.time,
                values: nodes
                    .iter()
                    .zip(&conflict.values)
                    .map(|(&n, v)| {
                        let value = v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
                        (self.w.node_name(n).to_owned(), value)
                    })
                    .collect(),
            })
            .collect();
        for &node in nodes {
            self.w.wait_applied(node).await?;
        }
        let mut read = nodes.to_vec();
        let digests = self
            .digests(&mut read, piece, schema, Compare::Exact)
            .await?;
        divergence.repaired = read.len() == nodes.len() && same(&digests);
        Ok(written)
    }
}

impl<'g> Walk<'g> for Verify<'g> {
    type Outcome = Outcome;
    type Found = Report;

    fn worker(&mut self) -> &mut Worker<'g> {
        &mut self.w
    }

    async fn plan(&mut self) -> Result<(Plan, Report), CopyError> {
        self.plan_tasks().await
    }

    fn keep_found(report: Report, record: &mut Record) {
        record.job.report = Some(report);
    }

    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Outcome, Stop> {
        self.compare_chunk(task, start, end, schema).await
    }
}

impl Counted for Outcome {
    fn count(self, task: &Task, record: &mut Record) {
        record.job.points_copied += self.written;
        let report = record.job.report.get_or_insert_with(Report::default);
        if let Some(shard) = report.shards.iter_mut().find(|s| s.shard == task.shard) {
            shard.chunks_compared += u64::from(self.compared);
            shard.chunks_not_compared += u64::from(self.left_out);
            shard.divergent.extend(self.divergence);
        }
    }
}

/// `body` cut at line ends into pieces of at most [`BATCH_POINTS`] lines, each with its span.
fn pieces(body: &[u8]) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut batch = Batch::default();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let time = line
            .rsplit(|&b| b == b' ')
            .next()
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.trim_end().parse::<i64>().ok());
        batch.body.extend_from_slice(line);
        if let Some(time) = time {
            batch.encoded.add(time);
        }
        if batch.encoded.points >= BATCH_POINTS {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.body.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Whether every digest is the same.
fn same(digests: &[Digest]) -> bool {
    digests.windows(2).all(|w| w[0].finish() == w[1].finish())
}

/// What comparing one chunk found.
#[derive(Default)]
struct Outcome {
    compared: bool,
    left_out: bool,
    written: u64,
    divergence: Option<Divergence>,
}
