//! Replicating one write: split by shard, hand to every replica's actor, answer once the consistency
//! level is met.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::{
    consistency::Consistency,
    node::{Delivery, NodeHandle, NodeId, NodeResponse, NodeWrite, Op, WriteTarget},
    router::{Routed, Router, ShardBatch},
};

/// How a replicated write ended, as the client will hear it.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Every shard met the consistency level. `refused` lists the replicas that refused their copy
    /// while the others accepted it: `(shard, node, the node's answer)`; `unstored` the replicas
    /// whose copy the gateway could not store (queue or disk full). Both are flagged
    /// `needs_resync` before the client hears of the write.
    Acknowledged {
        /// Copies to keep as dead letters on the nodes that refused them.
        refused: Vec<(usize, NodeId, String)>,
        /// Replicas that did not get their copy because it could not be queued.
        unstored: Vec<NodeId>,
    },
    /// The nodes refused the points (parse error, type conflict, unknown database, credentials)
    /// and no replica of the shard accepted them: the first refusal, as InfluxDB sent it.
    Rejected(NodeResponse),
    /// Not acknowledged though no node refused the points: answered 503, safe to retry.
    Failed(WriteFailure),
    /// Some lines could not be routed and were left out; the others were acknowledged. The text is
    /// InfluxDB's own wording, `partial write: ...` when other points were written.
    Unroutable(String),
}

/// Why a write was not acknowledged though no node refused its points. Its text is the client's
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteFailure {
    /// Some shard did not get enough replicas to accept the write.
    #[error(
        "write consistency {:?} not met: {}",
        .level.as_str(),
        .shards.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NotMet {
        /// The level asked for.
        level: Consistency,
        /// Each shard that fell short.
        shards: Vec<Shortfall>,
    },
    /// Enough replicas accepted, but the nodes that refused their copies could not be flagged as
    /// needing a resync, so the divergence could be forgotten: not acknowledged.
    #[error(
        "write accepted, but the nodes that refused their copies ({}) could not be flagged as needing a resync",
        .nodes.join(", ")
    )]
    Unflagged {
        /// The refusing nodes.
        nodes: Vec<String>,
    },
}

/// One shard that fell short of the level, and what each of its replicas said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The shard's name.
    pub shard: String,
    /// Its replicas.
    pub replicas: usize,
    /// Direct acceptances the level needs.
    pub required: usize,
    /// Direct acceptances received.
    pub accepted: usize,
    /// Replicas that queued the write.
    pub queued: usize,
    /// What went wrong, one entry per replica (`name: why`).
    pub failures: Vec<String>,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {:?}: {} of {} replicas accepted, {} needed, {} queued",
            self.shard, self.accepted, self.replicas, self.required, self.queued
        )?;
        if !self.failures.is_empty() {
            write!(f, " ({})", self.failures.join("; "))?;
        }
        Ok(())
    }
}

/// Counts the answers of every replica of every shard and decides how the write is answered.
///
/// A write is acknowledged only when every replica has answered, each shard has at least the
/// level's number of direct acceptances, and every other replica holds the write in its flushed
/// queue. Two exceptions are tolerated when the shard's level is met by acceptances (and at least
/// one replica accepted): a replica whose copy could not be stored (queue or disk full, storage
/// failing), and a replica that refused the points its peers accepted (it has diverged). Either
/// copy is counted and its node flagged for resync. When no replica of a shard accepted and some
/// refused, the client gets the node's refusal.
#[derive(Debug)]
pub struct Tally<'a> {
    consistency: Consistency,
    shards: Vec<ShardTally<'a>>,
    outstanding: usize,
}

#[derive(Debug)]
struct ShardTally<'a> {
    name: &'a str,
    replicas: usize,
    required: usize,
    accepted: usize,
    queued: usize,
    /// Failures that may be tolerated: a copy not stored, or a refusal.
    tolerable: usize,
    failures: Vec<String>,
    refusals: Vec<(NodeId, NodeResponse)>,
    unstored: Vec<NodeId>,
}

impl WriteOutcome {
    /// The replicas an acknowledged write is missing on, each once, in node order: they refused
    /// their copy or it could not be stored, and they are flagged `needs_resync`.
    pub fn missing_copies(&self) -> Vec<NodeId> {
        let WriteOutcome::Acknowledged { refused, unstored } = self else {
            return Vec::new();
        };
        let mut nodes: Vec<NodeId> = refused
            .iter()
            .map(|&(_, node, _)| node)
            .chain(unstored.iter().copied())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

impl ShardTally<'_> {
    fn met(&self) -> bool {
        self.accepted >= self.required
            && self.failures.len() == self.tolerable
            && (self.tolerable == 0 || self.accepted >= self.required.max(1))
    }
}

impl<'a> Tally<'a> {
    /// A tally for shards named `shards`, each with its replica count.
    pub fn new(
        consistency: Consistency,
        shards: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Self {
        let shards: Vec<ShardTally> = shards
            .into_iter()
            .map(|(name, replicas)| ShardTally {
                name,
                replicas,
                required: consistency.required(replicas),
                accepted: 0,
                queued: 0,
                tolerable: 0,
                failures: Vec::new(),
                refusals: Vec::new(),
                unstored: Vec::new(),
            })
            .collect();
        let outstanding = shards.iter().map(|s| s.replicas).sum();
        Tally {
            consistency,
            shards,
            outstanding,
        }
    }

    /// Records the answer of node `node` (named `name`) for shard `shard`; returns the outcome once
    /// every replica has answered.
    pub fn record(
        &mut self,
        shard: usize,
        node: NodeId,
        name: &str,
        delivery: Delivery,
    ) -> Option<WriteOutcome> {
        self.outstanding = self.outstanding.saturating_sub(1);
        let tally = &mut self.shards[shard];
        match delivery {
            Delivery::Accepted(_) => tally.accepted += 1,
            Delivery::Queued(_) => tally.queued += 1,
            Delivery::Rejected(answer) => {
                tally.tolerable += 1;
                tally
                    .failures
                    .push(format!("{name}: refused: {}", answer.refusal()));
                tally.refusals.push((node, answer));
            }
            Delivery::Failed(e) => {
                if e.is_unstored_copy() {
                    tally.tolerable += 1;
                    tally.unstored.push(node);
                }
                tally.failures.push(format!("{name}: {e}"));
            }
        }
        (self.outstanding == 0).then(|| self.decide())
    }

    fn decide(&mut self) -> WriteOutcome {
        // A refusal nobody contradicted is the client's error: pass InfluxDB's answer on.
        for shard in &mut self.shards {
            if shard.accepted == 0 && !shard.refusals.is_empty() {
                return WriteOutcome::Rejected(shard.refusals.swap_remove(0).1);
            }
        }
        if !self.shards.iter().all(ShardTally::met) {
            return self.not_met();
        }
        let refused = self
            .shards
            .iter()
            .enumerate()
            .flat_map(|(i, shard)| {
                shard
                    .refusals
                    .iter()
                    .map(move |(node, answer)| (i, *node, answer.refusal()))
            })
            .collect();
        let unstored = self
            .shards
            .iter()
            .flat_map(|shard| shard.unstored.iter().copied())
            .collect();
        WriteOutcome::Acknowledged { refused, unstored }
    }

    /// The outcome when time ran out; replicas that never answered are named in `silent`. Their
    /// copies may still be applied or queued: the actor finishes what it was given.
    pub fn expire(
        mut self,
        silent: impl IntoIterator<Item = (usize, String)>,
        after: Duration,
    ) -> WriteOutcome {
        for (shard, node) in silent {
            let wait = crate::units::format_duration(after);
            self.shards[shard]
                .failures
                .push(format!("{node}: no answer within {wait}, outcome unknown"));
        }
        self.not_met()
    }

    fn not_met(&self) -> WriteOutcome {
        let shards = self
            .shards
            .iter()
            .filter(|s| !s.met())
            .map(|s| Shortfall {
                shard: s.name.to_owned(),
                replicas: s.replicas,
                required: s.required,
                accepted: s.accepted,
                queued: s.queued,
                failures: s.failures.clone(),
            })
            .collect();
        WriteOutcome::Failed(WriteFailure::NotMet {
            level: self.consistency,
            shards,
        })
    }
}

/// What the write path needs of a node: take a write, keep a copy it refused, and its name. The
/// node's actor handle in the gateway; a stand-in in tests that need an answer's timing.
pub trait Replica {
    /// Hands `op` to the node; resolves to how it went.
    fn deliver(&self, op: Op) -> impl Future<Output = Delivery> + Unpin + 'static;
    /// Keeps `op`, refused by this node while its peers accepted it; resolves to whether the node
    /// is flagged `needs_resync` on disk.
    fn keep_refused(&self, op: Op, reason: String) -> impl Future<Output = bool> + 'static;
    /// The node's name.
    fn name(&self) -> &str;
}

impl Replica for NodeHandle {
    fn deliver(&self, op: Op) -> impl Future<Output = Delivery> + Unpin + 'static {
        NodeHandle::deliver(self, op)
    }

    fn keep_refused(&self, op: Op, reason: String) -> impl Future<Output = bool> + 'static {
        NodeHandle::keep_refused(self, op, reason)
    }

    fn name(&self) -> &str {
        self.status().name()
    }
}

/// Sends `body` for database `db` to every replica it belongs on and waits for `consistency`;
/// while data moves from an earlier layout (`moving_from`), the replicas it gives the points to
/// and `router` does not get them too, and count like the others. Replicas that have not answered within `wait` count as failed. `wait` bounds the whole answer:
/// the replicas' answers and the flagging of replicas that refused their copies share it.
///
/// The hand-off to the actors happens under `order`, a lock held only while messages are put in
/// mailboxes (never across an await): every node receives concurrent writes and mutations in the
/// same order, so replicas apply same-timestamp rewrites identically.
#[allow(clippy::too_many_arguments)]
pub async fn replicate<R: Replica>(
    nodes: &[R],
    router: &Router,
    moving_from: Option<&Router>,
    order: &Mutex<()>,
    db: &str,
    target: WriteTarget,
    body: &Bytes,
    precision: Option<&str>,
    consistency: Consistency,
    wait: Duration,
) -> WriteOutcome {
    let deadline = Instant::now() + wait;
    let target = Arc::new(target);
    let mut routed = router.route(db, body, precision);
    if let Some(earlier) = moving_from {
        let moved = earlier.route_moved(router, db, body, precision);
        routed.batches.extend(moved.batches);
    }
    // The router counted each share's points and read their time span, once for all replicas.
    let write = |batch: &ShardBatch<'_>| NodeWrite {
        target: Arc::clone(&target),
        body: batch.body.clone(),
        span: batch.span,
        points: batch.points,
        ends_cleanly: batch.ends_cleanly,
    };
    let outcome = deliver(nodes, &routed, order, write, consistency, deadline, wait).await;
    match outcome {
        WriteOutcome::Acknowledged { .. } if !routed.unroutable.is_empty() => {
            let reasons: Vec<String> = routed.unroutable.iter().map(|u| u.to_string()).collect();
            let reasons = reasons.join("\n");
            WriteOutcome::Unroutable(if routed.batches.is_empty() {
                reasons
            } else {
                format!("partial write: {reasons} dropped=0")
            })
        }
        outcome => outcome,
    }
}

/// Hands each shard's body to its replicas and waits for the level; see [`replicate`].
async fn deliver<R: Replica>(
    nodes: &[R],
    routed: &Routed<'_>,
    order: &Mutex<()>,
    write: impl Fn(&ShardBatch<'_>) -> NodeWrite,
    consistency: Consistency,
    deadline: Instant,
    wait: Duration,
) -> WriteOutcome {
    let mut tally = Tally::new(
        consistency,
        routed
            .batches
            .iter()
            .map(|b| (b.shard.name.as_str(), b.shard.replicas.len())),
    );
    let mut answers = Answers {
        pending: Vec::with_capacity(routed.batches.iter().map(|b| b.shard.replicas.len()).sum()),
    };
    {
        let _order = order.lock().unwrap_or_else(|p| p.into_inner());
        for (shard, batch) in routed.batches.iter().enumerate() {
            let share = write(batch);
            for &node in &batch.shard.replicas {
                let delivery = nodes[node].deliver(Op::Write(share.clone()));
                answers.pending.push((shard, node, delivery));
            }
        }
    }
    let decided = tokio::time::timeout_at(deadline, async {
        while let Some((shard, node, delivery)) = answers.next().await {
            if let Some(outcome) = tally.record(shard, node, nodes[node].name(), delivery) {
                return Some(outcome);
            }
        }
        None
    })
    .await;
    match decided {
        Ok(Some(WriteOutcome::Acknowledged { refused, unstored })) if !refused.is_empty() => {
            // The refusing nodes are flagged, on disk, before the client hears the write is safe.
            let kept = join_all(refused.iter().map(|&(shard, node, ref reason)| {
                let write = write(&routed.batches[shard]);
                nodes[node].keep_refused(Op::Write(write), reason.clone())
            }));
            match tokio::time::timeout_at(deadline, kept).await {
                Ok(kept) if kept.iter().all(|&k| k) => {
                    WriteOutcome::Acknowledged { refused, unstored }
                }
                _ => WriteOutcome::Failed(WriteFailure::Unflagged {
                    nodes: refused
                        .iter()
                        .map(|&(_, node, _)| nodes[node].name().to_owned())
                        .collect(),
                }),
            }
        }
        Ok(Some(outcome)) => outcome,
        // Only when there was nothing to send: an empty routing must not hang or panic.
        Ok(None) => WriteOutcome::Acknowledged {
            refused: Vec::new(),
            unstored: Vec::new(),
        },
        Err(_) => tally.expire(
            answers
                .pending
                .iter()
                .map(|&(shard, node, _)| (shard, nodes[node].name().to_owned())),
            wait,
        ),
    }
}

/// The replicas' answers to one write, taken as they come: `(shard, node, answer)` for each still
/// to answer. Polled in place, a few replicas at most, where `FuturesUnordered` made a task (an
/// allocation) for each.
struct Answers<F> {
    pending: Vec<(usize, NodeId, F)>,
}

impl<F: Future<Output = Delivery> + Unpin> Answers<F> {
    /// The next answer to arrive; `None` once every replica has answered.
    async fn next(&mut self) -> Option<(usize, NodeId, Delivery)> {
        poll_fn(|cx| {
            if self.pending.is_empty() {
                return Poll::Ready(None);
            }
            for i in 0..self.pending.len() {
                if let Poll::Ready(delivery) = Pin::new(&mut self.pending[i].2).poll(cx) {
                    let (shard, node, _) = self.pending.swap_remove(i);
                    return Poll::Ready(Some((shard, node, delivery)));
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{ExchangeError, GatewayError, NodeError, QueuedBecause};
    use actix_web::http::StatusCode;

    fn accepted() -> Delivery {
        Delivery::Accepted(NodeResponse::of(204, ""))
    }

    fn refused() -> Delivery {
        Delivery::Failed(ExchangeError::Connect("refused".into()).into())
    }

    fn full() -> Delivery {
        Delivery::Failed(NodeError::Gateway(GatewayError::QueueFull {
            bytes: 10,
            limit: 10,
        }))
    }

    #[test]
    fn every_replica_must_hold_the_write() {
        let mut tally = Tally::new(Consistency::One, [("all", 3)]);
        assert!(
            tally.record(0, 0, "a", accepted()).is_none(),
            "others have not answered yet"
        );
        assert!(tally
            .record(0, 1, "b", Delivery::Queued(QueuedBecause::Down))
            .is_none());
        assert!(matches!(
            tally.record(0, 2, "c", Delivery::Queued(QueuedBecause::Down)),
            Some(WriteOutcome::Acknowledged { .. })
        ));

        let mut tally = Tally::new(Consistency::One, [("all", 2)]);
        assert!(tally.record(0, 0, "a", accepted()).is_none());
        let Some(WriteOutcome::Failed(why)) = tally.record(0, 1, "b", refused()) else {
            panic!("a replica that neither accepted nor queued fails the write");
        };
        let why = why.to_string();
        assert!(why.contains("b: cannot connect: refused"), "{why}");
    }

    #[test]
    fn levels_count_direct_acceptances() {
        let queued_only = |level| {
            let mut tally = Tally::new(level, [("all", 2)]);
            tally.record(0, 0, "a", Delivery::Queued(QueuedBecause::Down));
            tally.record(0, 1, "b", Delivery::Queued(QueuedBecause::Down))
        };
        assert!(matches!(
            queued_only(Consistency::Any),
            Some(WriteOutcome::Acknowledged { .. })
        ));
        assert!(matches!(
            queued_only(Consistency::One),
            Some(WriteOutcome::Failed(_))
        ));

        let mut tally = Tally::new(Consistency::Quorum, [("all", 3)]);
        assert!(tally.record(0, 0, "a", accepted()).is_none());
        assert!(tally.record(0, 1, "b", accepted()).is_none());
        assert!(matches!(
            tally.record(0, 2, "c", Delivery::Queued(QueuedBecause::Down)),
            Some(WriteOutcome::Acknowledged { .. })
        ));

        let mut tally = Tally::new(Consistency::All, [("all", 3)]);
        assert!(tally.record(0, 0, "a", accepted()).is_none());
        assert!(tally.record(0, 1, "b", accepted()).is_none());
        let Some(WriteOutcome::Failed(why)) =
            tally.record(0, 2, "c", Delivery::Queued(QueuedBecause::Down))
        else {
            panic!("all needs every replica to accept");
        };
        let why = why.to_string();
        assert_eq!(
            why,
            "write consistency \"all\" not met: shard \"all\": 2 of 3 replicas accepted, 3 needed, 1 queued"
        );
    }

    #[test]
    fn a_full_queue_is_tolerated_only_when_the_level_is_met_by_acceptances() {
        let mut tally = Tally::new(Consistency::One, [("all", 2)]);
        tally.record(0, 0, "a", accepted());
        assert!(matches!(
            tally.record(0, 1, "b", full()),
            Some(WriteOutcome::Acknowledged { .. })
        ));

        let mut tally = Tally::new(Consistency::All, [("all", 2)]);
        tally.record(0, 0, "a", accepted());
        assert!(matches!(
            tally.record(0, 1, "b", full()),
            Some(WriteOutcome::Failed(_))
        ));

        let mut tally = Tally::new(Consistency::Any, [("all", 2)]);
        tally.record(0, 0, "a", Delivery::Queued(QueuedBecause::Down));
        assert!(
            matches!(
                tally.record(0, 1, "b", full()),
                Some(WriteOutcome::Failed(_))
            ),
            "nobody accepted it"
        );
    }

    #[test]
    fn a_copy_the_disk_could_not_take_is_tolerated_at_every_level_its_acceptances_meet() {
        let disk_full = || {
            Delivery::Failed(NodeError::Gateway(GatewayError::DiskFull {
                free: 1,
                reserve: 2,
            }))
        };
        for level in [Consistency::Any, Consistency::One, Consistency::Quorum] {
            let mut tally = Tally::new(level, [("all", 3)]);
            tally.record(0, 0, "a", accepted());
            tally.record(0, 1, "b", accepted());
            let outcome = tally.record(0, 2, "c", disk_full()).unwrap();
            assert!(
                matches!(outcome, WriteOutcome::Acknowledged { .. }),
                "{level}: {outcome:?}"
            );
            assert_eq!(outcome.missing_copies(), vec![2], "{level}");
        }
        let mut tally = Tally::new(Consistency::All, [("all", 2)]);
        tally.record(0, 0, "a", accepted());
        assert!(matches!(
            tally.record(0, 1, "b", disk_full()),
            Some(WriteOutcome::Failed(_))
        ));
    }

    #[test]
    fn every_shard_must_meet_the_level() {
        let mut tally = Tally::new(Consistency::One, [("s1", 1), ("s2", 1)]);
        assert!(tally.record(0, 0, "a", accepted()).is_none());
        assert!(matches!(
            tally.record(1, 2, "c", Delivery::Queued(QueuedBecause::Down)),
            Some(WriteOutcome::Failed(_))
        ));
    }

    #[test]
    fn a_refusal_nobody_contradicts_goes_back_to_the_client() {
        let mut tally = Tally::new(Consistency::One, [("all", 2)]);
        assert!(tally
            .record(0, 0, "a", Delivery::Rejected(NodeResponse::of(400, "")))
            .is_none());
        let Some(WriteOutcome::Rejected(answer)) =
            tally.record(0, 1, "b", Delivery::Queued(QueuedBecause::Down))
        else {
            panic!("a 4xx with no acceptance must be returned");
        };
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_diverged_replica_does_not_fail_a_write_its_peers_accepted() {
        let mut tally = Tally::new(Consistency::One, [("all", 2)]);
        assert!(tally
            .record(0, 0, "a", Delivery::Rejected(NodeResponse::of(404, "")))
            .is_none());
        let Some(WriteOutcome::Acknowledged { refused, .. }) = tally.record(0, 1, "b", accepted())
        else {
            panic!("one replica accepted: the level is met");
        };
        assert_eq!(refused, vec![(0, 0, "404".to_owned())]);

        let mut tally = Tally::new(Consistency::All, [("all", 2)]);
        tally.record(0, 0, "a", Delivery::Rejected(NodeResponse::of(404, "")));
        assert!(matches!(
            tally.record(0, 1, "b", accepted()),
            Some(WriteOutcome::Failed(_))
        ));
    }

    #[test]
    fn expiry_names_the_silent_replicas() {
        let mut tally = Tally::new(Consistency::All, [("all", 2)]);
        assert!(tally.record(0, 0, "a", accepted()).is_none());
        let WriteOutcome::Failed(why) =
            tally.expire([(0, "b".to_owned())], Duration::from_secs(10))
        else {
            panic!("expired writes are not met");
        };
        let why = why.to_string();
        assert!(
            why.ends_with("(b: no answer within 10s, outcome unknown)"),
            "{why}"
        );
    }

    /// A node that answers after `answer_after` with `answer`, and takes `flag_after` to flag
    /// itself after refusing: the faults a real influxd cannot produce on demand (a refusal that
    /// comes late, a slow disk under the flag).
    struct Stand {
        name: &'static str,
        answer: fn() -> Delivery,
        answer_after: Duration,
        flag_after: Duration,
    }

    impl Replica for Stand {
        fn deliver(&self, _: Op) -> impl Future<Output = Delivery> + Unpin + 'static {
            let (answer, after) = (self.answer, self.answer_after);
            Box::pin(async move {
                tokio::time::sleep(after).await;
                answer()
            })
        }

        fn keep_refused(&self, _: Op, _: String) -> impl Future<Output = bool> + 'static {
            let after = self.flag_after;
            async move {
                tokio::time::sleep(after).await;
                true
            }
        }

        fn name(&self) -> &str {
            self.name
        }
    }

    /// The client waits `wait` at most, however the time is split between the replicas' answers
    /// and the flagging of a replica that refused (it was `wait` for each in turn: twice that).
    #[tokio::test(start_paused = true)]
    async fn one_deadline_covers_the_answers_and_the_flagging() {
        let wait = Duration::from_secs(20);
        let late = wait.mul_f64(0.9);
        let replicas = [
            Stand {
                name: "a",
                answer: accepted,
                answer_after: Duration::ZERO,
                flag_after: Duration::ZERO,
            },
            Stand {
                name: "b",
                answer: || {
                    Delivery::Rejected(NodeResponse::of(400, r#"{"error":"field type conflict"}"#))
                },
                answer_after: late,
                flag_after: late,
            },
        ];
        let body = Bytes::from_static(b"cpu v=1 1\n");
        let target = WriteTarget {
            query: "db=db".into(),
            authorization: None,
        };
        let started = Instant::now();
        let outcome = replicate(
            &replicas,
            &Router::replicate_to_all(2),
            None,
            &Mutex::new(()),
            "db",
            target,
            &body,
            None,
            Consistency::One,
            wait,
        )
        .await;
        let waited = started.elapsed();
        assert!(
            waited <= wait,
            "the client waited {waited:?}, more than {wait:?}"
        );
        let WriteOutcome::Failed(failure) = outcome else {
            panic!("a refusing replica not flagged in time is not acknowledged: {outcome:?}");
        };
        assert_eq!(
            failure.to_string(),
            "write accepted, but the nodes that refused their copies (b) could not be flagged as needing a resync"
        );
    }
}
