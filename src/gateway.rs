//! The running gateway: its configuration, node actors, queues and router, shared by every worker.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::Duration,
};

use crate::{
    config::Config,
    node::{queue::OrphanQueue, NodeHandle, NodeState, QueueError, QueueStore},
    router::{NodeId, Router, Shard, ShardId},
};

/// Version reported before any node has told us its own.
const FALLBACK_VERSION: &str = "1.x";

/// Everything the HTTP handlers need.
pub struct Gateway {
    config: Config,
    nodes: Vec<NodeHandle>,
    rotation: AtomicUsize,
    order: Mutex<()>,
    store: QueueStore,
    orphans: Vec<OrphanQueue>,
}

impl Gateway {
    /// Reopens the queues and starts one actor per configured node. Must run inside an actix system.
    pub fn start(config: Config) -> Result<Self, QueueError> {
        let dir = config.data_dir.join("queue");
        std::fs::create_dir_all(&dir).map_err(|e| QueueError::Storage(e.into()))?;
        let store = QueueStore::open(&dir)?;
        let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        let orphans = store.orphans(&names)?;
        for orphan in &orphans {
            log::warn!(
                "queue of node {:?} ({} entries, {} bytes) belongs to no configured node; kept, not replayed",
                orphan.node,
                orphan.entries,
                orphan.bytes
            );
        }
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for (i, node) in config.nodes.iter().enumerate() {
            let queue = store.node(&node.name, config.queue.max_bytes)?;
            nodes.push(NodeHandle::spawn(&config, i, queue)?);
        }
        Ok(Gateway {
            config,
            nodes,
            rotation: AtomicUsize::new(0),
            order: Mutex::new(()),
            store,
            orphans,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The nodes, in configuration order.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// Where writes go.
    pub fn router(&self) -> &Router {
        &self.config.router
    }

    /// Held while writes and mutations are handed to the node actors, so that every node
    /// receives them in one order.
    pub fn order(&self) -> &Mutex<()> {
        &self.order
    }

    /// Queues left by nodes no longer configured.
    pub fn orphans(&self) -> &[OrphanQueue] {
        &self.orphans
    }

    /// The nodes to try for the next read, best first; successive reads rotate.
    pub fn next_read_order(&self) -> Vec<NodeId> {
        let states: Vec<NodeState> = self.nodes.iter().map(|n| n.status().state()).collect();
        crate::query::read_order(&states, self.next_rotation())
    }

    /// The replicas of `shard` to try for the next read, best first; successive reads rotate.
    pub fn shard_read_order(&self, shard: ShardId) -> Vec<NodeId> {
        let replicas = &self.router().shards()[shard].replicas;
        let states: Vec<NodeState> = replicas
            .iter()
            .map(|&n| self.nodes[n].status().state())
            .collect();
        crate::query::read_order(&states, self.next_rotation())
            .into_iter()
            .map(|i| replicas[i])
            .collect()
    }

    /// The names of `shard`'s replicas, in configuration order.
    pub fn replica_names(&self, shard: &Shard) -> Vec<&str> {
        shard
            .replicas
            .iter()
            .map(|&n| self.nodes[n].status().name())
            .collect()
    }

    /// Where the next read starts its rotation.
    fn next_rotation(&self) -> usize {
        self.rotation.fetch_add(1, Ordering::Relaxed)
    }

    /// The InfluxDB version to announce: the first node's that is up, as clients adapt to it.
    pub fn reported_version(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.status().state() == NodeState::Up)
            .find_map(|n| n.status().version())
            .unwrap_or_else(|| FALLBACK_VERSION.to_owned())
    }

    /// Makes every node actor queue all new work and move what it holds in memory to its queue.
    pub async fn close_nodes(&self, limit: Duration) {
        for node in &self.nodes {
            node.shutdown(limit).await;
        }
    }

    /// Flushes the queues to disk and stops their flusher.
    pub fn close_queues(&self) -> Result<(), QueueError> {
        self.store.close()
    }
}
