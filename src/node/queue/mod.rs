//! The durable per-node retry queue, kept in sled.
//!
//! # Design
//!
//! One sled database under `data_dir/queue` holds, for every node, a tree `queue:<node>` of
//! pending writes and mutations and a tree `dead:<node>` of dead letters, plus a `meta` tree of
//! per-node counters that must survive restarts. Keys are the node actor's sequence numbers,
//! big-endian, so the tree's order is the order the gateway accepted the operations in — even
//! when a write that failed on the wire is put back in front of newer ones. A pending record is
//! stored in chunks of at most 4 KiB, written in one atomic batch ([`chunks`]): sled keeps large
//! values in memory, and a long outage must not.
//!
//! Guarantees, each tested:
//! - **Append is durable before it is acknowledged.** [`NodeQueue::append`] inserts and returns a
//!   ticket; [`NodeQueue::durable`] resolves once a flush covers it ([`commit`]: one fsync per
//!   group of concurrent appends).
//! - **Remove after accept.** Entries are removed only by [`NodeQueue::remove`], which the actor
//!   calls after the node answered 2xx. A crash between append and remove replays the entry again,
//!   which InfluxDB absorbs: a point written twice is the same point.
//! - **Never dropped silently.** A record the node keeps refusing, one too old, or one that fails
//!   its checksum moves to dead letters with its reason ([`NodeQueue::dead_letter`]).
//! - **Bounded.** Appends beyond `queue.max_bytes` are refused ([`QueueError::Full`]), and so are
//!   appends that would leave less than `queue.min_free_disk` free on the disk
//!   ([`QueueError::DiskFull`], [`space`]): sled must keep room to remove what it replays.
//! - **A missing copy is never forgotten.** Whenever a copy cannot be stored (refused, full, the
//!   disk failing) or leaves the queue without reaching the node (dead-lettered), the node is
//!   flagged `needs_resync` in a file that a full disk cannot keep from being updated ([`resync`]),
//!   before anyone is told.

mod chunks;
mod commit;
mod dead_letters;
pub mod record;

pub use dead_letters::{DeadLetter, Letter};
mod resync;
mod space;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

pub use commit::{GroupCommit, NotFlushed, Ticket};
pub use record::{CorruptRecord, Record};
pub use resync::ResyncFlags;
pub use space::DiskGuard;

use crate::node::Op;

/// Copies refused per update of the stored count of refused copies.
const REFUSALS_PER_STORED_COUNT: u64 = 1000;

/// sled's page cache; queues are written once and read once, so a small cache suffices.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The node's queue holds `queue.max_bytes` already.
    #[error("queue full: {bytes} bytes queued, limit {limit}")]
    Full {
        /// Bytes queued now.
        bytes: u64,
        /// `queue.max_bytes`.
        limit: u64,
    },
    /// The append would leave less than `queue.min_free_disk` free on the queue's disk.
    #[error("disk full: {free} bytes free under data_dir, min_free_disk {reserve}")]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// `queue.min_free_disk`.
        reserve: u64,
    },
    /// sled failed (disk full, I/O error).
    #[error("queue storage: {0}")]
    Storage(#[from] sled::Error),
    /// The `needs_resync` flags could not be read or written.
    #[error("needs-resync flags: {0}")]
    Flags(#[source] std::io::Error),
}

impl From<space::Short> for QueueError {
    fn from(short: space::Short) -> Self {
        QueueError::DiskFull {
            free: short.free,
            reserve: short.reserve,
        }
    }
}

/// The sled database shared by every node's queue.
pub struct QueueStore {
    db: sled::Db,
    commit: Arc<GroupCommit>,
    meta: sled::Tree,
    flags: Arc<ResyncFlags>,
    disk: Arc<DiskGuard>,
}

impl QueueStore {
    /// Opens (or creates) the store in `dir`, keeping `min_free_disk` bytes free on its disk.
    pub fn open(dir: &Path, min_free_disk: u64) -> Result<Self, QueueError> {
        let flags = ResyncFlags::open(&dir.join("needs-resync")).map_err(QueueError::Flags)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let meta = db.open_tree("meta")?;
        // The directory entries of sled's files must survive a power loss too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(sled::Error::Io)?;
        let commit = Arc::new(GroupCommit::start(db.clone(), dir).map_err(sled::Error::Io)?);
        Ok(QueueStore {
            db,
            commit,
            meta,
            flags: Arc::new(flags),
            disk: Arc::new(DiskGuard::new(dir, min_free_disk)),
        })
    }

    /// The queue of node `name`, reopened with whatever it held; `max_bytes` bounds what waits,
    /// `max_dead_letter_bytes` its dead letters.
    pub fn node(
        &self,
        name: &str,
        max_bytes: u64,
        max_dead_letter_bytes: u64,
    ) -> Result<NodeQueue, QueueError> {
        let pending = self.db.open_tree(format!("queue:{name}"))?;
        let dead = self.db.open_tree(format!("dead:{name}"))?;
        let (mut dead_held, mut dead_bytes) = (0, 0);
        for letter in dead.iter() {
            dead_held += 1;
            dead_bytes += letter?.1.len() as u64;
        }
        let (mut entries, mut bytes) = (0, 0);
        for record in chunks::records(pending.iter()) {
            let (_, raw) = record?;
            entries += 1;
            bytes += raw.len() as u64;
        }
        // Before the flags file, the flag was kept in sled's `meta` tree.
        if read_counter(&self.meta, &format!("resync:{name}"))? > 0 {
            self.flags.flag(name).map_err(QueueError::Flags)?;
        }
        let queue = NodeQueue {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                pending,
                dead_letters: AtomicU64::new(dead_held),
                dead_held: AtomicU64::new(dead_held),
                dead_bytes: AtomicU64::new(dead_bytes),
                max_dead_letter_bytes,
                dead_letters_dropped: AtomicU64::new(0),
                dead,
                meta: self.meta.clone(),
                commit: Arc::clone(&self.commit),
                entries: AtomicU64::new(entries),
                bytes: AtomicU64::new(bytes),
                max_bytes,
                refused: AtomicU64::new(read_counter(&self.meta, &format!("refused:{name}"))?),
                needs_resync: AtomicBool::new(self.flags.is_flagged(name)),
                resync_generation: AtomicU64::new(0),
                maintenance: AtomicBool::new(
                    read_counter(&self.meta, &format!("maintenance:{name}"))? > 0,
                ),
                flags: Arc::clone(&self.flags),
                disk: Arc::clone(&self.disk),
            }),
        };
        Ok(queue)
    }

    /// Queues on disk whose node is not in `configured`: reported, never deleted.
    pub fn orphans(&self, configured: &[&str]) -> Result<Vec<OrphanQueue>, QueueError> {
        let mut orphans = Vec::new();
        for name in self.db.tree_names() {
            let Some(node) = name.strip_prefix(b"queue:") else {
                continue;
            };
            let node = String::from_utf8_lossy(node).into_owned();
            if configured.contains(&node.as_str()) {
                continue;
            }
            let tree = self.db.open_tree(&name)?;
            let (mut entries, mut bytes) = (0, 0);
            for record in chunks::records(tree.iter()) {
                entries += 1;
                bytes += record?.1.len() as u64;
            }
            if entries > 0 {
                orphans.push(OrphanQueue {
                    node,
                    entries,
                    bytes,
                });
            }
        }
        Ok(orphans)
    }

    /// Another tree in the same database, for state that must survive restarts beside the queues
    /// (repair jobs).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, QueueError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Flushes everything and stops the flusher.
    pub fn close(&self) -> Result<(), QueueError> {
        Ok(self.commit.shutdown()?)
    }
}

/// A queue left by a node that is no longer configured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrphanQueue {
    /// The node it belonged to.
    pub node: String,
    /// Entries in it.
    pub entries: u64,
    /// Bytes in it.
    pub bytes: u64,
}

/// One node's queue and dead letters. Cheap to clone; only the node's actor appends and removes.
#[derive(Clone)]
pub struct NodeQueue {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pending: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    commit: Arc<GroupCommit>,
    entries: AtomicU64,
    bytes: AtomicU64,
    max_bytes: u64,
    dead_letters: AtomicU64,
    /// Dead letters held now (sled's `len` counts by reading them all).
    dead_held: AtomicU64,
    /// Bytes the dead letters hold, bounded by `max_dead_letter_bytes`.
    dead_bytes: AtomicU64,
    max_dead_letter_bytes: u64,
    /// Dead letters dropped to keep that bound.
    dead_letters_dropped: AtomicU64,
    refused: AtomicU64,
    needs_resync: AtomicBool,
    /// Counts flaggings, so that a repair clears only a flag raised before it started.
    resync_generation: AtomicU64,
    /// Taken out of service by an operator (`drain`), kept across restarts.
    maintenance: AtomicBool,
    flags: Arc<ResyncFlags>,
    disk: Arc<DiskGuard>,
}

/// A stored entry read back from the head of the queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its key: the node's sequence number.
    pub seq: u64,
    /// The stored bytes.
    pub raw: Vec<u8>,
}

/// Counters for `/health`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueStats {
    /// Entries waiting.
    pub entries: u64,
    /// Bytes waiting.
    pub bytes: u64,
    /// Age of the oldest entry, in seconds.
    pub oldest_age_seconds: Option<u64>,
    /// Entries moved to dead letters, ever.
    pub dead_letters: u64,
    /// Dead letters held now, and their bytes.
    pub dead_letters_held: u64,
    /// Bytes the dead letters hold.
    pub dead_letter_bytes: u64,
    /// Dead letters dropped, oldest first, to keep `queue.max_dead_letter_bytes`.
    pub dead_letters_dropped: u64,
    /// Copies that could not be stored: the queue or its disk was full, or the disk failed.
    pub refused_full: u64,
    /// Whether a copy never reached the node (refused, not stored, dead-lettered), so the node
    /// differs from its replicas.
    pub needs_resync: bool,
}

impl NodeQueue {
    /// Whether an operator took the node out of service (`drain`) and has not resumed it.
    pub fn in_maintenance(&self) -> bool {
        self.inner.maintenance.load(Ordering::Acquire)
    }

    /// Takes the node out of service (`true`) or back, on disk before this returns: a gateway
    /// restarted meanwhile keeps it where the operator put it.
    pub fn set_maintenance(&self, on: bool) -> Result<(), QueueError> {
        let key = format!("maintenance:{}", self.inner.name);
        let before = self
            .inner
            .meta
            .insert(key.as_bytes(), &u64::from(on).to_be_bytes()[..])?;
        if let Err(e) = self.inner.meta.flush() {
            // Not in force, so not left to reach the disk later either.
            let _ = match before {
                Some(value) => self.inner.meta.insert(key.as_bytes(), value),
                None => self.inner.meta.remove(key.as_bytes()),
            };
            return Err(e.into());
        }
        self.inner.maintenance.store(on, Ordering::Release);
        Ok(())
    }

    /// Whether the node is flagged as lacking copies its replicas hold.
    pub fn needs_resync(&self) -> bool {
        self.inner.needs_resync.load(Ordering::Acquire)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.entries.load(Ordering::Acquire) == 0
    }

    /// The sequence number after the last one stored, so numbering continues across restarts.
    pub fn next_seq(&self) -> Result<u64, QueueError> {
        let last = self.inner.pending.last()?.map(|(k, _)| chunks::seq_of(&k));
        let last_dead = self.inner.dead.last()?.map(|(k, _)| key_seq(&k));
        Ok(last.max(last_dead).map_or(0, |s| s + 1))
    }

    /// Stores `op` under `seq`; the returned ticket becomes durable with [`Self::durable`].
    pub fn append(&self, seq: u64, op: &Op) -> Result<Ticket, QueueError> {
        let raw = Record {
            enqueued_at_ms: now_ms(),
            attempts: 0,
            op: op.clone(),
        }
        .encode();
        self.append_raw(seq, raw)
    }

    fn append_raw(&self, seq: u64, raw: Vec<u8>) -> Result<Ticket, QueueError> {
        let len = raw.len() as u64;
        let bytes = self.inner.bytes.load(Ordering::Acquire);
        if bytes + len > self.inner.max_bytes {
            return Err(QueueError::Full {
                bytes,
                limit: self.inner.max_bytes,
            });
        }
        self.inner.disk.admit(len)?;
        // Sequence numbers only grow, so no record is ever stored twice under one `seq`.
        self.inner.pending.apply_batch(chunks::insert(seq, &raw))?;
        self.inner.bytes.fetch_add(len, Ordering::AcqRel);
        self.inner.entries.fetch_add(1, Ordering::AcqRel);
        Ok(self.inner.commit.ticket())
    }

    /// Resolves when the append that returned `ticket` is on disk, or could not be put there.
    pub fn durable(
        &self,
        ticket: Ticket,
    ) -> impl std::future::Future<Output = Result<(), NotFlushed>> + 'static {
        self.inner.commit.durable(ticket)
    }

    /// Up to `max_entries` entries from the head, stopping before `max_bytes` of decompressed
    /// operations is exceeded (the first entry is always returned whatever its size).
    pub fn head(&self, max_entries: usize, max_bytes: u64) -> Result<Vec<Entry>, QueueError> {
        let mut entries = Vec::new();
        let mut total = 0;
        for record in chunks::records(self.inner.pending.iter()) {
            let (seq, raw) = record?;
            total += Record::replay_len(&raw) as u64;
            if !entries.is_empty() && (total > max_bytes || entries.len() >= max_entries) {
                break;
            }
            entries.push(Entry { seq, raw });
        }
        Ok(entries)
    }

    /// Removes entries the node accepted.
    pub fn remove(&self, seqs: impl IntoIterator<Item = u64>) -> Result<(), QueueError> {
        for seq in seqs {
            let mut batch = sled::Batch::default();
            let (mut found, mut removed) = (false, 0);
            for item in self.inner.pending.scan_prefix(seq.to_be_bytes()) {
                let (key, value) = item?;
                found = true;
                removed += value.len() as u64;
                batch.remove(key);
            }
            if found {
                self.inner.pending.apply_batch(batch)?;
                self.inner.bytes.fetch_sub(removed, Ordering::AcqRel);
                self.inner.entries.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Rewrites an entry with a new 4xx attempt count.
    pub fn set_attempts(&self, entry: &Entry, attempts: u32) -> Result<(), QueueError> {
        match record::with_attempts(&entry.raw, attempts) {
            Ok(raw) => {
                // Same length, so the same chunk keys: the batch replaces every one of them.
                self.inner
                    .pending
                    .apply_batch(chunks::insert(entry.seq, &raw))?;
                Ok(())
            }
            Err(e) => self.dead_letter(entry, &e.to_string()),
        }
    }

    /// Moves an entry to the dead letters with `reason`, atomically.
    pub fn dead_letter(&self, entry: &Entry, reason: &str) -> Result<(), QueueError> {
        use sled::Transactional;
        let key = entry.seq.to_be_bytes();
        let letter = letter(reason, &entry.raw);
        let stored_keys: Vec<Vec<u8>> = chunks::keys(entry.seq, entry.raw.len()).collect();
        let moved = (&self.inner.pending, &self.inner.dead)
            .transaction(|(pending, dead)| {
                dead.insert(&key, letter.as_slice())?;
                let mut removed = 0;
                for key in &stored_keys {
                    removed += pending
                        .remove(key.as_slice())?
                        .map_or(0, |v| v.len() as u64);
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(removed)
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(()) => unreachable_abort(),
                sled::transaction::TransactionError::Storage(e) => QueueError::Storage(e),
            })?;
        if moved > 0 {
            self.inner.bytes.fetch_sub(moved, Ordering::AcqRel);
            self.inner.entries.fetch_sub(1, Ordering::AcqRel);
        }
        self.inner.dead_letters.fetch_add(1, Ordering::AcqRel);
        self.stored_dead_letter(letter.len() as u64);
        // Its replicas applied what the node now never will: at the first dead letter, not later.
        let first = self.mark_resync().unwrap_or_else(|e| {
            log::error!(
                "node {}: cannot record that it needs a resync: {e}",
                self.inner.name
            );
            false
        });
        log::warn!(
            "node {}: entry {} moved to dead letters: {reason}{}",
            self.inner.name,
            entry.seq,
            if first {
                "; the node needs a resync"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// Flags the node as needing a resync (on disk before this returns), then keeps, as a dead
    /// letter under `seq`, a copy the node refused while its replicas accepted it. The letter is
    /// kept when the disk has room for it and flushed with the next group; the flag is what must
    /// not be lost, and an error says it could not be stored.
    pub fn keep_refused(&self, seq: u64, op: &Op, reason: &str) -> Result<(), QueueError> {
        self.mark_resync()?;
        let name = &self.inner.name;
        let raw = Record {
            enqueued_at_ms: now_ms(),
            attempts: 1,
            op: op.clone(),
        }
        .encode();
        let letter = letter(reason, &raw);
        let stored = self
            .inner
            .disk
            .admit(letter.len() as u64)
            .map_err(QueueError::from)
            .and_then(|()| {
                Ok(self
                    .inner
                    .dead
                    .insert(seq.to_be_bytes(), letter.as_slice())?)
            });
        match stored {
            Ok(_) => {
                self.inner.dead_letters.fetch_add(1, Ordering::AcqRel);
                self.stored_dead_letter(letter.len() as u64);
                log::warn!(
                    "node {name}: refused a write its replicas accepted ({reason}); kept as dead letter {seq}, node needs a resync"
                );
            }
            Err(e) => log::error!(
                "node {name}: refused a write its replicas accepted ({reason}); not kept ({e}), node needs a resync"
            ),
        }
        Ok(())
    }

    /// Counts a copy that could not be stored (queue or disk full, storage failing) and flags the
    /// node as needing a resync, on disk before this returns.
    pub fn refuse_copy(&self) -> Result<(), QueueError> {
        let refused = self.inner.refused.fetch_add(1, Ordering::AcqRel) + 1;
        let name = &self.inner.name;
        // The count is for operators, the flag is what may not be lost. Refusals come in floods
        // while the disk is short, and each stored count takes log space there: store every
        // thousandth (a crash may forget fewer than a thousand).
        // Nor is it stored when the disk is short: the copy was refused to keep the reserve, and
        // the count must not eat into it either.
        let key = format!("refused:{name}");
        let len = (key.len() + 8) as u64;
        if refused % REFUSALS_PER_STORED_COUNT == 1 && self.inner.disk.admit(len).is_ok() {
            if let Err(e) = self.inner.meta.insert(key, &refused.to_be_bytes()) {
                log::debug!("node {name}: cannot record a refused copy: {e}");
            }
        }
        if self.mark_resync()? {
            log::error!("node {name}: a write copy could not be stored; the node needs a resync");
        }
        Ok(())
    }

    /// Flags the node as differing from its replicas, on disk before this returns.
    pub fn flag_resync(&self) -> Result<(), QueueError> {
        self.mark_resync().map(|_| ())
    }

    /// A ticket covering every change made so far (removals, dead-lettering), for when their
    /// durability matters: before writing directly again.
    pub fn sync(&self) -> Ticket {
        self.inner.commit.ticket()
    }

    /// Flags the node as differing from its replicas; returns whether it was not flagged before.
    fn mark_resync(&self) -> Result<bool, QueueError> {
        // The generation moves first, so that a clearing that has not seen it cannot happen after
        // this flag is on disk (see `clear_resync`).
        self.inner.resync_generation.fetch_add(1, Ordering::AcqRel);
        let flagged = self.inner.flags.flag(&self.inner.name);
        self.inner.needs_resync.store(true, Ordering::Release);
        flagged.map_err(QueueError::Flags)
    }

    /// Where the flaggings stand: a repair notes it when it starts.
    pub fn resync_generation(&self) -> u64 {
        self.inner.resync_generation.load(Ordering::Acquire)
    }

    /// Clears `needs_resync` after a repair that started at `generation` ended complete, unless
    /// the node was flagged again since (that copy may be missing still); says whether it did.
    pub fn clear_resync(&self, generation: u64) -> Result<bool, QueueError> {
        let name = &self.inner.name;
        // The flag's former home, read at every start: it must not bring the flag back.
        self.inner.meta.remove(format!("resync:{name}"))?;
        // Under the flags' lock, which a new flagging takes before it sets the bit again.
        let cleared = self.inner.flags.unflag_if(name, || {
            let due = self.inner.resync_generation.load(Ordering::Acquire) == generation;
            if due {
                self.inner.needs_resync.store(false, Ordering::Release);
            }
            due
        });
        if cleared.is_err() {
            self.inner.needs_resync.store(true, Ordering::Release);
        }
        cleared.map_err(QueueError::Flags)
    }

    /// Counters for `/health`.
    pub fn stats(&self) -> QueueStats {
        // The first chunk holds the record's header.
        let oldest_age_seconds = match self.inner.pending.first() {
            Ok(Some((_, first))) => {
                record::enqueued_at_ms(&first).map(|at| now_ms().saturating_sub(at) / 1000)
            }
            _ => None,
        };
        QueueStats {
            entries: self.inner.entries.load(Ordering::Acquire),
            bytes: self.inner.bytes.load(Ordering::Acquire),
            oldest_age_seconds,
            dead_letters: self.inner.dead_letters.load(Ordering::Acquire),
            dead_letters_held: self.inner.dead_held.load(Ordering::Acquire),
            dead_letter_bytes: self.inner.dead_bytes.load(Ordering::Acquire),
            dead_letters_dropped: self.inner.dead_letters_dropped.load(Ordering::Acquire),
            refused_full: self.inner.refused.load(Ordering::Acquire),
            needs_resync: self.inner.needs_resync.load(Ordering::Acquire),
        }
    }
}

/// A dead letter: the reason, then the record as it was stored.
fn letter(reason: &str, raw: &[u8]) -> Vec<u8> {
    let mut letter = Vec::with_capacity(4 + reason.len() + raw.len());
    letter.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    letter.extend_from_slice(reason.as_bytes());
    letter.extend_from_slice(raw);
    letter
}

fn unreachable_abort() -> QueueError {
    // The transaction closure never aborts; keep a typed error rather than a panic all the same.
    QueueError::Storage(sled::Error::Unsupported("transaction aborted".into()))
}

fn key_seq(key: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

fn read_counter(meta: &sled::Tree, key: &str) -> Result<u64, QueueError> {
    Ok(meta.get(key)?.map_or(0, |v| key_seq(&v)))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
