//! The per-shard bodies of one write, cut from the request's body in the pass that routes it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::{Routed, Shard, ShardBatch, ShardId, Unroutable};
use crate::line_protocol::{self, Line, Timestamps};

/// The per-shard bodies of one write, built while its lines are read.
pub(super) struct Split {
    shard_count: usize,
    /// While every line so far went to one shard: that shard; the body is still shared.
    sole: Option<ShardId>,
    /// Set once lines go to several shards or one is left out: a buffer per shard.
    buffers: Option<Vec<BytesMut>>,
    /// Points per shard.
    points: Vec<u64>,
    /// The timestamps of each shard's points. An unroutable line's is in none: it is not sent,
    /// and orders nothing.
    stamps: Vec<Timestamps>,
    /// The last line that went to a shard: only the body's final line can be left open.
    last: Option<(ShardId, Range<usize>)>,
    /// Lines left out, with their reasons.
    pub(super) unroutable: Vec<Unroutable>,
}

impl Split {
    /// For a write whose timestamps are in `precision` (`/write`'s parameter).
    pub(super) fn new(shard_count: usize, precision: Option<&str>) -> Self {
        Split {
            shard_count,
            sole: None,
            buffers: None,
            points: vec![0; shard_count],
            stamps: vec![Timestamps::new(precision); shard_count],
            last: None,
            unroutable: Vec::new(),
        }
    }

    /// Sends `line`, a point, to `shard`.
    // Called for every line from another module (another codegen unit): without the hint it
    // would not be inlined into the line loop, and with a plain `#[inline]` it was not always.
    #[inline(always)]
    pub(super) fn push(&mut self, body: &Bytes, line: &Line<'_>, shard: ShardId) {
        let span = line.span.clone();
        self.points[shard] += 1;
        self.stamps[shard].line(&body[span.start..line.text_end]);
        self.last = Some((shard, span.clone()));
        if self.buffers.is_none() {
            match self.sole {
                None if self.unroutable.is_empty() => {
                    self.sole = Some(shard);
                    return;
                }
                Some(sole) if sole == shard => return,
                _ => self.start_copying(body, span.start),
            }
        }
        if let Some(buffers) = &mut self.buffers {
            buffers[shard].extend_from_slice(&body[span]);
        }
    }

    /// The line at `start` is left out: the lines before it can no longer share the body.
    pub(super) fn leave_out(&mut self, body: &Bytes, start: usize) {
        if self.buffers.is_none() {
            self.start_copying(body, start);
        }
    }

    /// Switches to one buffer per shard; everything before `upto` went to the sole shard. Each
    /// starts with room for its even share of the rest, so that most never grow.
    fn start_copying(&mut self, body: &Bytes, upto: usize) {
        let room = (body.len() - upto) / self.shard_count + 1024;
        let mut buffers: Vec<BytesMut> = (0..self.shard_count)
            .map(|_| BytesMut::with_capacity(room))
            .collect();
        if let Some(sole) = self.sole {
            buffers[sole].extend_from_slice(&body[..upto]);
        }
        self.buffers = Some(buffers);
    }

    /// The batches; `plain` says the body holds no quote or backslash, so that no line is open.
    pub(super) fn finish<'r>(self, body: &Bytes, plain: bool, shards: &'r [Shard]) -> Routed<'r> {
        // Every line but the body's last ended at a newline of its own, which went with it; the
        // last may have been left open (an escape, a quote), and so is the share that holds it.
        let open_end = match &self.last {
            _ if plain => None,
            Some((shard, span)) if span.end == body.len() => {
                (!line_protocol::ends_cleanly(&body[span.clone()])).then_some(*shard)
            }
            _ => None,
        };
        let batches = match (self.buffers, self.sole) {
            (Some(buffers), _) => buffers
                .into_iter()
                .zip(shards)
                .enumerate()
                .filter(|(_, (b, _))| !b.is_empty())
                .map(|(id, (b, shard))| ShardBatch {
                    shard,
                    body: fitted(b),
                    points: self.points[id],
                    ends_cleanly: open_end != Some(id),
                    span: self.stamps[id].span(),
                })
                .collect(),
            // The whole body, its blank and comment lines too: the last of those may be open.
            (None, Some(sole)) => vec![ShardBatch {
                shard: &shards[sole],
                body: body.clone(),
                points: self.points[sole],
                ends_cleanly: plain || line_protocol::ends_cleanly(body),
                span: self.stamps[sole].span(),
            }],
            (None, None) => Vec::new(),
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
