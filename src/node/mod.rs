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
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    oneshot,
};

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
    /// Writes and mutations, in the node's order.
    jobs: mpsc::Sender<Job>,
    /// Everything else: control messages and refused copies.
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
        let (jobs, inbox) = actor::jobs(settings.capacity);
        let addr = Node::start_in_arbiter(&arbiter.handle(), move |ctx| {
            Node::take_jobs(inbox, ctx);
            Node::new(actor_status, actor_queue, next_seq, settings)
        });
        Ok(NodeHandle {
            status,
            queue,
            jobs,
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
    /// message is never refused for want of room.
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

    /// Hands `op` to the actor without waiting for room: a full line of jobs answers busy at once.
    pub fn deliver(&self, op: Op) -> impl Future<Output = Delivery> + Unpin + 'static {
        hand_over(&self.jobs, op, &self.status)
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

/// Puts `op` on the actor's line of jobs; resolves to the actor's answer. A full line answers busy
/// at once, with the count of writes waiting in `status`; a stopped actor, or one that drops the job
/// unanswered, answers stopped.
fn hand_over(
    jobs: &mpsc::Sender<Job>,
    op: Op,
    status: &NodeStatus,
) -> impl Future<Output = Delivery> + Unpin + 'static {
    let (reply, answer) = oneshot::channel();
    match jobs.try_send(Job { op, reply }) {
        Ok(()) => Either::Left(
            answer.map(|outcome| outcome.unwrap_or(Delivery::Failed(GatewayError::Stopped.into()))),
        ),
        Err(TrySendError::Full(_)) => Either::Right(future::ready(Delivery::Failed(
            GatewayError::Busy(status.snapshot().waiting).into(),
        ))),
        Err(TrySendError::Closed(_)) => Either::Right(future::ready(Delivery::Failed(
            GatewayError::Stopped.into(),
        ))),
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;
    use bytes::Bytes;

    fn mutation() -> Op {
        Op::Mutation(ForwardedQuery {
            method: Method::POST,
            query_string: "q=DROP+DATABASE+x".to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        })
    }

    fn is_busy(delivery: &Delivery, count: usize) -> bool {
        matches!(delivery, Delivery::Failed(NodeError::Gateway(GatewayError::Busy(n))) if *n == count)
    }

    fn is_stopped(delivery: &Delivery) -> bool {
        matches!(
            delivery,
            Delivery::Failed(NodeError::Gateway(GatewayError::Stopped))
        )
    }

    #[tokio::test]
    async fn a_full_line_answers_busy_at_once_and_keeps_what_it_holds_in_order() {
        let (jobs, mut inbox) = actor::jobs(2);
        let status = NodeStatus::new("n", "http://127.0.0.1:1");
        status.set_waiting(7);
        let first = hand_over(&jobs, mutation(), &status);
        let second = hand_over(&jobs, mutation(), &status);
        let third = hand_over(&jobs, mutation(), &status).await;
        assert!(is_busy(&third, 7), "{third:?}");

        // The actor answers the jobs as they come; each requester hears its own answer.
        let answers = [NodeResponse::of(204, "1"), NodeResponse::of(204, "2")];
        for answer in answers {
            let job = inbox.recv().await.expect("two jobs wait");
            let _ = job.reply.send(Delivery::Accepted(answer));
        }
        for (delivery, body) in [(first.await, "1"), (second.await, "2")] {
            assert!(
                matches!(&delivery, Delivery::Accepted(r) if r.body == body),
                "{delivery:?}"
            );
        }
        // Room again once the actor took them.
        let fourth = hand_over(&jobs, mutation(), &status);
        drop(inbox.recv().await.expect("the fourth waits"));
        assert!(
            is_stopped(&fourth.await),
            "a job dropped unanswered is not acknowledged"
        );
    }

    #[tokio::test]
    async fn a_stopped_actor_answers_stopped() {
        let (jobs, inbox) = actor::jobs(4);
        let status = NodeStatus::new("n", "http://127.0.0.1:1");
        let waiting = hand_over(&jobs, mutation(), &status);
        drop(inbox);
        assert!(
            is_stopped(&waiting.await),
            "what it held is dropped unanswered"
        );
        let late = hand_over(&jobs, mutation(), &status).await;
        assert!(is_stopped(&late), "{late:?}");
    }
}
