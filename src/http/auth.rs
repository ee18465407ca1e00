//! The HTTP side of `auth`: checking a request's credentials before any node is asked, and what
//! the nodes get instead of the client's credentials when the gateway has its own users.

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest,
};

use super::ApiError;
use crate::{
    auth::{self, AuthError, User},
    gateway::Gateway,
};

/// The user a request authenticates as: `None` when the gateway has no users of its own (the
/// nodes decide). Bad or missing credentials are a 401 in InfluxDB's words.
pub async fn authenticate<'g>(
    gateway: &'g web::Data<Gateway>,
    req: &HttpRequest,
) -> Result<Option<&'g User>, ApiError> {
    let Some(users) = gateway.users() else {
        return Ok(None);
    };
    let credentials =
        auth::credentials(req.query_string(), req.headers().get(header::AUTHORIZATION))
            .map_err(refusal)?;
    if let Some(user) = users.verified(&credentials) {
        return Ok(Some(user));
    }
    // bcrypt and argon2 take tens of milliseconds on purpose (seconds at a high cost): never on
    // the event loop, where they would stall every connection of this worker.
    let (gateway_for_check, name) = (gateway.clone(), credentials.user.clone());
    web::block(move || {
        gateway_for_check
            .users()
            .map(|u| u.authenticate(&credentials).map(|_| ()))
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("checking credentials: {e}")))?
    .transpose()
    .map_err(refusal)?;
    // Verified just now: only the user is looked up, so that a cache cleared meanwhile by another
    // request cannot bring the hashing back onto the event loop.
    users
        .user(&name)
        .map(Some)
        .ok_or_else(|| refusal(AuthError::Failed))
}

/// The answer to a refused request: 401 for who, 403 for what.
pub fn refusal(error: AuthError) -> ApiError {
    match error {
        AuthError::Missing | AuthError::Failed => ApiError::unauthorized(error.to_string()),
        AuthError::Forbidden(why) => ApiError::new(actix_web::http::StatusCode::FORBIDDEN, why),
    }
}

/// The `Authorization` the nodes get: the client's own, or `auth.node_credentials` (or nothing)
/// when the gateway has its own users.
pub fn node_authorization(gateway: &Gateway, client: Option<&HeaderValue>) -> Option<HeaderValue> {
    if !gateway.config().auth.enabled {
        return client.cloned();
    }
    gateway
        .config()
        .auth
        .node_credentials
        .as_ref()
        .and_then(auth::basic)
}

/// The query string the nodes get: the client's, without `u` and `p` when the gateway has its own
/// users (those are the gateway's, not the nodes').
pub fn node_query_string(gateway: &Gateway, query_string: &str) -> String {
    if !gateway.config().auth.enabled {
        return query_string.to_owned();
    }
    auth::without_credentials(query_string)
}
