//! The gateway as a process: start the running parts, serve until a signal, stop in order.

use std::{sync::Arc, time::Duration};

use crate::{blueprint::Blueprint, gateway, http, node, reload, repair};

/// How long the actors get to move what they hold in memory to disk at a stop.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The running parts could not be started.
    #[error(transparent)]
    Start(#[from] gateway::StartError),
    /// The queues under `data_dir` could not be flushed.
    #[error("queue: {0}")]
    Queue(#[from] node::QueueError),
    /// The HTTP server failed (e.g. the port is taken).
    #[error("{0}")]
    Http(#[from] std::io::Error),
}

/// Reopens the queues, starts the node actors and serves the API until SIGINT or SIGTERM. Then, in
/// this order: the actors stop writing to nodes and move what they hold in memory to their queues
/// (so requests waiting on a node are answered from the queue), the server stops accepting and
/// lets requests under way finish, and the queues are flushed. Runs inside an actix system.
pub async fn run(blueprint: Blueprint, path: std::path::PathBuf) -> Result<(), RunError> {
    log::set_max_level(blueprint.config.log_filter());
    let names: Vec<&str> = blueprint
        .config
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    log::info!(
        "influx-gateway {} in front of {}",
        env!("CARGO_PKG_VERSION"),
        names.join(", ")
    );
    let reloader = reload::Reloader::new(path, &blueprint.config);
    let gateway = Arc::new(gateway::Gateway::start(blueprint)?);
    actix_web::rt::spawn(reload_on_sighup(reloader, Arc::clone(&gateway)));
    let repairs = repair::Repairs::open(Arc::clone(&gateway))?;
    repairs.start_background();
    let server = http::server(Arc::clone(&gateway), Arc::clone(&repairs))?;
    let handle = server.handle();
    let stopping = Arc::clone(&gateway);
    let jobs = Arc::clone(&repairs);
    actix_web::rt::spawn(async move {
        let signal = stop_signal().await;
        log::info!("{signal}: stopping; queueing what the node actors hold and finishing requests");
        jobs.stop();
        stopping.close_nodes(SHUTDOWN_LIMIT).await;
        handle.stop(true).await;
    });
    server.await?;
    gateway.close_queues()?;
    log::info!("stopped cleanly");
    Ok(())
}

/// Rereads the configuration at every SIGHUP, for as long as the gateway runs.
async fn reload_on_sighup(mut reloader: reload::Reloader, gateway: Arc<gateway::Gateway>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            log::error!("cannot listen for SIGHUP ({e}): configuration reload is off");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match reloader.reload(&gateway) {
            Ok(outcome) => {
                if !outcome.restart_required.is_empty() {
                    log::warn!(
                        "SIGHUP: {} changed: restart required, ignored until then",
                        outcome.restart_required.join(", ")
                    );
                }
                if outcome.placement_changed {
                    log::warn!(
                        "SIGHUP: the file's shards or routes place data elsewhere: once a restart applies them, a rebalance is needed (POST /cluster/rebalance, or rebalance.auto: true)"
                    );
                }
                if outcome.applied.is_empty() {
                    log::info!("SIGHUP: configuration reread, nothing to apply");
                } else {
                    log::info!("SIGHUP: applied {}", outcome.applied.join(", "));
                }
            }
            Err(e) => log::error!(
                "SIGHUP: configuration not reloaded, still running the previous one: {e}"
            ),
        }
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            log::error!("cannot listen for SIGTERM/SIGINT; stop the gateway with SIGKILL (nothing acknowledged is lost)");
            std::future::pending().await
        }
    }
}
