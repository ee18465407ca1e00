//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (2.x clients), replicated.

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use serde::{Deserialize, Serialize};

use super::{auth, body, params, required, respond, ApiError};
use crate::{
    consistency::Consistency,
    gateway::Gateway,
    node::WriteTarget,
    write::{replicate, WriteOutcome},
};

/// Names, on a 204, the replicas that did not get the points (they refused them, or their copy
/// could not be queued); they are flagged `needs_resync`.
pub const MISSING_REPLICAS: &str = "x-influx-gateway-missing-replicas";

/// The query parameters of `/write`.
#[derive(Debug, Default, Deserialize)]
struct WriteParams {
    db: Option<String>,
    rp: Option<String>,
    precision: Option<String>,
    consistency: Option<String>,
    u: Option<String>,
    p: Option<String>,
}

/// What a node's `/write` gets: the client's parameters but `consistency`, which the gateway honours.
#[derive(Serialize)]
struct NodeParams<'a> {
    db: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<&'a str>,
}

/// Handles `POST /write`.
pub async fn write(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, ApiError> {
    let params: WriteParams = params(&req)?;
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    accept(req, payload, gateway, params, authorization.as_ref()).await
}

/// The query parameters of the 2.x `/api/v2/write`.
#[derive(Debug, Default, Deserialize)]
struct V2WriteParams {
    bucket: Option<String>,
    precision: Option<String>,
}

/// Handles `POST /api/v2/write` (InfluxDB 2.x clients, Telegraf's `influxdb_v2` output) as
/// InfluxDB 1.8 does, so that it works even when the nodes are older: the bucket is `db/rp`, the
/// token `user:password`, the organisation ignored.
pub async fn write_v2(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, ApiError> {
    let v2: V2WriteParams = params(&req)?;
    let bucket = required(&v2.bucket, "bucket")?;
    let (db, rp) = match bucket.split_once('/') {
        Some((db, rp)) => (db, Some(rp).filter(|rp| !rp.is_empty())),
        None => (bucket, None),
    };
    let precision = match v2.precision.as_deref() {
        None | Some("") => None,
        // 2.x spells microseconds `us`; 1.x reads only `u`.
        Some("ns") => Some("ns"),
        Some("us") => Some("u"),
        Some(p @ ("ms" | "s")) => Some(p),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid precision {other:?}: expected ns, us, ms or s"
            )))
        }
    };
    let params = WriteParams {
        db: Some(db.to_owned()),
        rp: rp.map(str::to_owned),
        precision: precision.map(str::to_owned),
        ..WriteParams::default()
    };
    let authorization = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => crate::auth::v2_token_to_basic(value).map_err(ApiError::unauthorized)?,
        None => None,
    };
    accept(req, payload, gateway, params, authorization.as_ref()).await
}

/// Replicates one write, whichever API it came through.
async fn accept(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    params: WriteParams,
    authorization: Option<&HeaderValue>,
) -> Result<HttpResponse, ApiError> {
    let user = auth::authenticate(&gateway, &req).await?;
    let db = required(&params.db, "database")?;
    if let Some(user) = user {
        user.authorize_write(db).map_err(auth::refusal)?;
    }
    // With gateway users, `u` and `p` were the gateway's; the nodes get `node_credentials`.
    let own_users = gateway.config().auth.enabled;
    let (u, p) = if own_users {
        (None, None)
    } else {
        (params.u.as_deref(), params.p.as_deref())
    };
    let consistency = match params.consistency.as_deref() {
        Some(level) => level
            .parse::<Consistency>()
            .map_err(ApiError::bad_request)?,
        None => gateway.config().write.consistency,
    };
    let body = body::read(&req, payload, &gateway).await?;
    let query = serde_urlencoded::to_string(NodeParams {
        db,
        rp: params.rp.as_deref(),
        precision: params.precision.as_deref(),
        u,
        p,
    })
    .map_err(|e| ApiError::bad_request(format!("query parameters: {e}")))?;
    let target = WriteTarget {
        query,
        authorization: auth::node_authorization(&gateway, authorization),
    };
    let config = gateway.config();
    // Held until the write is handed to the nodes: a move does not settle under it.
    let writes = gateway.layouts().writes();
    match replicate(
        gateway.nodes(),
        gateway.router(),
        writes.moving_from(),
        gateway.order(),
        db,
        target,
        &body,
        params.precision.as_deref(),
        consistency,
        // All a client waits once its body is read (the configuration reference says so): one
        // write timeout for the nodes' answers, one for a failed replica's append and flush.
        config.write.timeout * 2,
    )
    .await
    {
        outcome @ WriteOutcome::Acknowledged { .. } => {
            let mut response = HttpResponse::NoContent();
            let missing = outcome.missing_copies();
            if !missing.is_empty() {
                // A 204 has no body for InfluxDB's `messages`: a client that must have every
                // replica can see which did not get the points, and retry with consistency=all.
                let names: Vec<&str> = missing
                    .iter()
                    .map(|&node| gateway.nodes()[node].status().name())
                    .collect();
                response.insert_header((MISSING_REPLICAS, names.join(", ")));
            }
            Ok(response.finish())
        }
        WriteOutcome::Rejected(answer) => Ok(respond(&answer)),
        WriteOutcome::Failed(failure) => Err(failure.into()),
        WriteOutcome::Unroutable(why) => Err(ApiError::bad_request(why)),
    }
}
