//! Reading a request body once, within limits, decoding gzip as it arrives.

use std::io::{self, Write};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest,
};
use bytes::{Bytes, BytesMut};
use flate2::write::MultiGzDecoder;
use futures_util::StreamExt;

use super::ApiError;
use crate::gateway::Gateway;

/// Compressed bytes inflated in one step. Deflate expands up to about 1000 to 1, so a step makes at
/// most a few MB, and the worker serves its other connections between steps.
const INFLATE_STEP: usize = 4 * 1024;
/// Inflated bytes after which the worker lets its other connections run.
const INFLATE_YIELD: usize = 1024 * 1024;

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
    tokio::time::timeout(timeout, receive(req, payload, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} (limits.body_timeout)",
                    crate::units::format_duration(timeout)
                ),
            )
        })?
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
    let expected = declared.map_or(8 * 1024, |n| n as usize);
    // Inflated chunk by chunk as it arrives: the compressed body is never held whole, and the
    // decoding overlaps the receiving instead of following it.
    let mut inflater = is_gzip(req).then(|| Inflater::new(limit, expected));
    let mut body = BytesMut::with_capacity(if inflater.is_some() { 0 } else { expected });
    let mut received = 0;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        received += chunk.len();
        if received > limit {
            return Err(ApiError::too_large());
        }
        match &mut inflater {
            Some(inflater) => {
                for step in chunk.chunks(INFLATE_STEP) {
                    let before = inflater.inflated();
                    inflater.push(step)?;
                    if inflater.inflated() / INFLATE_YIELD != before / INFLATE_YIELD {
                        tokio::task::yield_now().await;
                    }
                }
            }
            None => body.extend_from_slice(&chunk),
        }
    }
    match inflater {
        Some(inflater) => inflater.finish(),
        None => Ok(body.freeze()),
    }
}

fn is_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// Inflates at most `limit` bytes: a gzip bomb is refused, never inflated into memory.
pub fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut inflater = Inflater::new(limit, compressed.len());
    inflater.push(compressed)?;
    inflater.finish()
}

/// A gzip body (one member or several) inflated as its pieces are pushed, into at most `limit`
/// bytes.
struct Inflater(MultiGzDecoder<Capped>);

impl Inflater {
    fn new(limit: usize, compressed: usize) -> Self {
        Inflater(MultiGzDecoder::new(Capped {
            out: Vec::with_capacity(compressed.saturating_mul(4).min(limit)),
            limit,
            exceeded: false,
        }))
    }

    /// Bytes inflated so far.
    fn inflated(&self) -> usize {
        self.0.get_ref().out.len()
    }

    fn push(&mut self, piece: &[u8]) -> Result<(), ApiError> {
        let written = self.0.write_all(piece);
        written.map_err(|e| self.error(&e))
    }

    fn finish(mut self) -> Result<Bytes, ApiError> {
        // Checks the trailer: a truncated or corrupt stream is refused here.
        match self.0.try_finish() {
            Ok(()) => Ok(Bytes::from(std::mem::take(&mut self.0.get_mut().out))),
            Err(e) => Err(self.error(&e)),
        }
    }

    fn error(&self, e: &io::Error) -> ApiError {
        if self.0.get_ref().exceeded {
            ApiError::too_large()
        } else {
            ApiError::bad_request(format!("gzip: {e}"))
        }
    }
}

/// Where inflated bytes go: refuses to grow past `limit`.
struct Capped {
    out: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("inflated body too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    fn a_body_inflates_the_same_pushed_in_pieces() {
        let body: Vec<u8> = (0..2_000)
            .flat_map(|i| format!("cpu,host=h{} v={i} {i}\n", i % 7).into_bytes())
            .collect();
        // Two members, as `cat a.gz b.gz` gives.
        let (half, rest) = body.split_at(body.len() / 2);
        let compressed = [gzip(half), gzip(rest)].concat();
        for piece in [1, 7, 4096, compressed.len()] {
            let mut inflater = Inflater::new(body.len(), 0);
            for part in compressed.chunks(piece) {
                inflater.push(part).unwrap();
            }
            assert_eq!(inflater.finish().unwrap(), body, "pieces of {piece}");
        }
    }

    #[test]
    fn a_bomb_is_refused_while_it_arrives() {
        let bomb = gzip(&vec![b'a'; 10_000_000]);
        let mut inflater = Inflater::new(1_000_000, 0);
        let refused = bomb
            .chunks(1024)
            .find_map(|part| inflater.push(part).err())
            .expect("refused before the end");
        assert_eq!(refused.message(), "http: request body too large");
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
