//! Errors answered by the gateway itself, in InfluxDB's shape: `{"error":"..."}`.

use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};

/// An error answer: status, InfluxDB-style message and, for overload, a `Retry-After`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u32>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: credentials missing or wrong, before any node is asked.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 413, worded as InfluxDB words it.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "http: request body too large",
        )
    }

    /// 503 with `Retry-After`: the cluster cannot serve this now, and may soon.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 429 or 503 with `Retry-After`: too much at once; the same request will do later.
    pub fn overloaded(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            retry_after_secs: Some(1),
            ..Self::new(status, message)
        }
    }

    /// The message, as put in `error`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        // InfluxDB repeats the message in a header; clients that only read headers rely on it.
        if let Ok(value) = header::HeaderValue::from_str(&self.message) {
            response.insert_header(("X-Influxdb-Error", value));
        }
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        // influxd ends every JSON answer with a newline.
        response.body(format!(
            "{}\n",
            serde_json::json!({ "error": self.message })
        ))
    }
}

/// A write not acknowledged though no node refused it: 503, with `Retry-After`, safe to retry.
impl From<crate::write::WriteFailure> for ApiError {
    fn from(failure: crate::write::WriteFailure) -> Self {
        ApiError::unavailable(failure.to_string())
    }
}
