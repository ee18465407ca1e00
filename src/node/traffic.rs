//! What the gateway sent to one node and what became of it, counted for `/metrics`. Plain
//! atomics: the write path adds to them without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Delivery, ExchangeError, NodeError, Op};

/// Why a request to a node got no usable answer, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No connection could be made.
    Connect,
    /// No answer in time.
    Timeout,
    /// A 5xx answer.
    Server,
    /// The exchange broke off.
    Transport,
    /// Refused by the gateway itself: actor busy or stopped, queue or disk full, storage failed.
    Local,
}

impl Cause {
    /// Every cause, in label order.
    pub const ALL: [Cause; 5] = [
        Cause::Connect,
        Cause::Timeout,
        Cause::Server,
        Cause::Transport,
        Cause::Local,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Connect => "connect",
            Cause::Timeout => "timeout",
            Cause::Server => "server_error",
            Cause::Transport => "transport",
            Cause::Local => "gateway",
        }
    }

    fn of(error: &NodeError) -> Cause {
        match error {
            NodeError::Answered { .. } => Cause::Server,
            NodeError::Exchange(ExchangeError::Connect(_)) => Cause::Connect,
            NodeError::Exchange(ExchangeError::Timeout(_)) => Cause::Timeout,
            NodeError::Exchange(ExchangeError::Transport(_) | ExchangeError::CutOff(_)) => {
                Cause::Transport
            }
            NodeError::Gateway(_) => Cause::Local,
        }
    }
}

/// Counters of one node's traffic since start.
#[derive(Debug, Default)]
pub struct Traffic {
    writes: AtomicU64,
    mutations: AtomicU64,
    bytes: AtomicU64,
    points: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failures: [AtomicU64; Cause::ALL.len()],
}

/// A copy of [`Traffic`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// `/write` requests sent (live and replayed).
    pub writes: u64,
    /// Mutations sent to `/query`.
    pub mutations: u64,
    /// Bytes of line protocol sent.
    pub bytes: u64,
    /// Points sent, counted as lines of line protocol.
    pub points: u64,
    /// Requests the node applied (2xx).
    pub accepted: u64,
    /// Requests the node refused as the client's fault.
    pub rejected: u64,
    /// Requests with no usable answer, by cause (in [`Cause::ALL`] order).
    pub failures: [u64; Cause::ALL.len()],
}

impl Traffic {
    /// Counts `op` as put on the wire.
    pub fn sent(&self, op: &Op) {
        match op {
            Op::Write(write) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.bytes
                    .fetch_add(write.body.len() as u64, Ordering::Relaxed);
                self.points.fetch_add(write.points, Ordering::Relaxed);
            }
            Op::Mutation(_) => {
                self.mutations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts what became of a request.
    pub fn outcome(&self, delivery: &Delivery) {
        let counter = match delivery {
            Delivery::Accepted(_) => &self.accepted,
            Delivery::Rejected(_) => &self.rejected,
            Delivery::Failed(e) => &self.failures[Cause::of(e) as usize],
            Delivery::Queued(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TrafficSnapshot {
            writes: load(&self.writes),
            mutations: load(&self.mutations),
            bytes: load(&self.bytes),
            points: load(&self.points),
            accepted: load(&self.accepted),
            rejected: load(&self.rejected),
            failures: std::array::from_fn(|i| load(&self.failures[i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::GatewayError;

    #[test]
    fn failures_are_counted_by_cause() {
        let traffic = Traffic::default();
        traffic.outcome(&Delivery::Failed(
            ExchangeError::Connect("refused".into()).into(),
        ));
        traffic.outcome(&Delivery::Failed(GatewayError::Busy(3).into()));
        traffic.outcome(&Delivery::Queued(crate::node::QueuedBecause::Down));
        let snapshot = traffic.snapshot();
        assert_eq!(snapshot.failures[Cause::Connect as usize], 1);
        assert_eq!(snapshot.failures[Cause::Local as usize], 1);
        assert_eq!(snapshot.failures.iter().sum::<u64>(), 2);
    }
}
