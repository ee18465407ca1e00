//! A rebalance: the data the earlier layout placed elsewhere than the configured one, moved.
//!
//! The unit is a **move**: the series one earlier shard `b` holds that the configured layout
//! places on a shard `a` whose replicas are not the same nodes. For each chunk of each measurement
//! of `b` (a plan walked and stored like a repair's):
//!
//! 1. the chunk is read from a complete replica of `b`, and each moving series is handed to the
//!    actors of the nodes of `a` that are not replicas of `b` (ordered with live writes, queued if
//!    they fail);
//! 2. once every node concerned has applied what it was handed, **every** replica of `b` and of
//!    `a` is read, and the chunk's moving series must be the same on all of them: a replica of `b`
//!    holding a point the source lacked would otherwise lose it when the series leaves it. A chunk
//!    that differs is copied again (live writes go to both layouts meanwhile, so the next read
//!    catches them), at most [`COPIES`] times, then listed in `divergent`, and the job fails with
//!    nothing deleted.
//!
//! When every chunk is equal, the configured layout is **settled** ([`crate::layouts`]): stored as
//! the one the data follows, so that reads go there and writes stop going to the earlier one.
//! Only then, and once no query planned with the earlier layout is under way, is each moved series
//! **deleted** from the replicas of `b` that are not replicas of `a`, with `DROP SERIES` naming
//! every tag of the series (absent ones as `''`, which matches only their absence), and looked for
//! again until none is left. Deleting is idempotent, so a gateway killed while it deletes simply
//! deletes again; the layouts are kept in the job, so the deletion knows what moved even after the
//! gateway restarted settled.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    influx::{ident, literal, parse_series_key, Influx},
    job::{self, Divergence, Plan, ReplicaCount, Task},
    lines::{Digest, Schema, SeriesPart},
    meta::copy_meta,
    store::{Moving, Record},
    worker::{
        encode, walk, Batch, Copied, CopyError, Ending, Piece, Stop, Walk, Worker, BATCH_BYTES,
        BATCH_POINTS, COPIES,
    },
    Repairs, Running,
};
use crate::{
    node::{NodeId, NodeState},
    router::{Placement, Router, ShardId},
};

/// Series named in one `DROP SERIES`.
const DROPPED_AT_ONCE: usize = 100;

/// Times the moved series of a measurement are looked for again on a replica after being dropped
/// (a write queued for it before the move may bring one back).
const DROP_ROUNDS: u32 = 3;

/// Runs a rebalance to its end.
pub async fn run(repairs: &Repairs, running: &Running) -> Result<Ending, Stop> {
    let layouts = repairs.gateway().layouts();
    layouts.set_moving(true);
    let outcome = rebalance(repairs, running).await;
    layouts.set_moving(false);
    outcome
}

async fn rebalance(repairs: &Repairs, running: &Running) -> Result<Ending, Stop> {
    let gateway = repairs.gateway();
    let Some(moving) = running.lock().moving.clone() else {
        let mut record = running.lock();
        record
            .job
            .warnings
            .push("shards and routes are where the data was written: nothing to move".to_owned());
        record.job.series_removed = Some(0);
        return Ok(Ending::Done);
    };
    if &moving.to != gateway.layouts().current_layout() {
        return Err(Stop::Failed(
            "shards or routes changed again since this rebalance started: start a new one"
                .to_owned(),
        ));
    }
    let names: Vec<&str> = gateway.nodes().iter().map(|n| n.status().name()).collect();
    let from = Router::from_layout(&moving.from, &names).map_err(|e| {
        Stop::Failed(format!(
            "the layout the data was written by cannot be read: {e}"
        ))
    })?;
    let mut rebalance = Rebalance {
        w: Worker::new(repairs, running),
        from,
        to: gateway.router(),
    };
    let mut failures = 0;
    while let Err(e) = rebalance.meta().await {
        rebalance
            .w
            .patience("creating what the new replicas lack", e, &mut failures)
            .await?;
    }
    walk(&mut rebalance).await?;
    let job = running.job();
    if !job.divergent.is_empty() {
        return Ok(Ending::Differs(format!(
            "{} chunks differ between the replicas of the old and the new shard after {COPIES} \
             copies: nothing was deleted, and reads still follow the old layout; see `divergent` \
             (a verify with repair of the old shard may settle them), then rebalance again",
            job.divergent.len()
        )));
    }
    rebalance
        .w
        .activity(Some("settling the new layout".to_owned()));
    gateway
        .layouts()
        .settle()
        .await
        .map_err(|e| Stop::Failed(format!("cannot store the new layout: {e}")))?;
    log::warn!(
        "job {}: data copied and verified; reads and writes follow the configured layout ({})",
        job.id,
        moving.to.describe()
    );
    let plan = running
        .lock()
        .plan
        .clone()
        .unwrap_or_else(|| Plan::new(1, Vec::new()));
    let removed = rebalance.delete_moved(&plan).await?;
    rebalance.w.activity(None);
    running.lock().job.series_removed = Some(removed);
    Ok(Ending::Done)
}

/// A rebalance under way.
struct Rebalance<'g> {
    w: Worker<'g>,
    /// The layout the data was written by.
    from: Router,
    /// The configured layout.
    to: &'g Router,
}

impl<'g> Rebalance<'g> {
    /// The shard a series of `db` is on under `router`.
    fn shard_of(router: &Router, db: &str, part: &SeriesPart) -> ShardId {
        match router.placement(db, &part.name) {
            Placement::Shard(shard) => shard,
            Placement::ByTag { key, shards } => {
                router.shard_for_tag(shards, part.tag(key.name()).unwrap_or(""))
            }
        }
    }

    /// The configured shard a series of earlier shard `b` moves to, or `None` if it stays (it
    /// was elsewhere, or its new shard is the same nodes).
    fn destination(&self, db: &str, b: ShardId, part: &SeriesPart) -> Option<ShardId> {
        if Self::shard_of(&self.from, db, part) != b {
            return None;
        }
        let a = Self::shard_of(self.to, db, part);
        (!same_nodes(
            &self.from.shards()[b].replicas,
            &self.to.shards()[a].replicas,
        ))
        .then_some(a)
    }

    fn shard_named(&self, name: &str) -> Result<ShardId, Stop> {
        self.from
            .shards()
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Stop::Failed(format!("shard {name} is not in the earlier layout")))
    }

    /// Replicas of earlier shard `b` to read from, best first.
    fn sources(&self, b: ShardId) -> Vec<NodeId> {
        let gateway = self.w.gateway;
        let mut sources: Vec<NodeId> = gateway
            .replica_read_order(&self.from.shards()[b].replicas)
            .into_iter()
            .filter(|&n| {
                let node = &gateway.nodes()[n];
                node.status().state() != NodeState::Down
                    && !node.queue().needs_resync()
                    && !node.status().is_repairing()
            })
            .collect();
        sources.sort_by_key(|&n| !gateway.nodes()[n].queue().is_empty());
        sources
    }

    /// Creates on every replica of the configured layout the databases, retention policies and
    /// continuous queries it lacks (a node just added has none), before any point is copied.
    async fn meta(&mut self) -> Result<(), CopyError> {
        let gateway = self.w.gateway;
        let holders = replicas(&self.from);
        let Some(source) = gateway
            .next_read_order()
            .into_iter()
            .filter(|n| holders.contains(n))
            .find(|&n| {
                let node = &gateway.nodes()[n];
                node.status().state() != NodeState::Down && !node.queue().needs_resync()
            })
        else {
            return Err(CopyError::Stop(Stop::Failed(
                "no replica of the earlier layout is up and complete to read from".to_owned(),
            )));
        };
        for target in replicas(self.to).into_iter().filter(|&n| n != source) {
            copy_meta(&self.w, source, target, None).await?;
        }
        Ok(())
    }

    /// Every measurement of every earlier shard whose placement changed, by retention policy.
    async fn plan_tasks(&mut self) -> Result<Plan, CopyError> {
        self.w.activity(Some("planning".to_owned()));
        let mut tasks = Vec::new();
        for (b, shard) in self.from.shards().iter().enumerate() {
            let Some(&source) = self.sources(b).first() else {
                return Err(CopyError::Stop(Stop::Failed(format!(
                    "no replica of shard {} is up and complete to read from",
                    shard.name
                ))));
            };
            let source = self.w.influx(source);
            for db in source.databases().await? {
                let measurements = source.measurements(&db).await?;
                for rp in source.retention_policies(&db).await? {
                    for m in &measurements {
                        if !self.may_move(&db, m, b) {
                            continue;
                        }
                        let Some((first, last)) = source.bounds(&db, &rp.name, m).await? else {
                            continue;
                        };
                        let Some((start, end)) =
                            job::span(first, last, self.w.chunk, &job::Scope::default())
                        else {
                            continue;
                        };
                        tasks.push(Task {
                            shard: shard.name.clone(),
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
        self.w.activity(None);
        Ok(Plan::new(self.w.chunk, tasks))
    }

    /// Whether some series of `m` on earlier shard `b` may be placed on other nodes now.
    fn may_move(&self, db: &str, m: &str, b: ShardId) -> bool {
        let before = self.from.placement(db, m);
        if !before.shards().contains(&b) {
            return false;
        }
        let nodes = |router: &Router, shard: ShardId| {
            let mut replicas = router.shards()[shard].replicas.clone();
            replicas.sort_unstable();
            replicas
        };
        match (before, self.to.placement(db, m)) {
            (Placement::Shard(b), Placement::Shard(a)) => nodes(&self.from, b) != nodes(self.to, a),
            // The same tag over shards of the same names and nodes picks the same shard for
            // every value: the pick depends on the names and the candidates only.
            (
                Placement::ByTag { key, shards },
                Placement::ByTag {
                    key: key_now,
                    shards: shards_now,
                },
            ) if key.name() == key_now.name() => {
                let described = |router: &Router, shards: &[ShardId]| {
                    let mut all: Vec<(String, Vec<NodeId>)> = shards
                        .iter()
                        .map(|&s| (router.shards()[s].name.clone(), nodes(router, s)))
                        .collect();
                    all.sort();
                    all
                };
                described(&self.from, shards) != described(self.to, shards_now)
            }
            _ => true,
        }
    }

    /// Copies the chunk's moving series from `source` to the nodes of their new shards that do
    /// not hold them; returns the points handed over and a refusal, if a node refused some.
    async fn copy_from(
        &mut self,
        source: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
    ) -> Result<(u64, Option<String>), CopyError> {
        let (task, b) = (piece.task, piece.shard);
        let influx = self.w.influx(source);
        let mut reader = piece.open(&influx).await?;
        let mut batches: BTreeMap<NodeId, Batch> = BTreeMap::new();
        let mut lines = Vec::new();
        let (mut points, mut refusal) = (0, None);
        while let Some(part) = reader.next().await? {
            let Some(a) = self.destination(&task.db, b, &part) else {
                continue;
            };
            let held = &self.from.shards()[b].replicas;
            let targets: Vec<NodeId> = self.to.shards()[a]
                .replicas
                .iter()
                .copied()
                .filter(|n| !held.contains(n))
                .collect();
            if targets.is_empty() {
                continue;
            }
            lines.clear();
            let encoded = encode(&influx, task, &part, schema, &mut lines).await?;
            for target in targets {
                let batch = batches.entry(target).or_default();
                batch.body.extend_from_slice(&lines);
                batch.encoded.merge(encoded);
                if batch.encoded.points >= BATCH_POINTS || batch.body.len() >= BATCH_BYTES {
                    let full = std::mem::take(batch);
                    points += full.encoded.points;
                    refusal = refusal.or(self.w.deliver(target, task, full).await?);
                }
            }
        }
        for (target, batch) in batches {
            if batch.encoded.points > 0 {
                points += batch.encoded.points;
                refusal = refusal.or(self.w.deliver(target, task, batch).await?);
            }
        }
        Ok((points, refusal))
    }

    /// What `node` holds of the chunk's series moving from `b`, per new shard.
    async fn holdings(
        &self,
        node: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
    ) -> Result<BTreeMap<ShardId, Digest>, Stop> {
        let influx = self.w.influx(node);
        let mut failures = 0;
        loop {
            self.w.check()?;
            match self.read_holdings(&influx, node, piece, schema).await {
                Ok(digests) => return Ok(digests),
                Err(e) => self.w.after_failure(node, e, &mut failures).await?,
            }
        }
    }

    async fn read_holdings(
        &self,
        influx: &Influx,
        node: NodeId,
        piece: &Piece<'_>,
        schema: &mut Schema,
    ) -> Result<BTreeMap<ShardId, Digest>, CopyError> {
        let (task, b) = (piece.task, piece.shard);
        let mut reader = piece.open(influx).await?;
        let mut digests: BTreeMap<ShardId, Digest> = BTreeMap::new();
        let mut lines = Vec::new();
        while let Some(part) = reader.next().await? {
            let Some(a) = self.destination(&task.db, b, &part) else {
                continue;
            };
            if !self.involved(b, a).contains(&node) {
                continue;
            }
            lines.clear();
            let encoded = encode(influx, task, &part, schema, &mut lines).await?;
            digests.entry(a).or_default().update(&lines, encoded.points);
        }
        Ok(digests)
    }

    /// The nodes that must hold what moves from `b` to `a`: the replicas of both.
    fn involved(&self, b: ShardId, a: ShardId) -> BTreeSet<NodeId> {
        self.from.shards()[b]
            .replicas
            .iter()
            .chain(&self.to.shards()[a].replicas)
            .copied()
            .collect()
    }

    /// Copies a chunk until every replica of the old and the new shard holds the same moving
    /// series, or [`COPIES`] times.
    async fn move_chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        let b = self.shard_named(&task.shard)?;
        let piece = Piece {
            task,
            shard: b,
            start,
            end,
        };
        let destinations = self.to.placement(&task.db, &task.measurement);
        let mut readers: BTreeSet<NodeId> =
            self.from.shards()[b].replicas.iter().copied().collect();
        for &a in destinations.shards() {
            readers.extend(self.involved(b, a));
        }
        let mut moved = Copied::default();
        for _ in 0..COPIES {
            let refusal = self.copy(&piece, schema, &mut moved).await?;
            for &node in &readers {
                self.w.wait_applied(node).await?;
            }
            let mut held: BTreeMap<NodeId, BTreeMap<ShardId, Digest>> = BTreeMap::new();
            for &node in &readers {
                let digests = self.holdings(node, &piece, schema).await?;
                held.insert(node, digests);
            }
            let shards: BTreeSet<ShardId> = held.values().flat_map(|d| d.keys().copied()).collect();
            let differs = shards.iter().find(|&&a| {
                let mut seen = self
                    .involved(b, a)
                    .into_iter()
                    .map(|n| held.get(&n).and_then(|d| d.get(&a)).map(Digest::finish));
                let first = seen.next().flatten();
                seen.any(|d| d != first)
            });
            let Some(&a) = differs else {
                moved.divergence = None;
                return Ok(moved);
            };
            let replicas = self
                .involved(b, a)
                .into_iter()
                .map(|n| {
                    let points = held
                        .get(&n)
                        .and_then(|d| d.get(&a))
                        .map_or(0, |d| d.finish().0);
                    (self.w.node_name(n).to_owned(), ReplicaCount { points })
                })
                .collect();
            let refused = refusal.is_some();
            moved.divergence = Some(Divergence {
                db: task.db.clone(),
                rp: task.rp.clone(),
                measurement: task.measurement.clone(),
                start: job::rfc3339_ns(start),
                end: job::rfc3339_ns(end),
                replicas,
                refusal,
                conflicts: Vec::new(),
                repaired: false,
            });
            if refused {
                break;
            }
        }
        if let Some(d) = &moved.divergence {
            log::warn!(
                "rebalance: {}.{}.{} [{}, {}) still differs after {COPIES} copies",
                d.db,
                d.rp,
                d.measurement,
                d.start,
                d.end
            );
        }
        Ok(moved)
    }

    /// Copies a chunk from the best replica of its earlier shard, another one if it fails.
    async fn copy(
        &mut self,
        piece: &Piece<'_>,
        schema: &mut Schema,
        moved: &mut Copied,
    ) -> Result<Option<String>, Stop> {
        let mut failures = 0;
        loop {
            self.w.check()?;
            let Some(&source) = self.sources(piece.shard).first() else {
                return Err(Stop::Failed(format!(
                    "no replica of shard {} is up and complete to read from",
                    piece.task.shard
                )));
            };
            match self.copy_from(source, piece, schema).await {
                Ok((points, refusal)) => {
                    moved.points += points;
                    return Ok(refusal);
                }
                Err(e) => self.w.after_failure(source, e, &mut failures).await?,
            }
        }
    }

    /// Deletes every moved series from the replicas of its old shard that are not replicas of
    /// its new one; returns how many series were dropped.
    async fn delete_moved(&mut self, plan: &Plan) -> Result<u64, Stop> {
        let measurements: BTreeSet<(String, String, String)> = plan
            .tasks
            .iter()
            .map(|t| (t.shard.clone(), t.db.clone(), t.measurement.clone()))
            .collect();
        let mut removed = 0;
        for (shard, db, m) in &measurements {
            let b = self.shard_named(shard)?;
            for &node in &self.from.shards()[b].replicas.clone() {
                self.w.activity(Some(format!(
                    "deleting moved series of {db}.{m} from {}",
                    self.w.node_name(node)
                )));
                // Writes queued for it before the move land first, and are dropped with the rest.
                self.w.wait_applied(node).await?;
                let mut failures = 0;
                let mut rounds = 0;
                loop {
                    self.w.check()?;
                    match self.drop_moved(node, b, db, m).await {
                        Ok(0) => break,
                        Ok(dropped) if rounds < DROP_ROUNDS => {
                            removed += dropped;
                            rounds += 1;
                        }
                        Ok(_) => {
                            return Err(Stop::Failed(format!(
                                "moved series of {db}.{m} keep coming back on {}",
                                self.w.node_name(node)
                            )))
                        }
                        Err(e) => self.w.after_failure(node, e, &mut failures).await?,
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Drops from `node` the series of `db`.`m` that moved from `b` to a shard `node` is not a
    /// replica of; returns how many there were.
    async fn drop_moved(
        &self,
        node: NodeId,
        b: ShardId,
        db: &str,
        m: &str,
    ) -> Result<u64, CopyError> {
        let influx = self.w.influx(node);
        let tag_keys = influx.tag_keys(db, m).await?;
        let mut doomed = Vec::new();
        for key in influx.series_keys(db, m).await? {
            let Some((measurement, tags)) = parse_series_key(&key) else {
                return Err(CopyError::Stop(Stop::Failed(format!(
                    "{}: unreadable series key {key:?}",
                    self.w.node_name(node)
                ))));
            };
            let part = SeriesPart {
                name: measurement,
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<Map<_, _>>(),
                columns: Vec::new(),
                values: Vec::new(),
            };
            let Some(a) = self.destination(db, b, &part) else {
                continue;
            };
            if !self.to.shards()[a].replicas.contains(&node) {
                doomed.push(exactly(&tag_keys, &tags));
            }
        }
        for group in doomed.chunks(DROPPED_AT_ONCE) {
            let conditions: Option<Vec<&str>> = group.iter().map(Option::as_deref).collect();
            let q = match conditions {
                Some(conditions) => format!(
                    "DROP SERIES FROM {} WHERE {}",
                    ident(m),
                    conditions.join(" OR ")
                ),
                // A measurement without tags is one series.
                None => format!("DROP SERIES FROM {}", ident(m)),
            };
            influx.execute(Some(db), &q).await?;
        }
        if !doomed.is_empty() {
            log::info!(
                "rebalance: {} series of {db}.{m} dropped from {}",
                doomed.len(),
                self.w.node_name(node)
            );
        }
        Ok(doomed.len() as u64)
    }
}

/// A condition that matches exactly the series with `tags` among those with `tag_keys`: a tag
/// it lacks must be empty, which matches only its absence. `None` for a measurement without
/// tags, whose one series needs no condition.
fn exactly(tag_keys: &[String], tags: &[(String, String)]) -> Option<String> {
    let mut keys: BTreeSet<&str> = tag_keys.iter().map(String::as_str).collect();
    keys.extend(tags.iter().map(|(k, _)| k.as_str()));
    let terms: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let value = tags
                .iter()
                .find(|(key, _)| key == k)
                .map_or("", |(_, v)| v.as_str());
            format!("{} = {}", ident(k), literal(value))
        })
        .collect();
    (!terms.is_empty()).then(|| format!("({})", terms.join(" AND ")))
}

/// Every node that is a replica of some shard of `router`.
fn replicas(router: &Router) -> BTreeSet<NodeId> {
    router
        .shards()
        .iter()
        .flat_map(|s| s.replicas.iter().copied())
        .collect()
}

/// Whether two replica lists name the same nodes.
fn same_nodes(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|n| b.contains(n))
}

impl<'g> Walk<'g> for Rebalance<'g> {
    type Outcome = Copied;
    type Found = ();

    fn worker(&mut self) -> &mut Worker<'g> {
        &mut self.w
    }

    async fn plan(&mut self) -> Result<(Plan, ()), CopyError> {
        Ok((self.plan_tasks().await?, ()))
    }

    fn keep_found((): (), _: &mut Record) {}

    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        self.move_chunk(task, start, end, schema).await
    }

    fn count(moved: Copied, _: &Task, record: &mut Record) {
        moved.count(record);
    }
}

/// The layouts a rebalance started now would move data between.
pub fn pending(repairs: &Repairs) -> Option<Moving> {
    let layouts = repairs.gateway().layouts();
    layouts.pending().map(|from| Moving {
        from: from.clone(),
        to: layouts.current_layout().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_named_by_every_tag_key_absent_ones_empty() {
        let keys = vec!["host".to_owned(), "region".to_owned()];
        assert_eq!(
            exactly(&keys, &[("host".to_owned(), "a'b".to_owned())]).as_deref(),
            Some(r#"("host" = 'a\'b' AND "region" = '')"#)
        );
        assert_eq!(exactly(&[], &[]), None);
    }
}
