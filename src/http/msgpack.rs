//! Errors in msgpack for a client that asks for it (`Accept: application/x-msgpack`, as the Python
//! `influxdb` client does), as influxd answers them: `{"error": "..."}` as a one-entry msgpack map,
//! whether the gateway made the error or a node's JSON answer is passed on.

use std::future::Future;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    Error,
};

const MSGPACK: &str = "application/x-msgpack";

/// Re-encodes a JSON error answer as msgpack when the request accepts only that.
pub fn errors<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B, Vec<u8>>>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    let wants = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(MSGPACK));
    let answer = service.call(req);
    async move {
        let response = answer.await?;
        // The common case passes through untouched: no boxing, no copy.
        if !wants || response.status().as_u16() < 400 {
            return Ok(response.map_into_left_body());
        }
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let message = response
            .headers()
            .get("x-influxdb-error")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let (true, Some(message)) = (json, message) else {
            return Ok(response.map_into_left_body());
        };
        let mut response = response.map_body(|_, _| EitherBody::right(error_map(&message)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(MSGPACK));
        Ok(response)
    }
}

/// `{"error": message}` as msgpack.
fn error_map(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 12);
    out.push(0x81); // a map of one entry
    string(b"error", &mut out);
    string(message.as_bytes(), &mut out);
    out
}

fn string(text: &[u8], out: &mut Vec<u8>) {
    let len = text.len();
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(&text[..len.min(u32::MAX as usize)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_influxds() {
        // What influxd 1.6 answers a write to a missing database with this Accept header.
        let mut expected = vec![0x81, 0xa5];
        expected.extend_from_slice(b"error");
        expected.push(0xa0 | 24);
        expected.extend_from_slice(b"database not found: \"no\"");
        assert_eq!(error_map("database not found: \"no\""), expected);
        let long = "x".repeat(146);
        assert_eq!(&error_map(&long)[7..9], &[0xd9, 146]);
        let longer = "y".repeat(300);
        assert_eq!(&error_map(&longer)[7..10], &[0xda, 0x01, 0x2c]);
    }
}
