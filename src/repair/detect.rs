//! `repair.auto`: finding nodes that lack data and starting their repair.
//!
//! Two signs are watched, every `health.interval`:
//! - a node flagged `needs_resync` (a copy for it was refused, dead-lettered or too old);
//! - a node that answers without a database its peers hold (wiped, replaced, restored from an old
//!   backup). Only nodes with nothing queued are compared, as a queued `CREATE DATABASE` is not
//!   a loss, and only a difference seen twice in a row counts, as a `CREATE` or `DROP` may be on
//!   its way to one node and not yet to the other — except a node whose backlog its own answers
//!   hold back (`database not found` for queued writes): that is compared at once, and a database
//!   its peer holds is missing for certain. Such a node is flagged first, so that reads
//!   avoid it at once, then repaired. The comparison runs for a node just back up (the usual way
//!   a wiped node returns), and otherwise once every [`COMPARE_EVERY`]: asking every node every
//!   second would find nothing more, only later.
//!
//! A database created on one node behind the gateway's back counts as a difference too: the
//! gateway copies it to the other replicas (benchmarks that write straight to a node as their
//! baseline turn `repair.auto` off for that reason).
//!
//! A node whose automatic repair failed is tried again after a delay that doubles, from a minute
//! up to an hour.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{influx::Influx, Repairs, Scope, State};
use crate::node::NodeState;

const FIRST_RETRY: Duration = Duration::from_secs(60);
const LAST_RETRY: Duration = Duration::from_secs(3600);

/// How often a node that stays up has its databases compared with a peer's.
const COMPARE_EVERY: Duration = Duration::from_secs(60);

/// Looks in a row at a node just back up, so that a difference can be seen twice.
const LOOKS_AFTER_RETURN: u32 = 3;

/// Watches the nodes for as long as the gateway runs.
pub async fn watch(repairs: Arc<Repairs>) {
    let gateway = repairs.gateway();
    let http = crate::node::client::http_client(gateway.query_tls(), 2);
    let authorization = gateway
        .config()
        .auth
        .node_credentials
        .as_ref()
        .and_then(crate::auth::basic);
    let interval = gateway
        .config()
        .health
        .interval
        .max(Duration::from_millis(200));
    // Databases missing on a node at the last look, by node.
    let mut suspects: HashMap<String, BTreeSet<String>> = HashMap::new();
    let count = gateway.nodes().len();
    let (mut was_up, mut looks) = (vec![false; count], vec![LOOKS_AFTER_RETURN; count]);
    let mut compared = vec![Instant::now(); count];
    loop {
        tokio::time::sleep(interval).await;
        if repairs.stopping() {
            return;
        }
        let influx = |n: usize| {
            Influx::new(
                http.clone(),
                gateway.nodes()[n].status().url(),
                authorization.clone(),
                gateway.config().health.timeout.max(Duration::from_secs(5)),
            )
        };
        for (id, node) in gateway.nodes().iter().enumerate() {
            let name = node.status().name();
            let up = node.status().state() == NodeState::Up;
            if up && !was_up[id] {
                looks[id] = LOOKS_AFTER_RETURN;
            }
            was_up[id] = up;
            if !up || repairs.repairing(name).is_some() || node.queue().in_maintenance() {
                continue;
            }
            if node.queue().needs_resync() {
                suspects.remove(name);
                start(&repairs, name, "flagged needs_resync");
                continue;
            }
            // A backlog refused for a database the node lacks is proof enough: compared now.
            let refused = node.status().is_awaiting_schema();
            if !node.queue().is_empty() && !refused {
                suspects.remove(name);
                continue;
            }
            let due =
                refused || suspects.contains_key(name) || compared[id].elapsed() >= COMPARE_EVERY;
            if looks[id] == 0 && !due {
                continue;
            }
            looks[id] = looks[id].saturating_sub(1);
            compared[id] = Instant::now();
            let peer = gateway.nodes().iter().enumerate().find(|(p, other)| {
                *p != id
                    && other.status().state() == NodeState::Up
                    && other.queue().is_empty()
                    && !other.queue().needs_resync()
                    && !other.status().is_awaiting_schema()
            });
            let Some((peer, _)) = peer else { continue };
            let (Ok(theirs), Ok(ours)) =
                (influx(peer).databases().await, influx(id).databases().await)
            else {
                continue;
            };
            let missing: BTreeSet<String> =
                theirs.into_iter().filter(|db| !ours.contains(db)).collect();
            if missing.is_empty() {
                suspects.remove(name);
                continue;
            }
            let seen_before = suspects.insert(name.to_owned(), missing.clone());
            if refused
                || seen_before.is_some_and(|before| before.intersection(&missing).next().is_some())
            {
                suspects.remove(name);
                let list: Vec<&str> = missing.iter().map(String::as_str).collect();
                log::error!(
                    "node {name} lacks databases its peers hold ({}): wiped or replaced? flagged needs_resync",
                    list.join(", ")
                );
                if let Err(e) = node.queue().flag_resync() {
                    log::error!("node {name}: cannot flag needs_resync: {e}");
                }
                start(&repairs, name, "lacks databases its peers hold");
            }
        }
    }
}

/// `verify.interval`: a verify that repairs what differs, every interval, for as long as the
/// gateway runs (the next waits for the last to end).
pub async fn anti_entropy(repairs: Arc<Repairs>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if repairs.stopping() {
            return;
        }
        let scope = Scope {
            repair: true,
            ..Scope::default()
        };
        match repairs.verify("verify.interval", scope) {
            Ok(job) => log::info!("job {}: periodic verify started", job.id),
            Err(e) => log::info!("periodic verify not started: {e}"),
        }
    }
}

fn start(repairs: &Arc<Repairs>, node: &str, reason: &str) {
    if let Some((failures, at)) = repairs.auto_failure(node) {
        let wait = FIRST_RETRY
            .saturating_mul(1 << failures.saturating_sub(1).min(6))
            .min(LAST_RETRY);
        if at.elapsed() < wait {
            return;
        }
    }
    if let Err(e) = repairs.repair(node, reason, Scope::default()) {
        log::debug!("automatic repair of {node} not started: {e}");
    }
}

impl super::Repairs {
    /// How many automatic repairs of `node` failed in a row, and when the last ended.
    fn auto_failure(&self, node: &str) -> Option<(u32, Instant)> {
        self.auto_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
    }

    /// Notes how a job on `node` ended, for the delay before the next automatic one: a repair
    /// done while the node was flagged again waits as a failed one does, so that a node flagged
    /// at every write is not repaired back to back.
    pub(super) fn note_end(&self, node: &str, state: State, flagged_again: bool) {
        let mut failures = self.auto_failures.lock().unwrap_or_else(|p| p.into_inner());
        if state == State::Done && !flagged_again {
            failures.remove(node);
        } else {
            let entry = failures
                .entry(node.to_owned())
                .or_insert((0, Instant::now()));
            *entry = (entry.0 + 1, Instant::now());
        }
    }
}
