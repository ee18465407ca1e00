//! Answering a read query that spans shards: statement by statement, each from one replica of
//! every shard concerned, merged into the answer one InfluxDB holding all the data would give.
//!
//! Each statement is sent on its own, as a form POST carrying the client's parameters (`db`, `rp`,
//! `params`, credentials) with `q` replaced; statements that need merging are asked for with
//! `epoch=ns`, so that times compare as integers, and formatted for the client afterwards. Like
//! InfluxDB, a statement that fails stops the query: the ones after it are "not executed". The
//! answers are buffered to be merged, so each is bounded by `query.max_shard_answer_size`; the
//! merged answer is one JSON document even when `chunked=true` was asked for.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{
    merge::{self, Epoch, ScatterContext},
    read::read,
    Routed, Target,
};
use crate::{
    config::QueryConfig,
    influxql::Statement,
    node::{ForwardedQuery, NodeHandle, NodeId},
    router::{Router, ShardId},
};

/// What a scattered query needs of the running gateway.
pub trait Cluster {
    /// The routing table.
    fn router(&self) -> &Router;
    /// The nodes, in configuration order.
    fn nodes(&self) -> &[NodeHandle];
    /// `query:` settings.
    fn query_config(&self) -> &QueryConfig;
    /// The nodes to try for the next read of any node, best first.
    fn next_read_order(&self) -> Vec<NodeId>;
    /// The replicas of `shard` to try for the next read, best first.
    fn shard_read_order(&self, shard: ShardId) -> Vec<NodeId>;
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
    fn request(&self, q: &str, epoch: Option<&str>) -> ForwardedQuery {
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

/// Answers `statements` of query `q`; the body is InfluxDB's JSON.
pub async fn scatter(
    gateway: &impl Cluster,
    http: &awc::Client,
    q: &str,
    statements: &[Routed<'_>],
    params: &ClientParams,
) -> Result<Bytes, ScatterError> {
    let mut results = Vec::with_capacity(statements.len());
    let mut failed = false;
    for (id, routed) in statements.iter().enumerate() {
        let mut result = if failed {
            let mut not_executed = Map::new();
            not_executed.insert("error".into(), "not executed".into());
            Value::Object(not_executed)
        } else {
            answer(gateway, http, q, routed, params).await?
        };
        failed |= result.get("error").is_some();
        results.push(with_statement_id(id, &mut result));
    }
    let mut document = Map::new();
    document.insert("results".into(), Value::Array(results));
    let document = Value::Object(document);
    let mut body = if params.pretty {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        serde::Serialize::serialize(&document, &mut serializer)
            .map(|()| out)
            .unwrap_or_default()
    } else {
        serde_json::to_vec(&document).unwrap_or_default()
    };
    body.push(b'\n');
    Ok(Bytes::from(body))
}

/// `statement_id` first, as InfluxDB writes it.
fn with_statement_id(id: usize, result: &mut Value) -> Value {
    let mut ordered = Map::new();
    ordered.insert("statement_id".into(), id.into());
    if let Value::Object(fields) = result.take() {
        for (k, v) in fields {
            if k != "statement_id" {
                ordered.insert(k, v);
            }
        }
    }
    Value::Object(ordered)
}

/// One statement's result object.
async fn answer(
    gateway: &impl Cluster,
    http: &awc::Client,
    q: &str,
    routed: &Routed<'_>,
    params: &ClientParams,
) -> Result<Value, ScatterError> {
    let text = statement_text(q, &routed.statement);
    let client_epoch = params.epoch.param();
    match &routed.target {
        Target::AnyNode => {
            let order = gateway.next_read_order();
            let request = params.request(text, client_epoch);
            first_result(ask(gateway, http, &order, "any", &request).await?)
        }
        Target::Shard(shard) => {
            let order = gateway.shard_read_order(*shard);
            let name = &gateway.router().shards()[*shard].name;
            let request = params.request(text, client_epoch);
            first_result(ask(gateway, http, &order, name, &request).await?)
        }
        Target::Shards { shards, shard_tags } => {
            let names: Vec<&str> = shards
                .iter()
                .map(|&s| gateway.router().shards()[s].name.as_str())
                .collect();
            let tags: Vec<&str> = shard_tags.iter().map(String::as_str).collect();
            let context = ScatterContext {
                shards: &names,
                shard_tags: &tags,
            };
            let plan = match merge::scatter(q, &routed.statement, &context) {
                Ok(plan) => plan,
                Err(refusal) => {
                    let mut result = Map::new();
                    result.insert("error".into(), refusal.to_string().into());
                    return Ok(Value::Object(result));
                }
            };
            let request = params.request(&plan.text, Some("ns"));
            let asked = shards.iter().zip(&names).map(|(&shard, name)| {
                let order = gateway.shard_read_order(shard);
                let request = &request;
                async move { ask(gateway, http, &order, name, request).await }
            });
            let answers = futures_util::future::join_all(asked).await;
            let answers = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
            Ok(plan.merger.merge(answers, params.epoch))
        }
    }
}

/// The statement as written in `q`, comments inside it included.
fn statement_text<'q>(q: &'q str, statement: &Statement<'q>) -> &'q str {
    match (statement.tokens.first(), statement.tokens.last()) {
        (Some(first), Some(last)) => q
            .get(first.offset..last.offset + last.text.len())
            .unwrap_or(q),
        _ => "",
    }
}

/// Sends a request to the first of `order` that answers, and returns its `results`.
async fn ask(
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

/// A statement's result from a one-statement answer.
fn first_result(results: Vec<Value>) -> Result<Value, ScatterError> {
    Ok(results
        .into_iter()
        .next()
        .unwrap_or_else(|| Value::Object(Map::new())))
}
