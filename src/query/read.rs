//! Reads: one node answers, chosen in rotation among the healthy ones, with fallback to the next.

use std::time::Duration;

use crate::node::{client, ForwardedQuery, NodeError, NodeHandle, NodeId, NodeState};

/// No node could answer a read.
#[derive(Debug, thiserror::Error)]
#[error("no InfluxDB node could answer: {}", .failures.join("; "))]
pub struct ReadError {
    /// One entry per node tried: `name: what went wrong`.
    pub failures: Vec<String>,
}

/// The order in which nodes are tried for a read starting the rotation at `start`: nodes that are up
/// first, then those not probed yet, then those down (a last resort, as the probe may be stale).
pub fn read_order(states: &[NodeState], start: usize) -> Vec<NodeId> {
    let n = states.len();
    let mut order: Vec<NodeId> = (0..n).map(|i| (start + i) % n.max(1)).collect();
    // Stable: within each class the rotation order is kept.
    order.sort_by_key(|&node| states[node].read_preference());
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
                return Ok((node, response));
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

    #[test]
    fn rotation_within_healthy_nodes_first() {
        assert_eq!(read_order(&[Up, Up, Up], 0), vec![0, 1, 2]);
        assert_eq!(read_order(&[Up, Up, Up], 4), vec![1, 2, 0]);
        assert_eq!(read_order(&[Down, Up, Up], 0), vec![1, 2, 0]);
        assert_eq!(read_order(&[Up, Down, Unknown], 1), vec![0, 2, 1]);
        assert!(read_order(&[], 3).is_empty());
    }
}
