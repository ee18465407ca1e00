//! Reading a request body once, within limits, decoding gzip.

use std::io::Read;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest,
};
use bytes::{Bytes, BytesMut};
use flate2::read::MultiGzDecoder;
use futures_util::StreamExt;

use super::ApiError;
use crate::gateway::Gateway;

/// Compressed bodies larger than this are inflated off the event loop.
const INLINE_INFLATE_LIMIT: usize = 256 * 1024;

/// Reads the whole body, refusing more than `write.max_body_size` bytes (before and after gzip
/// decoding) and a body that takes longer than `limits.body_timeout` to arrive.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    gateway: &Gateway,
) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(gateway.config().write.max_body_size).unwrap_or(usize::MAX);
    let timeout = gateway.limits().body_timeout;
    // A client that stops sending half-way would otherwise hold its slot for ever.
    let body = tokio::time::timeout(timeout, receive(req, payload, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} (limits.body_timeout)",
                    crate::units::format_duration(timeout)
                ),
            )
        })??;
    if !is_gzip(req) {
        return Ok(body);
    }
    if body.len() <= INLINE_INFLATE_LIMIT {
        return gunzip(&body, limit);
    }
    web::block(move || gunzip(&body, limit))
        .await
        .map_err(|e| ApiError::bad_request(format!("decoding gzip: {e}")))?
}

async fn receive(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large());
    }
    let mut body = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn is_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// Inflates at most `limit` bytes: a gzip bomb is refused, never inflated into memory.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut inflated = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| ApiError::bad_request(format!("gzip: {e}")))?;
    if inflated.len() > limit {
        return Err(ApiError::too_large());
    }
    Ok(Bytes::from(inflated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflates_within_the_limit() {
        assert_eq!(gunzip(&gzip(b"cpu v=1\n"), 100).unwrap(), "cpu v=1\n");
    }

    #[test]
    fn a_bomb_is_refused() {
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        assert!(bomb.len() < 50_000, "{}", bomb.len());
        let err = gunzip(&bomb, 1_000_000).unwrap_err();
        assert_eq!(err.message(), "http: request body too large");
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let err = gunzip(b"not gzip at all", 100).unwrap_err();
        assert!(err.message().starts_with("gzip: "), "{}", err.message());
        let mut truncated = gzip(b"cpu v=1 1\n".repeat(100).as_slice());
        truncated.truncate(truncated.len() / 2);
        assert!(gunzip(&truncated, 100_000).is_err());
    }
}
