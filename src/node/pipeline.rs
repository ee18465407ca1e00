//! The node's in-memory line and what is on the wire: which waiting work may go out next, what it
//! may go beside, and what the node's answer does to the rest. Pure decisions, no network, disk or
//! clock: the actor does the I/O around them.
//!
//! Invariants, checked by the model test below over arbitrary sequences of arrivals, sends and
//! answers:
//! - **Commuting only.** Requests on the wire together commute pairwise (their time spans cannot
//!   overwrite each other's points), so the node ends as if it had applied them in order.
//! - **Mutations alone.** A mutation goes on the wire only when nothing is, and nothing goes beside
//!   it: it sees every write accepted before it, and no write after it.
//! - **Order.** Work leaves the line oldest first; a group is a run of consecutive writes to one
//!   target, with no write after one whose last line is left open.
//! - **Nothing lost or doubled.** Every piece of work pushed is, at every moment, in exactly one
//!   place: waiting, on the wire, handed back to be answered, or handed back to be queued.
//! - **Failures keep the order.** When the node fails, the failed group and everything still
//!   waiting are handed back together, to go to disk under their own sequence numbers (which
//!   order the queue), all of them before a replay may read its head.

use std::collections::VecDeque;

use smallvec::{smallvec, SmallVec};

use super::{
    client::QueuedBecause,
    op::{same_target_as, Carries, Op},
};
use crate::line_protocol::TimeSpan;

/// What bounds the pipeline, from `write.max_in_flight` and `write.batch.max_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests on the wire at once.
    pub max_in_flight: usize,
    /// Most points in one coalesced request.
    pub batch_max_points: u64,
    /// Work that may wait in memory before new work goes to disk.
    pub capacity: usize,
}

/// What the actor knows of the node and its queue when new work arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// The gateway is stopping.
    pub closing: bool,
    /// An operator took the node out of service (`drain`).
    pub maintenance: bool,
    /// The node is known to be down.
    pub down: bool,
    /// The queue holds a backlog, or the removals of one just replayed are not yet on disk.
    pub backlog: bool,
}

/// Identifies a request on the wire.
pub type FlightId = u64;

/// How the node answered a request, as far as the pipeline cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted, or a failure that is not retried (the gateway's own: busy, stopped): answer
    /// the work with it.
    Final,
    /// Refused (4xx): final for one write, but a coalesced group must find out whose lines.
    Refused,
    /// The node is unreachable or failing (connect, timeout, 5xx): to disk, in order.
    Transient,
}

/// The work one request carries: nearly always one write, kept inline so that sending it costs no
/// allocation.
pub type Group<W> = SmallVec<[W; 1]>;

/// What to do with the work of a request whose answer came back.
#[derive(Debug)]
pub enum Landed<W> {
    /// Answer each piece of work with the node's answer.
    Reply(Group<W>),
    /// Put these on disk, in this order: the failed group, then everything that was waiting.
    Queue(Vec<W>),
    /// A coalesced group was refused: its writes wait again at the front, to go one by one.
    Retry,
    /// No such request: a stop moved it to disk already.
    Gone,
}

/// A request on the wire and the work it carries, kept so that a stop can queue it without
/// waiting for a node that may never answer.
#[derive(Debug)]
struct Flight<W> {
    id: FlightId,
    span: TimeSpan,
    mutation: bool,
    group: Group<W>,
}

/// The in-memory line of one node and its requests on the wire.
#[derive(Debug)]
pub struct Pipeline<W> {
    limits: Limits,
    waiting: VecDeque<W>,
    in_flight: Vec<Flight<W>>,
    next_flight: FlightId,
    /// Writes at the front of `waiting` to send one by one: they were coalesced and refused.
    alone: usize,
}

impl<W: Carries> Pipeline<W> {
    /// An empty pipeline.
    pub fn new(limits: Limits) -> Self {
        Pipeline {
            limits,
            waiting: VecDeque::new(),
            in_flight: Vec::new(),
            next_flight: 0,
            alone: 0,
        }
    }

    /// Why new work must go to disk rather than join the line, if it must. Never around a
    /// backlog: the node returns to direct writes only once its queue is empty and that is on disk.
    pub fn must_queue(&self, conditions: Conditions) -> Option<QueuedBecause> {
        if conditions.closing {
            Some(QueuedBecause::Stopping)
        } else if conditions.maintenance {
            Some(QueuedBecause::Maintenance)
        } else if conditions.down {
            Some(QueuedBecause::Down)
        } else if conditions.backlog {
            Some(QueuedBecause::Draining)
        } else if self.waiting.len() >= self.limits.capacity {
            Some(QueuedBecause::Busy)
        } else {
            None
        }
    }

    /// Adds work behind everything waiting.
    pub fn push(&mut self, work: W) {
        self.waiting.push_back(work);
    }

    /// Work waiting in memory.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests on the wire.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The oldest waiting work.
    pub fn front(&self) -> Option<&W> {
        self.waiting.front()
    }

    /// Whether refused writes are being resent one by one (no holding back for more then).
    pub fn sending_alone(&self) -> bool {
        self.alone > 0
    }

    /// Whether the oldest waiting work may go on the wire now: there is room, no mutation is out,
    /// and it is a mutation with nothing out or a write that commutes with everything out.
    pub fn front_may_go(&self) -> bool {
        let Some(front) = self.waiting.front() else {
            return false;
        };
        if self.in_flight.len() >= self.limits.max_in_flight
            || self.in_flight.iter().any(|f| f.mutation)
        {
            return false;
        }
        match front.op() {
            Op::Mutation(_) => self.in_flight.is_empty(),
            Op::Write(write) => self.commutes_with_in_flight(write.span),
        }
    }

    /// Points in the run of writes at the front that could be coalesced, counted up to `cap`.
    pub fn coalescible_points(&self, cap: u64) -> u64 {
        let mut writes = self.waiting.iter().map_while(|w| match w.op() {
            Op::Write(write) => Some(write),
            Op::Mutation(_) => None,
        });
        let Some(first) = writes.next() else {
            return 0;
        };
        let mut points = first.points;
        for write in writes {
            if points >= cap || !same_target_as(&first.target, write) {
                break;
            }
            points += write.points;
        }
        points
    }

    /// The waiting work to send as the next request: one mutation, or a run of writes to the same
    /// target within `write.batch.max_points`. While several requests may still go on the wire,
    /// writes that could go beside the group are shared out between them rather than sent as
    /// one, once the group holds its share: influxd spreads concurrent requests over its cores,
    /// one large request much less. A write the group could overwrite would only wait for it, so
    /// it joins it whatever the share. Call only when [`Self::front_may_go`].
    pub fn take_group(&mut self) -> Group<W> {
        let free = self
            .limits
            .max_in_flight
            .saturating_sub(self.in_flight.len())
            .max(1) as u64;
        let max = self.limits.batch_max_points;
        let share = self
            .coalescible_points(max.saturating_mul(free))
            .div_ceil(free);
        let Some(first) = self.waiting.pop_front() else {
            return Group::new();
        };
        if self.alone > 0 {
            self.alone -= 1;
            return smallvec![first];
        }
        let Op::Write(write) = first.op() else {
            return smallvec![first];
        };
        let target = std::sync::Arc::clone(&write.target);
        let mut open_end = !write.ends_cleanly;
        let mut span = write.span;
        let mut points = write.points;
        let mut group: Group<W> = smallvec![first];
        while let Some(Op::Write(next)) = self.waiting.front().map(Carries::op) {
            let more = next.points;
            if open_end
                || !same_target_as(&target, next)
                || points + more > max
                || (points + more > share && next.span.commutes_with(span))
                || !self.commutes_with_in_flight(next.span)
            {
                break;
            }
            open_end = !next.ends_cleanly;
            span = span.union(next.span);
            points += more;
            match self.waiting.pop_front() {
                Some(work) => group.push(work),
                None => break,
            }
        }
        group
    }

    /// Records `group` as on the wire; its answer comes back through [`Self::land`].
    pub fn launch(&mut self, group: Group<W>) -> FlightId {
        let mutation = group.iter().any(|w| w.op().is_mutation());
        // A mutation's span is unknown: it commutes with nothing.
        let span = group
            .iter()
            .fold(TimeSpan::Nothing, |span, w| match w.op() {
                Op::Write(write) => span.union(write.span),
                Op::Mutation(_) => TimeSpan::Unknown,
            });
        let id = self.next_flight;
        self.next_flight += 1;
        self.in_flight.push(Flight {
            id,
            span,
            mutation,
            group,
        });
        id
    }

    /// The request `id` was answered: what becomes of its work, and of what waits behind it.
    pub fn land(&mut self, id: FlightId, answer: Answer) -> Landed<W> {
        let Some(i) = self.in_flight.iter().position(|f| f.id == id) else {
            return Landed::Gone;
        };
        let group = self.in_flight.swap_remove(i).group;
        match answer {
            Answer::Transient => {
                let mut to_disk = group.into_vec();
                to_disk.extend(self.spill());
                Landed::Queue(to_disk)
            }
            // Which of the coalesced writes did the node refuse? Each goes again alone, in order,
            // so that each client hears about its own lines (the accepted points are written
            // again, which InfluxDB absorbs).
            // Put back where its numbers place it, not simply at the front: another refused group,
            // newer but answered first, may be back already. Everything waiting is newer than
            // anything sent, so the refused groups are the front `alone` entries either way.
            Answer::Refused if group.len() > 1 => {
                self.alone += group.len();
                let first = group[0].seq();
                let at = self.waiting.partition_point(|w| w.seq() < first);
                for (i, work) in group.into_iter().enumerate() {
                    self.waiting.insert(at + i, work);
                }
                Landed::Retry
            }
            Answer::Refused | Answer::Final => Landed::Reply(group),
        }
    }

    /// Everything waiting, oldest first, to go to disk: the node failed or is known down.
    pub fn spill(&mut self) -> Vec<W> {
        // Whatever was to go alone is on disk now, where the replayer isolates refusals itself.
        self.alone = 0;
        self.waiting.drain(..).collect()
    }

    /// Everything held, on the wire or waiting, in the node's order: the gateway is stopping and
    /// a stuck node may never answer what is on the wire.
    pub fn take_all(&mut self) -> Vec<W> {
        // Not flights then waiting: a refused group put back to wait may be older than requests
        // still on the wire beside it.
        let mut all: Vec<W> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .flat_map(|f| f.group)
            .collect();
        all.extend(self.spill());
        all.sort_by_key(Carries::seq);
        all
    }

    fn commutes_with_in_flight(&self, span: TimeSpan) -> bool {
        self.in_flight.iter().all(|f| f.span.commutes_with(span))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::node::client::{ForwardedQuery, NodeWrite, WriteTarget};

    #[derive(Debug)]
    struct Work {
        seq: u64,
        op: Op,
    }

    impl Carries for Work {
        fn seq(&self) -> u64 {
            self.seq
        }

        fn op(&self) -> &Op {
            &self.op
        }
    }

    /// What arrives: a write to one of two targets with a span drawn from a small range (so
    /// that overlaps are common), or a mutation.
    #[derive(Debug, Clone)]
    enum Arrival {
        Write {
            target: u8,
            span: Option<(i64, i64)>,
            points: u64,
            ends_cleanly: bool,
        },
        Mutation,
    }

    #[derive(Debug, Clone)]
    enum Event {
        Arrive(Arrival),
        /// Send while the front may go.
        Pump,
        /// The `n`-th request on the wire (modulo how many there are) is answered.
        Answer(usize, Answer),
    }

    fn arrival() -> impl Strategy<Value = Arrival> {
        prop_oneof![
            8 => (
                0u8..2,
                proptest::option::weighted(0.85, (0i64..40, 0i64..6)),
                1u64..40,
                proptest::bool::weighted(0.9),
            )
                .prop_map(|(target, span, points, ends_cleanly)| Arrival::Write {
                    target,
                    span: span.map(|(first, len)| (first, first + len)),
                    points,
                    ends_cleanly,
                }),
            1 => Just(Arrival::Mutation),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => arrival().prop_map(Event::Arrive),
            3 => Just(Event::Pump),
            3 => (
                0usize..8,
                prop_oneof![
                    6 => Just(Answer::Final),
                    2 => Just(Answer::Refused),
                    1 => Just(Answer::Transient),
                ]
            )
                .prop_map(|(n, answer)| Event::Answer(n, answer)),
        ]
    }

    fn op(arrival: &Arrival, targets: &[Arc<WriteTarget>; 2]) -> Op {
        match arrival {
            Arrival::Write {
                target,
                span,
                points,
                ends_cleanly,
            } => Op::Write(NodeWrite {
                target: Arc::clone(&targets[usize::from(*target)]),
                body: Bytes::new(),
                span: span.map_or(TimeSpan::Unknown, |(first, last)| TimeSpan::Range {
                    first,
                    last,
                }),
                points: *points,
                ends_cleanly: *ends_cleanly,
            }),
            Arrival::Mutation => mutation(),
        }
    }

    fn mutation() -> Op {
        Op::Mutation(ForwardedQuery {
            method: actix_web::http::Method::POST,
            query_string: "q=DROP+MEASUREMENT+cpu".into(),
            headers: Vec::new(),
            body: Bytes::new(),
        })
    }

    fn span_of(op: &Op) -> TimeSpan {
        match op {
            Op::Write(write) => write.span,
            Op::Mutation(_) => TimeSpan::Unknown,
        }
    }

    /// Where a piece of work is, in the model's own bookkeeping.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Place {
        Waiting,
        OnTheWire(FlightId),
        Answered,
        Queued,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_pipeline_keeps_its_invariants_for_any_sequence(
            max_in_flight in 1usize..5,
            batch_max_points in 1u64..120,
            events in proptest::collection::vec(event(), 1..120),
        ) {
            let targets = [
                Arc::new(WriteTarget { query: "db=a".into(), authorization: None }),
                Arc::new(WriteTarget { query: "db=b".into(), authorization: None }),
            ];
            let limits = Limits { max_in_flight, batch_max_points, capacity: usize::MAX };
            let mut pipeline = Pipeline::new(limits);
            let mut places: BTreeMap<u64, Place> = BTreeMap::new();
            let mut ops: BTreeMap<u64, Op> = BTreeMap::new();
            // Requests on the wire as the model sees them: id -> seqs.
            let mut wire: Vec<(FlightId, Vec<u64>)> = Vec::new();
            let mut queued: Vec<u64> = Vec::new();
            let mut next_seq = 0;
            for event in events {
                match event {
                    Event::Arrive(arrival) => {
                        let op = op(&arrival, &targets);
                        ops.insert(next_seq, op.clone());
                        places.insert(next_seq, Place::Waiting);
                        pipeline.push(Work { seq: next_seq, op });
                        next_seq += 1;
                    }
                    Event::Pump => {
                        while pipeline.front_may_go() {
                            let group = pipeline.take_group();
                            prop_assert!(!group.is_empty());
                            let seqs: Vec<u64> = group.iter().map(|w| w.seq).collect();
                            // Oldest first: nothing older is still waiting.
                            let oldest_waiting = places
                                .iter()
                                .find(|(_, p)| **p == Place::Waiting)
                                .map(|(s, _)| *s);
                            prop_assert_eq!(oldest_waiting, Some(seqs[0]));
                            // A run of consecutive work.
                            for pair in seqs.windows(2) {
                                prop_assert_eq!(pair[1], pair[0] + 1);
                            }
                            // A mutation goes alone, a group of writes to one target, within the
                            // point limit, with an open end only at its last write.
                            if group.len() > 1 {
                                let writes: Vec<&NodeWrite> = group
                                    .iter()
                                    .filter_map(|w| match &w.op {
                                        Op::Write(write) => Some(write),
                                        Op::Mutation(_) => None,
                                    })
                                    .collect();
                                prop_assert_eq!(writes.len(), group.len());
                                let points: u64 = writes.iter().map(|w| w.points).sum();
                                prop_assert!(points <= batch_max_points);
                                for w in &writes[..writes.len() - 1] {
                                    prop_assert!(w.ends_cleanly);
                                    prop_assert!(Arc::ptr_eq(&w.target, &writes[0].target));
                                }
                            }
                            // What goes out commutes with everything out, and a mutation goes
                            // out only alone.
                            let mutation = group.iter().any(|w| w.op.is_mutation());
                            if mutation {
                                prop_assert!(wire.is_empty(), "mutation beside {wire:?}");
                            }
                            for (_, out) in &wire {
                                for s in out {
                                    prop_assert!(!ops[s].is_mutation(), "write beside a mutation");
                                    for w in &group {
                                        prop_assert!(
                                            span_of(&ops[s]).commutes_with(span_of(&w.op)),
                                            "{} beside {} on the wire", w.seq, s
                                        );
                                    }
                                }
                            }
                            let id = pipeline.launch(group);
                            for s in &seqs {
                                places.insert(*s, Place::OnTheWire(id));
                            }
                            wire.push((id, seqs));
                            prop_assert!(wire.len() <= max_in_flight);
                        }
                    }
                    Event::Answer(n, answer) => {
                        if wire.is_empty() {
                            continue;
                        }
                        let (id, seqs) = wire.remove(n % wire.len());
                        let waiting_before: Vec<u64> = places
                            .iter()
                            .filter(|(_, p)| **p == Place::Waiting)
                            .map(|(s, _)| *s)
                            .collect();
                        match pipeline.land(id, answer) {
                            Landed::Reply(group) => {
                                prop_assert!(answer != Answer::Transient);
                                prop_assert!(answer == Answer::Final || seqs.len() == 1);
                                let got: Vec<u64> = group.iter().map(|w| w.seq).collect();
                                prop_assert_eq!(&got, &seqs);
                                for s in got {
                                    places.insert(s, Place::Answered);
                                }
                            }
                            Landed::Retry => {
                                prop_assert_eq!(answer, Answer::Refused);
                                prop_assert!(seqs.len() > 1);
                                for s in &seqs {
                                    places.insert(*s, Place::Waiting);
                                }
                            }
                            Landed::Queue(to_disk) => {
                                prop_assert_eq!(answer, Answer::Transient);
                                let got: Vec<u64> = to_disk.iter().map(|w| w.seq).collect();
                                // The failed group, then everything that waited, in order.
                                let expected: Vec<u64> =
                                    seqs.iter().chain(&waiting_before).copied().collect();
                                prop_assert_eq!(&got, &expected);
                                for s in got {
                                    places.insert(s, Place::Queued);
                                    queued.push(s);
                                }
                            }
                            Landed::Gone => prop_assert!(false, "a request on the wire was lost"),
                        }
                    }
                }
                // Nothing lost or doubled: the pipeline holds exactly what the model says.
                let waiting = places.values().filter(|p| **p == Place::Waiting).count();
                prop_assert_eq!(pipeline.waiting(), waiting);
                prop_assert_eq!(pipeline.in_flight(), wire.len());
                let on_wire: usize = wire.iter().map(|(_, s)| s.len()).sum();
                let out = places.values().filter(|p| matches!(p, Place::OnTheWire(_))).count();
                prop_assert_eq!(on_wire, out);
            }
            // A stop hands back everything held, in the node's order.
            let held: Vec<u64> = places
                .iter()
                .filter(|(_, p)| matches!(p, Place::Waiting | Place::OnTheWire(_)))
                .map(|(s, _)| *s)
                .collect();
            let mut all: Vec<u64> = pipeline.take_all().iter().map(|w| w.seq).collect();
            let mut sorted = all.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&sorted, &held);
            // Each request's work stays in its order, and the requests come oldest first.
            let mut last = None;
            for s in all.drain(..) {
                prop_assert!(last.is_none_or(|l| l < s), "{s} after {last:?}");
                last = Some(s);
            }
            prop_assert_eq!(pipeline.waiting() + pipeline.in_flight(), 0);
        }
    }

    #[test]
    fn new_work_goes_to_disk_behind_a_backlog_and_for_the_right_reason() {
        let limits = Limits {
            max_in_flight: 1,
            batch_max_points: 10,
            capacity: 1,
        };
        let mut pipeline: Pipeline<Work> = Pipeline::new(limits);
        let direct = Conditions::default();
        assert_eq!(pipeline.must_queue(direct), None);
        let with = |c: Conditions| pipeline.must_queue(c);
        assert_eq!(
            with(Conditions {
                backlog: true,
                ..direct
            }),
            Some(QueuedBecause::Draining)
        );
        assert_eq!(
            with(Conditions {
                down: true,
                backlog: true,
                ..direct
            }),
            Some(QueuedBecause::Down)
        );
        assert_eq!(
            with(Conditions {
                closing: true,
                down: true,
                ..direct
            }),
            Some(QueuedBecause::Stopping)
        );
        assert_eq!(
            with(Conditions {
                maintenance: true,
                down: true,
                ..direct
            }),
            Some(QueuedBecause::Maintenance)
        );
        pipeline.push(Work {
            seq: 0,
            op: mutation(),
        });
        assert_eq!(pipeline.must_queue(direct), Some(QueuedBecause::Busy));
    }
}
