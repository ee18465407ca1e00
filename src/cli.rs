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
}
