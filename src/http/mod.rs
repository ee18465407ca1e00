//! The HTTP API, shaped like InfluxDB 1.x's.

mod auth;
mod body;
mod cluster;
mod error;
mod limits;
mod listeners;
mod maintenance;
mod metrics;
mod msgpack;
mod page;
mod query;
mod route;
mod status;
mod vars;
mod write;

use std::{io, sync::Arc};

use actix_web::{dev::Server, http::StatusCode, web, App, HttpRequest, HttpResponse, HttpServer};
use serde::de::DeserializeOwned;

pub use body::gunzip;
pub use error::ApiError;

use crate::{gateway::Gateway, node::NodeResponse, repair::Repairs};

/// Connections one worker thread keeps to the nodes for reads.
const READ_CONNECTIONS: usize = 100;

/// The HTTP client one worker thread uses for reads (awc clients are per thread).
pub struct QueryClient(awc::Client);

/// The HTTP server, bound and ready to run; signals are left to the caller, which must stop the
/// node actors' intake before the server drains.
pub fn server(gateway: Arc<Gateway>, repairs: Arc<Repairs>) -> io::Result<Server> {
    let addr = gateway
        .config()
        .listen_addr()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let gateway_admin_addr = gateway
        .config()
        .admin_addr()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
    // Requests under way at a stop get the time a write may take to be answered.
    let grace = gateway.config().write.timeout.as_secs() * 2 + 1;
    let tls = gateway
        .config()
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}")))?;
    let admission = web::Data::new(limits::Admission::new(gateway.live_limits()));
    let started = web::Data::new(vars::Started::now());
    let recorder = web::Data::new(crate::metrics::Metrics::new(Arc::clone(&repairs)));
    let admin = gateway_admin_addr?;
    let admin_port = web::Data::new(listeners::AdminPort(admin.map(|a| a.port())));
    let data = web::Data::from(gateway);
    let jobs = web::Data::from(repairs);
    let server = HttpServer::new(move || {
        let reads = crate::node::client::http_client(data.query_tls(), READ_CONNECTIONS);
        App::new()
            .wrap_fn(limits::admit)
            .wrap_fn(listeners::split)
            .wrap_fn(status::influxdb_headers)
            .wrap_fn(msgpack::errors)
            .wrap_fn(metrics::observe)
            .app_data(data.clone())
            .app_data(jobs.clone())
            .app_data(admission.clone())
            .app_data(started.clone())
            .app_data(recorder.clone())
            .app_data(admin_port.clone())
            .app_data(web::Data::new(QueryClient(reads)))
            .configure(routes)
    })
    .disable_signals()
    // An answer's head and body go out in separate writes; with Nagle the body would wait for the
    // client's delayed ACK of the head (40 ms on Linux).
    .tcp_nodelay(true)
    .shutdown_timeout(grace);
    let mut server = server;
    for (addr, what) in std::iter::once((addr, "")).chain(admin.map(|a| (a, " (admin API)"))) {
        let listen_error =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
        server = match &tls {
            Some(tls) => {
                let server = server
                    .bind_rustls_0_23(addr, tls.clone())
                    .map_err(listen_error)?;
                log::info!("listening on https://{addr}{what}");
                server
            }
            None => {
                let server = server.bind(addr).map_err(listen_error)?;
                log::info!("listening on http://{addr}{what}");
                server
            }
        };
    }
    Ok(server.run())
}

/// The routes, for the server and for tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ping")
            .route(web::get().to(status::ping))
            .route(web::head().to(status::ping))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/write")
            .route(web::post().to(write::write))
            .default_service(only("POST")),
    )
    .service(
        web::resource("/api/v2/write")
            .route(web::post().to(write::write_v2))
            .default_service(only("POST")),
    )
    .service(web::resource("/api/v2/query").to(query::query_v2))
    .service(
        web::resource("/")
            .route(web::get().to(page::status_page))
            .route(web::head().to(page::status_page))
            .default_service(only("GET, HEAD")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/debug/vars")
            .route(web::get().to(vars::debug_vars))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/query")
            .route(web::get().to(query::query))
            .route(web::post().to(query::query))
            .default_service(only("GET, POST")),
    )
    .service(
        web::resource("/route")
            .route(web::get().to(route::route))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(status::health))
            .default_service(only("GET")),
    )
    .configure(cluster::routes)
    .configure(maintenance::routes)
    .default_service(web::to(not_found));
}

/// A path nobody serves: influxd's (Go's) plain-text answer.
async fn not_found() -> HttpResponse {
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// The answer to a method a path does not take, naming those it does, in influxd's words.
pub fn only(allowed: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allowed) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, value);
        }
        response
    })
}

fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// Parses the query string into `T`; a malformed one is a 400.
fn params<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// A parameter that must be present and not empty; `what` names it in InfluxDB's wording.
fn required<'p>(value: &'p Option<String>, what: &str) -> Result<&'p str, ApiError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{what} is required")))
}

/// A node's buffered answer, passed on as it was.
fn respond(answer: &NodeResponse) -> HttpResponse {
    let mut response = HttpResponse::build(answer.status);
    for (name, value) in &answer.headers {
        response.append_header((name.clone(), value.clone()));
    }
    response.body(answer.body.clone())
}
