//! What the gateway knows about one node's health, readable from any thread without a message.

use super::traffic::Traffic;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};
use std::time::SystemTime;

use serde::Serialize;

/// Whether a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not probed yet.
    Unknown = 0,
    /// Answered its last probe or request.
    Up = 1,
    /// Could not be reached, or its probe timed out.
    Down = 2,
}

impl NodeState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => NodeState::Up,
            2 => NodeState::Down,
            _ => NodeState::Unknown,
        }
    }

    /// As `/health` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }

    /// Preference when choosing a node to read from: lower is better.
    pub fn read_preference(self) -> u8 {
        match self {
            NodeState::Up => 0,
            NodeState::Unknown => 1,
            NodeState::Down => 2,
        }
    }
}

#[derive(Debug, Default)]
struct Detail {
    last_error: Option<String>,
    version: Option<String>,
    since: Option<SystemTime>,
    last_error_at: Option<SystemTime>,
}

/// Shared health and load of one node; the actor, the health probe and the query path update it.
#[derive(Debug)]
pub struct NodeStatus {
    name: String,
    url: String,
    state: AtomicU8,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    replayed_points: AtomicU64,
    replay_rate: AtomicU64,
    /// A repair job is copying to it what it lacks: reads avoid it.
    repairing: AtomicBool,
    /// The queue's head was refused for a database or retention policy the node lacks: the
    /// backlog waits for them to be created there.
    awaiting_schema: AtomicBool,
    traffic: Traffic,
    detail: Mutex<Detail>,
}

/// A copy of a node's status, as `/health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSnapshot {
    /// Node name from the configuration.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// up, down or unknown.
    pub state: NodeState,
    /// Seconds since the state last changed.
    pub state_age_seconds: Option<u64>,
    /// The last failure seen talking to it, if any.
    pub last_error: Option<String>,
    /// When that failure happened, RFC 3339.
    pub last_error_at: Option<String>,
    /// Whether the node has been up since that failure: the error is history, not its state.
    pub recovered_since_error: bool,
    /// InfluxDB version from its last `/ping`.
    pub version: Option<String>,
    /// Requests the gateway has on the wire to it.
    pub in_flight: usize,
    /// Writes and mutations waiting in its actor's memory.
    pub waiting: usize,
    /// Points replayed from its queue since the gateway started.
    pub replayed_points: u64,
    /// Points per second replayed over the last second or so of replay.
    pub replay_rate_points_per_second: u64,
}

impl NodeStatus {
    /// A node not probed yet.
    pub fn new(name: &str, url: &str) -> Self {
        NodeStatus {
            name: name.to_owned(),
            url: url.to_owned(),
            state: AtomicU8::new(NodeState::Unknown as u8),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            replayed_points: AtomicU64::new(0),
            replay_rate: AtomicU64::new(0),
            repairing: AtomicBool::new(false),
            awaiting_schema: AtomicBool::new(false),
            traffic: Traffic::default(),
            detail: Mutex::new(Detail::default()),
        }
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What was sent to the node and what became of it.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Current state.
    pub fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Records that the node answered; `version` comes from a `/ping`.
    pub fn mark_up(&self, version: Option<&str>) {
        if self.state() == NodeState::Up && version.is_none() {
            return; // the common case on the write path: nothing to change, no lock
        }
        let mut detail = self.detail();
        if let Some(version) = version {
            if detail.version.as_deref() != Some(version) {
                detail.version = Some(version.to_owned());
            }
        }
        if self.state.swap(NodeState::Up as u8, Ordering::AcqRel) != NodeState::Up as u8 {
            detail.since = Some(SystemTime::now());
            match &detail.version {
                Some(v) => log::info!("node {} is up ({}, InfluxDB {v})", self.name, self.url),
                None => log::info!("node {} is up ({})", self.name, self.url),
            }
        }
    }

    /// Records that the node could not be reached.
    pub fn mark_down(&self, reason: &str) {
        let mut detail = self.detail();
        detail.last_error = Some(reason.to_owned());
        detail.last_error_at = Some(SystemTime::now());
        if self.state.swap(NodeState::Down as u8, Ordering::AcqRel) != NodeState::Down as u8 {
            detail.since = Some(SystemTime::now());
            log::warn!("node {} is down ({}): {reason}", self.name, self.url);
        }
    }

    /// Records a failure that says nothing about reachability (a 5xx, a timeout, a full mailbox).
    pub fn record_error(&self, error: &str) {
        let mut detail = self.detail();
        detail.last_error = Some(error.to_owned());
        detail.last_error_at = Some(SystemTime::now());
    }

    /// The version the node reported, if it has answered a probe.
    pub fn version(&self) -> Option<String> {
        self.detail().version.clone()
    }

    /// Counts a request put on the wire; the guard counts it off when dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether nothing is on the wire to the node nor waiting in its actor's memory.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.waiting.load(Ordering::Acquire) == 0
    }

    /// Publishes how many writes and mutations wait in the actor.
    pub fn set_waiting(&self, waiting: usize) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// Counts points replayed from the queue.
    pub fn add_replayed(&self, points: u64) {
        self.replayed_points.fetch_add(points, Ordering::Relaxed);
    }

    /// Says whether a repair job is copying to the node what it lacks.
    pub fn set_repairing(&self, repairing: bool) {
        self.repairing.store(repairing, Ordering::Release);
    }

    /// Whether a repair job is copying to the node what it lacks (reads avoid it).
    pub fn is_repairing(&self) -> bool {
        self.repairing.load(Ordering::Acquire)
    }

    /// Says whether the backlog waits for a database or retention policy the node lacks.
    pub fn set_awaiting_schema(&self, waiting: bool) {
        self.awaiting_schema.store(waiting, Ordering::Release);
    }

    /// Whether the backlog waits for a database or retention policy the node lacks.
    pub fn is_awaiting_schema(&self) -> bool {
        self.awaiting_schema.load(Ordering::Acquire)
    }

    /// Publishes the current replay rate.
    pub fn set_replay_rate(&self, points_per_second: u64) {
        self.replay_rate.store(points_per_second, Ordering::Relaxed);
    }

    /// A consistent-enough copy for `/health`.
    pub fn snapshot(&self) -> NodeSnapshot {
        let detail = self.detail();
        NodeSnapshot {
            name: self.name.clone(),
            url: self.url.clone(),
            state: self.state(),
            state_age_seconds: detail
                .since
                .and_then(|since| since.elapsed().ok())
                .map(|age| age.as_secs()),
            last_error: detail.last_error.clone(),
            last_error_at: detail
                .last_error_at
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
            recovered_since_error: self.state() == NodeState::Up
                && matches!((detail.since, detail.last_error_at), (Some(up), Some(error)) if up >= error),
            version: detail.version.clone(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            replayed_points: self.replayed_points.load(Ordering::Relaxed),
            replay_rate_points_per_second: self.replay_rate.load(Ordering::Relaxed),
        }
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        // A panic while holding this lock cannot leave Detail half-written in a harmful way.
        self.detail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts one request in flight to a node for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<NodeStatus>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_and_counters() {
        let status = Arc::new(NodeStatus::new("a", "http://h:1"));
        assert_eq!(status.state(), NodeState::Unknown);
        status.mark_up(Some("1.6.7"));
        assert_eq!(status.state(), NodeState::Up);
        assert_eq!(status.version().as_deref(), Some("1.6.7"));
        status.mark_down("connection refused");
        let snap = status.snapshot();
        assert_eq!(snap.state, NodeState::Down);
        assert_eq!(snap.last_error.as_deref(), Some("connection refused"));
        assert!(snap.last_error_at.is_some());
        assert!(!snap.recovered_since_error);
        status.mark_up(None);
        let snap = status.snapshot();
        assert_eq!(snap.last_error.as_deref(), Some("connection refused"));
        assert!(snap.recovered_since_error, "up again since the error");
        {
            let _a = status.start_request();
            let _b = status.start_request();
            assert_eq!(status.snapshot().in_flight, 2);
        }
        assert_eq!(status.snapshot().in_flight, 0);
    }
}
