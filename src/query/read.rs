//! Reads: one node answers, chosen in rotation among the healthy ones, with fallback to the next.

use std::time::Duration;

use super::peek::{self, Peeked};
use crate::node::{client, ForwardedQuery, NodeError, NodeHandle, NodeId, NodeState};

/// No node could answer a read.
#[derive(Debug, thiserror::Error)]
#[error("no InfluxDB node could answer: {}", .failures.join("; "))]
pub struct ReadError {
    /// One entry per node tried: `name: what went wrong`.
    pub failures: Vec<String>,
}

/// What the read path knows of a node when choosing where to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its health.
    pub state: NodeState,
    /// Flagged `needs_resync`: it is known to lack copies its replicas hold.
    pub lacks_data: bool,
}

impl Candidate {
    /// Lower is better: reachable before down (a last resort, as the probe may be stale), then
    /// complete before known to lack data, then up before not probed yet.
    fn preference(self) -> (bool, bool, u8) {
        (
            self.state == NodeState::Down,
            self.lacks_data,
            self.state.read_preference(),
        )
    }
}

/// The order in which nodes are tried for a read starting the rotation at `start`: a node known
/// to lack data is read only when no complete one can be reached.
pub fn read_order(candidates: &[Candidate], start: usize) -> Vec<NodeId> {
    let n = candidates.len();
    let mut order: Vec<NodeId> = (0..n).map(|i| (start + i) % n.max(1)).collect();
    // Stable: within each class the rotation order is kept.
    order.sort_by_key(|&node| candidates[node].preference());
    order
}

/// Sends `query` to the nodes in `order` until one answers without a server error; returns that
/// node and its answer, whose body is still to be streamed.
pub async fn read(
    nodes: &[NodeHandle],
    order: &[NodeId],
    http: &awc::Client,
    query: &ForwardedQuery,
    timeout: Duration,
) -> Result<(NodeId, awc::ClientResponse), ReadError> {
    let mut failures = Vec::new();
    for &node in order {
        let status = nodes[node].status();
        let _in_flight = status.start_request();
        match client::query_streaming(http, status.url(), query, timeout).await {
            Ok(response) => {
                status.mark_up(None);
                let last = failures.len() + 1 == order.len();
                if last || !response.status().is_success() {
                    return Ok((node, response));
                }
                match peek::missing_database(response, timeout).await {
                    Peeked::Answer(response) => return Ok((node, response)),
                    Peeked::MissingDatabase(message) => {
                        // Wiped or replaced: its peers may hold the database. `repair.auto`
                        // finds such a node and repairs it.
                        log::debug!(
                            "{} answered {message:?}; trying the next node",
                            status.name()
                        );
                        failures.push(format!("{}: {message}", status.name()));
                    }
                }
            }
            Err(e) => {
                note_failure(status, &e);
                if failures.is_empty() {
                    log::debug!(
                        "read from {} failed, trying the next node: {e}",
                        status.name()
                    );
                }
                failures.push(format!("{}: {e}", status.name()));
            }
        }
    }
    Err(ReadError { failures })
}

fn note_failure(status: &crate::node::NodeStatus, error: &NodeError) {
    if error.is_unreachable() {
        status.mark_down(&error.to_string());
    } else {
        status.record_error(&error.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    fn complete(states: &[NodeState]) -> Vec<Candidate> {
        states
            .iter()
            .map(|&state| Candidate {
                state,
                lacks_data: false,
            })
            .collect()
    }

    #[test]
    fn rotation_within_healthy_nodes_first() {
        assert_eq!(read_order(&complete(&[Up, Up, Up]), 0), vec![0, 1, 2]);
        assert_eq!(read_order(&complete(&[Up, Up, Up]), 4), vec![1, 2, 0]);
        assert_eq!(read_order(&complete(&[Down, Up, Up]), 0), vec![1, 2, 0]);
        assert_eq!(
            read_order(&complete(&[Up, Down, Unknown]), 1),
            vec![0, 2, 1]
        );
        assert!(read_order(&[], 3).is_empty());
    }

    #[test]
    fn a_node_known_to_lack_data_is_read_only_when_no_complete_one_is_reachable() {
        let mut nodes = complete(&[Up, Up, Up]);
        nodes[1].lacks_data = true;
        for start in 0..3 {
            assert_eq!(read_order(&nodes, start).last(), Some(&1), "start {start}");
        }
        // Before a node that is down, which may not answer at all.
        nodes[2].state = Down;
        assert_eq!(read_order(&nodes, 1), vec![0, 1, 2]);
        // Rotation among the complete ones is kept.
        let mut nodes = complete(&[Up, Up, Up, Up]);
        nodes[0].lacks_data = true;
        assert_eq!(read_order(&nodes, 0), vec![1, 2, 3, 0]);
        assert_eq!(read_order(&nodes, 2), vec![2, 3, 1, 0]);
    }
}
