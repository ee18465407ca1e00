//! Command-line arguments.

use std::path::PathBuf;

use clap::Parser;

/// Makes several independent InfluxDB 1.x servers behave like one clustered database.
#[derive(Debug, Parser)]
#[command(name = "influx-gateway", version, about)]
pub struct Cli {
    /// Configuration file (YAML).
    #[arg(short, long, value_name = "PATH", default_value = "config.yaml")]
    pub config: PathBuf,
}
