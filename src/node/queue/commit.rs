//! Group commit: many appends, one fsync.
//!
//! An append inserts into sled (memory) and takes a ticket. A dedicated thread flushes sled whenever
//! tickets are outstanding and then publishes the highest ticket the flush covers; every append
//! whose ticket is covered is durable. Appends that arrive during a flush are covered by the next
//! one, so under load the cost is one fsync per batch of requests, not one per request.
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

struct Shared {
    issued: AtomicU64,
    stop: AtomicBool,
    wake: Mutex<()>,
    signal: Condvar,
    durable: watch::Sender<Ticket>,
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
        let (durable, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Mutex::new(()),
            signal: Condvar::new(),
            durable,
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

    /// Resolves once `ticket`'s append is on disk.
    pub fn durable(&self, ticket: Ticket) -> impl std::future::Future<Output = ()> + 'static {
        let mut durable = self.shared.durable.subscribe();
        async move {
            // The sender lives as long as the GroupCommit; if it is gone the process is ending.
            let _ = durable.wait_for(|&done| done >= ticket).await;
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
    let mut flushed: Ticket = 0;
    loop {
        {
            let mut guard = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            while shared.issued.load(Ordering::Acquire) == flushed
                && !shared.stop.load(Ordering::Acquire)
            {
                guard = shared.signal.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        }
        if shared.stop.load(Ordering::Acquire) && shared.issued.load(Ordering::Acquire) == flushed {
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
                flushed = target;
                shared.durable.send_replace(target);
            }
            Err(e) => {
                // Nobody is answered until their append is on disk: keep trying, loudly.
                log::error!("cannot flush the queue to disk (will retry): {e}");
                thread::sleep(Duration::from_millis(200));
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
                .unwrap();
        }
        commit.shutdown().unwrap();
    }
}
