//! One InfluxDB server behind the gateway: its actor, its HTTP client, its health and its queue.

pub mod actor;
mod backoff;
pub mod client;
pub mod op;
pub mod pipeline;
pub mod queue;
pub mod status;
pub mod traffic;

use std::{future::Future, sync::Arc, time::Duration};

use actix::{Actor, Addr, Arbiter};
use futures_util::future::{self, Either, FutureExt};
use serde::Serialize;
use tokio::sync::oneshot;

pub use actor::{Flush, Job, Maintain, Node, NodeSettings, Refused, Retune, Shutdown};
pub use client::{
    Delivery, ExchangeError, ForwardedQuery, GatewayError, NodeError, NodeResponse, NodeWrite,
    QueuedBecause, Retry, WriteTarget,
};
pub use op::Op;
pub use queue::{NodeQueue, QueueError, QueueStats, QueueStore};
pub use status::{NodeSnapshot, NodeState, NodeStatus};

/// Index of a node in the configuration's `nodes` list.
pub type NodeId = usize;

/// The gateway's way to reach a node: its actor for ordered work, its status and queue for the rest.
pub struct NodeHandle {
    status: Arc<NodeStatus>,
    queue: NodeQueue,
    addr: Addr<Node>,
    arbiter: Arbiter,
}

/// What `/health` shows of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    /// State and counters.
    #[serde(flatten)]
    pub status: NodeSnapshot,
    /// `direct` (writes go straight to the node), `draining` (they go to its queue first), or
    /// `repairing` (a repair job is copying to it what it lacks; reads avoid it).
    pub mode: &'static str,
    /// The disk queue.
    pub queue: QueueStats,
}

impl NodeHandle {
    /// Starts the actor for the node `name` at `url` on a thread of its own, over its reopened
    /// queue.
    pub fn spawn(
        name: &str,
        url: &str,
        settings: NodeSettings,
        queue: NodeQueue,
    ) -> Result<Self, QueueError> {
        let status = Arc::new(NodeStatus::new(name, url));
        let next_seq = queue.next_seq()?;
        let arbiter = Arbiter::new();
        let (actor_status, actor_queue) = (Arc::clone(&status), queue.clone());
        let addr = Node::start_in_arbiter(&arbiter.handle(), move |_| {
            Node::new(actor_status, actor_queue, next_seq, settings)
        });
        Ok(NodeHandle {
            status,
            queue,
            addr,
            arbiter,
        })
    }

    /// Shared status: name, URL, state, counters.
    pub fn status(&self) -> &Arc<NodeStatus> {
        &self.status
    }

    /// Its disk queue.
    pub fn queue(&self) -> &NodeQueue {
        &self.queue
    }

    /// Hands new health and retry settings to the actor. `do_send`, not `try_send`: a control
    /// message must not be refused because the mailbox is full of writes.
    pub fn retune(&self, retune: Retune) {
        self.addr.do_send(retune);
    }

    /// Takes the node out of service (`true`: its writes and mutations go to its queue, nothing
    /// is replayed, reads avoid it) or back into it (its backlog is replayed at once).
    pub fn maintain(&self, on: bool) -> Result<(), QueueError> {
        self.queue.set_maintenance(on)?;
        self.addr.do_send(Maintain);
        Ok(())
    }

    /// Replays the node's queue now, without waiting out the current backoff.
    pub fn flush(&self) {
        self.addr.do_send(Flush);
    }

    /// What `/health` shows.
    pub fn health(&self) -> NodeHealth {
        NodeHealth {
            status: self.status.snapshot(),
            mode: if self.queue.in_maintenance() {
                "maintenance"
            } else if self.queue.is_empty() {
                "direct"
            } else {
                "draining"
            },
            queue: self.queue.stats(),
        }
    }

    /// Hands `op` to the actor without waiting for room: a full mailbox answers busy at once.
    pub fn deliver(&self, op: Op) -> impl Future<Output = Delivery> + Unpin + 'static {
        let (reply, answer) = oneshot::channel();
        match self.addr.try_send(Job { op, reply }) {
            Ok(()) => {
                Either::Left(answer.map(|outcome| {
                    outcome.unwrap_or(Delivery::Failed(GatewayError::Stopped.into()))
                }))
            }
            Err(actix::prelude::SendError::Full(_)) => Either::Right(future::ready(
                Delivery::Failed(GatewayError::Busy(self.status.snapshot().waiting).into()),
            )),
            Err(actix::prelude::SendError::Closed(_)) => Either::Right(future::ready(
                Delivery::Failed(GatewayError::Stopped.into()),
            )),
        }
    }

    /// Has the actor keep `op`, which this node refused while its replicas accepted it, as a dead
    /// letter; resolves to whether the node is flagged `needs_resync` on disk, which is what the
    /// client's acknowledgement rests on. If the actor cannot take the message, the node is flagged
    /// here, without the letter.
    pub fn keep_refused(&self, op: Op, reason: String) -> impl Future<Output = bool> + 'static {
        let (reply, kept) = oneshot::channel();
        match self.addr.try_send(Refused { op, reason, reply }) {
            Ok(()) => Either::Left(kept.map(|kept| kept.unwrap_or(false))),
            Err(_) => Either::Right(future::ready(self.queue.flag_resync().is_ok())),
        }
    }

    /// Asks the actor to move what it holds in memory to its queue; waits at most `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        if tokio::time::timeout(limit, self.addr.send(Shutdown))
            .await
            .is_err()
        {
            log::warn!(
                "node {}: actor did not stop within {limit:?}",
                self.status.name()
            );
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}
