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
    job::{self, Divergence, Plan, ReplicaCount, Spans, Task},
    lines::{Digest, Schema, SeriesPart},
    meta::{copy_meta, drop_misplaced_queries},
    store::Moving,
    worker::{
        encode, shard_of, walk, Batch, Copied, CopyError, Ending, Handed, Piece, Stop, Walk,
        Worker, BATCH_BYTES, BATCH_POINTS, COPIES,
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
    if !moving.settled {
        rebalance.copy_and_settle(&moving).await?;
        if let Some(ending) = rebalance.differs() {
            return Ok(ending);
        }
    }
    let removed = rebalance.delete_moved().await?;
    gateway
        .layouts()
        .paid()
        .await
        .map_err(|e| Stop::Failed(format!("cannot store the deletion's end: {e}")))?;
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
    /// Copies and verifies every moving series, then settles the configured layout: unless a
    /// chunk still differs, or a replica of the configured layout may lack what it was handed.
    async fn copy_and_settle(&mut self, moving: &Moving) -> Result<(), Stop> {
        let mut failures = 0;
        while let Err(e) = self.meta().await {
            self.w
                .patience("creating what the new replicas lack", e, &mut failures)
                .await?;
        }
        walk(self).await?;
        if self.differs().is_some() {
            return Ok(());
        }
        // Every copy handed to the new replicas is applied and none was lost on the way (a
        // refused or dead-lettered one flags its node): only then is the old layout let go.
        self.w.activity(Some(
            "waiting for every replica to apply what it was handed".to_owned(),
        ));
        for node in replicas(&self.from).union(&replicas(self.to)) {
            self.w.wait_applied(*node).await?;
        }
        let gateway = self.w.gateway;
        if let Some(flagged) = replicas(self.to)
            .into_iter()
            .find(|&n| gateway.nodes()[n].queue().needs_resync())
        {
            return Err(Stop::Failed(format!(
                "{} is flagged needs_resync: it may lack what was copied to it, so the old layout \
                 is kept; repair it, then rebalance again",
                self.w.node_name(flagged)
            )));
        }
        self.w.activity(Some("settling the new layout".to_owned()));
        gateway
            .layouts()
            .settle(&moving.from)
            .await
            .map_err(|e| Stop::Failed(format!("cannot store the new layout: {e}")))?;
        // A write routed by both layouts just before they settled may have been refused by a new
        // replica since: its old copies are then the only ones, and stay (the deletion is owed).
        for node in replicas(self.to) {
            self.w.wait_applied(node).await?;
            if gateway.nodes()[node].queue().needs_resync() {
                return Err(Stop::Failed(format!(
                    "{} was flagged needs_resync as the layout settled: the old copies are kept \
                     (the deletion is owed); repair it, then rebalance again to delete them",
                    self.w.node_name(node)
                )));
            }
        }
        log::warn!(
            "job {}: data copied and verified; reads and writes follow the configured layout ({})",
            self.w.running.lock().job.id,
            moving.to.describe()
        );
        Ok(())
    }

    /// How the job ends when chunks still differ after every copy.
    fn differs(&self) -> Option<Ending> {
        let divergent = self.w.running.lock().job.divergent.len();
        (divergent > 0).then(|| {
            Ending::Differs(format!(
                "{divergent} chunks differ between the replicas of the old and the new shard after \
                 {COPIES} copies: nothing was deleted, and reads still follow the old layout; see \
                 `divergent` (a verify with repair of the old shard may settle them), then \
                 rebalance again"
            ))
        })
    }

    /// The configured shard a series of earlier shard `b` moves to, or `None` if it stays (it
    /// was elsewhere, or its new shard is the same nodes).
    fn destination(&self, db: &str, b: ShardId, part: &SeriesPart) -> Option<ShardId> {
        if shard_of(&self.from, db, part) != b {
            return None;
        }
        let a = shard_of(self.to, db, part);
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
        let replicas = &self.from.shards()[b].replicas;
        self.w.complete(self.w.gateway.replica_read_order(replicas))
    }

    /// Creates on every replica of the configured layout the databases, retention policies and
    /// continuous queries it lacks (a node just added has none), before any point is copied. Each
    /// earlier shard is read, as each holds its own continuous queries; a query goes only where
    /// the configured layout places it.
    async fn meta(&mut self) -> Result<(), CopyError> {
        let mut sources = Vec::new();
        for (b, shard) in self.from.shards().iter().enumerate() {
            let Some(&up) = self.sources(b).first() else {
                let why = format!(
                    "no replica of shard {} of the earlier layout is up and complete to read from",
                    shard.name
                );
                return Err(CopyError::Stop(Stop::Failed(why)));
            };
            if !sources.contains(&up) {
                sources.push(up);
            }
        }
        for &source in &sources {
            for target in replicas(self.to).into_iter().filter(|&n| n != source) {
                copy_meta(&self.w, source, target, None, self.to).await?;
            }
        }
        Ok(())
    }

    /// Every measurement of every earlier shard whose placement changed, by retention policy,
    /// over the span any replica of the shard holds once it applied its queue: each replica's
    /// series are deleted in the end, so each one's data must be in the plan.
    async fn plan_tasks(&mut self) -> Result<Plan, CopyError> {
        self.w.activity(Some("planning".to_owned()));
        let mut spans = Spans::default();
        for (b, shard) in self.from.shards().iter().enumerate() {
            for &node in &shard.replicas {
                let handle = &self.w.gateway.nodes()[node];
                if handle.status().state() == NodeState::Down || handle.queue().in_maintenance() {
                    return Err(CopyError::Stop(Stop::Failed(format!(
                        "{} (a replica of shard {}) is down or drained: a rebalance needs every \
                         replica of the old layout, as each one's moved series are deleted in the end",
                        self.w.node_name(node),
                        shard.name
                    ))));
                }
                self.w.wait_applied(node).await?;
                let influx = self.w.influx(node);
                for db in influx.databases().await? {
                    let measurements = influx.measurements(&db).await?;
                    for rp in influx.retention_policies(&db).await? {
                        for m in &measurements {
                            if !self.may_move(&db, m, b) {
                                continue;
                            }
                            let Some((first, last)) = influx.bounds(&db, &rp.name, m).await? else {
                                continue;
                            };
                            let key = (shard.name.clone(), db.clone(), rp.name.clone(), m.clone());
                            spans.widen(key, first, last);
                        }
                    }
                }
            }
        }
        self.w.activity(None);
        Ok(spans.plan(self.w.chunk, &job::Scope::default()))
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
        let (mut points, mut refusal, mut handed) = (0, None, Handed::default());
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
                    refusal = refusal.or(self.w.hand(target, task, full, &mut handed).await?);
                }
            }
        }
        for (target, batch) in batches {
            if batch.encoded.points > 0 {
                points += batch.encoded.points;
                refusal = refusal.or(self.w.hand(target, task, batch, &mut handed).await?);
            }
        }
        refusal = refusal.or(self.w.collect(&mut handed, 0).await?);
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
    /// its new one; returns how many series were dropped. Every measurement of every old replica
    /// is looked at, so that a deletion resumed or owed needs no plan.
    async fn delete_moved(&mut self) -> Result<u64, Stop> {
        let mut removed = 0;
        for (b, shard) in self.from.shards().iter().enumerate() {
            for &node in &shard.replicas {
                self.w.activity(Some(format!(
                    "deleting moved series from {}",
                    self.w.node_name(node)
                )));
                self.settle_node(node).await?;
                // Continuous queries follow their measurements: stopped where the data left
                // before its series are deleted there, so that nothing they write stays behind.
                let mut failures = 0;
                loop {
                    self.w.check()?;
                    match drop_misplaced_queries(&self.w, node, self.to).await {
                        Ok(()) => break,
                        Err(e) => self.w.after_failure(node, e, &mut failures).await?,
                    }
                }
                let mut failures = 0;
                let held = loop {
                    self.w.check()?;
                    match self.holdings_of(node).await {
                        Ok(held) => break held,
                        Err(e) => self.w.after_failure(node, e, &mut failures).await?,
                    }
                };
                for (db, m) in held {
                    if self.may_move(&db, &m, b) {
                        removed += self.drop_all_moved(node, b, &db, &m).await?;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Waits until `node` has applied every write handed to it before the layout settled: the
    /// writes in memory or on the wire, then its queue.
    async fn settle_node(&self, node: NodeId) -> Result<(), Stop> {
        let status = self.w.gateway.nodes()[node].status();
        let deadline = std::time::Instant::now() + self.w.gateway.config().write.timeout * 2;
        while !status.is_idle() && std::time::Instant::now() < deadline {
            self.w.check()?;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.w.wait_applied(node).await
    }

    /// Every (database, measurement) `node` holds.
    async fn holdings_of(&self, node: NodeId) -> Result<Vec<(String, String)>, CopyError> {
        let influx = self.w.influx(node);
        let mut held = Vec::new();
        for db in influx.databases().await? {
            for m in influx.measurements(&db).await? {
                held.push((db.clone(), m));
            }
        }
        Ok(held)
    }

    /// Drops the moved series of `db`.`m` from `node` until none is left.
    async fn drop_all_moved(
        &self,
        node: NodeId,
        b: ShardId,
        db: &str,
        m: &str,
    ) -> Result<u64, Stop> {
        let (mut removed, mut rounds, mut failures) = (0, 0, 0);
        loop {
            self.w.check()?;
            match self.drop_moved(node, b, db, m).await {
                Ok(0) => return Ok(removed),
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

    async fn chunk(
        &mut self,
        task: &Task,
        start: i64,
        end: i64,
        schema: &mut Schema,
    ) -> Result<Copied, Stop> {
        self.move_chunk(task, start, end, schema).await
    }
}

/// The layouts a rebalance started now would move data between: the earlier one the data
/// follows, or, once settled, the one whose moved series are still to be deleted.
pub fn pending(repairs: &Repairs) -> Option<Moving> {
    let layouts = repairs.gateway().layouts();
    let to = layouts.current_layout().clone();
    match (layouts.pending(), layouts.owed()) {
        (Some(from), _) => Some(Moving {
            from: from.clone(),
            to,
            settled: false,
        }),
        (None, Some(from)) => Some(Moving {
            from,
            to,
            settled: true,
        }),
        (None, None) => None,
    }
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
