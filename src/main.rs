//! The `influx-gateway` binary: parse arguments, load the configuration, run.

use std::{io::BufRead, process::ExitCode};

use clap::Parser;
use influx_gateway::{
    auth,
    cli::{Cli, Command},
    config::{Config, ConfigError},
};

/// glibc's malloc arenas the gateway may use; see [`limit_malloc_arenas`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::CheckConfig { path }) => return check_config(&path),
        None => {}
    }
    // Everything is let through to `log`'s own level, which `log_level` sets and a reload changes;
    // RUST_LOG, when set, filters further (per module too).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("trace")).init();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e @ ConfigError::Read { .. }) => return fail(&e),
        Err(e) => return fail(&format!("{}: {e}", cli.config.display())),
    };
    match actix_web::rt::System::new().block_on(influx_gateway::run(config, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `check-config PATH`: validates the file and prints what the gateway would run with.
fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.describe());
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e @ ConfigError::Read { .. }) => fail(&e),
        Err(e) => fail(&format!("{}: {e}", path.display())),
    }
}

/// `hash-password`: the password comes from stdin, never from the command line (shell history,
/// `ps`).
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        return fail(&format!("reading the password from stdin: {e}"));
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return fail(
            &"no password on stdin (e.g. `echo -n 's3cret' | influx-gateway hash-password`)",
        );
    }
    match auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("influx-gateway: {error}");
    ExitCode::FAILURE
}

/// Request bodies of hundreds of kilobytes are allocated on the HTTP workers and freed on the node
/// actors' threads; glibc gives every thread an arena of its own, and each arena kept its peak.
/// Two arenas took the peak RSS with a node down from 138 to 127 MiB at no measurable CPU cost
/// (a fixed mmap threshold would return more, but doubled the CPU per request in page faults).
/// `MALLOC_ARENA_MAX` in the environment still decides when set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: called first thing in `main`, before any other thread exists or allocates; mallopt
    // only sets a glibc tunable.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
