//! `/cluster/...`: repair, verify and rebalance jobs, started, followed and cancelled over HTTP, and each node's dead
//! letters, listed, replayed or purged. Admin-only when the gateway has its own users.

use std::time::{Duration, Instant};

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{params, required, ApiError};
use crate::{
    gateway::Gateway,
    node::{client::GatewayError, Delivery, NodeError, NodeHandle},
    repair::{Refused, Repairs, Scope},
};

/// Dead letters read from disk at a time while replaying.
const REPLAY_PAGE: usize = 100;

/// Dead letters listed when `limit` is not given.
const LETTERS_SHOWN: usize = 100;

/// How long `DELETE /cluster/jobs/ID` waits for the job to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct RepairParams {
    node: Option<String>,
    db: Option<String>,
    since: Option<String>,
    until: Option<String>,
    source: Option<String>,
}

/// Refuses anyone but an admin when the gateway has its own users.
pub async fn admin(gateway: &web::Data<Gateway>, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(user) = super::auth::authenticate(gateway, req).await? {
        if !user.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("user {:?} is not an admin", user.name()),
            ));
        }
    }
    Ok(())
}

/// Handles `POST /cluster/repair?node=NAME[&db=&since=&until=&source=]`: 202 with the job.
pub async fn repair(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let p: RepairParams = params(&req)?;
    let node = required(&p.node, "node")?;
    let scope = Scope {
        db: p.db.filter(|db| !db.is_empty()),
        since: p
            .since
            .as_deref()
            .map(|t| instant("since", t))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|t| instant("until", t))
            .transpose()?,
        source: p.source.filter(|s| !s.is_empty()),
        ..Scope::default()
    };
    if let (Some(since), Some(until)) = (scope.since, scope.until) {
        if since >= until {
            return Err(ApiError::bad_request("since must be before until"));
        }
    }
    let job = repairs
        .clone()
        .into_inner()
        .repair(node, "requested", scope)
        .map_err(refused)?;
    Ok(HttpResponse::Accepted().json(job))
}

#[derive(Deserialize)]
struct VerifyParams {
    shard: Option<String>,
    db: Option<String>,
    exact: Option<String>,
    repair: Option<String>,
}

/// Handles `POST /cluster/verify[?shard=&db=&exact=true&repair=true]`: 202 with the job.
pub async fn verify(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let p: VerifyParams = params(&req)?;
    let scope = Scope {
        shard: p.shard.filter(|s| !s.is_empty()),
        db: p.db.filter(|db| !db.is_empty()),
        exact: flag("exact", p.exact.as_deref())?,
        repair: flag("repair", p.repair.as_deref())?,
        ..Scope::default()
    };
    let job = repairs
        .clone()
        .into_inner()
        .verify("requested", scope)
        .map_err(refused)?;
    Ok(HttpResponse::Accepted().json(job))
}

/// Handles `POST /cluster/rebalance`: 202 with the job.
pub async fn rebalance(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let job = repairs
        .clone()
        .into_inner()
        .rebalance("requested")
        .map_err(refused)?;
    Ok(HttpResponse::Accepted().json(job))
}

/// A `true`/`false` parameter (absent: false).
pub(super) fn flag(what: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{what}: {other:?} is neither true nor false"
        ))),
    }
}

/// Handles `GET /cluster/jobs`: every job, oldest first.
pub async fn jobs(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let jobs: Vec<_> = repairs.list().iter().map(|j| j.job()).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "jobs": jobs })))
}

/// Handles `GET /cluster/jobs/ID`.
pub async fn job(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let running = repairs.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(HttpResponse::Ok().json(running.job()))
}

/// Handles `DELETE /cluster/jobs/ID`: cancels a running job after the piece it is copying (what
/// it has copied stays; the chunk under way is not counted) and answers with its state.
pub async fn cancel(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    repairs: web::Data<Repairs>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let job = repairs.cancel(&id).ok_or_else(|| unknown(&id))?;
    if !job.is_running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {} has already ended ({:?})", job.id, job.state),
        ));
    }
    let deadline = Instant::now() + CANCEL_WAIT;
    while Instant::now() < deadline {
        if let Some(running) = repairs.get(&id) {
            let job = running.job();
            if !job.is_running() {
                return Ok(HttpResponse::Ok().json(job));
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Still finishing a piece: it stops after it.
    Ok(HttpResponse::Accepted().json(repairs.get(&id).map(|r| r.job())))
}

#[derive(Deserialize)]
struct LetterParams {
    limit: Option<usize>,
}

/// The node named in the path.
pub(super) fn node<'g>(gateway: &'g Gateway, name: &str) -> Result<&'g NodeHandle, ApiError> {
    gateway
        .nodes()
        .iter()
        .find(|n| n.status().name() == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("node {name:?} not found")))
}

pub(super) fn storage(e: crate::node::QueueError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("queue: {e}"))
}

/// Handles `GET /cluster/nodes/NAME/dead-letters[?limit=N]`: the oldest letters, described.
pub async fn dead_letters(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let node = node(&gateway, &name)?;
    let limit = params::<LetterParams>(&req)?.limit.unwrap_or(LETTERS_SHOWN);
    let (letters, total) = node.queue().describe_dead_letters(limit).map_err(storage)?;
    let stats = node.queue().stats();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": node.status().name(),
        "total": total,
        "bytes": stats.dead_letter_bytes,
        "dropped": stats.dead_letters_dropped,
        "needs_resync": stats.needs_resync,
        "dead_letters": letters,
    })))
}

/// Handles `POST /cluster/nodes/NAME/dead-letters/replay`: flags the node `needs_resync`, then
/// hands every letter back to the node's actor, oldest first, so that it is sent or queued in
/// order with live traffic; a letter is removed once the actor has it, and one the node refuses
/// again stays.
pub async fn replay_dead_letters(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let node = node(&gateway, &name)?;
    // Letters go after what the node got since: an older value may land over a newer one, or a
    // statement apply after writes it preceded. Flagged first, so that reads avoid the node and a
    // repair (automatic with `repair.auto`) checks it against its peers afterwards.
    node.queue().flag_resync().map_err(storage)?;
    let (mut replayed, mut refused, mut unreadable) = (0u64, Vec::new(), 0);
    let mut after = None;
    loop {
        let (letters, last, bad) = node
            .queue()
            .dead_letter_ops(after, REPLAY_PAGE)
            .map_err(storage)?;
        unreadable += bad;
        let Some(last) = last else { break };
        after = Some(last);
        for letter in letters {
            loop {
                match node.deliver(letter.op.clone()).await {
                    Delivery::Accepted(_) | Delivery::Queued(_) => {
                        node.queue()
                            .remove_dead_letter(letter.seq)
                            .map_err(storage)?;
                        replayed += 1;
                        break;
                    }
                    Delivery::Rejected(answer) => {
                        refused.push(
                            serde_json::json!({"seq": letter.seq, "error": answer.refusal()}),
                        );
                        break;
                    }
                    Delivery::Failed(NodeError::Gateway(GatewayError::Busy(_))) => {
                        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                    }
                    Delivery::Failed(e) => {
                        return Err(ApiError::unavailable(format!(
                            "{replayed} dead letters replayed, then: {e}"
                        )))
                    }
                }
            }
        }
    }
    log::warn!(
        "node {name}: {replayed} dead letters replayed by request, {} refused again",
        refused.len()
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": node.status().name(),
        "replayed": replayed,
        "refused": refused,
        "unreadable": unreadable,
        "remaining": node.queue().stats().dead_letters_held,
    })))
}

/// Handles `DELETE /cluster/nodes/NAME/dead-letters`: purges them (counted and logged); the node
/// stays flagged `needs_resync`.
pub async fn purge_dead_letters(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&gateway, &req).await?;
    let node = node(&gateway, &name)?;
    let purged = node.queue().purge_dead_letters().map_err(storage)?;
    log::warn!("node {name}: {purged} dead letters purged by request");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": node.status().name(),
        "purged": purged,
        "needs_resync": node.queue().needs_resync(),
    })))
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("job {id:?} not found"))
}

fn refused(refused: Refused) -> ApiError {
    match refused {
        Refused::BadRequest(why) => ApiError::bad_request(why),
        Refused::Conflict(why) => ApiError::new(StatusCode::CONFLICT, why),
        Refused::Storage(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// An instant given as RFC 3339 or as nanoseconds since the epoch.
fn instant(what: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| {
        ApiError::bad_request(format!(
            "{what}: {text:?} is neither RFC 3339 (2026-01-02T03:04:05Z) nor nanoseconds: {e}"
        ))
    })?;
    let ns = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos()).ok().map(|n| -n),
    };
    ns.ok_or_else(|| ApiError::bad_request(format!("{what}: {text:?} is out of range")))
}

/// The routes under `/cluster`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/cluster/repair")
            .route(web::post().to(repair))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/verify")
            .route(web::post().to(verify))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/rebalance")
            .route(web::post().to(rebalance))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/jobs")
            .route(web::get().to(jobs))
            .default_service(super::only("GET")),
    )
    .service(
        web::resource("/cluster/nodes/{name}/dead-letters")
            .route(web::get().to(dead_letters))
            .route(web::delete().to(purge_dead_letters))
            .default_service(super::only("GET, DELETE")),
    )
    .service(
        web::resource("/cluster/nodes/{name}/dead-letters/replay")
            .route(web::post().to(replay_dead_letters))
            .default_service(super::only("POST")),
    )
    .service(
        web::resource("/cluster/jobs/{id}")
            .route(web::get().to(job))
            .route(web::delete().to(cancel))
            .default_service(super::only("GET, DELETE")),
    );
}
