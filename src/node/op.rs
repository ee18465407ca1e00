//! Ordered work for a node, and how consecutive writes to one target become one request.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::client::{ForwardedQuery, NodeWrite, WriteTarget};
use crate::line_protocol::TimeSpan;

/// Ordered work for a node.
#[derive(Debug, Clone)]
pub enum Op {
    /// Line protocol for `/write`.
    Write(NodeWrite),
    /// A statement that changes the node's data or schema, for `/query`.
    Mutation(ForwardedQuery),
}

impl Op {
    /// Whether it is a mutation (a statement), not a write.
    pub fn is_mutation(&self) -> bool {
        matches!(self, Op::Mutation(_))
    }
}

/// Work that carries an [`Op`] and its place in the node's order (the sequence number it is
/// stored under if it goes to disk).
pub trait Carries {
    /// Its place in the node's order.
    fn seq(&self) -> u64;
    /// What is to be done.
    fn op(&self) -> &Op;
}

/// Whether two queued operations can be sent as one request.
pub fn mergeable(last: &Op, next: &Op) -> bool {
    match (last, next) {
        (Op::Write(a), Op::Write(b)) => same_target(a, b) && a.ends_cleanly,
        _ => false,
    }
}

/// Whether two writes go to the same database, retention policy and precision with the same
/// credentials, so that their bodies can be sent as one.
pub fn same_target(a: &NodeWrite, b: &NodeWrite) -> bool {
    same_target_as(&a.target, b)
}

/// Whether `write` goes where `target` says, with the same credentials.
pub fn same_target_as(target: &Arc<WriteTarget>, write: &NodeWrite) -> bool {
    // Replicas of one request share the target: the pointer test settles most cases.
    Arc::ptr_eq(target, &write.target)
        || (target.query == write.target.query
            && target.authorization == write.target.authorization)
}

/// The request for a group taken by `take_group`: the op itself when alone, else the writes
/// joined.
pub fn coalesce<W: Carries>(group: &[W]) -> Option<Op> {
    let (first, rest) = group.split_first()?;
    if rest.is_empty() || first.op().is_mutation() {
        return Some(first.op().clone());
    }
    join(group.iter().filter_map(|p| match p.op() {
        Op::Write(w) => Some(w),
        Op::Mutation(_) => None,
    }))
    .map(Op::Write)
}

/// Writes to one target as one request: their bodies one after the other, in order, and what
/// is known of them together.
fn join<'w>(writes: impl Iterator<Item = &'w NodeWrite> + Clone) -> Option<NodeWrite> {
    let first = writes.clone().next()?;
    Some(NodeWrite {
        target: Arc::clone(&first.target),
        body: concat(writes.clone().map(|w| &w.body)),
        span: writes
            .clone()
            .fold(TimeSpan::Nothing, |span, w| span.union(w.span)),
        points: writes.clone().map(|w| w.points).sum(),
        ends_cleanly: writes.last().is_none_or(|w| w.ends_cleanly),
    })
}

/// Bodies joined in order, each ending its last line.
fn concat<'b>(bodies: impl Iterator<Item = &'b Bytes> + Clone) -> Bytes {
    // One allocation: a newline at most is added per body.
    let mut out = BytesMut::with_capacity(bodies.clone().map(|b| b.len() + 1).sum());
    for body in bodies {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(body);
    }
    out.freeze()
}

/// One request for a run of mergeable operations, and how many points it carries.
pub fn merge(ops: impl IntoIterator<Item = Op>) -> (Op, u64) {
    let mut ops = ops.into_iter();
    let first = match ops.next() {
        None => return (Op::Write(empty_write()), 0),
        Some(Op::Mutation(query)) => return (Op::Mutation(query), 0),
        Some(Op::Write(write)) => write,
    };
    let writes: Vec<NodeWrite> = std::iter::once(first)
        .chain(ops.filter_map(|op| match op {
            Op::Write(write) => Some(write),
            Op::Mutation(_) => None,
        }))
        .collect();
    let write = join(writes.iter()).unwrap_or_else(empty_write);
    let points = write.points;
    (Op::Write(write), points)
}

fn empty_write() -> NodeWrite {
    NodeWrite {
        target: Arc::new(WriteTarget {
            query: String::new(),
            authorization: None,
        }),
        body: Bytes::new(),
        span: TimeSpan::Nothing,
        points: 0,
        ends_cleanly: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(query: &str, body: &'static [u8]) -> Op {
        let scan = crate::line_protocol::Scan::untimed(body);
        Op::Write(NodeWrite {
            target: Arc::new(WriteTarget {
                query: query.to_owned(),
                authorization: None,
            }),
            body: Bytes::from_static(body),
            span: scan.span,
            points: scan.points,
            ends_cleanly: scan.ends_cleanly,
        })
    }

    #[test]
    fn merged_bodies_keep_every_line() {
        let (op, points) = merge(vec![
            record("db=a", b"cpu v=1"),
            record("db=a", b"cpu v=2\n# c\n\nmem v=3\n"),
        ]);
        let Op::Write(write) = op else { panic!() };
        assert_eq!(write.body, "cpu v=1\ncpu v=2\n# c\n\nmem v=3\n");
        assert_eq!(points, 3);
    }

    #[test]
    fn only_same_target_writes_merge() {
        assert!(mergeable(&record("db=a", b""), &record("db=a", b"")));
        assert!(!mergeable(&record("db=a", b""), &record("db=b", b"")));
    }
}
