//! Admission: how many requests one client address, and all clients together, may have under way,
//! and how large a request's headers may be. Refusals are InfluxDB-shaped and carry `Retry-After`,
//! which Telegraf and the 2.x clients honour. `/ping` and `/health` are never refused, so that a
//! load balancer still sees a busy gateway as alive; nor are `/debug/vars` and `/metrics`, so that
//! monitoring sees it busy.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::StatusCode,
    ResponseError,
};
use arc_swap::ArcSwap;
use futures_util::future::LocalBoxFuture;

use super::ApiError;
use crate::config::LimitsConfig;

/// Requests under way, in all and per client address.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<ArcSwap<LimitsConfig>>,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A request let in: counted until dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    /// Counters for `limits`, which may be swapped while running.
    pub fn new(limits: Arc<ArcSwap<LimitsConfig>>) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Lets a request from `client` in, or says why not.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, ApiError> {
        let limits = self.limits.load();
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        // From here on, dropping `admitted` undoes the counts, whatever is refused.
        let mut admitted = Admitted {
            admission: Arc::clone(self),
            client: None,
        };
        if total > limits.max_concurrent_requests {
            return Err(ApiError::overloaded(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the gateway is serving {} requests, its limit (limits.max_concurrent_requests); try again shortly",
                    limits.max_concurrent_requests
                ),
            ));
        }
        if let Some(ip) = client {
            let mut clients = self.lock();
            let count = clients.entry(ip).or_insert(0);
            *count += 1;
            admitted.client = Some(ip);
            if *count > limits.max_concurrent_requests_per_client {
                return Err(ApiError::overloaded(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many concurrent requests from {ip}: the limit is {} (limits.max_concurrent_requests_per_client)",
                        limits.max_concurrent_requests_per_client
                    ),
                ));
            }
        }
        Ok(admitted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts only; a panic elsewhere cannot leave them half-updated.
        self.per_client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut clients = self.admission.lock();
            if let Some(count) = clients.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    clients.remove(&ip);
                }
            }
        }
    }
}

/// Total size of a request's header names and values.
fn header_bytes(req: &ServiceRequest) -> u64 {
    req.headers()
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum()
}

/// The middleware: admits a request or answers the refusal.
pub fn admit<S, B>(
    req: ServiceRequest,
    service: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let exempt = matches!(req.path(), "/ping" | "/health" | "/debug/vars" | "/metrics");
    let admission = req
        .app_data::<actix_web::web::Data<Arc<Admission>>>()
        .cloned();
    let (admitted, refusal) = match admission {
        Some(admission) if !exempt => {
            let max_header_size = admission.limits.load().max_header_size;
            if header_bytes(&req) > max_header_size {
                let refusal = ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!(
                        "request headers larger than {max_header_size} bytes (limits.max_header_size)"
                    ),
                );
                (None, Some(refusal))
            } else {
                let forwarded = req
                    .headers()
                    .get_all("x-forwarded-for")
                    .map(|v| v.as_bytes());
                let client = client_address(
                    req.peer_addr().map(|a| a.ip()),
                    forwarded,
                    &admission.limits.load().trusted_proxies,
                );
                match admission.admit(client) {
                    Ok(admitted) => (Some(admitted), None),
                    Err(refusal) => (None, Some(refusal)),
                }
            }
        }
        _ => (None, None),
    };
    if let Some(refusal) = refusal {
        let response = req.into_response(refusal.error_response());
        return Box::pin(async move { Ok(response.map_into_right_body()) });
    }
    let answer = service.call(req);
    Box::pin(async move {
        let response = answer.await;
        drop(admitted);
        response.map(ServiceResponse::map_into_left_body)
    })
}

/// The address a request is counted by: its peer's, or, when the peer is a trusted proxy, the
/// nearest address of `X-Forwarded-For` (`forwarded`, its header lines in order) that is not one.
/// Only trusted proxies' words are taken: a client naming itself anything in the header is still
/// counted by the address the trusted proxy appended. IPv4 addresses mapped into IPv6 (a
/// dual-stack listener's peers) count as the IPv4 address.
fn client_address<'h>(
    peer: Option<IpAddr>,
    forwarded: impl DoubleEndedIterator<Item = &'h [u8]>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *address);
    let mut client = peer?.to_canonical();
    if !is_trusted(&client) {
        return Some(client);
    }
    // Hop by hop from the right, so that bytes a client put at the header's start never hide
    // what the proxies appended.
    for hop in forwarded.rev().flat_map(|line| line.rsplit(|&b| b == b',')) {
        match hop_address(hop) {
            Some(address) => {
                client = address;
                if !is_trusted(&address) {
                    break;
                }
            }
            // An address a trusted proxy did not write: the last one it did is the client.
            None => break,
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` hop as an address: `1.2.3.4`, `2001:db8::1`, and the forms some proxies
/// write with a port or brackets (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    let address = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let client = |peer: &str, lines: &[&str]| {
            client_address(Some(ip(peer)), lines.iter().map(|l| l.as_bytes()), &trusted)
        };
        // Not a proxy: its own address, whatever it says.
        assert_eq!(
            client("192.0.2.7", &["198.51.100.1"]),
            Some(ip("192.0.2.7"))
        );
        // A proxy: the address it appended.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.1"]),
            Some(ip("198.51.100.1"))
        );
        // Through two proxies, and a client that forged the start of the header.
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6, 198.51.100.1", "10.0.0.2"]),
            Some(ip("198.51.100.1"))
        );
        // A proxy that sent nothing, or nothing readable: the nearest trusted hop.
        assert_eq!(client("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(
            client("10.0.0.1", &["10.0.0.2, junk"]),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            client("10.0.0.1", &["junk, 10.0.0.2"]),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(client_address(None, [].into_iter(), &trusted), None);
        // Ports and brackets, an IPv4 proxy seen through a dual-stack listener, and bytes that
        // are not text on the client's side of the header.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.1:5678"]),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::1]"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            client("::ffff:10.0.0.1", &["::ffff:198.51.100.1"]),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_address(
                Some(ip("10.0.0.1")),
                [&b"\xff, 198.51.100.1"[..]].into_iter(),
                &trusted
            ),
            Some(ip("198.51.100.1"))
        );
    }

    fn limits(total: usize, per_client: usize) -> LimitsConfig {
        LimitsConfig {
            max_concurrent_requests: total,
            max_concurrent_requests_per_client: per_client,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn per_client_then_total() {
        let admission = Admission::new(Arc::new(ArcSwap::from_pointee(limits(3, 2))));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(Some(a)).unwrap();
        let _second = admission.admit(Some(a)).unwrap();
        let refused = admission.admit(Some(a)).unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        let _third = admission.admit(Some(b)).unwrap();
        let refused = admission.admit(Some(b)).unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        // The refused ones were not counted; one finished, so one more fits.
        let _fourth = admission.admit(Some(b)).unwrap();
        assert_eq!(admission.total.load(Ordering::Acquire), 3);
    }

    #[test]
    fn everything_is_released() {
        let admission = Admission::new(Arc::new(ArcSwap::from_pointee(limits(10, 10))));
        let held: Vec<_> = (0..5)
            .map(|_| admission.admit(Some("::1".parse().unwrap())).unwrap())
            .collect();
        drop(held);
        assert_eq!(admission.total.load(Ordering::Acquire), 0);
        assert!(admission.lock().is_empty());
    }
}
