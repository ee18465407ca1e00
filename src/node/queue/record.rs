//! The on-disk form of one queued write or mutation: versioned, length-prefixed, compressed,
//! checksummed.
//!
//! ```text
//! version 2: version u8 | kind u8 | enqueued_at_ms u64 | attempts u32 | fields_len u32 | lz4(fields…) | crc32 u32
//! version 1: version u8 | kind u8 | enqueued_at_ms u64 | attempts u32 | fields… | crc32 u32
//! write:    query | authorization | body
//! mutation: method | query_string | header count u32, (name | value)* | body
//! ```
//! Every field is a big-endian `u32` length and its bytes. The CRC covers everything before it, so a
//! torn or bit-rotted record is detected on read instead of being replayed as garbage.
//!
//! Records are written as version 2: line protocol shrinks to a third or less under LZ4, and a
//! queue that grows while a node is down costs that much less disk, sled I/O buffers and sled
//! cache, at a few percent of a core while the node is down. Version 1 records, written by
//! earlier builds, are still read.

use std::sync::Arc;

use actix_web::http::{
    header::{HeaderName, HeaderValue},
    Method,
};
use bytes::{BufMut, Bytes, BytesMut};
use lz4_flex::block::get_maximum_output_size;

use crate::{
    line_protocol::Scan,
    node::{ForwardedQuery, NodeWrite, Op, WriteTarget},
};

/// Fields stored as they are.
const PLAIN: u8 = 1;
/// Fields stored as one LZ4 block, after their length.
const COMPRESSED: u8 = 2;
const KIND_WRITE: u8 = 1;
const KIND_MUTATION: u8 = 2;
/// Offset of the attempts counter, patched in place when a 4xx is counted.
const ATTEMPTS_AT: usize = 10;
const HEADER_LEN: usize = 14;
/// LZ4 never expands more than 255 to 1; a larger length claimed by a record is corruption.
const LZ4_MAX_RATIO: usize = 255;

/// A record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt queue record: {0}")]
pub struct CorruptRecord(pub &'static str);

/// A queued operation with its bookkeeping.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it entered the queue, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// How many times the node refused it with a 4xx.
    pub attempts: u32,
    /// The write or mutation.
    pub op: Op,
}

impl Record {
    /// Encodes the record for storage.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, fields) = self.fields();
        let start = HEADER_LEN + 4;
        let end = start + get_maximum_output_size(fields.len());
        let mut out = Vec::with_capacity(end + 4);
        self.put_header(&mut out, COMPRESSED, kind);
        out.put_u32(fields.len() as u32);
        out.resize(end, 0);
        let written = lz4_flex::block::compress_into(&fields, &mut out[start..])
            .expect("the buffer has LZ4's worst-case size");
        out.truncate(start + written);
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out
    }

    fn put_header(&self, out: &mut Vec<u8>, version: u8, kind: u8) {
        out.put_u8(version);
        out.put_u8(kind);
        out.put_u64(self.enqueued_at_ms);
        out.put_u32(self.attempts);
    }

    /// The kind and the fields, uncompressed.
    fn fields(&self) -> (u8, BytesMut) {
        let mut fields = BytesMut::with_capacity(64 + op_len(&self.op));
        let kind = match &self.op {
            Op::Write(write) => {
                put_field(&mut fields, write.target.query.as_bytes());
                let auth = write
                    .target
                    .authorization
                    .as_ref()
                    .map_or(&b""[..], HeaderValue::as_bytes);
                put_field(&mut fields, auth);
                put_field(&mut fields, &write.body);
                KIND_WRITE
            }
            Op::Mutation(query) => {
                put_field(&mut fields, query.method.as_str().as_bytes());
                put_field(&mut fields, query.query_string.as_bytes());
                fields.put_u32(query.headers.len() as u32);
                for (name, value) in &query.headers {
                    put_field(&mut fields, name.as_str().as_bytes());
                    put_field(&mut fields, value.as_bytes());
                }
                put_field(&mut fields, &query.body);
                KIND_MUTATION
            }
        };
        (kind, fields)
    }

    /// About the size of the operation `raw` holds once decompressed, for sizing replay requests:
    /// the fields' length a compressed record claims (before its checksum is verified), or the
    /// stored length of an uncompressed one.
    pub fn replay_len(raw: &[u8]) -> usize {
        match raw.first() {
            Some(&COMPRESSED) => raw.get(HEADER_LEN..HEADER_LEN + 4).map_or(0, |len| {
                u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize
            }),
            _ => raw.len(),
        }
    }

    /// Decodes a stored record, checking its checksum.
    pub fn decode(raw: &[u8]) -> Result<Record, CorruptRecord> {
        verify(raw)?;
        let mut header = Reader(&raw[..raw.len() - 4]);
        let version = header.u8()?;
        let kind = header.u8()?;
        let enqueued_at_ms = header.u64()?;
        let attempts = header.u32()?;
        let fields = match version {
            PLAIN => Bytes::copy_from_slice(header.0),
            COMPRESSED => decompress(&mut header)?,
            _ => return Err(CorruptRecord("unknown version")),
        };
        let mut reader = Reader(&fields);
        let op = match kind {
            KIND_WRITE => {
                let query = reader.text()?;
                let auth = reader.field()?;
                let authorization = if auth.is_empty() {
                    None
                } else {
                    Some(
                        HeaderValue::from_bytes(auth)
                            .map_err(|_| CorruptRecord("authorization"))?,
                    )
                };
                let body = fields.slice_ref(reader.field()?);
                // The replayer keeps the queue's order whatever the span: it is not read.
                let scan = Scan::untimed(&body);
                Op::Write(NodeWrite {
                    target: Arc::new(WriteTarget {
                        query,
                        authorization,
                    }),
                    span: scan.span,
                    points: scan.points,
                    ends_cleanly: scan.ends_cleanly,
                    body,
                })
            }
            KIND_MUTATION => {
                let method =
                    Method::from_bytes(reader.field()?).map_err(|_| CorruptRecord("method"))?;
                let query_string = reader.text()?;
                let count = reader.u32()?;
                let mut headers = Vec::with_capacity(count.min(16) as usize);
                for _ in 0..count {
                    let name = HeaderName::from_bytes(reader.field()?)
                        .map_err(|_| CorruptRecord("header"))?;
                    let value = HeaderValue::from_bytes(reader.field()?)
                        .map_err(|_| CorruptRecord("header"))?;
                    headers.push((name, value));
                }
                let body = fields.slice_ref(reader.field()?);
                Op::Mutation(ForwardedQuery {
                    method,
                    query_string,
                    headers,
                    body,
                })
            }
            _ => return Err(CorruptRecord("unknown kind")),
        };
        if !reader.0.is_empty() {
            return Err(CorruptRecord("trailing bytes"));
        }
        Ok(Record {
            enqueued_at_ms,
            attempts,
            op,
        })
    }
}

/// When the record starting with `prefix` (its first bytes are enough) entered the queue.
pub fn enqueued_at_ms(prefix: &[u8]) -> Option<u64> {
    if !matches!(prefix.first(), Some(&PLAIN | &COMPRESSED)) {
        return None;
    }
    let bytes: [u8; 8] = prefix.get(2..10)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Returns a copy of the stored record `raw` with its attempts counter set to `attempts`.
pub fn with_attempts(raw: &[u8], attempts: u32) -> Result<Vec<u8>, CorruptRecord> {
    verify(raw)?;
    let mut out = raw.to_vec();
    out[ATTEMPTS_AT..ATTEMPTS_AT + 4].copy_from_slice(&attempts.to_be_bytes());
    let body_end = out.len() - 4;
    let crc = crc32fast::hash(&out[..body_end]);
    out[body_end..].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// The fields of a version 2 record, whose header `reader` has read up to them.
fn decompress(reader: &mut Reader<'_>) -> Result<Bytes, CorruptRecord> {
    let len = reader.u32()? as usize;
    let block = reader.0;
    if len > block.len().saturating_mul(LZ4_MAX_RATIO).saturating_add(16) {
        return Err(CorruptRecord("impossible decompressed length"));
    }
    // The checksum was right, so the length is what was written; still, a failed allocation must
    // be an error, not an abort of the gateway.
    let mut fields = Vec::new();
    fields
        .try_reserve_exact(len)
        .map_err(|_| CorruptRecord("decompressed length cannot be allocated"))?;
    fields.resize(len, 0);
    match lz4_flex::block::decompress_into(block, &mut fields) {
        Ok(written) if written == len => Ok(Bytes::from(fields)),
        _ => Err(CorruptRecord("compressed fields")),
    }
}

fn verify(raw: &[u8]) -> Result<(), CorruptRecord> {
    if raw.len() < HEADER_LEN + 4 {
        return Err(CorruptRecord("too short"));
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err(CorruptRecord("checksum mismatch"));
    }
    Ok(())
}

fn op_len(op: &Op) -> usize {
    match op {
        Op::Write(write) => write.body.len() + write.target.query.len(),
        Op::Mutation(query) => query.body.len() + query.query_string.len(),
    }
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    out.put_u32(field.len() as u32);
    out.put_slice(field);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptRecord> {
        if self.0.len() < n {
            return Err(CorruptRecord("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CorruptRecord> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CorruptRecord> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, CorruptRecord> {
        let b = self.take(8)?;
        let mut bytes = [0; 8];
        bytes.copy_from_slice(b);
        Ok(u64::from_be_bytes(bytes))
    }

    fn field(&mut self) -> Result<&'a [u8], CorruptRecord> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, CorruptRecord> {
        String::from_utf8(self.field()?.to_vec()).map_err(|_| CorruptRecord("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header;
    use proptest::prelude::*;

    fn write(query: &str, auth: Option<&str>, body: &[u8]) -> Op {
        let scan = Scan::untimed(body);
        Op::Write(NodeWrite {
            target: Arc::new(WriteTarget {
                query: query.to_owned(),
                authorization: auth.map(|a| HeaderValue::from_str(a).unwrap()),
            }),
            body: Bytes::copy_from_slice(body),
            span: scan.span,
            points: scan.points,
            ends_cleanly: scan.ends_cleanly,
        })
    }

    fn same(a: &Op, b: &Op) -> bool {
        match (a, b) {
            (Op::Write(a), Op::Write(b)) => {
                a.target.query == b.target.query
                    && a.target.authorization == b.target.authorization
                    && a.body == b.body
            }
            (Op::Mutation(a), Op::Mutation(b)) => {
                a.method == b.method
                    && a.query_string == b.query_string
                    && a.headers == b.headers
                    && a.body == b.body
            }
            _ => false,
        }
    }

    #[test]
    fn a_mutation_round_trips() {
        let op = Op::Mutation(ForwardedQuery {
            method: Method::POST,
            query_string: "db=x".into(),
            headers: vec![(
                header::AUTHORIZATION,
                HeaderValue::from_static("Basic eDp5"),
            )],
            body: Bytes::from_static(b"q=CREATE+DATABASE+x"),
        });
        let record = Record {
            enqueued_at_ms: 7,
            attempts: 1,
            op,
        };
        let decoded = Record::decode(&record.encode()).unwrap();
        assert_eq!((decoded.enqueued_at_ms, decoded.attempts), (7, 1));
        assert!(same(&decoded.op, &record.op));
    }

    /// A record as builds before compression wrote it.
    fn encode_plain(record: &Record) -> Vec<u8> {
        let (kind, fields) = record.fields();
        let mut out = Vec::new();
        record.put_header(&mut out, PLAIN, kind);
        out.extend_from_slice(&fields);
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out
    }

    #[test]
    fn records_of_earlier_builds_are_read() {
        let record = Record {
            enqueued_at_ms: 9,
            attempts: 2,
            op: write(
                "db=a&precision=s",
                Some("Token t"),
                b"cpu v=1 1\ncpu v=2 2\n",
            ),
        };
        let raw = encode_plain(&record);
        assert_eq!(enqueued_at_ms(&raw), Some(9));
        assert_eq!(Record::replay_len(&raw), raw.len());
        let decoded = Record::decode(&raw).unwrap();
        assert_eq!((decoded.enqueued_at_ms, decoded.attempts), (9, 2));
        assert!(same(&decoded.op, &record.op));
        let patched = with_attempts(&raw, 5).unwrap();
        assert_eq!(Record::decode(&patched).unwrap().attempts, 5);
    }

    #[test]
    fn line_protocol_is_stored_compressed() {
        let body: String = (0..5_000)
            .map(|i| {
                format!(
                    "cpu,host=h{:03} v={i}.5,n={}i {}\n",
                    i % 100,
                    i % 97,
                    1_000 + i
                )
            })
            .collect();
        let record = Record {
            enqueued_at_ms: 1,
            attempts: 0,
            op: write("db=a", None, body.as_bytes()),
        };
        let raw = record.encode();
        assert!(
            raw.len() * 2 < body.len(),
            "{} of {}",
            raw.len(),
            body.len()
        );
        assert!(Record::replay_len(&raw) > body.len());
        assert!(same(&Record::decode(&raw).unwrap().op, &record.op));
    }

    #[test]
    fn a_claimed_length_beyond_lz4s_ratio_is_corrupt() {
        let mut raw = Record {
            enqueued_at_ms: 1,
            attempts: 0,
            op: write("db=a", None, b"cpu v=1"),
        }
        .encode();
        raw[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let body_end = raw.len() - 4;
        let crc = crc32fast::hash(&raw[..body_end]);
        raw[body_end..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            Record::decode(&raw).unwrap_err(),
            CorruptRecord("impossible decompressed length")
        );
    }

    #[test]
    fn attempts_are_patched_and_still_verify() {
        let raw = Record {
            enqueued_at_ms: 1,
            attempts: 0,
            op: write("db=a", None, b"cpu v=1"),
        }
        .encode();
        let patched = with_attempts(&raw, 3).unwrap();
        assert_eq!(Record::decode(&patched).unwrap().attempts, 3);
    }

    proptest! {
        #[test]
        fn writes_round_trip(
            query in "[a-z=&]{0,40}",
            auth in proptest::option::of("[A-Za-z0-9 ]{1,30}"),
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            at in any::<u64>(),
            attempts in any::<u32>(),
        ) {
            let op = write(&query, auth.as_deref(), &body);
            let record = Record { enqueued_at_ms: at, attempts, op };
            let decoded = Record::decode(&record.encode()).unwrap();
            prop_assert_eq!(decoded.enqueued_at_ms, at);
            prop_assert_eq!(decoded.attempts, attempts);
            prop_assert!(same(&decoded.op, &record.op));
        }

        #[test]
        fn any_flipped_bit_is_detected(body in proptest::collection::vec(any::<u8>(), 1..500), bit in any::<usize>()) {
            let mut raw = Record { enqueued_at_ms: 1, attempts: 0, op: write("db=a", None, &body) }.encode();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Record::decode(&raw).is_err());
        }

        #[test]
        fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Record::decode(&raw);
            let _ = with_attempts(&raw, 1);
        }
    }
}
