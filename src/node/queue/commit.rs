//! Group commit: many appends, one fsync.
//!
//! An append inserts into sled (memory) and takes a ticket. A dedicated thread flushes sled whenever
//! tickets are outstanding and then publishes the highest ticket the flush covers; every append
//! whose ticket is covered is durable. Appends that arrive during a flush are covered by the next
//! one, so under load the cost is one fsync per batch of requests, not one per request.
//!
//! A flush that fails twice in a row (a full disk, an I/O error) fails the tickets it was to
//! cover: their appends are answered as not stored, at once, rather than left waiting for a disk
//! that may never have room again. The flusher goes on trying, with a growing pause, and tickets
//! taken later are covered by the first flush that succeeds.
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`, which neither flushes the drive's
//! cache nor the file's metadata, and never syncs the separate files it keeps for values over
//! about 128 KiB (`blobs/`). So after each flush the flusher also `fdatasync`s sled's log file and
//! every blob file not synced yet, and the blob directory when it gained files: a ticket is
//! durable only once all of that returned. This leans on sled 0.34's layout (`<dir>/db`,
//! `<dir>/blobs/<lsn>`), which the pinned version keeps.

use std::{
    collections::HashSet,
    ffi::OsString,
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::Duration,
};

use tokio::sync::watch;

/// Proof of an append, redeemable for durability.
pub type Ticket = u64;

/// Consecutive failed flushes after which the tickets they cover are failed.
const FAILURES_BEFORE_GIVING_UP: u32 = 2;

/// Longest pause between two flushes that fail.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// How often a flush that keeps failing is logged again.
const REPEAT_LOG: Duration = Duration::from_secs(30);

/// The append behind a ticket could not be flushed to disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the queue could not be flushed to disk: {0}")]
pub struct NotFlushed(pub Arc<str>);

/// What the flusher has done so far.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is on disk.
    flushed: Ticket,
    /// Every ticket up to this one, and above `flushed` when it was failed, was given up on.
    failed: Ticket,
    /// Why the last failure failed.
    error: Option<Arc<str>>,
}

struct Shared {
    issued: AtomicU64,
    stop: AtomicBool,
    wake: Mutex<()>,
    signal: Condvar,
    progress: watch::Sender<Progress>,
}

/// The flusher thread and its tickets.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    db: sled::Db,
}

impl GroupCommit {
    /// Starts the flusher for `db`, stored in `dir`.
    pub fn start(db: sled::Db, dir: &Path) -> io::Result<Self> {
        let (progress, _) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Mutex::new(()),
            signal: Condvar::new(),
            progress,
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            let db = db.clone();
            let mut disk = DiskSync::new(dir);
            thread::Builder::new()
                .name("queue-flush".into())
                .spawn(move || flush_loop(&shared, &db, &mut disk))?
        };
        Ok(GroupCommit {
            shared,
            thread: Mutex::new(Some(flusher)),
            db,
        })
    }

    /// Takes a ticket for an insert that has already returned.
    pub fn ticket(&self) -> Ticket {
        let ticket = self.shared.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.signal.notify_one();
        ticket
    }

    /// Resolves once `ticket`'s append is on disk, or once the flusher gave up on it.
    pub fn durable(
        &self,
        ticket: Ticket,
    ) -> impl std::future::Future<Output = Result<(), NotFlushed>> + 'static {
        let mut progress = self.shared.progress.subscribe();
        async move {
            let done = progress
                .wait_for(|p| p.flushed >= ticket || p.failed >= ticket)
                .await;
            match done {
                Ok(p) if p.flushed >= ticket => Ok(()),
                Ok(p) => Err(NotFlushed(
                    p.error.clone().unwrap_or_else(|| "flush failed".into()),
                )),
                Err(_) => Err(NotFlushed("the flusher stopped".into())),
            }
        }
    }

    /// Stops the flusher after a last flush of everything appended so far.
    pub fn shutdown(&self) -> sled::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.signal.notify_one();
        }
        if let Some(handle) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        self.db.flush().map(|_| ())
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn flush_loop(shared: &Shared, db: &sled::Db, disk: &mut DiskSync) {
    // The highest ticket flushed or given up on.
    let mut handled: Ticket = 0;
    let mut failures = 0u32;
    let mut last_logged: Option<std::time::Instant> = None;
    loop {
        {
            let mut guard = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            while shared.issued.load(Ordering::Acquire) == handled
                && !shared.stop.load(Ordering::Acquire)
            {
                guard = shared.signal.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        }
        let stopping = shared.stop.load(Ordering::Acquire);
        if stopping && shared.issued.load(Ordering::Acquire) == handled {
            return;
        }
        // Every insert whose ticket is <= target returned before this load, hence before the flush.
        let target = shared.issued.load(Ordering::Acquire);
        match db
            .flush()
            .map_err(io::Error::other)
            .and_then(|_| disk.sync())
        {
            Ok(()) => {
                if failures > 0 {
                    log::info!("the queue is flushed to disk again");
                }
                failures = 0;
                last_logged = None;
                handled = target;
                shared.progress.send_modify(|p| p.flushed = target);
            }
            Err(e) => {
                failures += 1;
                if last_logged.is_none_or(|at| at.elapsed() >= REPEAT_LOG) {
                    log::error!(
                        "cannot flush the queue to disk ({failures} attempts so far): {e}; \
                         copies that cannot be flushed are answered as not stored"
                    );
                    last_logged = Some(std::time::Instant::now());
                }
                if failures >= FAILURES_BEFORE_GIVING_UP || stopping {
                    handled = target;
                    let error: Arc<str> = e.to_string().into();
                    shared.progress.send_modify(|p| {
                        p.failed = target;
                        p.error = Some(error);
                    });
                }
                if stopping {
                    return;
                }
                let pause = Duration::from_millis(100) * 2u32.pow(failures.min(5));
                thread::sleep(pause.min(MAX_PAUSE));
            }
        }
    }
}

/// What sled's `flush` leaves unsynced: its log file's metadata and its blob files.
struct DiskSync {
    log: PathBuf,
    blobs: PathBuf,
    synced: HashSet<OsString>,
}

impl DiskSync {
    fn new(dir: &Path) -> Self {
        DiskSync {
            log: dir.join("db"),
            blobs: dir.join("blobs"),
            synced: HashSet::new(),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        File::open(&self.log)?.sync_data()?;
        let entries = match fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::new();
        let mut added = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced.contains(&name) {
                match File::open(entry.path()).and_then(|f| f.sync_data()) {
                    Ok(()) => added = true,
                    // Removed since the listing: its entry was acknowledged, nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
            present.insert(name);
        }
        if added {
            File::open(&self.blobs)?.sync_all()?;
        }
        self.synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn tickets_resolve_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let commit = GroupCommit::start(db.clone(), dir.path()).unwrap();
        let mut waits = Vec::new();
        for i in 0u32..100 {
            // Every tenth value is large enough for sled to keep it in a blob file.
            let value = if i % 10 == 0 {
                vec![b'x'; 200 * 1024]
            } else {
                b"x".to_vec()
            };
            db.insert(i.to_be_bytes(), value).unwrap();
            waits.push(commit.durable(commit.ticket()));
        }
        for wait in waits {
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .unwrap()
                .unwrap();
        }
        commit.shutdown().unwrap();
    }

    #[actix_web::test]
    async fn a_flush_that_keeps_failing_fails_its_tickets_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        // The log file is looked for where there is none: every flush fails, as on a full disk.
        let missing = dir.path().join("elsewhere");
        let commit = GroupCommit::start(db.clone(), &missing).unwrap();
        db.insert(b"k", b"v".as_slice()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), commit.durable(commit.ticket()))
            .await
            .expect("answered within 5 s, not left waiting");
        let error = outcome.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the queue could not be flushed to disk: "),
            "{error}"
        );
        // Stopping does not wait for a disk that never recovers.
        let stopped = std::time::Instant::now();
        let _ = commit.shutdown();
        assert!(stopped.elapsed() < Duration::from_secs(5));
    }
}
