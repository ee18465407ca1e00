//! The YAML configuration: its shape, its defaults and the validation of each value on its own.
//! What needs the values resolved together (routes naming shards, password hashes, `query.deny`)
//! is checked by [`crate::blueprint::Blueprint`], which is how the gateway loads a file.
//!
//! Every key but `nodes` has a default. Whatever is wrong is reported as one message that names the
//! key, e.g. `nodes[1].url: "notaurl" is not an http(s) URL`.

use std::{
    collections::HashMap,
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{consistency::Consistency, units};

mod auth;

pub use auth::{AuthConfig, NodeCredentials, UserConfig};

/// What `query.deny` refuses by default: user and privilege management.
pub const DEFAULT_DENY: [&str; 5] = [
    "GRANT",
    "REVOKE",
    "CREATE USER",
    "DROP USER",
    "SET PASSWORD",
];

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The YAML does not have the expected shape (serde names the key).
    #[error("{0}")]
    Syntax(String),
    /// A value has the right shape but cannot be used.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `nodes[1].url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A value at `key` that cannot be used, and why.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Directory for per-node state (the durable queues).
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// The InfluxDB servers behind the gateway.
    pub nodes: Vec<NodeConfig>,
    /// Health checking of the nodes.
    #[serde(default)]
    pub health: HealthConfig,
    /// Backoff between retries to a node.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The write path.
    #[serde(default)]
    pub write: WriteConfig,
    /// The query path.
    #[serde(default)]
    pub query: QueryConfig,
    /// The per-node durable retry queues.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Sets of nodes that each hold a copy of part of the data; absent: one shard of every node.
    #[serde(default)]
    pub shards: Vec<ShardConfig>,
    /// Which measurements go to which shards; the first matching route wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The gateway's own users (off by default: credentials pass through to the nodes).
    #[serde(default)]
    pub auth: AuthConfig,
    /// What one client, and all of them together, may ask of the gateway.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// HTTPS on the listener (off by default).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Repair of replicas that lack data their peers hold.
    #[serde(default)]
    pub repair: RepairConfig,
    /// Comparison of replicas with each other (anti-entropy).
    #[serde(default)]
    pub verify: VerifyConfig,
    /// Moving data after shards or routes change.
    #[serde(default)]
    pub rebalance: RebalanceConfig,
    /// Where the admin API is served.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The most detailed log level written: error, warn, info, debug or trace.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
    /// The YAML as parsed, to tell what a reload changes.
    #[serde(skip)]
    pub source: serde_yaml::Value,
}

/// `shards[]`: nodes that each hold a full copy of the shard's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// A unique name, used in routes, `/health`, `/route` and errors.
    pub name: String,
    /// Names of the nodes holding a copy; a node may serve several shards.
    pub replicas: Vec<String>,
}

/// `routes[]`: one way of matching a measurement, and where its points go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matches this exact measurement name.
    pub measurement: Option<String>,
    /// Matches measurement names starting with this.
    pub measurement_prefix: Option<String>,
    /// Matches measurement names this regular expression finds a match in.
    pub measurement_regex: Option<String>,
    /// The shard every matching point goes to.
    pub shard: Option<String>,
    /// Spread matching points over `shards` by the hash of this tag's value.
    pub by_tag: Option<String>,
    /// The shards a `by_tag` route spreads over (default: every shard).
    pub shards: Option<Vec<String>>,
}

/// One InfluxDB server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A unique name, used in logs, `/health` and (later) shard definitions.
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8086`; normalised without a trailing slash.
    pub url: String,
    /// For an `https://` node: PEM certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `limits:` — refusals that keep one client, or a flood, from taking the gateway down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Statements one query may hold.
    pub max_statements: usize,
    /// Requests under way at once from one client address (beyond: 429 with `Retry-After`).
    pub max_concurrent_requests_per_client: usize,
    /// Requests under way at once in all (beyond: 503 with `Retry-After`).
    pub max_concurrent_requests: usize,
    /// Total size of a request's header names and values (beyond: 431).
    #[serde(deserialize_with = "units::size")]
    pub max_header_size: u64,
    /// How long a request body may take to arrive (beyond: 408).
    #[serde(deserialize_with = "units::duration")]
    pub body_timeout: Duration,
    /// Addresses of proxies (a load balancer) whose `X-Forwarded-For` names the client that
    /// `max_concurrent_requests_per_client` counts.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// `tls:` — the listener speaks HTTPS with this certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `health:` — how nodes are probed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often each node's `/ping` is probed.
    #[serde(deserialize_with = "units::duration")]
    pub interval: Duration,
    /// How long a probe may take before the node counts as down.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
}

/// `retry:` — backoff between attempts to reach a failing node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First wait after a failure.
    #[serde(deserialize_with = "units::duration")]
    pub initial_backoff: Duration,
    /// The wait doubles up to this.
    #[serde(deserialize_with = "units::duration")]
    pub max_backoff: Duration,
    /// How many 4xx answers a queued entry may get before it moves to the dead letters.
    pub max_attempts_4xx: u32,
}

/// `write:` — the write path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteConfig {
    /// Default consistency level; a request's `?consistency=` overrides it.
    pub consistency: Consistency,
    /// Writes and mutations a node actor holds before new ones are refused as busy.
    pub mailbox_capacity: usize,
    /// Requests a node actor has on the wire at once; only writes that commute (disjoint time
    /// spans) are on the wire together, so every node ends as if it applied them in order.
    pub max_in_flight: usize,
    /// How long one write to one node may take.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Largest write body accepted, after gzip decoding (InfluxDB's `max-body-size`).
    #[serde(deserialize_with = "units::size")]
    pub max_body_size: u64,
    /// Coalescing of consecutive writes into one request per node.
    pub batch: BatchConfig,
}

/// `write.batch:` — consecutive writes waiting for one node, to the same database, retention
/// policy and precision, go as one request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most points (lines) in one coalesced request.
    pub max_points: u64,
    /// How long a write may wait for others before it is sent; 0 sends at once and coalesces
    /// only what is already waiting.
    #[serde(deserialize_with = "units::duration")]
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_points: 50_000,
            max_delay: Duration::ZERO,
        }
    }
}

/// `query:` — the query path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// How long a node may take to start answering a query.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Largest answer one shard may give to a statement the gateway merges across shards.
    #[serde(deserialize_with = "units::size")]
    pub max_shard_answer_size: u64,
    /// Statements refused before any node sees them, by their leading keywords (compiled, and
    /// checked, by `query::deny`).
    pub deny: Vec<String>,
}

/// `queue:` — the per-node durable retry queues under `data_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Largest queue per node, on disk; beyond it copies for that node are refused.
    #[serde(deserialize_with = "units::size")]
    pub max_bytes: u64,
    /// Entries older than this are dead-lettered instead of replayed.
    #[serde(deserialize_with = "units::duration")]
    pub max_age: Duration,
    /// Largest request body built when replaying a backlog.
    #[serde(deserialize_with = "units::size")]
    pub replay_batch_size: u64,
    /// Free space kept on `data_dir`'s filesystem: a copy whose append would leave less is refused
    /// as when `max_bytes` is reached, so that the queue's own storage never runs out of room to
    /// remove what it replays (0 turns the check off).
    #[serde(deserialize_with = "units::size")]
    pub min_free_disk: u64,
    /// Most bytes each node's dead letters may hold; beyond it the oldest are dropped (counted,
    /// logged; the node is flagged `needs_resync` already, and a repair copies what they held).
    #[serde(deserialize_with = "units::size")]
    pub max_dead_letter_bytes: u64,
}

/// `repair:` — copying what a replica lacks from its shard's other replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Start a repair by itself for a node flagged `needs_resync` or found without the databases
    /// its peers hold.
    pub auto: bool,
    /// How much data time one chunk covers: the unit of copying, verifying and resuming.
    #[serde(deserialize_with = "units::duration")]
    pub chunk: Duration,
    /// Most points a repair copies per second, so that live traffic keeps its share (0: no limit).
    pub max_points_per_second: u64,
}

/// `admin:` — where the admin API (`/cluster/...`, `/debug/vars`, `/metrics`, the status page)
/// is served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A listener of its own, e.g. `127.0.0.1:8081`: the admin API is served only there, and the
    /// main listener answers 404 for it. Absent: the main listener serves everything.
    pub listen: Option<String>,
}

/// `rebalance:` — moving data to where changed shards or routes now place it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebalanceConfig {
    /// Start a rebalance by itself when the gateway starts with shards or routes that place data
    /// elsewhere than where it was written (off by default: moving data is an operator's call).
    pub auto: bool,
}

/// `verify:` — comparing replicas with each other.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// How often a verify runs by itself, repairing what differs (anti-entropy); `off` (the
    /// default): only when asked.
    #[serde(deserialize_with = "units::optional_duration")]
    pub interval: Option<Duration>,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            auto: true,
            // An hour of a busy measurement (tens of thousands of points a second at most for one
            // InfluxDB node) is a few hundred MB read in 10,000-point pieces: small enough to copy
            // again when it differs, large enough that a year is 8,760 chunks.
            chunk: Duration::from_secs(3600),
            // Measured (bench/repair_rate.py, two cores shared with three influxd): live writes
            // keep 0.88 of their rate while a repair copies at this rate (0.65 at 50,000), and a
            // wiped replica of 1M points is repaired in under a minute.
            max_points_per_second: 20_000,
        }
    }
}

mod defaults {
    use std::path::PathBuf;

    pub fn listen() -> String {
        "0.0.0.0:8080".to_owned()
    }

    pub fn data_dir() -> PathBuf {
        PathBuf::from("./data")
    }

    pub fn log_level() -> String {
        "info".to_owned()
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_attempts_4xx: 3,
        }
    }
}

impl Default for WriteConfig {
    fn default() -> Self {
        WriteConfig {
            consistency: Consistency::One,
            mailbox_capacity: 1024,
            max_in_flight: 8,
            timeout: Duration::from_secs(10),
            max_body_size: 25_000_000,
            batch: BatchConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_statements: 100,
            max_concurrent_requests_per_client: 64,
            max_concurrent_requests: 1024,
            max_header_size: 16 * 1024,
            body_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            // InfluxDB Enterprise's hinted-handoff default.
            max_bytes: 10 * 1024 * 1024 * 1024,
            max_age: Duration::from_secs(168 * 3600),
            replay_batch_size: 4 * 1024 * 1024,
            // Room for sled's log segments, snapshot and the records of removals while replaying.
            min_free_disk: 64 * 1024 * 1024,
            max_dead_letter_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::from_secs(60),
            max_shard_answer_size: 64 * 1024 * 1024,
            deny: DEFAULT_DENY.map(str::to_owned).to_vec(),
        }
    }
}

impl Config {
    /// Reads and parses the file at `path`, validating each value on its own (see
    /// [`crate::blueprint::Blueprint::load`] for the whole check).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text)
    }

    /// Parses YAML text and validates each value on its own (what needs the values resolved
    /// together, such as routes naming shards, is checked by `Blueprint`).
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        // From the text, not from a parsed Value: only then do serde_yaml's errors name the key's
        // path (`health: unknown field ...`).
        let syntax = |e: serde_yaml::Error| ConfigError::Syntax(readable(&e.to_string()));
        let mut config: Config = serde_yaml::from_str(text).map_err(syntax)?;
        config.source = serde_yaml::from_str(text).map_err(syntax)?;
        config.validate()?;
        Ok(config)
    }

    /// `log_level` as a filter.
    pub fn log_filter(&self) -> log::LevelFilter {
        // Checked by validation; `info` is the default it would have had.
        self.log_level.parse().unwrap_or(log::LevelFilter::Info)
    }

    /// The address to bind, resolved.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen("listen", &self.listen)
    }

    /// The admin listener's address, when `admin.listen` is set.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.admin
            .listen
            .as_deref()
            .map(|listen| resolve_listen("admin.listen", listen))
            .transpose()
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let main = resolve_listen("listen", &self.listen)?;
        if let Some(admin) = self.admin_addr()? {
            if admin.port() == 0 {
                return Err(ConfigError::invalid(
                    "admin.listen",
                    format!("{admin} has no port: the admin listener needs a port of its own"),
                ));
            }
            if admin.port() == main.port() {
                return Err(ConfigError::invalid(
                    "admin.listen",
                    format!(
                        "{admin} uses the port of `listen` ({main}): give the admin API a port of its own"
                    ),
                ));
            }
        }
        if self.nodes.is_empty() {
            return Err(ConfigError::invalid(
                "nodes",
                "at least one node is required",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.url = normalise_url(&node.url)
                .map_err(|message| ConfigError::invalid(format!("nodes[{i}].url"), message))?;
            let name = node.name.trim();
            if name.is_empty() {
                return Err(ConfigError::invalid(
                    format!("nodes[{i}].name"),
                    "must not be empty",
                ));
            }
            if name != node.name || name.contains(char::is_control) {
                return Err(ConfigError::invalid(
                    format!("nodes[{i}].name"),
                    format!(
                        "{:?} must not contain spaces at its ends or control characters",
                        node.name
                    ),
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(first) = seen.insert(&node.name, i) {
                return Err(ConfigError::invalid(
                    format!("nodes[{i}].name"),
                    format!("duplicate node name {:?} (also nodes[{first}])", node.name),
                ));
            }
        }
        positive("health.interval", self.health.interval)?;
        positive("health.timeout", self.health.timeout)?;
        positive("retry.initial_backoff", self.retry.initial_backoff)?;
        if self.retry.max_backoff < self.retry.initial_backoff {
            return Err(ConfigError::invalid(
                "retry.max_backoff",
                format!(
                    "{} is shorter than retry.initial_backoff ({})",
                    units::format_duration(self.retry.max_backoff),
                    units::format_duration(self.retry.initial_backoff)
                ),
            ));
        }
        positive("write.timeout", self.write.timeout)?;
        positive("query.timeout", self.query.timeout)?;
        nonzero("write.mailbox_capacity", self.write.mailbox_capacity as u64)?;
        nonzero("write.max_in_flight", self.write.max_in_flight as u64)?;
        nonzero("retry.max_attempts_4xx", self.retry.max_attempts_4xx as u64)?;
        nonzero("queue.max_bytes", self.queue.max_bytes)?;
        positive("queue.max_age", self.queue.max_age)?;
        nonzero("queue.replay_batch_size", self.queue.replay_batch_size)?;
        nonzero("write.max_body_size", self.write.max_body_size)?;
        nonzero("write.batch.max_points", self.write.batch.max_points)?;
        nonzero(
            "query.max_shard_answer_size",
            self.query.max_shard_answer_size,
        )?;
        nonzero("limits.max_statements", self.limits.max_statements as u64)?;
        nonzero(
            "limits.max_concurrent_requests_per_client",
            self.limits.max_concurrent_requests_per_client as u64,
        )?;
        nonzero(
            "limits.max_concurrent_requests",
            self.limits.max_concurrent_requests as u64,
        )?;
        nonzero("limits.max_header_size", self.limits.max_header_size)?;
        positive("limits.body_timeout", self.limits.body_timeout)?;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.ca_file.is_some() && !node.url.starts_with("https://") {
                return Err(ConfigError::invalid(
                    format!("nodes[{i}].ca_file"),
                    "only an https:// node uses a CA file",
                ));
            }
        }
        positive("repair.chunk", self.repair.chunk)?;
        if let Some(interval) = self.verify.interval {
            positive("verify.interval", interval)?;
        }
        self.auth.validate()?;
        if self.log_level.parse::<log::LevelFilter>().is_err() {
            return Err(ConfigError::invalid(
                "log_level",
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    self.log_level
                ),
            ));
        }
        Ok(())
    }
}

fn nonzero(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    Ok(())
}

/// serde_yaml's message in the configuration's own words: an unknown key named by its whole path
/// (`retry.max_backof`, not `retry: unknown field`), and Rust's type names (`u32`) replaced by
/// what to write.
fn readable(message: &str) -> String {
    let message = match message.find("unknown field `") {
        Some(at) => {
            let path = message[..at].trim_end_matches(": ");
            let after = &message[at + "unknown field `".len()..];
            let (field, rest) = after.split_once('`').unwrap_or((after, ""));
            let key = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            let rest = rest.trim_start_matches(',').trim_start().replace('`', "");
            format!("{key}: unknown key; {rest}")
        }
        None => match message.find("missing field `") {
            Some(at) => {
                let path = message[..at].trim_end_matches(": ");
                let after = &message[at + "missing field `".len()..];
                let (field, rest) = after.split_once('`').unwrap_or((after, ""));
                let key = if path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                format!("{key}: required, but missing{rest}")
            }
            None => message.to_owned(),
        },
    };
    let whole = "(?:u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize)";
    let rules = [
        (
            format!(r"invalid type: (?:string|integer|floating point) (.+?), expected {whole}\b"),
            "$1 is not a whole number",
        ),
        (format!(r"expected {whole}\b"), "expected a whole number"),
        (
            r"invalid type: (?:string|integer) (.+?), expected (?:f32|f64)\b".to_owned(),
            "$1 is not a number",
        ),
        (r"expected (?:f32|f64)\b".to_owned(), "expected a number"),
        (
            r"invalid value: integer `(-\d+)`, expected a whole number".to_owned(),
            "$1 is negative: expected a whole number",
        ),
    ];
    rules.iter().fold(
        message,
        |text, (pattern, replacement)| match regex::Regex::new(pattern) {
            Ok(re) => re.replace_all(&text, *replacement).into_owned(),
            Err(_) => text,
        },
    )
}

fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    Ok(())
}

fn resolve_listen(key: &str, listen: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: String| ConfigError::invalid(key, format!("{listen:?} {why}"));
    let mut addrs = listen
        .to_socket_addrs()
        .map_err(|e| bad(format!("is not a host:port address ({e})")))?;
    addrs
        .next()
        .ok_or_else(|| bad("resolves to no address".to_owned()))
}

fn normalise_url(text: &str) -> Result<String, String> {
    let not_http = || format!("{text:?} is not an http(s) URL");
    let url = url::Url::parse(text).map_err(|_| not_http())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(not_http());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "nodes:\n  - name: a\n    url: http://127.0.0.1:8086\n";

    #[test]
    fn defaults_fill_every_key_but_nodes() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.health.interval, Duration::from_secs(5));
        assert_eq!(config.health.timeout, Duration::from_secs(2));
        assert_eq!(config.retry.initial_backoff, Duration::from_millis(100));
        assert_eq!(config.retry.max_backoff, Duration::from_secs(30));
        assert_eq!(config.write.consistency, Consistency::One);
        assert_eq!(config.write.mailbox_capacity, 1024);
        assert_eq!(config.write.timeout, Duration::from_secs(10));
        assert_eq!(config.query.timeout, Duration::from_secs(60));
        assert_eq!(config.retry.max_attempts_4xx, 3);
        assert_eq!(config.queue.max_bytes, 10 << 30);
        assert_eq!(config.queue.max_age, Duration::from_secs(168 * 3600));
        assert_eq!(config.queue.replay_batch_size, 4 << 20);
        assert_eq!(config.queue.min_free_disk, 64 << 20);
    }

    #[test]
    fn trailing_slash_is_dropped() {
        let config =
            Config::from_yaml("nodes:\n  - name: a\n    url: http://127.0.0.1:8086/\n").unwrap();
        assert_eq!(config.nodes[0].url, "http://127.0.0.1:8086");
    }
}

#[cfg(test)]
mod readable_tests {
    use super::readable;

    #[test]
    fn serde_yaml_messages_are_put_in_the_configurations_words() {
        assert_eq!(
            readable("retry: unknown field `max_backof`, expected one of `initial_backoff`, `max_backoff` at line 5 column 3"),
            "retry.max_backof: unknown key; expected one of initial_backoff, max_backoff at line 5 column 3"
        );
        assert_eq!(
            readable("unknown field `nodes2`, expected `nodes` at line 4 column 1"),
            "nodes2: unknown key; expected nodes at line 4 column 1"
        );
        assert_eq!(
            readable("retry.max_attempts_4xx: invalid type: string \"lots\", expected u32 at line 5 column 21"),
            "retry.max_attempts_4xx: \"lots\" is not a whole number at line 5 column 21"
        );
        assert_eq!(
            readable("limits.max_statements: invalid type: floating point `2.5`, expected usize at line 5 column 19"),
            "limits.max_statements: `2.5` is not a whole number at line 5 column 19"
        );
        assert_eq!(
            readable("retry.max_attempts_4xx: invalid value: integer `-3`, expected u32 at line 5 column 21"),
            "retry.max_attempts_4xx: -3 is negative: expected a whole number at line 5 column 21"
        );
        assert_eq!(
            readable("nodes[0]: missing field `url` at line 2 column 5"),
            "nodes[0].url: required, but missing at line 2 column 5"
        );
    }
}
