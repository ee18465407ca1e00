//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Makes several independent InfluxDB 1.x servers behave like one clustered database.
#[derive(Debug, Parser)]
#[command(name = "influx-gateway", version, about)]
pub struct Cli {
    /// Configuration file (YAML).
    #[arg(short, long, value_name = "PATH", default_value = "config.yaml")]
    pub config: PathBuf,
    /// What to do; without one, run the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools beside running the gateway.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reads a password from standard input (one line) and prints an argon2id hash for
    /// `auth.users[].password_hash`.
    HashPassword,
    /// Validates a configuration file and prints the resolved nodes, shards and routing table;
    /// exits non-zero on any error.
    CheckConfig {
        /// The YAML file to check.
        path: PathBuf,
    },
    /// Asks a running gateway to repair a node (copy from its shards' other replicas what it
    /// lacks) and follows the job with a progress bar; exits non-zero if the job fails.
    Repair {
        /// The node to repair, as named in `nodes`.
        #[arg(long)]
        node: String,
        /// Only this database.
        #[arg(long)]
        db: Option<String>,
        /// Only points at or after this instant (RFC 3339, or nanoseconds since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Only points before this instant.
        #[arg(long)]
        until: Option<String>,
        /// Read from this replica only.
        #[arg(long)]
        source: Option<String>,
        /// Start the job and return without following it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Asks a running gateway to compare every shard's replicas chunk by chunk, and follows the
    /// job; exits 0 when they are consistent, 3 when they differ, 1 if the job fails.
    Verify {
        /// Only this shard.
        #[arg(long)]
        shard: Option<String>,
        /// Only this database.
        #[arg(long)]
        db: Option<String>,
        /// Compare every point rather than influxd's aggregates of them.
        #[arg(long)]
        exact: bool,
        /// Settle what differs: copy what a replica lacks, and the majority's value where values
        /// differ.
        #[arg(long)]
        repair: bool,
        /// Start the job and return without following it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Asks a running gateway to move the data its changed shards or routes now place elsewhere
    /// (copied, verified on every replica, then deleted where it was), and follows the job;
    /// exits non-zero if the job fails.
    Rebalance {
        /// Start the job and return without following it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Planned maintenance of a node of a running gateway: `drain` takes it out of service (its
    /// writes and mutations are queued, reads avoid it), `resume` returns it (its backlog is
    /// replayed), `flush` replays its queue now, skipping the backoff under way.
    Node {
        /// What to do.
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Lists a running gateway's jobs, or shows one; `--follow` follows it to its end.
    Jobs {
        /// The job to show (all when absent).
        id: Option<String>,
        /// Follow the job with a progress bar until it ends; exits non-zero if it fails.
        #[arg(long, requires = "id")]
        follow: bool,
        /// Cancel the job.
        #[arg(long, requires = "id", conflicts_with = "follow")]
        cancel: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// What `node` does to a node.
#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Takes the node out of service for maintenance.
    Drain {
        /// The node, as named in `nodes`.
        name: String,
        /// Drain it even if a shard is left with no replica serving reads.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Returns a drained node to service; its backlog is replayed.
    Resume {
        /// The node, as named in `nodes`.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replays the node's queue now; exits non-zero if some is left after 20 s.
    Flush {
        /// The node, as named in `nodes`.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How to reach a running gateway's admin API.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The gateway's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "INFLUX_GATEWAY_URL"
    )]
    pub url: String,
    /// An admin user, when the gateway has `auth.enabled`.
    #[arg(long, env = "INFLUX_USERNAME")]
    pub username: Option<String>,
    /// Its password.
    #[arg(long, env = "INFLUX_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}
