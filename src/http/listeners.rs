//! Which listener serves what. With `admin.listen`, the admin API (`/cluster/...`,
//! `/debug/vars`, `/metrics`, the status page) is served only on that listener, and the main one
//! answers 404 for it, as for any path it does not serve; the admin listener serves nothing else
//! but the probes (`/ping`, `/health`). Without it, the main listener serves everything.

use std::future::Future;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::StatusCode,
    web, Error,
};
use futures_util::future::{ready, Either};

/// The admin listener's port, when `admin.listen` is set: resolved once, at start.
pub struct AdminPort(pub Option<u16>);

/// Whether `path` belongs to the admin API.
pub fn is_admin(path: &str) -> bool {
    matches!(path, "/" | "/metrics" | "/debug/vars" | "/cluster") || path.starts_with("/cluster/")
}

/// Answers 404 for a path the listener a request came on does not serve.
pub fn split<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    let admin_port = req.app_data::<web::Data<AdminPort>>().and_then(|p| p.0);
    let refused = admin_port.is_some_and(|port| {
        // The path as routing reads it, percent-escapes decoded: `/%63luster` routes to
        // `/cluster`, so it must be judged as `/cluster`.
        let path = req.match_info().as_str();
        if req.app_config().local_addr().port() == port {
            !is_admin(path) && !matches!(path, "/ping" | "/health")
        } else {
            is_admin(path)
        }
    });
    if refused {
        let response = super::plain(StatusCode::NOT_FOUND, "404 page not found\n");
        return Either::Right(ready(Ok(req.into_response(response).map_into_right_body())));
    }
    let answer = service.call(req);
    Either::Left(async move { answer.await.map(ServiceResponse::map_into_left_body) })
}

#[cfg(test)]
mod tests {
    use super::is_admin;

    #[test]
    fn the_admin_api_is_the_cluster_endpoints_the_counters_and_the_page() {
        for path in [
            "/",
            "/metrics",
            "/debug/vars",
            "/cluster/jobs",
            "/cluster/nodes/a/drain",
        ] {
            assert!(is_admin(path), "{path}");
        }
        for path in [
            "/ping",
            "/health",
            "/query",
            "/write",
            "/route",
            "/clusterx",
            "/api/v2/write",
        ] {
            assert!(!is_admin(path), "{path}");
        }
    }
}
