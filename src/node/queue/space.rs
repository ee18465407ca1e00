//! The free space kept on the queue's filesystem (`queue.min_free_disk`).
//!
//! sled buffers appends in memory and writes them when it flushes; if the disk fills first, its
//! flush fails and sled refuses every later operation until it is reopened, removals included, so
//! the queue could neither take a copy nor drain one. Appends are therefore refused while the
//! filesystem's free space, less what was appended since it was last measured, would fall below
//! the reserve: the reserve is what sled keeps for its segments, snapshot and the records of
//! removals, and it comes back by itself as replayed entries are removed or space is freed.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use super::now_ms;

/// How long a measurement of the free space is trusted, with what was appended since subtracted.
const MEASURED_FOR_MS: u64 = 250;

/// Checks appends against the reserve. Shared by every node's queue: they share the disk.
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    /// Bytes free at the last measurement.
    free: AtomicU64,
    /// Bytes appended since then.
    appended: AtomicU64,
    measured_at_ms: AtomicU64,
}

/// An append refused because it would leave less than the reserve free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// Bytes free, as last measured less what was appended since.
    pub free: u64,
    /// `queue.min_free_disk`.
    pub reserve: u64,
}

impl DiskGuard {
    /// A guard keeping `reserve` bytes free on the filesystem holding `dir` (0: no check).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        DiskGuard {
            dir: dir.to_owned(),
            reserve,
            free: AtomicU64::new(u64::MAX),
            appended: AtomicU64::new(0),
            measured_at_ms: AtomicU64::new(0),
        }
    }

    /// Admits an append of `len` bytes, or says how short the disk is. A measurement older than
    /// [`MEASURED_FOR_MS`], or one that would refuse, is taken again first, so space freed since
    /// is seen at once.
    pub fn admit(&self, len: u64) -> Result<(), Short> {
        if self.reserve == 0 {
            return Ok(());
        }
        let fresh =
            now_ms().saturating_sub(self.measured_at_ms.load(Ordering::Acquire)) < MEASURED_FOR_MS;
        if !(fresh && self.room(len)) {
            self.measure();
        }
        if self.room(len) {
            self.appended.fetch_add(len, Ordering::AcqRel);
            Ok(())
        } else {
            Err(Short {
                free: self.available(),
                reserve: self.reserve,
            })
        }
    }

    fn available(&self) -> u64 {
        self.free
            .load(Ordering::Acquire)
            .saturating_sub(self.appended.load(Ordering::Acquire))
    }

    fn room(&self, len: u64) -> bool {
        self.available().saturating_sub(len) >= self.reserve
    }

    fn measure(&self) {
        match free_bytes(&self.dir) {
            Ok(free) => {
                self.free.store(free, Ordering::Release);
                self.appended.store(0, Ordering::Release);
                self.measured_at_ms.store(now_ms(), Ordering::Release);
            }
            // Unknown is not full: sled's own errors still stop a failing disk.
            Err(e) => log::warn!("cannot read the free space of {}: {e}", self.dir.display()),
        }
    }
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_reserve_admits_everything() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DiskGuard::new(dir.path(), 0).admit(u64::MAX), Ok(()));
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_names_both() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let guard = DiskGuard::new(dir.path(), u64::MAX / 2);
        let short = guard.admit(1).unwrap_err();
        assert_eq!(short.reserve, u64::MAX / 2);
        // Other tests write to the same disk meanwhile: within a GiB of the first reading.
        assert!(short.free.abs_diff(free) < 1 << 30, "{short:?} vs {free}");
    }

    #[test]
    fn appends_since_the_last_measurement_count_against_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        // Room for about 512 MiB more above the reserve (other tests write to this disk too).
        let guard = DiskGuard::new(dir.path(), free.saturating_sub(512 << 20));
        assert_eq!(guard.admit(1 << 20), Ok(()));
        // Within the 250 ms the measurement is trusted, the appended bytes are subtracted.
        assert!(guard.admit(1 << 30).is_err());
    }
}
