//! `data_dir` belongs to one gateway at a time: its queues, jobs and flags are that gateway's own
//! (two gateways in front of the same nodes each need their own). The owner holds an advisory
//! lock on `data_dir/gateway.lock` for as long as it runs, with its pid written in the file, so
//! that a second one is told which process holds it instead of sled's raw "could not acquire
//! lock".

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use rustix::fs::{flock, FlockOperation};

/// Why `data_dir` could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another process holds it.
    #[error("{dir} is in use by another gateway{pid}: each gateway needs a data_dir of its own")]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// ` (pid N)` when the holder wrote it.
        pid: String,
    },
    /// It could not be created or locked.
    #[error("{dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The lock on `data_dir`, held until dropped (the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if needed and takes it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let io = |source| DataDirError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("gateway.lock"))
            .map_err(io)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                return Err(DataDirError::InUse {
                    dir: dir.to_owned(),
                    pid,
                });
            }
            return Err(io(e.into()));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        let error = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "in use by another gateway (pid {})",
                std::process::id()
            )),
            "{error}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
