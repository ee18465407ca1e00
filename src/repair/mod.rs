//! Repair: copying to a replica what its shards' other replicas hold and it lacks.
//!
//! # Design
//!
//! A repair is a **job**, kept in the gateway's sled database ([`store`]) with its **plan**: one
//! task per (shard, database, retention policy, measurement) the target serves, cut into chunks of
//! `repair.chunk` of data time ([`job`]). Jobs run on a thread of their own ([`run`]):
//!
//! 1. **Meta first**: databases, retention policies and continuous queries missing on the target
//!    are created there from a healthy peer, directly, before any point; users cannot be read back
//!    with their passwords and are reported, never skipped in silence.
//! 2. **Data by chunk**: each chunk is read from a healthy replica of its shard (the next one if
//!    that one fails), `SELECT * … GROUP BY *` in nanoseconds, turned back into line protocol with
//!    each field's type ([`lines`]), and handed to the target's **actor**, so that it is ordered with
//!    live writes and queued on disk if the target fails mid-job. Only the series whose current
//!    placement is the chunk's shard are copied.
//! 3. **Verified**: once the target has applied the chunk, both replicas' digests of it are
//!    compared; a chunk that differs is copied again (a live write that raced the copy is then read
//!    anew, so an older value never stays over a newer one), at most [`worker::COPIES`] times, and what
//!    still differs is listed in the job.
//! 4. **Resumable**: the plan's position is stored and flushed after every chunk; a gateway killed
//!    mid-job resumes the same job from the next chunk when it starts.
//!
//! A job that ends `done` clears the node's `needs_resync` flag, unless the node was flagged again
//! while it ran. With `repair.auto`, [`detect`] starts jobs by itself: for a node flagged
//! `needs_resync`, and for one found without the databases its peers hold (wiped or replaced), which
//! it flags first so that reads avoid it at once.

mod detect;
pub mod influx;
pub mod job;
pub mod lines;
mod meta;
mod rebalance;
mod run;
mod settle;
pub mod store;
mod verify;
mod worker;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use actix::Arbiter;

pub use job::{Job, Kind, Scope, State};
use store::{JobStore, Moving, Record};

use crate::{
    config::RepairConfig,
    gateway::Gateway,
    node::{NodeId, NodeState, QueueError},
};

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The request names something that does not exist, or cannot be (400).
    #[error("{0}")]
    BadRequest(String),
    /// It conflicts with the state of the cluster or with a job under way (409).
    #[error("{0}")]
    Conflict(String),
    /// The job could not be stored.
    #[error("cannot store the job: {0}")]
    Storage(#[from] QueueError),
}

/// A job under way or ended, shared between its runner and whoever shows it.
pub struct Running {
    record: Mutex<Record>,
    cancel: AtomicBool,
}

impl Running {
    fn new(record: Record) -> Arc<Running> {
        Arc::new(Running {
            record: Mutex::new(record),
            cancel: AtomicBool::new(false),
        })
    }

    /// The job as it stands.
    pub fn job(&self) -> Job {
        self.lock().job.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// Every job of this gateway, the gateway they work on, and the thread they run on.
pub struct Repairs {
    gateway: Arc<Gateway>,
    config: RepairConfig,
    store: JobStore,
    jobs: Mutex<Vec<Arc<Running>>>,
    arbiter: Arbiter,
    stopping: AtomicBool,
    /// When each node's last automatic repair ended without success, so that a failing one is
    /// not restarted in a loop.
    auto_failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
    /// Points handed to each node by jobs, since start.
    copied: Vec<AtomicU64>,
}

/// Ended jobs kept for `GET /cluster/jobs`; older ones are forgotten.
const ENDED_KEPT: usize = 100;

impl Repairs {
    /// The jobs `gateway` stored; none runs until [`Repairs::start_background`].
    pub fn open(gateway: Arc<Gateway>) -> Result<Arc<Repairs>, QueueError> {
        let store = JobStore::new(gateway.jobs_tree()?);
        let jobs = store.load()?.into_iter().map(Running::new).collect();
        Ok(Arc::new(Repairs {
            copied: gateway.nodes().iter().map(|_| AtomicU64::new(0)).collect(),
            config: gateway.config().repair.clone(),
            gateway,
            store,
            jobs: Mutex::new(jobs),
            arbiter: Arbiter::new(),
            stopping: AtomicBool::new(false),
            auto_failures: Mutex::new(HashMap::new()),
        }))
    }

    /// The gateway the jobs work on.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Resumes the jobs a previous run left under way, and starts detection when `repair.auto`.
    pub fn start_background(self: &Arc<Self>) {
        for running in self.list() {
            let job = running.job();
            if job.is_running() {
                log::info!(
                    "job {}: resuming ({:?} {}) at chunk {} of {}",
                    job.id,
                    job.kind,
                    job.node.as_deref().unwrap_or("of every shard"),
                    job.chunks_done,
                    job.chunks_total
                );
                let mut record = running.lock();
                record.job.resumed += 1;
                if !record.stopped_cleanly && record.job.kind == Kind::Repair {
                    // A copy for the node refused between the last stored chunk and the kill
                    // left no trace this job can see.
                    record.job.mark_incomplete(
                        "resumed after the gateway was killed: a copy refused meanwhile may be \
                         missing, so another repair follows",
                    );
                }
                record.stopped_cleanly = false;
                drop(record);
                self.spawn(running);
            }
        }
        let resumed_rebalance = self
            .list()
            .iter()
            .any(|j| j.job().is_running() && j.job().kind == Kind::Rebalance);
        if self.gateway.config().rebalance.auto
            && self.gateway.layouts().pending().is_some()
            && !resumed_rebalance
        {
            if let Err(e) = self.rebalance("shards or routes changed (rebalance.auto)") {
                log::error!("rebalance.auto: cannot start a rebalance: {e}");
            }
        }
        if self.config.auto {
            let repairs = Arc::clone(self);
            self.arbiter.spawn_fn(move || {
                actix::spawn(detect::watch(repairs));
            });
        }
        if let Some(interval) = self.gateway.config().verify.interval {
            let repairs = Arc::clone(self);
            self.arbiter.spawn_fn(move || {
                actix::spawn(detect::anti_entropy(repairs, interval));
            });
        }
    }

    /// Starts a repair of `node`, answering at once with the job as it starts.
    pub fn repair(
        self: &Arc<Self>,
        node: &str,
        reason: &str,
        scope: Scope,
    ) -> Result<Job, Refused> {
        let gateway = &self.gateway;
        let target = node_id(gateway, node)?;
        if let Some(source) = &scope.source {
            let source_id = node_id(gateway, source)?;
            if source_id == target {
                return Err(Refused::BadRequest(format!(
                    "source {source:?} is the node being repaired"
                )));
            }
            let shares = gateway
                .read_router()
                .shards()
                .iter()
                .any(|s| s.replicas.contains(&target) && s.replicas.contains(&source_id));
            if !shares {
                return Err(Refused::BadRequest(format!(
                    "source {source:?} is not a replica of any shard of {node:?}"
                )));
            }
        }
        if gateway.nodes()[target].status().state() == NodeState::Down {
            return Err(Refused::Conflict(format!(
                "node {node:?} is down: a repair needs it up (with repair.auto, one starts by \
                 itself when it is back and lacks data)"
            )));
        }
        if gateway.nodes()[target].queue().in_maintenance() {
            return Err(Refused::Conflict(format!(
                "node {node:?} is drained for maintenance: resume it first"
            )));
        }
        let jobs = self.lock();
        refuse_beside_rebalance(&jobs, "a repair")?;
        if let Some(other) = jobs
            .iter()
            .map(|j| j.job())
            .find(|j| j.is_running() && j.kind == Kind::Verify && j.scope.repair)
        {
            return Err(Refused::Conflict(format!(
                "verify {} is repairing what differs: a repair waits for it to end",
                other.id
            )));
        }
        if let Some(other) = jobs.iter().map(|j| j.job()).find(|j| j.repairs(node)) {
            return Err(Refused::Conflict(format!(
                "job {} is already repairing {node:?}",
                other.id
            )));
        }
        let job = Job::repair(new_id("repair"), node, reason, scope);
        let job = self.admit(jobs, job, None)?;
        log::warn!("job {}: repairing {node} ({reason})", job.id);
        Ok(job)
    }

    /// Starts a verify of the shards in `scope` (all when it names none).
    pub fn verify(self: &Arc<Self>, reason: &str, scope: Scope) -> Result<Job, Refused> {
        let gateway = &self.gateway;
        if let Some(shard) = &scope.shard {
            if !gateway
                .read_router()
                .shards()
                .iter()
                .any(|s| &s.name == shard)
            {
                let names: Vec<&str> = gateway
                    .read_router()
                    .shards()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                return Err(Refused::BadRequest(format!(
                    "unknown shard {shard:?} (shards: {})",
                    names.join(", ")
                )));
            }
        }
        let jobs = self.lock();
        refuse_beside_rebalance(&jobs, "a verify")?;
        let running: Vec<Job> = jobs
            .iter()
            .map(|j| j.job())
            .filter(Job::is_running)
            .collect();
        if let Some(other) = running.iter().find(|j| j.kind == Kind::Verify) {
            return Err(Refused::Conflict(format!(
                "verify {} is already running",
                other.id
            )));
        }
        if scope.repair {
            if let Some(other) = running.iter().find(|j| j.kind == Kind::Repair) {
                return Err(Refused::Conflict(format!(
                    "job {} is repairing {}: a verify that repairs waits for it to end",
                    other.id,
                    other.node.as_deref().unwrap_or_default()
                )));
            }
        }
        let job = Job::verify(new_id("verify"), reason, scope);
        let job = self.admit(jobs, job, None)?;
        log::info!("job {}: verify ({reason})", job.id);
        Ok(job)
    }

    /// Starts a rebalance: the data the layout it was written by placed elsewhere than the
    /// configured one is moved there. It runs alone, as the layout reads follow changes under it.
    pub fn rebalance(self: &Arc<Self>, reason: &str) -> Result<Job, Refused> {
        let jobs = self.lock();
        if let Some(other) = jobs.iter().map(|j| j.job()).find(Job::is_running) {
            let what = match &other.node {
                Some(node) => format!("{} of {node}", other.kind.as_str()),
                None => other.kind.as_str().to_owned(),
            };
            return Err(Refused::Conflict(format!(
                "job {} ({what}) is running: a rebalance runs alone, start it when that ends",
                other.id
            )));
        }
        if let Some(drained) = self
            .gateway
            .nodes()
            .iter()
            .find(|n| n.queue().in_maintenance())
        {
            return Err(Refused::Conflict(format!(
                "node {:?} is drained for maintenance: a rebalance needs every node; resume it first",
                drained.status().name()
            )));
        }
        let moving = rebalance::pending(self);
        let job = Job::rebalance(new_id("rebalance"), reason);
        let job = self.admit(jobs, job, moving.clone())?;
        match moving {
            Some(moving) => log::warn!(
                "job {}: rebalance from {} to {} ({reason})",
                job.id,
                moving.from.describe(),
                moving.to.describe()
            ),
            None => log::info!("job {}: rebalance, though nothing moved ({reason})", job.id),
        }
        Ok(job)
    }

    /// Stores `job`, lists it among `jobs` (whose lock the caller took for its checks, so that
    /// no conflicting job slips in between) and starts it.
    fn admit(
        self: &Arc<Self>,
        mut jobs: MutexGuard<'_, Vec<Arc<Running>>>,
        job: Job,
        moving: Option<Moving>,
    ) -> Result<Job, Refused> {
        let record = Record {
            job: job.clone(),
            plan: None,
            stopped_cleanly: false,
            moving,
        };
        self.store.put(&record)?;
        let running = Running::new(record);
        jobs.push(Arc::clone(&running));
        self.prune(&mut jobs);
        drop(jobs);
        self.spawn(running);
        Ok(job)
    }

    /// The last verify that ended, if any.
    pub fn last_verify(&self) -> Option<Job> {
        self.lock()
            .iter()
            .rev()
            .map(|j| j.job())
            .find(|j| j.kind == Kind::Verify && !j.is_running())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Running>> {
        self.lock().clone()
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Running>> {
        self.lock().iter().find(|j| j.lock().job.id == id).cloned()
    }

    /// Asks job `id` to stop after the piece it is copying; `None` if there is no such job.
    pub fn cancel(&self, id: &str) -> Option<Job> {
        let running = self.get(id)?;
        running.cancel.store(true, Ordering::Release);
        Some(running.job())
    }

    /// The running job repairing `node`, if any.
    pub fn repairing(&self, node: &str) -> Option<Job> {
        self.lock().iter().find_map(|j| {
            let record = j.lock();
            record.job.repairs(node).then(|| record.job.clone())
        })
    }

    /// A job under way, if any: a drain waits for it to end, as it reads and writes the nodes.
    pub fn running(&self) -> Option<Job> {
        self.lock().iter().map(|j| j.job()).find(Job::is_running)
    }

    /// The rebalance under way, if any.
    pub fn rebalancing(&self) -> Option<Job> {
        self.lock()
            .iter()
            .map(|j| j.job())
            .find(|j| j.is_running() && j.kind == Kind::Rebalance)
    }

    /// Counts points a job handed to node `node` (for `influx_gateway_repair_points_total`).
    pub fn count_copied(&self, node: NodeId, points: u64) {
        if let Some(counter) = self.copied.get(node) {
            counter.fetch_add(points, Ordering::Relaxed);
        }
    }

    /// Points jobs handed to node `node` since the gateway started.
    pub fn copied(&self, node: NodeId) -> u64 {
        self.copied
            .get(node)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Keeps the newest [`ENDED_KEPT`] ended jobs, in memory and on disk.
    fn prune(&self, jobs: &mut Vec<Arc<Running>>) {
        let ended: Vec<String> = jobs
            .iter()
            .map(|j| j.lock())
            .filter(|r| !r.job.is_running())
            .map(|r| r.job.id.clone())
            .collect();
        let excess = ended.len().saturating_sub(ENDED_KEPT);
        for id in &ended[..excess] {
            if let Err(e) = self.store.remove(id) {
                log::warn!("job {id}: cannot forget it: {e}");
            }
        }
        jobs.retain(|j| !ended[..excess].contains(&j.lock().job.id));
    }

    /// Has every job stop where it stands, still `running`, to be resumed at the next start.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Shows node `node` under repair or not (in its status, where reads look).
    fn mark_repairing(&self, node: &str, on: bool) {
        if let Some(handle) = self
            .gateway
            .nodes()
            .iter()
            .find(|n| n.status().name() == node)
        {
            handle.status().set_repairing(on);
        }
    }

    fn spawn(self: &Arc<Self>, running: Arc<Running>) {
        if let Some(node) = running.lock().job.node.clone() {
            self.mark_repairing(&node, true);
        }
        let repairs = Arc::clone(self);
        self.arbiter.spawn_fn(move || {
            actix::spawn(run::run(repairs, running));
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Running>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Repairs {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}

/// Refuses `what` while a rebalance runs: the layout reads follow changes when it settles.
fn refuse_beside_rebalance(jobs: &[Arc<Running>], what: &str) -> Result<(), Refused> {
    match jobs
        .iter()
        .map(|j| j.job())
        .find(|j| j.is_running() && j.kind == Kind::Rebalance)
    {
        Some(other) => Err(Refused::Conflict(format!(
            "rebalance {} is moving data: {what} waits for it to end",
            other.id
        ))),
        None => Ok(()),
    }
}

fn node_id(gateway: &Gateway, name: &str) -> Result<NodeId, Refused> {
    gateway
        .nodes()
        .iter()
        .position(|n| n.status().name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = gateway.nodes().iter().map(|n| n.status().name()).collect();
            Refused::BadRequest(format!(
                "unknown node {name:?} (nodes: {})",
                names.join(", ")
            ))
        })
}

/// An id that sorts by creation time: `<ms since the epoch, hex>-<kind>-<random>`.
fn new_id(kind: &str) -> String {
    format!(
        "{:011x}-{kind}-{:04x}",
        crate::node::queue::now_ms(),
        fastrand::u16(..)
    )
}
