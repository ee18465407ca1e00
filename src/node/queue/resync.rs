//! Which nodes differ from their replicas (`needs_resync`), kept where a full disk cannot lose it.
//!
//! The flag is raised exactly when a copy could not be stored, and the commonest reason is that the
//! disk is full: a flag kept in sled would then sit in memory, waiting for a flush that cannot
//! happen, and a restart would forget it. So the flags live in a small file of their own, written
//! out in full ([`FILE_SIZE`] bytes) when it is created and from then on only overwritten in place
//! and `fdatasync`ed: rewriting blocks a file already owns needs no free space.
//!
//! Format: a header line, one JSON string per flagged node, an empty line, then zeros.

use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
    sync::Mutex,
};

/// The file's size, written once: room for hundreds of node names.
const FILE_SIZE: usize = 64 * 1024;

const HEADER: &str = "influx-gateway needs-resync v1\n";

/// The flagged nodes, on disk.
pub struct ResyncFlags {
    state: Mutex<State>,
}

struct State {
    file: File,
    flagged: BTreeSet<String>,
}

impl ResyncFlags {
    /// Opens `path`, creating and filling it on first use.
    pub fn open(path: &Path) -> io::Result<Self> {
        if !path.exists() {
            create(path)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let flagged = parse(&text).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        })?;
        let mut state = State { file, flagged };
        if text.len() < FILE_SIZE {
            // Written by hand, or by a version that kept it smaller: pad it now, while there may
            // be room, so that every later write is an overwrite.
            state.write()?;
        }
        Ok(ResyncFlags {
            state: Mutex::new(state),
        })
    }

    /// Whether `node` is flagged.
    pub fn is_flagged(&self, node: &str) -> bool {
        self.lock().flagged.contains(node)
    }

    /// Flags `node` and has it on disk before returning; says whether it was not flagged before.
    /// If the write fails the node stays flagged in memory and the error is returned.
    pub fn flag(&self, node: &str) -> io::Result<bool> {
        let mut state = self.lock();
        if !state.flagged.insert(node.to_owned()) {
            return Ok(false);
        }
        state.write().map(|()| true)
    }

    /// Clears `node`'s flag on disk if `still_due()`, asked under the same lock that
    /// [`Self::flag`] takes, so that no flag raised meanwhile is lost; says whether it cleared it.
    pub fn unflag_if(&self, node: &str, still_due: impl FnOnce() -> bool) -> io::Result<bool> {
        let mut state = self.lock();
        if !state.flagged.contains(node) || !still_due() {
            return Ok(false);
        }
        state.flagged.remove(node);
        if let Err(e) = state.write() {
            // Not on disk: keep it flagged, as a restart would see it.
            state.flagged.insert(node.to_owned());
            return Err(e);
        }
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn write(&mut self) -> io::Result<()> {
        let mut text = HEADER.to_owned();
        for node in &self.flagged {
            text.push_str(&serde_json::Value::from(node.as_str()).to_string());
            text.push('\n');
        }
        text.push('\n');
        let mut bytes = text.into_bytes();
        // Padded to the size written at creation: an overwrite, unless the names outgrow it.
        bytes.resize(bytes.len().max(FILE_SIZE), 0);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&bytes)?;
        self.file.sync_data()
    }
}

/// Writes an empty set beside `path` and renames it into place, so that a crash never leaves a
/// file cut short.
fn create(path: &Path) -> io::Result<()> {
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = std::path::PathBuf::from(staged);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&staged)?;
    State {
        file,
        flagged: BTreeSet::new(),
    }
    .write()?;
    std::fs::rename(&staged, path)?;
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut flagged = BTreeSet::new();
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\0');
    if text.is_empty() {
        return Ok(flagged);
    }
    let Some(body) = text.strip_prefix(HEADER) else {
        return Err("not a needs-resync file".to_owned());
    };
    for line in body.lines().take_while(|line| !line.is_empty()) {
        let name: String = serde_json::from_str(line).map_err(|e| format!("{line:?}: {e}"))?;
        flagged.insert(name);
    }
    Ok(flagged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_survive_a_reopen_and_the_file_keeps_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("needs-resync");
        let flags = ResyncFlags::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE as u64);
        assert!(!flags.is_flagged("n1"));
        assert!(flags.flag("n1").unwrap());
        assert!(!flags.flag("n1").unwrap(), "already flagged");
        assert!(flags.flag("odd \"name\"\nwith a newline").unwrap());
        drop(flags);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE as u64);
        let flags = ResyncFlags::open(&path).unwrap();
        assert!(flags.is_flagged("n1"));
        assert!(flags.is_flagged("odd \"name\"\nwith a newline"));
        assert!(!flags.is_flagged("n2"));
    }

    #[test]
    fn a_flag_is_cleared_only_when_still_due_and_stays_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("needs-resync");
        let flags = ResyncFlags::open(&path).unwrap();
        flags.flag("n1").unwrap();
        flags.flag("n2").unwrap();
        assert!(!flags.unflag_if("n1", || false).unwrap());
        assert!(flags.is_flagged("n1"));
        assert!(flags.unflag_if("n1", || true).unwrap());
        assert!(!flags.unflag_if("n3", || true).unwrap(), "never flagged");
        drop(flags);
        let flags = ResyncFlags::open(&path).unwrap();
        assert!(!flags.is_flagged("n1"));
        assert!(flags.is_flagged("n2"));
    }

    #[test]
    fn a_foreign_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("needs-resync");
        std::fs::write(&path, "something else").unwrap();
        let error = ResyncFlags::open(&path).err().unwrap();
        assert!(
            error.to_string().contains("not a needs-resync file"),
            "{error}"
        );
    }
}
