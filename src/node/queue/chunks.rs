//! How a record is laid out in a node's `queue:` tree: cut into chunks of at most [`CHUNK`]
//! bytes under the keys `seq ++ index` (both big-endian), written in one atomic sled batch.
//!
//! sled 0.34 keeps large values resident however small its cache is set (measured: 1,000 values
//! of 300 kB leave the process at 293 MiB RSS; the same bytes in 4 KiB values, 34 MiB). A node
//! down for hours must not cost the gateway its memory, so no stored value is large.
//!
//! Records written before chunking sit under the bare 8-byte `seq`; they sort before any chunk
//! key of the same sequence number and are read as one whole record.

use sled::IVec;

/// Largest stored value.
pub const CHUNK: usize = 4096;

/// The key of chunk `index` of record `seq`.
pub fn key(seq: u64, index: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The record a key belongs to.
pub fn seq_of(key: &[u8]) -> u64 {
    let mut seq = [0; 8];
    let n = key.len().min(8);
    seq[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(seq)
}

/// How many chunks a record of `len` bytes takes.
pub fn count(len: usize) -> u32 {
    len.div_ceil(CHUNK).max(1) as u32
}

/// The batch that stores `raw` as record `seq`, replacing it under the old layout if it was there.
pub fn insert(seq: u64, raw: &[u8]) -> sled::Batch {
    let mut batch = sled::Batch::default();
    batch.remove(&seq.to_be_bytes());
    if raw.is_empty() {
        batch.insert(&key(seq, 0), &[][..]);
    }
    for (index, part) in raw.chunks(CHUNK).enumerate() {
        batch.insert(&key(seq, index as u32), part);
    }
    batch
}

/// Every key record `seq` may be stored under, `raw_len` bytes long: its chunks and the bare key
/// of the layout before chunking.
pub fn keys(seq: u64, raw_len: usize) -> impl Iterator<Item = Vec<u8>> {
    std::iter::once(seq.to_be_bytes().to_vec())
        .chain((0..count(raw_len)).map(move |i| key(seq, i).to_vec()))
}

/// Reassembles records from a tree's items in key order: `(seq, bytes)` per record.
pub fn records(
    items: impl Iterator<Item = sled::Result<(IVec, IVec)>>,
) -> impl Iterator<Item = sled::Result<(u64, Vec<u8>)>> {
    Records {
        items: items.peekable(),
    }
}

struct Records<I: Iterator<Item = sled::Result<(IVec, IVec)>>> {
    items: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = sled::Result<(IVec, IVec)>>> Iterator for Records<I> {
    type Item = sled::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = match self.items.next()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let seq = seq_of(&key);
        let mut raw = value.to_vec();
        // A bare key is a whole record; chunks continue while the sequence number does.
        while key.len() > 8 {
            match self.items.peek() {
                Some(Ok((next, _))) if next.len() > 8 && seq_of(next) == seq => {}
                _ => break,
            }
            match self.items.next() {
                Some(Ok((_, value))) => raw.extend_from_slice(&value),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        Some(Ok((seq, raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_whole_in_order_with_the_old_layout_mixed_in() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("q").unwrap();
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        tree.apply_batch(insert(7, &big)).unwrap();
        tree.insert(5u64.to_be_bytes(), &b"old layout"[..]).unwrap();
        tree.insert(6u64.to_be_bytes(), &b"rewritten"[..]).unwrap();
        tree.apply_batch(insert(6, b"now in chunks")).unwrap();
        tree.apply_batch(insert(9, b"")).unwrap();
        tree.apply_batch(insert(8, &[1; CHUNK])).unwrap();
        let read: Vec<(u64, Vec<u8>)> = records(tree.iter()).map(Result::unwrap).collect();
        assert_eq!(
            read,
            vec![
                (5, b"old layout".to_vec()),
                (6, b"now in chunks".to_vec()),
                (7, big.clone()),
                (8, vec![1; CHUNK]),
                (9, Vec::new()),
            ]
        );
        assert_eq!(tree.len(), 1 + 1 + 4 + 1 + 1);
        assert_eq!(keys(7, big.len()).count(), 1 + 4);
        assert_eq!(count(0), 1);
        assert_eq!(count(CHUNK), 1);
        assert_eq!(count(CHUNK + 1), 2);
    }
}
