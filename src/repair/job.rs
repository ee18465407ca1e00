//! A job as it is shown and stored: what was asked, how far it got, how it ended, and for a repair
//! its plan (the chunks to copy and where it stands), so that a restarted gateway resumes it.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Copies what a node lacks from its shards' other replicas.
    Repair,
    /// Compares the replicas of each shard, chunk by chunk, and settles what differs if asked.
    Verify,
    /// Moves the data the earlier layout placed elsewhere than the configured one.
    Rebalance,
}

impl Kind {
    /// Its name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repair => "repair",
            Kind::Verify => "verify",
            Kind::Rebalance => "rebalance",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Under way (or to be resumed when the gateway starts).
    Running,
    /// Every chunk copied and found equal on the target.
    Done,
    /// Stopped by an error, or ended with chunks that still differ; `error` says which.
    Failed,
    /// Stopped by `DELETE /cluster/jobs/ID`.
    Cancelled,
}

/// What a repair was asked to cover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Only this database.
    pub db: Option<String>,
    /// Only points at or after this time (ns since the epoch).
    pub since: Option<i64>,
    /// Only points before this time (ns since the epoch).
    pub until: Option<i64>,
    /// Read from this replica only (repair).
    pub source: Option<String>,
    /// Only this shard (verify).
    #[serde(default)]
    pub shard: Option<String>,
    /// Compare every point, not influxd's aggregates (verify).
    #[serde(default)]
    pub exact: bool,
    /// Settle what differs (verify).
    #[serde(default)]
    pub repair: bool,
}

/// A chunk that still differs between the source and the target after repeated copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Measurement.
    pub measurement: String,
    /// The chunk's first instant, RFC 3339.
    pub start: String,
    /// The instant after it, RFC 3339.
    pub end: String,
    /// Points each replica holds in it.
    pub replicas: BTreeMap<String, ReplicaCount>,
    /// What the target said when it refused a copy, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Points whose replicas disagree with no majority, left for an operator (verify with
    /// repair; at most [`CONFLICTS_SHOWN`] per chunk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// Whether a verify with repair made the replicas equal.
    #[serde(default)]
    pub repaired: bool,
}

/// Conflicting points listed per chunk.
pub const CONFLICTS_SHOWN: usize = 10;

/// One point whose replicas hold different values and no majority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Its series key, as line protocol writes it.
    pub series: String,
    /// Its timestamp (ns).
    pub time: i64,
    /// Each replica's field set (`null`: it lacks the point).
    pub values: BTreeMap<String, Option<String>>,
}

/// What a verify found, per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every chunk compared was equal on every replica (or made equal), and no replica was
    /// left out.
    pub consistent: bool,
    /// Per shard.
    pub shards: Vec<ShardReport>,
}

/// What a verify found in one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReport {
    /// The shard.
    pub shard: String,
    /// Its replicas.
    pub replicas: Vec<String>,
    /// Chunks compared on at least two replicas.
    pub chunks_compared: u64,
    /// Chunks some replica could not be compared in (down).
    pub chunks_not_compared: u64,
    /// Chunks that differ.
    pub divergent: Vec<Divergence>,
}

/// What one replica holds of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCount {
    /// Points.
    pub points: u64,
}

/// One job, as `GET /cluster/jobs/ID` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: Kind,
    /// Where it stands.
    pub state: State,
    /// The node it repairs (a verify has none).
    pub node: Option<String>,
    /// Why it was started: `requested` or what the gateway detected.
    pub reason: String,
    /// What it covers.
    pub scope: Scope,
    /// Chunks finished (copied and verified, or listed as divergent).
    pub chunks_done: u64,
    /// Chunks in the plan (0 until the plan is made).
    pub chunks_total: u64,
    /// Points written to the target.
    pub points_copied: u64,
    /// Copying rate since the job (re)started.
    pub points_per_second: u64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<u64>,
    /// When it was started, RFC 3339.
    pub started: String,
    /// When it ended, RFC 3339.
    pub finished: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it is doing now, when it waits for something.
    pub activity: Option<String>,
    /// Chunks that still differ at the end: never hidden.
    pub divergent: Vec<Divergence>,
    /// What a repair cannot copy and an operator must see to (users and grants, whose passwords
    /// cannot be read back).
    pub warnings: Vec<String>,
    /// Times the job was resumed after a gateway restart.
    pub resumed: u32,
    /// What a verify found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Series a rebalance deleted from the replicas they moved away from, once verified where
    /// they moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_removed: Option<u64>,
    /// Why this repair, even done, does not clear the node's `needs_resync` (it covers part of
    /// the data, or cannot vouch for what happened while the gateway was down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

impl Job {
    /// A new repair of `node`, running.
    pub fn repair(id: String, node: &str, reason: &str, scope: Scope) -> Job {
        Job::new(id, Kind::Repair, Some(node.to_owned()), reason, scope)
    }

    /// A new verify, running.
    pub fn verify(id: String, reason: &str, scope: Scope) -> Job {
        let mut job = Job::new(id, Kind::Verify, None, reason, scope);
        job.report = Some(Report::default());
        job
    }

    /// A new rebalance, running.
    pub fn rebalance(id: String, reason: &str) -> Job {
        Job::new(id, Kind::Rebalance, None, reason, Scope::default())
    }

    fn new(id: String, kind: Kind, node: Option<String>, reason: &str, scope: Scope) -> Job {
        Job {
            id,
            kind,
            state: State::Running,
            node,
            reason: reason.to_owned(),
            scope,
            chunks_done: 0,
            chunks_total: 0,
            points_copied: 0,
            points_per_second: 0,
            eta_seconds: None,
            started: rfc3339(SystemTime::now()),
            finished: None,
            error: None,
            activity: None,
            divergent: Vec::new(),
            warnings: Vec::new(),
            resumed: 0,
            report: None,
            series_removed: None,
            incomplete: None,
        }
    }

    /// Notes why this repair will not clear `needs_resync` (the first reason stays).
    pub fn mark_incomplete(&mut self, why: impl Into<String>) {
        self.incomplete.get_or_insert_with(|| why.into());
    }

    /// Whether it is a running repair of `node`.
    pub fn repairs(&self, node: &str) -> bool {
        self.is_running() && self.kind == Kind::Repair && self.node.as_deref() == Some(node)
    }

    /// Whether it is still under way.
    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// Ends it in `state`.
    pub fn finish(&mut self, state: State, error: Option<String>) {
        self.state = state;
        self.error = error;
        self.activity = None;
        self.eta_seconds = (state == State::Done).then_some(0);
        self.finished = Some(rfc3339(SystemTime::now()));
    }

    /// Updates the rate and the ETA from what this run did in `seconds`.
    pub fn measure(&mut self, run: &RunProgress, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        self.points_per_second = (run.points as f64 / seconds) as u64;
        let left = self.chunks_total.saturating_sub(self.chunks_done);
        self.eta_seconds =
            (run.chunks > 0).then(|| (left as f64 * seconds / run.chunks as f64).ceil() as u64);
    }
}

/// What one run of a job (from its start or its resumption) has done, for its rate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunProgress {
    /// Points copied in this run.
    pub points: u64,
    /// Chunks finished in this run.
    pub chunks: u64,
}

/// One stretch of one measurement's data, copied chunk by chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The shard whose replicas hold it (the target's copies of other shards are not this task's).
    pub shard: String,
    /// Database.
    pub db: String,
    /// Retention policy.
    pub rp: String,
    /// Measurement.
    pub measurement: String,
    /// First chunk's start (ns, a multiple of the chunk length).
    pub start: i64,
    /// Last chunk's end, exclusive.
    pub end: i64,
}

impl Task {
    /// How many chunks of `chunk` ns it spans.
    pub fn chunks(&self, chunk: i64) -> u64 {
        ((self.end - self.start) / chunk.max(1)) as u64
    }
}

/// What replicas hold, per (shard, database, retention policy, measurement): the first and last
/// timestamps seen on any of them.
#[derive(Debug, Default)]
pub struct Spans(BTreeMap<(String, String, String, String), (i64, i64)>);

impl Spans {
    /// Widens the span of `key` to cover `first..=last`.
    pub fn widen(&mut self, key: (String, String, String, String), first: i64, last: i64) {
        let span = self.0.entry(key).or_insert((first, last));
        *span = (span.0.min(first), span.1.max(last));
    }

    /// A plan over every span, in chunks of `chunk` ns, within `scope`.
    pub fn plan(self, chunk: i64, scope: &Scope) -> Plan {
        let tasks = self
            .0
            .into_iter()
            .filter_map(|((shard, db, rp, measurement), (first, last))| {
                let (start, end) = span(first, last, chunk, scope)?;
                Some(Task {
                    shard,
                    db,
                    rp,
                    measurement,
                    start,
                    end,
                })
            })
            .collect();
        Plan::new(chunk, tasks)
    }
}

/// A repair's plan and where it stands in it: stored after every chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Chunk length (ns) the plan was made with.
    pub chunk: i64,
    /// Every stretch to copy, in order.
    pub tasks: Vec<Task>,
    /// The task under way.
    pub task: usize,
    /// The start of the next chunk of that task.
    pub next: i64,
}

impl Plan {
    /// A plan over `tasks`, from its beginning.
    pub fn new(chunk: i64, tasks: Vec<Task>) -> Plan {
        let next = tasks.first().map_or(0, |t| t.start);
        Plan {
            chunk,
            tasks,
            task: 0,
            next,
        }
    }

    /// Chunks in the whole plan.
    pub fn chunks_total(&self) -> u64 {
        self.tasks.iter().map(|t| t.chunks(self.chunk)).sum()
    }

    /// The next chunk to copy: its task and `[start, end)`; `None` when all are done.
    pub fn current(&self) -> Option<(&Task, i64, i64)> {
        let task = self.tasks.get(self.task)?;
        Some((
            task,
            self.next,
            self.next.saturating_add(self.chunk).min(task.end),
        ))
    }

    /// Moves past the current chunk.
    pub fn advance(&mut self) {
        let Some(task) = self.tasks.get(self.task) else {
            return;
        };
        self.next = self.next.saturating_add(self.chunk);
        if self.next >= task.end {
            self.task += 1;
            self.next = self.tasks.get(self.task).map_or(0, |t| t.start);
        }
    }
}

/// The chunk-aligned span `[start, end)` covering `first..=last`, within the scope's bounds, or
/// `None` when the scope leaves nothing of it.
pub fn span(first: i64, last: i64, chunk: i64, scope: &Scope) -> Option<(i64, i64)> {
    let first = first.max(scope.since.unwrap_or(i64::MIN));
    let last = last.min(scope.until.map_or(i64::MAX, |u| u.saturating_sub(1)));
    if first > last {
        return None;
    }
    let chunk = chunk.max(1);
    let start = first.div_euclid(chunk).saturating_mul(chunk);
    let end = last
        .div_euclid(chunk)
        .saturating_add(1)
        .saturating_mul(chunk);
    Some((start, end))
}

/// A time as RFC 3339 (seconds).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Nanoseconds since the epoch as RFC 3339 (nanoseconds).
pub fn rfc3339_ns(ns: i64) -> String {
    let time = if ns >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    } else {
        SystemTime::UNIX_EPOCH - std::time::Duration::from_nanos(ns.unsigned_abs())
    };
    humantime::format_rfc3339_nanos(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(start: i64, end: i64) -> Task {
        Task {
            shard: "s".into(),
            db: "d".into(),
            rp: "r".into(),
            measurement: "m".into(),
            start,
            end,
        }
    }

    #[test]
    fn spans_are_aligned_to_chunks_and_cut_by_the_scope() {
        let all = Scope::default();
        assert_eq!(span(5, 25, 10, &all), Some((0, 30)));
        assert_eq!(span(-5, -1, 10, &all), Some((-10, 0)));
        assert_eq!(span(10, 10, 10, &all), Some((10, 20)));
        let scope = Scope {
            since: Some(12),
            until: Some(20),
            ..Scope::default()
        };
        assert_eq!(span(5, 25, 10, &scope), Some((10, 20)));
        assert_eq!(span(20, 25, 10, &scope), None);
    }

    #[test]
    fn a_plan_walks_every_chunk_once_in_order() {
        let mut plan = Plan::new(10, vec![task(0, 30), task(-10, 0), task(100, 110)]);
        assert_eq!(plan.chunks_total(), 5);
        let mut seen = Vec::new();
        while let Some((t, start, end)) = plan.current() {
            seen.push((t.start, start, end));
            plan.advance();
        }
        assert_eq!(
            seen,
            vec![
                (0, 0, 10),
                (0, 10, 20),
                (0, 20, 30),
                (-10, -10, 0),
                (100, 100, 110)
            ]
        );
        plan.advance();
        assert!(plan.current().is_none());
    }

    #[test]
    fn a_stored_plan_resumes_where_it_stood() {
        let mut plan = Plan::new(10, vec![task(0, 30), task(50, 60)]);
        plan.advance();
        plan.advance();
        let stored = serde_json::to_string(&plan).unwrap();
        let mut resumed: Plan = serde_json::from_str(&stored).unwrap();
        assert_eq!(resumed.current().map(|(_, s, e)| (s, e)), Some((20, 30)));
        resumed.advance();
        assert_eq!(resumed.current().map(|(_, s, e)| (s, e)), Some((50, 60)));
    }

    #[test]
    fn rate_and_eta_come_from_this_run() {
        let mut job = Job::repair("j".into(), "n", "requested", Scope::default());
        job.chunks_total = 10;
        job.chunks_done = 6;
        job.measure(
            &RunProgress {
                points: 1000,
                chunks: 2,
            },
            2.0,
        );
        assert_eq!(job.points_per_second, 500);
        assert_eq!(job.eta_seconds, Some(4));
    }
}
