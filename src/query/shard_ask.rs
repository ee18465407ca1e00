//! Asking the replicas of one shard a statement, as the client asked it: its parameters
//! carried, the first replica that answers taken, its `results` read within the bound on what
//! the gateway holds to merge.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{merge::Epoch, read::read};
use crate::{
    config::QueryConfig,
    node::{ForwardedQuery, NodeHandle, NodeId},
};

/// What a scattered query needs of the running gateway.
pub trait Cluster {
    /// The nodes, in configuration order.
    fn nodes(&self) -> &[NodeHandle];
    /// `query:` settings.
    fn query_config(&self) -> &QueryConfig;
    /// The nodes to try for the next read of any node, best first.
    fn next_read_order(&self) -> Vec<NodeId>;
    /// Of `replicas`, the nodes to try for the next read, best first.
    fn replica_read_order(&self, replicas: &[NodeId]) -> Vec<NodeId>;
    /// Whether a node may hold series its shards do not place on it (data is moving).
    fn strays_possible(&self) -> bool;
}

/// Parameters the gateway sets itself on each statement it sends.
const OWN_PARAMS: [&str; 5] = ["q", "epoch", "chunked", "chunk_size", "pretty"];

/// Why a scattered query could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum ScatterError {
    /// No replica of a shard could answer.
    #[error("shard {shard:?}: {reason}")]
    Unavailable {
        /// The shard.
        shard: String,
        /// What went wrong with each replica.
        reason: String,
    },
    /// A shard's answer was larger than the gateway may hold to merge it.
    #[error("shard {shard:?} answered more than {limit} bytes, too much to merge; narrow the query (time range, LIMIT)")]
    TooLarge {
        /// The shard.
        shard: String,
        /// The bound, in bytes.
        limit: u64,
    },
    /// The whole query was refused by a node (a parse error, bad credentials): its answer, as is.
    #[error("refused by the node")]
    Refused {
        /// HTTP status of the node's answer.
        status: u16,
        /// The node's body.
        body: Bytes,
    },
    /// A statement the gateway asked on the way (a listing) failed as influxd reports a failed
    /// statement, in its result (`database not found`, a timeout): the statement's own result.
    #[error("{error}")]
    Failed {
        /// influxd's words.
        error: String,
    },
}

/// What the client asked for, besides `q`.
pub struct ClientParams {
    /// Every parameter of the request (URL and form body), in order, minus the gateway's own.
    pub passed: Vec<(String, String)>,
    /// The client's `epoch`.
    pub epoch: Epoch,
    /// Whether the client asked for indented JSON.
    pub pretty: bool,
    /// The client's `Authorization` header.
    pub authorization: Option<actix_web::http::header::HeaderValue>,
}

impl ClientParams {
    /// Reads the parameters of a `/query` request: the URL's, then a form body's.
    pub fn new(
        query_string: &str,
        form_body: Option<&[u8]>,
        authorization: Option<actix_web::http::header::HeaderValue>,
    ) -> Self {
        let mut all: Vec<(String, String)> = Vec::new();
        // Go's FormValue: a form body's values come first.
        if let Some(body) = form_body {
            all.extend(url::form_urlencoded::parse(body).into_owned());
        }
        all.extend(url::form_urlencoded::parse(query_string.as_bytes()).into_owned());
        let first = |key: &str| all.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let epoch = Epoch::parse(first("epoch"));
        let pretty = first("pretty") == Some("true");
        let passed = all
            .iter()
            .filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str()))
            .cloned()
            .collect();
        ClientParams {
            passed,
            epoch,
            pretty,
            authorization,
        }
    }

    /// The request for one statement: a form POST with `q` and, when set, `epoch`.
    pub fn request(&self, q: &str, epoch: Option<&str>) -> ForwardedQuery {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.passed {
            form.append_pair(k, v);
        }
        form.append_pair("q", q);
        if let Some(epoch) = epoch {
            form.append_pair("epoch", epoch);
        }
        let mut headers = vec![(
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        )];
        if let Some(auth) = &self.authorization {
            headers.push((actix_web::http::header::AUTHORIZATION, auth.clone()));
        }
        ForwardedQuery {
            method: actix_web::http::Method::POST,
            query_string: String::new(),
            headers,
            body: Bytes::from(form.finish()),
        }
    }
}

/// Sends a request to the first of `order` that answers, and returns its `results`.
pub async fn ask(
    gateway: &impl Cluster,
    http: &awc::Client,
    order: &[NodeId],
    shard: &str,
    request: &ForwardedQuery,
) -> Result<Vec<Value>, ScatterError> {
    let timeout: Duration = gateway.query_config().timeout;
    let limit = gateway.query_config().max_shard_answer_size;
    let (_, mut response) = read(gateway.nodes(), order, http, request, timeout)
        .await
        .map_err(|e| ScatterError::Unavailable {
            shard: shard.to_owned(),
            reason: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response
        .body()
        .limit(usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| match e {
            awc::error::PayloadError::Overflow => ScatterError::TooLarge {
                shard: shard.to_owned(),
                limit,
            },
            other => ScatterError::Unavailable {
                shard: shard.to_owned(),
                reason: format!("answer cut short: {other}"),
            },
        })?;
    let document: Value = match serde_json::from_slice(&body) {
        Ok(document) => document,
        Err(_) => return Err(ScatterError::Refused { status, body }),
    };
    if status != 200 || document.get("error").is_some() {
        return Err(ScatterError::Refused { status, body });
    }
    match document {
        Value::Object(mut document) => match document.remove("results") {
            Some(Value::Array(results)) => Ok(results),
            _ => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}
