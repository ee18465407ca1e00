//! The `influx-gateway` binary: parse arguments, load the configuration, run.

use std::{io::BufRead, process::ExitCode};

use clap::Parser;
use influx_gateway::{
    auth,
    blueprint::Blueprint,
    cli::{Cli, Command, NodeAction},
    config::ConfigError,
    control,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::CheckConfig { path }) => return check_config(&path),
        Some(Command::Repair {
            node,
            db,
            since,
            until,
            source,
            detach,
            admin,
        }) => {
            let params = [
                ("db", db),
                ("since", since),
                ("until", until),
                ("source", source),
            ]
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect();
            let mut params: Vec<(&'static str, String)> = params;
            params.insert(0, ("node", node));
            let request = control::JobRequest { params, detach };
            return control::start(&admin, "repair", request);
        }
        Some(Command::Verify {
            shard,
            db,
            exact,
            repair,
            detach,
            admin,
        }) => {
            let mut params: Vec<(&'static str, String)> = [("shard", shard), ("db", db)]
                .into_iter()
                .filter_map(|(key, value)| value.map(|v| (key, v)))
                .collect();
            params.extend(exact.then(|| ("exact", "true".to_owned())));
            params.extend(repair.then(|| ("repair", "true".to_owned())));
            let request = control::JobRequest { params, detach };
            return control::start(&admin, "verify", request);
        }
        Some(Command::Rebalance { detach, admin }) => {
            let request = control::JobRequest {
                params: Vec::new(),
                detach,
            };
            return control::start(&admin, "rebalance", request);
        }
        Some(Command::Node { action }) => {
            return match action {
                NodeAction::Drain { name, force, admin } => {
                    control::node(&admin, "drain", &name, force)
                }
                NodeAction::Resume { name, admin } => control::node(&admin, "resume", &name, false),
                NodeAction::Flush { name, admin } => control::node(&admin, "flush", &name, false),
            };
        }
        Some(Command::Jobs {
            id,
            follow,
            cancel,
            admin,
        }) => return control::jobs(&admin, id, follow, cancel),
        None => {}
    }
    // Before the runtime starts any thread; the subcommands above need none of it.
    influx_gateway::memory::tune();
    // Everything is let through to `log`'s own level, which `log_level` sets and a reload changes;
    // RUST_LOG, when set, filters further (per module too).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("trace")).init();
    // Until the configuration says otherwise: the runtime logs at trace level as it starts.
    log::set_max_level(log::LevelFilter::Info);
    let blueprint = match Blueprint::load(&cli.config) {
        Ok(blueprint) => blueprint,
        Err(e @ ConfigError::Read { .. }) => return fail(&e),
        Err(e) => return fail(&format!("{}: {e}", cli.config.display())),
    };
    log::set_max_level(blueprint.config.log_filter());
    match actix_web::rt::System::new().block_on(influx_gateway::serve::run(blueprint, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `check-config PATH`: validates the file and prints what the gateway would run with.
fn check_config(path: &std::path::Path) -> ExitCode {
    match Blueprint::load(path) {
        Ok(blueprint) => {
            print!("{}", blueprint.describe());
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
