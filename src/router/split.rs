//! The per-shard bodies of one write, cut from the request's body in the pass that routes it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::{Routed, Shard, ShardBatch, ShardId, Unroutable};
use crate::line_protocol::{self, Timestamps};

/// The per-shard bodies of one write, built while its lines are read.
pub(super) struct Split {
    /// What each shard gets, by shard: one table, so that a line finds all of its shard's state
    /// with one index.
    shares: Vec<Share>,
    /// While every line so far went to one shard: that shard; the body is still shared.
    sole: Option<ShardId>,
    /// Set once lines go to several shards or one is left out: each share's lines are copied
    /// into its buffer.
    copying: bool,
    /// The body's final line, when it went to a shard: the only line that can be left open.
    last: Option<(ShardId, Range<usize>)>,
    /// Lines left out, with their reasons.
    pub(super) unroutable: Vec<Unroutable>,
}

/// One shard's part of a write.
struct Share {
    points: u64,
    /// The timestamps of its points. An unroutable line's is in no share: it is not sent, and
    /// orders nothing.
    stamps: Timestamps,
    /// Its lines, once copying; empty, and unallocated, before.
    buffer: BytesMut,
}

impl Split {
    /// For a write whose timestamps are in `precision` (`/write`'s parameter).
    pub(super) fn new(shard_count: usize, precision: Option<&str>) -> Self {
        let stamps = Timestamps::new(precision);
        Split {
            shares: (0..shard_count)
                .map(|_| Share {
                    points: 0,
                    stamps,
                    buffer: BytesMut::new(),
                })
                .collect(),
            sole: None,
            copying: false,
            last: None,
            unroutable: Vec::new(),
        }
    }

    /// Sends the line at `span`, a point whose text (`span` without its `\n`) is `text`, to
    /// `shard`.
    // Called for every line from another module (another codegen unit): without the hint it
    // would not be inlined into the line loop, and with a plain `#[inline]` it was not always.
    #[inline(always)]
    pub(super) fn push(&mut self, body: &Bytes, span: Range<usize>, text: &[u8], shard: ShardId) {
        if span.end == body.len() {
            self.last = Some((shard, span.clone()));
        }
        if !self.copying {
            match self.sole {
                None if self.unroutable.is_empty() => self.sole = Some(shard),
                Some(sole) if sole == shard => {}
                _ => self.start_copying(body, span.start),
            }
        }
        let share = &mut self.shares[shard];
        share.points += 1;
        share.stamps.timed_line(text);
        if self.copying {
            share.buffer.extend_from_slice(&body[span]);
        }
    }

    /// The line at `start` is left out: the lines before it can no longer share the body.
    pub(super) fn leave_out(&mut self, body: &Bytes, start: usize) {
        if !self.copying {
            self.start_copying(body, start);
        }
    }

    /// Switches to one buffer per shard; everything before `upto` went to the sole shard. Each
    /// starts with room for its even share of the rest, so that most never grow.
    fn start_copying(&mut self, body: &Bytes, upto: usize) {
        let room = (body.len() - upto) / self.shares.len().max(1) + 1024;
        for share in &mut self.shares {
            share.buffer.reserve(room);
        }
        if let Some(sole) = self.sole {
            self.shares[sole].buffer.extend_from_slice(&body[..upto]);
        }
        self.copying = true;
    }

    /// The batches; `plain` says the body holds no quote or backslash, so that no line is open.
    pub(super) fn finish<'r>(self, body: &Bytes, plain: bool, shards: &'r [Shard]) -> Routed<'r> {
        // Every line but the body's last ended at a newline of its own, which went with it; the
        // last may have been left open (an escape, a quote), and so is the share that holds it.
        let open_end = match &self.last {
            _ if plain => None,
            Some((shard, span)) => {
                (!line_protocol::ends_cleanly(&body[span.clone()])).then_some(*shard)
            }
            None => None,
        };
        let batches = match (self.copying, self.sole) {
            (true, _) => self
                .shares
                .into_iter()
                .zip(shards)
                .enumerate()
                .filter(|(_, (share, _))| !share.buffer.is_empty())
                .map(|(id, (share, shard))| ShardBatch {
                    shard,
                    body: fitted(share.buffer),
                    points: share.points,
                    ends_cleanly: open_end != Some(id),
                    span: share.stamps.span(),
                })
                .collect(),
            // The whole body, its blank and comment lines too: the last of those may be open.
            (false, Some(sole)) => vec![ShardBatch {
                shard: &shards[sole],
                body: body.clone(),
                points: self.shares[sole].points,
                ends_cleanly: plain || line_protocol::ends_cleanly(body),
                span: self.shares[sole].stamps.span(),
            }],
            (false, None) => Vec::new(),
        };
        Routed {
            batches,
            unroutable: self.unroutable,
        }
    }
}

/// A share's bytes without most of the room reserved for it: a small share of a large body would
/// otherwise hold its whole even share of memory while it waits in flight.
fn fitted(share: BytesMut) -> Bytes {
    if share.capacity() > 2 * share.len() + 4096 {
        Bytes::copy_from_slice(&share)
    } else {
        share.freeze()
    }
}
