//! `/cluster/nodes/NAME/{drain,resume,flush}`: planned maintenance of a node. A drained node gets
//! its writes and mutations queued, durably, as a down node does, nothing replayed and no read
//! while another replica serves its shards; resumed, it replays its backlog and returns to
//! service. Admin-only when the gateway has its own users.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{
    cluster::{admin, flag, node, storage},
    params, ApiError,
};
use crate::{
    gateway::Gateway,
    node::{NodeHandle, NodeState},
    repair::Repairs,
};

/// Held while a drain checks the other replicas and takes effect: two drains at once cannot both
/// find the other one serving reads.
static DRAINING: Mutex<()> = Mutex::new(());

/// How long `flush` waits for the backlog to be replayed before answering with where it stands.
const FLUSH_WAIT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
struct DrainParams {
    force: Option<String>,
}

/// Handles `POST /cluster/nodes/NAME/drain[?force=true]`.
pub async fn drain(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (name, handle) = named(&gateway, &req, name).await?;
    let force = flag("force", params::<DrainParams>(&req)?.force.as_deref())?;
    if let Some(job) = repairs.running() {
        return Err(conflict(format!(
            "job {} ({}) is running and reads and writes the nodes: drain once it ends, or cancel it",
            job.id,
            job.kind.as_str()
        )));
    }
    let _draining = DRAINING.lock().unwrap_or_else(|p| p.into_inner());
    if handle.queue().in_maintenance() {
        return Err(conflict(format!("node {name:?} is already drained")));
    }
    if !force {
        if let Some(why) = unread_shard(&gateway, handle) {
            return Err(conflict(format!(
                "draining {name:?} would leave {why}; force=true drains it anyway"
            )));
        }
    }
    handle.maintain(true).map_err(storage)?;
    log::warn!(
        "node {name} drained for maintenance{}: its writes and mutations are queued, reads avoid it",
        if force { " (forced)" } else { "" }
    );
    Ok(HttpResponse::Ok().json(standing(handle)))
}

/// Handles `POST /cluster/nodes/NAME/resume`.
pub async fn resume(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (name, handle) = named(&gateway, &req, name).await?;
    if !handle.queue().in_maintenance() {
        return Err(conflict(format!("node {name:?} is not drained")));
    }
    handle.maintain(false).map_err(storage)?;
    let queue = handle.queue().stats();
    log::warn!(
        "node {name} resumed: replaying its backlog of {} entries",
        queue.entries
    );
    Ok(HttpResponse::Ok().json(standing(handle)))
}

/// Handles `POST /cluster/nodes/NAME/flush`: replays the node's queue now, skipping the backoff
/// under way, and answers once it is empty or after [`FLUSH_WAIT`] with what is left.
pub async fn flush(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (name, handle) = named(&gateway, &req, name).await?;
    if handle.queue().in_maintenance() {
        return Err(conflict(format!(
            "node {name:?} is drained: resume it to replay its queue"
        )));
    }
    if handle.queue().is_empty() {
        return Err(conflict(format!(
            "node {name:?} has nothing queued: nothing to flush"
        )));
    }
    let before = handle.queue().stats().entries;
    handle.flush();
    let deadline = Instant::now() + FLUSH_WAIT;
    while !handle.queue().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = standing(handle);
    answer["done"] = handle.queue().is_empty().into();
    answer["entries_before"] = before.into();
    Ok(HttpResponse::Ok().json(answer))
}

/// The node a request names, once the caller is known to be an admin.
async fn named<'g>(
    gateway: &'g web::Data<Gateway>,
    req: &HttpRequest,
    name: web::Path<String>,
) -> Result<(String, &'g NodeHandle), ApiError> {
    admin(gateway, req).await?;
    let name = name.into_inner();
    let handle = node(gateway, &name)?;
    Ok((name, handle))
}

/// The node's mode and queue, as the answers give them.
fn standing(handle: &NodeHandle) -> serde_json::Value {
    let health = handle.health();
    serde_json::json!({
        "node": handle.status().name(),
        "state": health.status.state.as_str(),
        "mode": health.mode,
        "entries": health.queue.entries,
        "bytes": health.queue.bytes,
    })
}

/// A shard of `handle` that no other replica could serve reads of if it were drained, described.
fn unread_shard(gateway: &Gateway, handle: &NodeHandle) -> Option<String> {
    let me = gateway
        .nodes()
        .iter()
        .position(|n| std::ptr::eq(n, handle))?;
    let router = gateway.read_router();
    router
        .shards()
        .iter()
        .filter(|s| s.replicas.contains(&me))
        .find(|s| {
            !s.replicas.iter().any(|&n| {
                let other = &gateway.nodes()[n];
                n != me
                    && other.status().state() != NodeState::Down
                    && !other.queue().in_maintenance()
            })
        })
        .map(|s| format!("shard {} with no replica serving reads", s.name))
}

fn conflict(why: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, why)
}

/// The maintenance endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/cluster/nodes/{name}/drain")
            .route(web::post().to(drain))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/nodes/{name}/resume")
            .route(web::post().to(resume))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/nodes/{name}/flush")
            .route(web::post().to(flush))
            .default_service(super::only("POST")),
    );
}
