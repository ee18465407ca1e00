//! The running gateway: its configuration, node actors, queues and router, shared by every worker.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use arc_swap::ArcSwap;

use crate::{
    auth::Users,
    blueprint::Blueprint,
    config::{Config, LimitsConfig},
    data_dir::DataDirLock,
    layouts::Layouts,
    node::{
        queue::OrphanQueue, NodeHandle, NodeId, NodeSettings, NodeState, QueueError, QueueStore,
        Retune,
    },
    query::{deny::DenyRule, Candidate},
    router::{Layout, Router, Shard, ShardId},
};

/// How long a backlog refused for a database its node lacks waits for `repair.auto` to create it:
/// a wiped node is found within a few health intervals, and its databases come first.
const SCHEMA_PATIENCE: Duration = Duration::from_secs(120);

/// Version reported before any node has told us its own.
const FALLBACK_VERSION: &str = "1.x";

/// Why the running parts could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The queues under `data_dir` could not be opened.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// A certificate or key could not be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The gateway's users could not be set up.
    #[error("auth: {0}")]
    Auth(String),
    /// `data_dir` is another gateway's, or cannot be used.
    #[error("data_dir: {0}")]
    DataDir(#[from] crate::data_dir::DataDirError),
}

/// Everything the HTTP handlers need.
pub struct Gateway {
    config: Config,
    layouts: Layouts,
    deny: Vec<DenyRule>,
    nodes: Vec<NodeHandle>,
    rotation: AtomicUsize,
    order: Mutex<()>,
    store: QueueStore,
    orphans: Vec<OrphanQueue>,
    users: Option<Users>,
    query_tls: Option<Arc<rustls::ClientConfig>>,
    /// `limits`, swapped whole when the configuration is reloaded.
    limits: Arc<ArcSwap<LimitsConfig>>,
    /// Held for as long as the gateway runs.
    _lock: DataDirLock,
}

impl Gateway {
    /// Reopens the queues and starts one actor per configured node. Must run inside an actix system.
    pub fn start(blueprint: Blueprint) -> Result<Self, StartError> {
        let Blueprint {
            config,
            router,
            deny,
        } = blueprint;
        // Whatever can fail without touching the disk or the nodes, first: nothing is started for
        // a gateway that cannot start.
        let users = config
            .auth
            .enabled
            .then(|| Users::new(&config.auth))
            .transpose()
            .map_err(StartError::Auth)?;
        let query_tls = crate::tls::shared_client_config(&config.nodes)?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let dir = config.data_dir.join("queue");
        std::fs::create_dir_all(&dir).map_err(|e| QueueError::Storage(e.into()))?;
        let store = QueueStore::open(&dir, config.queue.min_free_disk)?;
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
        let layouts = Layouts::open(store.tree("layout")?, Layout::of(&config), router, &names)?;
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for node in &config.nodes {
            let queue = store.node(
                &node.name,
                config.queue.max_bytes,
                config.queue.max_dead_letter_bytes,
            )?;
            let settings = node_settings(&config, crate::tls::node_client_config(node)?);
            nodes.push(NodeHandle::spawn(&node.name, &node.url, settings, queue)?);
        }
        Ok(Gateway {
            users,
            query_tls,
            limits: Arc::new(ArcSwap::from_pointee(config.limits.clone())),
            config,
            layouts,
            deny,
            nodes,
            rotation: AtomicUsize::new(0),
            order: Mutex::new(()),
            store,
            orphans,
            _lock: lock,
        })
    }

    /// The limits in force (they may change on SIGHUP; `config().limits` keeps the start-up ones).
    pub fn limits(&self) -> Arc<LimitsConfig> {
        self.limits.load_full()
    }

    /// The limits, shared with whoever applies them per request.
    pub fn live_limits(&self) -> Arc<ArcSwap<LimitsConfig>> {
        Arc::clone(&self.limits)
    }

    /// Applies the parts of a reloaded configuration that can change while running: health and
    /// retry settings to every node actor, and the limits.
    pub fn retune(&self, config: &Config) {
        for node in &self.nodes {
            node.retune(retune(config));
        }
        self.limits.store(Arc::new(config.limits.clone()));
    }

    /// The gateway's own users, when `auth.enabled`.
    pub fn users(&self) -> Option<&Users> {
        self.users.as_ref()
    }

    /// TLS for reads sent to any `https://` node.
    pub fn query_tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.query_tls.as_ref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `query.deny`, compiled.
    pub fn deny_rules(&self) -> &[DenyRule] {
        &self.deny
    }

    /// The nodes, in configuration order.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// Where writes go: the configured layout.
    pub fn router(&self) -> &Router {
        self.layouts.current()
    }

    /// Where a job reads: the layout the data follows (the earlier one while a move is pending).
    /// Jobs never run beside a rebalance, so it holds still under them; a query takes
    /// [`Layouts::reads`] instead.
    pub fn read_router(&self) -> &Router {
        self.layouts.read_router()
    }

    /// The configured layout and the one the data follows.
    pub fn layouts(&self) -> &Layouts {
        &self.layouts
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

    /// The tree of the queues' database that keeps repair jobs.
    pub fn jobs_tree(&self) -> Result<sled::Tree, QueueError> {
        self.store.tree("jobs")
    }

    /// The nodes to try for the next read, best first; successive reads rotate.
    pub fn next_read_order(&self) -> Vec<NodeId> {
        let candidates: Vec<Candidate> = (0..self.nodes.len()).map(|n| self.candidate(n)).collect();
        crate::query::read_order(&candidates, self.next_rotation())
    }

    /// The replicas of `shard` (of the read layout) to try for the next read, best first;
    /// successive reads rotate.
    pub fn shard_read_order(&self, shard: ShardId) -> Vec<NodeId> {
        self.replica_read_order(&self.read_router().shards()[shard].replicas)
    }

    /// Of `replicas`, the nodes to try for the next read, best first; successive reads rotate.
    pub fn replica_read_order(&self, replicas: &[NodeId]) -> Vec<NodeId> {
        let candidates: Vec<Candidate> = replicas.iter().map(|&n| self.candidate(n)).collect();
        crate::query::read_order(&candidates, self.next_rotation())
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

    /// What the read path knows of node `n`: a node flagged `needs_resync` or under repair lacks
    /// data its replicas hold.
    fn candidate(&self, n: NodeId) -> Candidate {
        let node = &self.nodes[n];
        Candidate {
            state: node.status().state(),
            // Drained for maintenance: not lacking data, but not to be read while another is up.
            lacks_data: node.queue().needs_resync()
                || node.status().is_repairing()
                || node.queue().in_maintenance(),
        }
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

/// What a node actor runs with, from the configuration.
fn node_settings(config: &Config, tls: Option<Arc<rustls::ClientConfig>>) -> NodeSettings {
    NodeSettings {
        health_interval: config.health.interval,
        health_timeout: config.health.timeout,
        write_timeout: config.write.timeout,
        query_timeout: config.query.timeout,
        max_in_flight: config.write.max_in_flight,
        capacity: config.write.mailbox_capacity,
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
        max_attempts_4xx: config.retry.max_attempts_4xx,
        max_age: config.queue.max_age,
        // Only `repair.auto` creates what a wiped node lacks without being asked.
        schema_patience: if config.repair.auto {
            SCHEMA_PATIENCE
        } else {
            Duration::ZERO
        },
        replay_batch_bytes: config.queue.replay_batch_size,
        batch_max_points: config.write.batch.max_points,
        batch_max_delay: config.write.batch.max_delay,
        tls,
    }
}

/// The settings a reload may change in a running node actor.
fn retune(config: &Config) -> Retune {
    Retune {
        health_interval: config.health.interval,
        health_timeout: config.health.timeout,
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
        max_attempts_4xx: config.retry.max_attempts_4xx,
    }
}

impl crate::query::Cluster for Gateway {
    fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    fn query_config(&self) -> &crate::config::QueryConfig {
        &self.config.query
    }

    fn next_read_order(&self) -> Vec<NodeId> {
        Gateway::next_read_order(self)
    }

    fn replica_read_order(&self, replicas: &[NodeId]) -> Vec<NodeId> {
        Gateway::replica_read_order(self, replicas)
    }

    fn strays_possible(&self) -> bool {
        self.layouts.strays_possible()
    }
}
