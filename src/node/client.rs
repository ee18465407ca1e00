//! Speaking HTTP to one influxd, and sorting its answers into accepted, rejected and failed.
//!
//! The split follows what the answer means for the data, as vector's `RetryLogic` does: a 2xx was
//! applied; a 4xx is the client's fault and goes back to it as InfluxDB wrote it; anything else
//! (cannot connect, timeout, 5xx) says nothing about the request and may be retried elsewhere or later.

use std::{sync::Arc, time::Duration};

use actix_web::error::ParseError;
use actix_web::http::{
    header::{self, HeaderName, HeaderValue},
    Method, StatusCode, Uri,
};
use awc::error::SendRequestError;
use bytes::Bytes;

use crate::line_protocol::TimeSpan;

/// Largest answer buffered from a node (write errors, mutation results).
const MAX_BUFFERED_ANSWER: usize = 64 * 1024 * 1024;

/// influxd (Go's HTTP server) drains at most 256 KiB of a body its handler did not read, then
/// closes the connection: a larger write it refuses before reading (an unknown database, bad
/// credentials) can reach the gateway as a broken connection instead of its answer. A body larger
/// than this whose exchange breaks is sent again without its body, to learn the node's answer.
const PROBE_ABOVE: usize = 256 * 1024;

/// Bodies larger than this are sent with `Expect: 100-continue`, so that a node refusing them
/// unread answers before megabytes are sent in vain. Smaller ones go at once: the expectation
/// costs a round trip, and a sink that answers without reading (nginx's `return 204`) would
/// never receive the body.
const EXPECT_CONTINUE_ABOVE: usize = 4 * 1024 * 1024;

/// Why a request to a node did not get an answer that can be passed on, by where it came from:
/// the node's own answer on the wire, the exchange with it, or the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The node answered with a server error (5xx).
    #[error("answered {status}: {message}")]
    Answered {
        /// HTTP status.
        status: u16,
        /// InfluxDB's error text, or the body.
        message: String,
    },
    /// The exchange with the node failed before an answer could be read.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The gateway did not hand the request to the node, or could not keep its copy.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// What failed in the exchange with a node, before its answer could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No connection could be made (refused, unreachable, TLS handshake): the node is down.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The node did not answer in time.
    #[error("no answer within {}", crate::units::format_duration(*.0))]
    Timeout(Duration),
    /// The exchange broke off half-way, or its answer could not be read.
    #[error("request failed: {0}")]
    Transport(String),
    /// The node broke the connection off while the body was sent, yet answers the same request
    /// with an empty body: it will not take this body (larger than its `max-body-size`?).
    #[error("the node closed the connection while {0} bytes of body were sent, though it accepts the same write without them")]
    CutOff(usize),
}

/// What the gateway itself could not do with a request for a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The node's actor already holds as many requests as it may.
    #[error("busy: {0} writes and mutations already waiting")]
    Busy(usize),
    /// The node's actor is gone (shutting down).
    #[error("node actor stopped")]
    Stopped,
    /// The node's disk queue holds `queue.max_bytes` already; the node is flagged for a resync.
    #[error("queue full ({bytes} of {limit} bytes)")]
    QueueFull {
        /// Bytes queued.
        bytes: u64,
        /// `queue.max_bytes`.
        limit: u64,
    },
    /// Storing the copy would leave less than `queue.min_free_disk` free; the node is flagged for
    /// a resync.
    #[error("disk full ({free} bytes free under data_dir, min_free_disk {reserve})")]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// `queue.min_free_disk`.
        reserve: u64,
    },
    /// The disk queue could not store the copy; the node is flagged for a resync.
    #[error("cannot queue: {0}")]
    Storage(String),
    /// The copy could not be stored and neither could the node's `needs_resync` flag.
    #[error("cannot queue: {0}")]
    Unflagged(String),
}

/// What may be done with a request that failed, whatever the failure: the one place that
/// separates "try again" from "give up".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The node may recover: queue the request and send it again later, however often.
    Later,
    /// The same request is bound to fail the same way: queue it, but count each failure as an
    /// attempt towards `retry.max_attempts_4xx`, as for a 4xx.
    Counted,
    /// Not retried: the node never got it (busy, stopped) or its copy is known to be missing.
    Never,
}

impl NodeError {
    /// Whether this failure means the node cannot be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, NodeError::Exchange(ExchangeError::Connect(_)))
    }

    /// Whether, and how, the request is sent again.
    pub fn retry(&self) -> Retry {
        match self {
            NodeError::Answered { .. } => Retry::Later,
            NodeError::Exchange(ExchangeError::CutOff(_)) => Retry::Counted,
            NodeError::Exchange(_) => Retry::Later,
            NodeError::Gateway(_) => Retry::Never,
        }
    }

    /// Whether the gateway could not store this node's copy (queue or disk full, storage failing)
    /// and has flagged the node `needs_resync` on disk: the copy is missing, and known to be.
    pub fn is_unstored_copy(&self) -> bool {
        matches!(
            self,
            NodeError::Gateway(
                GatewayError::QueueFull { .. }
                    | GatewayError::DiskFull { .. }
                    | GatewayError::Storage(_)
            )
        )
    }
}

/// Why a write or mutation went to the node's disk queue instead of straight to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueuedBecause {
    /// The node cannot be reached.
    Down,
    /// The node is up but still replaying older entries: new work goes behind them.
    Draining,
    /// More work waits in memory for the node than `write.mailbox_capacity` allows.
    Busy,
    /// The gateway is stopping.
    Stopping,
    /// An operator took the node out of service (`drain`).
    Maintenance,
    /// The request itself failed (timeout, 5xx, broken connection).
    Failed(NodeError),
}

impl QueuedBecause {
    /// Why a request that failed with `error` was queued: a node that cannot be reached is down.
    pub fn failure(error: NodeError) -> Self {
        if error.is_unreachable() {
            QueuedBecause::Down
        } else {
            QueuedBecause::Failed(error)
        }
    }
}

impl std::fmt::Display for QueuedBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueuedBecause::Down => f.write_str("down"),
            QueuedBecause::Draining => f.write_str("up but replaying its queue"),
            QueuedBecause::Busy => f.write_str("busy (write.mailbox_capacity reached)"),
            QueuedBecause::Stopping => f.write_str("being stopped with the gateway"),
            QueuedBecause::Maintenance => f.write_str("in maintenance (drained by an operator)"),
            QueuedBecause::Failed(e) => write!(f, "failing ({e})"),
        }
    }
}

/// A node's answer, kept whole.
#[derive(Debug, Clone)]
pub struct NodeResponse {
    /// Its status.
    pub status: StatusCode,
    /// The headers worth passing to the client (see [`forwardable`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its body.
    pub body: Bytes,
}

impl NodeResponse {
    /// An answer with no headers, for tests.
    #[cfg(test)]
    pub fn of(status: u16, body: &'static str) -> Self {
        NodeResponse {
            status: StatusCode::from_u16(status).expect("a test's status code"),
            headers: Vec::new(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    /// A refusal as text for logs, errors and dead letters: status and InfluxDB's message.
    pub fn refusal(&self) -> String {
        format!("{} {}", self.status.as_u16(), error_message(&self.body))
            .trim_end()
            .to_owned()
    }
}

/// What became of one write or mutation sent to one node.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// 2xx: the node applied it.
    Accepted(NodeResponse),
    /// 4xx: the node refused it because of what it says; it would refuse it again.
    Rejected(NodeResponse),
    /// The node could not take it now; it is in the node's disk queue, flushed, and will be replayed.
    Queued(QueuedBecause),
    /// No usable answer; trying again later may succeed.
    Failed(NodeError),
}

/// The parts of a write that are the same for every replica.
#[derive(Debug)]
pub struct WriteTarget {
    /// Encoded query string for influxd's `/write`: `db`, `rp`, `precision`, `u`, `p`.
    pub query: String,
    /// The client's `Authorization` header, passed through.
    pub authorization: Option<HeaderValue>,
}

/// A write for one node: shared parameters and that shard's body.
#[derive(Debug, Clone)]
pub struct NodeWrite {
    /// Parameters, shared by every replica of every shard.
    pub target: Arc<WriteTarget>,
    /// Line protocol, shared by every replica of the shard.
    pub body: Bytes,
    /// The timestamps of its points: whether it may be on the wire beside another write.
    pub span: TimeSpan,
    /// Its points (lines that are neither blank nor comments).
    pub points: u64,
    /// Whether another write may be appended to it ([`line_protocol::ends_cleanly`]).
    ///
    /// [`line_protocol::ends_cleanly`]: crate::line_protocol::ends_cleanly
    pub ends_cleanly: bool,
}

/// A `/query` request passed to a node as the client sent it.
#[derive(Debug, Clone)]
pub struct ForwardedQuery {
    /// GET or POST, as the client used.
    pub method: Method,
    /// The client's query string, verbatim.
    pub query_string: String,
    /// Headers that change what InfluxDB does: authorization, content type, accept, encoding.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The client's body (a form with `q` and friends, or empty).
    pub body: Bytes,
}

/// Headers a client sends that a node must see to answer the same way.
pub const FORWARDED_REQUEST_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
];

/// Whether a header of a node's answer goes back to the client.
pub fn forwardable(name: &HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CONTENT_ENCODING
        || name.as_str().starts_with("x-influxdb-")
        || name.as_str() == "request-id"
        || name.as_str() == "x-request-id"
}

/// A node's `/write` URL: parsed once for the write parameters it was last sent, or the text awc
/// will refuse.
#[derive(Debug, Clone)]
pub enum WriteUrl {
    /// Parsed.
    Parsed(Uri),
    /// Not a URL: awc says why when it is sent.
    Invalid(String),
}

/// The `/write` URLs a node was last sent, kept parsed: a node's writes nearly all carry the same
/// parameters (one database, one precision), and formatting and parsing the URL was a third of
/// the allocations a write cost a replica. A few are kept, for writes to several databases.
#[derive(Debug)]
pub struct WriteUrls {
    base: String,
    /// `(query string, URL)`, the most recently added last.
    kept: Vec<(String, Uri)>,
}

impl WriteUrls {
    /// How many parameter sets are kept parsed.
    const KEPT: usize = 4;

    /// For the node at `base`.
    pub fn new(base: &str) -> Self {
        WriteUrls {
            base: base.to_owned(),
            kept: Vec::with_capacity(Self::KEPT),
        }
    }

    /// The URL of `/write` with query string `query`.
    pub fn get(&mut self, query: &str) -> WriteUrl {
        if let Some((_, uri)) = self.kept.iter().find(|(kept, _)| kept == query) {
            return WriteUrl::Parsed(uri.clone());
        }
        let url = format!("{}/write?{query}", self.base);
        match Uri::try_from(url.as_str()) {
            Ok(uri) => {
                if self.kept.len() == Self::KEPT {
                    self.kept.remove(0);
                }
                self.kept.push((query.to_owned(), uri.clone()));
                WriteUrl::Parsed(uri)
            }
            Err(_) => WriteUrl::Invalid(url),
        }
    }
}

/// Sends a write to a node, at `url` (see [`WriteUrls`]).
pub async fn write(
    http: &awc::Client,
    url: &WriteUrl,
    write: &NodeWrite,
    timeout: Duration,
) -> Delivery {
    let mut request = write_request(http, url, write, timeout);
    if write.body.len() > EXPECT_CONTINUE_ABOVE {
        request = request.insert_header((header::EXPECT, "100-continue"));
    }
    match request.send_body(write.body.clone()).await {
        // The node may have answered and closed before reading the body: learn its answer from
        // the same request without the body. A refusal is a refusal, whatever the body.
        Err(e) if write.body.len() > PROBE_ABOVE && broke_off(&e) => {
            let probe = write_request(http, url, write, timeout).send_body(Bytes::new());
            match buffered(probe.await, timeout, Headers::OfRefusals).await {
                Delivery::Accepted(_) => {
                    Delivery::Failed(ExchangeError::CutOff(write.body.len()).into())
                }
                Delivery::Rejected(answer) => Delivery::Rejected(answer),
                Delivery::Failed(_) | Delivery::Queued(_) => {
                    Delivery::Failed(ExchangeError::Transport(e.to_string()).into())
                }
            }
        }
        sent => buffered(sent, timeout, Headers::OfRefusals).await,
    }
}

/// Whether the exchange broke off after the connection was made: neither a node that cannot be
/// reached, nor one too slow, nor an answer that arrived but cannot be read (the node did refuse
/// the body; see [`unreadable_refusal`]).
fn broke_off(error: &SendRequestError) -> bool {
    !matches!(
        error,
        SendRequestError::Connect(_)
            | SendRequestError::Timeout
            | SendRequestError::Response(ParseError::Header)
    )
}

/// `POST /write` for `write`, without its body.
fn write_request(
    http: &awc::Client,
    url: &WriteUrl,
    write: &NodeWrite,
    timeout: Duration,
) -> awc::ClientRequest {
    let request = match url {
        WriteUrl::Parsed(uri) => http.post(uri.clone()),
        WriteUrl::Invalid(url) => http.post(url.as_str()),
    };
    let request = request.timeout(timeout).insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    ));
    match &write.target.authorization {
        Some(auth) => request.insert_header((header::AUTHORIZATION, auth.clone())),
        None => request,
    }
}

/// Sends a query and keeps its whole answer (mutations, whose answers are small).
pub async fn query_buffered(
    http: &awc::Client,
    base: &str,
    query: &ForwardedQuery,
    timeout: Duration,
) -> Delivery {
    let sent = query_request(http, base, query, timeout).await;
    buffered(sent, timeout, Headers::Always).await
}

/// Sends a query and returns the answer as soon as its head arrives, for the body to be streamed.
/// A 5xx is returned as [`NodeError::Answered`] so that the caller may try another node.
pub async fn query_streaming(
    http: &awc::Client,
    base: &str,
    query: &ForwardedQuery,
    timeout: Duration,
) -> Result<awc::ClientResponse, NodeError> {
    let mut response = query_request(http, base, query, timeout)
        .await
        .map_err(|e| send_error(e, timeout))?;
    if response.status().is_server_error() {
        let body = response.body().limit(64 * 1024).await.unwrap_or_default();
        return Err(server_error(response.status(), &body));
    }
    Ok(response)
}

/// Probes `/ping`; on success returns the version the node reports.
pub async fn ping(
    http: &awc::Client,
    base: &str,
    timeout: Duration,
) -> Result<Option<String>, NodeError> {
    let response = http
        .get(format!("{base}/ping"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| send_error(e, timeout))?;
    if !response.status().is_success() {
        return Err(NodeError::Answered {
            status: response.status().as_u16(),
            message: "/ping did not answer 2xx".to_owned(),
        });
    }
    Ok(response
        .headers()
        .get("x-influxdb-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned))
}

async fn query_request(
    http: &awc::Client,
    base: &str,
    query: &ForwardedQuery,
    timeout: Duration,
) -> Result<awc::ClientResponse, SendRequestError> {
    let url = if query.query_string.is_empty() {
        format!("{base}/query")
    } else {
        format!("{base}/query?{}", query.query_string)
    };
    let mut request = http.request(query.method.clone(), url).timeout(timeout);
    for (name, value) in &query.headers {
        request = request.insert_header((name.clone(), value.clone()));
    }
    request.send_body(query.body.clone()).await
}

/// Which answers keep the node's headers: only those passed on to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Headers {
    /// Every answer: a mutation's is the client's.
    Always,
    /// Refusals only: an accepted write is answered by the gateway, and collecting headers no
    /// one reads cost each replica of every write an allocation or two.
    OfRefusals,
}

async fn buffered(
    sent: Result<awc::ClientResponse, SendRequestError>,
    timeout: Duration,
    keep: Headers,
) -> Delivery {
    let mut response = match sent {
        Ok(response) => response,
        Err(SendRequestError::Response(ParseError::Header)) => return unreadable_refusal(),
        Err(e) => return Delivery::Failed(send_error(e, timeout)),
    };
    let status = response.status();
    let body = match response.body().limit(MAX_BUFFERED_ANSWER).await {
        Ok(body) => body,
        Err(e) => {
            return Delivery::Failed(
                ExchangeError::Transport(format!("reading the answer: {e}")).into(),
            )
        }
    };
    if status.is_server_error() && !refuses_the_request(&body) {
        return Delivery::Failed(server_error(status, &body));
    }
    let headers = if status.is_success() && keep == Headers::OfRefusals {
        Vec::new()
    } else {
        response
            .headers()
            .iter()
            .filter(|(name, _)| forwardable(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    };
    let answer = NodeResponse {
        status,
        headers,
        body,
    };
    if status.is_success() {
        Delivery::Accepted(answer)
    } else {
        Delivery::Rejected(answer)
    }
}

/// Whether a 5xx answer blames the request rather than the server, so that sending it again can
/// only fail the same way. influxd 1.6 answers a write to a retention policy that does not exist
/// with 500 `retention policy not found: rp`; queueing it would hold every write behind it until an
/// operator created the policy, and Telegraf must see influxd's own answer to report it.
fn refuses_the_request(body: &[u8]) -> bool {
    error_message(body).starts_with("retention policy not found")
}

/// influxd echoes a line it cannot parse in `X-Influxdb-Error`, control characters included, and
/// such a header cannot be read back. The node did answer, and would answer the same again:
/// retrying would hold every later write behind this one, so it is refused as a 400.
fn unreadable_refusal() -> Delivery {
    let message = "the node refused the request with an error header the gateway cannot read \
                   (a rejected line with control characters in it, echoed by InfluxDB)";
    Delivery::Rejected(NodeResponse {
        status: StatusCode::BAD_REQUEST,
        headers: vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body: Bytes::from(format!("{}\n", serde_json::json!({ "error": message }))),
    })
}

fn send_error(error: SendRequestError, timeout: Duration) -> NodeError {
    match error {
        SendRequestError::Connect(e) => ExchangeError::Connect(e.to_string()).into(),
        SendRequestError::Timeout => ExchangeError::Timeout(timeout).into(),
        other => ExchangeError::Transport(other.to_string()).into(),
    }
}

/// InfluxDB puts its message in `{"error": ...}`; fall back to the start of the body.
fn server_error(status: StatusCode, body: &[u8]) -> NodeError {
    NodeError::Answered {
        status: status.as_u16(),
        message: error_message(body),
    }
}

/// The `error` member of an InfluxDB JSON answer, or the body's first 200 bytes of text.
pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct InfluxError {
        error: String,
    }
    match serde_json::from_slice::<InfluxError>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

/// An awc client for one node or for all, with TLS when `tls` is given.
pub fn http_client(tls: Option<&Arc<rustls::ClientConfig>>, limit: usize) -> awc::Client {
    let mut connector = awc::Connector::new().limit(limit);
    if let Some(tls) = tls {
        connector = connector.rustls_0_23(Arc::clone(tls));
    }
    awc::Client::builder().connector(connector).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn influx_error_messages() {
        assert_eq!(error_message(br#"{"error":"timeout"}"#), "timeout");
        assert_eq!(error_message(b"upstream broke\n"), "upstream broke");
    }

    #[test]
    fn a_missing_retention_policy_is_the_request_s_fault() {
        assert!(refuses_the_request(
            b"{\"error\":\"retention policy not found: nope\"}\n"
        ));
        assert!(!refuses_the_request(
            b"{\"error\":\"engine: cache-max-memory-size exceeded\"}"
        ));
        assert!(!refuses_the_request(b"<html>bad gateway</html>"));
    }

    #[test]
    fn only_a_broken_exchange_is_probed_without_its_body() {
        let broken = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(broke_off(&SendRequestError::Send(broken)));
        assert!(!broke_off(&SendRequestError::Timeout));
        // An answer that arrived, unreadable: the node refused this body, not an empty one.
        assert!(!broke_off(&SendRequestError::Response(ParseError::Header)));
    }

    #[test]
    fn only_meaningful_headers_are_forwarded() {
        assert!(forwardable(&header::CONTENT_TYPE));
        assert!(forwardable(&HeaderName::from_static("x-influxdb-version")));
        assert!(forwardable(&HeaderName::from_static("x-influxdb-error")));
        assert!(!forwardable(&header::CONNECTION));
        assert!(!forwardable(&header::CONTENT_LENGTH));
        assert!(!forwardable(&header::TRANSFER_ENCODING));
    }
}
