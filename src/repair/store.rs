//! Jobs kept in the gateway's sled database: a job and its plan are stored together after every
//! chunk, and flushed before the job moves on, so that a kill -9 resumes it where it stood.

use serde::{Deserialize, Serialize};

use super::job::{Job, Plan};
use crate::{node::QueueError, router::Layout};

/// A job and, for a repair, its plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// What is shown.
    pub job: Job,
    /// Where it stands (`None` until the plan is made).
    pub plan: Option<Plan>,
    /// Whether its last run stopped with the gateway (SIGTERM), not killed.
    #[serde(default)]
    pub stopped_cleanly: bool,
    /// For a rebalance, the layouts it moves data between (`None`: nothing to move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<Moving>,
}

/// The layout a rebalance moves data from, and the one it moves it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moving {
    /// Where the data was when the rebalance started.
    pub from: Layout,
    /// The configured layout it moves it to.
    pub to: Layout,
    /// The data already follows `to`: only the deletion of what moved is left.
    #[serde(default)]
    pub settled: bool,
}

/// The `jobs` tree.
#[derive(Clone)]
pub struct JobStore {
    tree: sled::Tree,
}

impl JobStore {
    /// Over `tree`.
    pub fn new(tree: sled::Tree) -> Self {
        JobStore { tree }
    }

    /// Stores `record` and has it on disk before returning.
    pub async fn save(&self, record: &Record) -> Result<(), QueueError> {
        self.put(record)?;
        self.tree.flush_async().await?;
        Ok(())
    }

    /// Stores `record`, on disk at the next flush.
    pub fn put(&self, record: &Record) -> Result<(), QueueError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| QueueError::Storage(sled::Error::Unsupported(e.to_string())))?;
        self.tree.insert(record.job.id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Forgets job `id`.
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        self.tree.remove(id.as_bytes())?;
        Ok(())
    }

    /// Every stored job, oldest first (ids sort by creation time); an unreadable one is logged
    /// and skipped.
    pub fn load(&self) -> Result<Vec<Record>, QueueError> {
        let mut records = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item?;
            match serde_json::from_slice::<Record>(&value) {
                Ok(record) => records.push(record),
                Err(e) => log::error!(
                    "job {}: stored record unreadable, ignored: {e}",
                    String::from_utf8_lossy(&key)
                ),
            }
        }
        Ok(records)
    }
}
