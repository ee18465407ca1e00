//! A look at the beginning of a node's answer to a read before it is passed on: a replica that
//! was wiped or replaced answers `database not found` for a database its peers hold, and that
//! read is better sent to the next replica, as after a connection error.
//!
//! Only a short answer can be that error, so at most [`PEEK_LIMIT`] bytes are read; a longer
//! answer is passed on whole, those bytes first, without waiting for the rest.

use std::{io::Read, time::Duration};

use actix_web::{dev::Payload, error::PayloadError, http::header};
use bytes::{Bytes, BytesMut};
use flate2::read::GzDecoder;
use futures_util::{stream, StreamExt};

/// An answer longer than this is not an error answer.
pub const PEEK_LIMIT: usize = 4096;

/// What is left of an answer's body after its start was read.
enum Rest {
    /// More may come: read on.
    More,
    /// The body ended: the payload must not be polled again (awc's HTTP/1 decoder panics).
    Ended,
    /// Reading failed with this.
    Failed(PayloadError),
}

/// What the start of an answer says.
pub enum Peeked {
    /// It says the database does not exist on this node.
    MissingDatabase(String),
    /// Anything else: the answer, with what was read put back in front.
    Answer(awc::ClientResponse),
}

/// Reads up to [`PEEK_LIMIT`] bytes of `response` to tell whether it only says that a database
/// is missing (in JSON, CSV or msgpack, gzip-compressed or not). A JSON answer is judged by its
/// first line, which is a whole document (a chunked answer's first chunk): its later chunks are
/// not waited for. Reading stops at `timeout`, and the answer is then passed on as it is.
pub async fn missing_database(mut response: awc::ClientResponse, timeout: Duration) -> Peeked {
    let deadline = tokio::time::Instant::now() + timeout;
    let gzip = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let json = !gzip
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut read = BytesMut::new();
    let mut rest = Rest::More;
    while read.len() <= PEEK_LIMIT {
        if json && memchr::memchr(b'\n', &read).is_some() {
            break;
        }
        match tokio::time::timeout_at(deadline, response.next()).await {
            Ok(Some(Ok(bytes))) => read.extend_from_slice(&bytes),
            // Passed on as it is: the client sees the answer break off where it did.
            Ok(Some(Err(e))) => {
                return Peeked::Answer(put_back(response, read.freeze(), Rest::Failed(e)))
            }
            Ok(None) => {
                rest = Rest::Ended;
                break;
            }
            Err(_) => return Peeked::Answer(put_back(response, read.freeze(), Rest::More)),
        }
    }
    let judged = match (json, memchr::memchr(b'\n', &read)) {
        (true, Some(end)) => Some(&read[..end]),
        _ if matches!(rest, Rest::Ended) => Some(&read[..]),
        _ => None,
    };
    if let Some(message) = judged.and_then(|body| database_not_found(body, gzip)) {
        return Peeked::MissingDatabase(message);
    }
    Peeked::Answer(put_back(response, read.freeze(), rest))
}

/// The `database not found: …` message in a whole answer, if it holds one.
fn database_not_found(body: &[u8], gzip: bool) -> Option<String> {
    let mut plain = Vec::new();
    let body = if gzip {
        GzDecoder::new(body)
            .take(PEEK_LIMIT as u64 * 64)
            .read_to_end(&mut plain)
            .ok()?;
        &plain[..]
    } else {
        body
    };
    const NEEDLE: &[u8] = b"database not found";
    let at = memchr::memmem::find(body, NEEDLE)?;
    let end = body[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\n' || b < 0x20)
        .map_or(body.len(), |n| at + n);
    Some(String::from_utf8_lossy(&body[at..end]).into_owned())
}

/// `response` with `read` in front of what is left of its body.
fn put_back(response: awc::ClientResponse, read: Bytes, rest: Rest) -> awc::ClientResponse {
    response.map_body(move |_, payload| {
        let front = stream::iter((!read.is_empty()).then_some(Ok(read)));
        let payload = match rest {
            Rest::More => front.chain(payload).boxed_local(),
            Rest::Ended => front.boxed_local(),
            Rest::Failed(e) => front.chain(stream::iter([Err(e)])).boxed_local(),
        };
        Payload::Stream { payload }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_missing_database_is_found_in_every_shape() {
        let json = br#"{"results":[{"statement_id":0,"error":"database not found: demo"}]}"#;
        assert_eq!(
            database_not_found(json, false).as_deref(),
            Some("database not found: demo")
        );
        let csv = b"name,tags,time\nerror: database not found: demo\n";
        assert_eq!(
            database_not_found(csv, false).as_deref(),
            Some("database not found: demo")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            database_not_found(&gz, true).as_deref(),
            Some("database not found: demo")
        );
        let fine = br#"{"results":[{"statement_id":0,"series":[{"name":"databases"}]}]}"#;
        assert_eq!(database_not_found(fine, false), None);
        assert_eq!(database_not_found(b"not gzip", true), None);
    }
}
