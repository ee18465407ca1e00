//! `GET /`: a status page for people. One HTML document compiled into the binary, no build step
//! and no external assets; it refreshes itself from `/health` and `/debug/vars`.

use actix_web::{http::header, HttpResponse};

const PAGE: &str = include_str!("status_page.html");

/// Handles `GET|HEAD /`.
pub async fn status_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE)
}
