//! The `influx-gateway` binary: parse arguments, load the configuration, run.

use std::process::ExitCode;

use clap::Parser;
use influx_gateway::{
    cli::Cli,
    config::{Config, ConfigError},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e @ ConfigError::Read { .. }) => return fail(&e),
        Err(e) => return fail(&format!("{}: {e}", cli.config.display())),
    };
    match actix_web::rt::System::new().block_on(influx_gateway::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("influx-gateway: {error}");
    ExitCode::FAILURE
}
