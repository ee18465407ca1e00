//! `GET /metrics` and the middleware that feeds the per-request metrics.

use std::time::Instant;

use actix_web::{
    dev::{Service, ServiceRequest, ServiceResponse},
    web, HttpRequest, HttpResponse,
};

use super::ApiError;
use crate::metrics::{self, Metrics};

/// Handles `GET /metrics`: the Prometheus text exposition (for admins when the gateway has its
/// own users: Prometheus sends them with `basic_auth`).
pub async fn metrics(
    req: HttpRequest,
    gateway: web::Data<crate::gateway::Gateway>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    super::cluster::admin(&gateway, &req).await?;
    let text = metrics
        .encode()
        .map_err(|e| ApiError::unavailable(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(text))
}

/// Counts every request by endpoint and the status of its answer, and times it to the answer's
/// head (a streamed body is not waited for).
pub fn observe<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let started = Instant::now();
    let endpoint = metrics::endpoint(req.path());
    let recorder = req.app_data::<web::Data<Metrics>>().cloned();
    if let Some(recorder) = &recorder {
        recorder.arrived(endpoint);
    }
    let answer = service.call(req);
    async move {
        let response = answer.await?;
        if let Some(recorder) = recorder {
            recorder.request(endpoint, response.status().as_u16(), started.elapsed());
        }
        Ok(response)
    }
}
