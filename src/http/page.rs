//! `GET /`: a status page for people. One HTML document compiled into the binary, no build step
//! and no external assets; it refreshes itself from `/health` and `/debug/vars`.

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};

use super::{cluster::admin, ApiError};
use crate::gateway::Gateway;

const PAGE: &str = include_str!("status_page.html");

/// Handles `GET|HEAD /`: for admins when the gateway has its own users; a browser without
/// credentials is asked for them (HTTP Basic), and then sends them to `/debug/vars` too.
pub async fn status_page(
    req: HttpRequest,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, ApiError> {
    if let Err(refused) = admin(&gateway, &req).await {
        let mut response = actix_web::ResponseError::error_response(&refused);
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"influx-gateway\""),
            );
        }
        return Ok(response);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE))
}
