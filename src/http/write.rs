//! `POST /write`: InfluxDB 1.x's write endpoint, replicated.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{body, params, required, respond, ApiError};
use crate::{
    consistency::Consistency,
    gateway::Gateway,
    node::WriteTarget,
    write::{replicate, WriteOutcome},
};

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
    let db = required(&params.db, "database")?;
    let consistency = match params.consistency.as_deref() {
        Some(level) => level
            .parse::<Consistency>()
            .map_err(ApiError::bad_request)?,
        None => gateway.config().write.consistency,
    };
    let body = body::read(&req, payload, gateway.config().write.max_body_size).await?;
    let query = serde_urlencoded::to_string(NodeParams {
        db,
        rp: params.rp.as_deref(),
        precision: params.precision.as_deref(),
        u: params.u.as_deref(),
        p: params.p.as_deref(),
    })
    .map_err(|e| ApiError::bad_request(format!("query parameters: {e}")))?;
    let target = WriteTarget {
        query,
        authorization: req.headers().get(header::AUTHORIZATION).cloned(),
    };
    let config = gateway.config();
    match replicate(
        gateway.nodes(),
        gateway.router(),
        gateway.order(),
        db,
        target,
        &body,
        consistency,
        // One write timeout for the request, one for a failed replica's append and flush.
        config.write.timeout * 2,
    )
    .await
    {
        WriteOutcome::Acknowledged { .. } => Ok(HttpResponse::NoContent().finish()),
        WriteOutcome::Rejected(answer) => Ok(respond(&answer)),
        WriteOutcome::NotMet(why) => Err(ApiError::unavailable(why)),
        WriteOutcome::Unroutable(why) => Err(ApiError::bad_request(why)),
    }
}
