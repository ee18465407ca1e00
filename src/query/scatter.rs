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
    influxql::{
        condition::and_where,
        quote::{ident, literal},
        sources::{reads, Measurement, Reads},
    },
    node::{ForwardedQuery, NodeHandle, NodeId},
    router::{Placement, Router, ShardId},
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

/// Answers `statements` of query `q`, planned with `router`; the body is InfluxDB's JSON.
pub async fn scatter(
    gateway: &impl Cluster,
    router: &Router,
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
            answer(gateway, router, http, q, routed, params).await?
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
    router: &Router,
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
            let order = gateway.replica_read_order(&router.shards()[*shard].replicas);
            let name = &router.shards()[*shard].name;
            let request = params.request(text, client_epoch);
            first_result(ask(gateway, http, &order, name, &request).await?)
        }
        Target::Shards { shards, shard_tags } => {
            let names: Vec<&str> = shards
                .iter()
                .map(|&s| router.shards()[s].name.as_str())
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
            // A node that holds series of other shards too would answer for them as well: each
            // shard is then asked for its own series by name.
            let narrowed = spread(&routed.statement, router, params)
                .filter(|_| gateway.strays_possible() || overlapping(router, shards));
            let asked = shards.iter().zip(&names).map(|(&shard, name)| {
                let order = gateway.replica_read_order(&router.shards()[shard].replicas);
                let (request, text, narrowed) = (&request, &plan.text, &narrowed);
                async move {
                    let Some(spread) = narrowed else {
                        return ask(gateway, http, &order, name, request).await;
                    };
                    let condition =
                        spread.condition(gateway, router, http, &order, name, params, shard);
                    let own = match and_where(text, &condition.await?) {
                        Some(text) => params.request(&text, Some("ns")),
                        None => request.clone(),
                    };
                    ask(gateway, http, &order, name, &own).await
                }
            });
            let answers = futures_util::future::join_all(asked).await;
            let answers = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
            Ok(plan.merger.merge(answers, params.epoch))
        }
    }
}

/// A statement's one source, a measurement spread over shards by a tag.
struct Spread {
    db: String,
    measurement: String,
    key: String,
    /// The shards it is spread over.
    shards: Vec<ShardId>,
}

/// The spread measurement `statement` reads, when it reads exactly one.
fn spread(statement: &Statement<'_>, router: &Router, params: &ClientParams) -> Option<Spread> {
    let Reads::Sources {
        on,
        sources,
        subquery: false,
    } = reads(statement)
    else {
        return None;
    };
    let [source] = sources.as_slice() else {
        return None;
    };
    let Measurement::Name(measurement) = &source.measurement else {
        return None;
    };
    let db = source.db.clone().or(on).or_else(|| {
        params
            .passed
            .iter()
            .find(|(k, _)| k == "db")
            .map(|(_, v)| v.clone())
    })?;
    match router.placement(&db, measurement) {
        Placement::ByTag { key, shards } => Some(Spread {
            key: key.name().to_owned(),
            shards: shards.to_vec(),
            db,
            measurement: measurement.clone(),
        }),
        Placement::Shard(_) => None,
    }
}

impl Spread {
    /// The condition naming the series of the measurement `shard` holds: every value of the
    /// tag its replicas know that the routes place on `shard` (the empty one for series without
    /// the tag), asked of the replica the statement will be asked of.
    #[allow(clippy::too_many_arguments)]
    async fn condition(
        &self,
        gateway: &impl Cluster,
        router: &Router,
        http: &awc::Client,
        order: &[NodeId],
        name: &str,
        params: &ClientParams,
        shard: ShardId,
    ) -> Result<String, ScatterError> {
        let key = ident(&self.key);
        let text = format!(
            "SHOW TAG VALUES ON {} FROM {} WITH KEY = {key}",
            ident(&self.db),
            ident(&self.measurement)
        );
        // Its refusal would read as the whole query's: the client would get one node's answer.
        let results = ask(gateway, http, order, name, &params.request(&text, None))
            .await
            .map_err(|e| match e {
                ScatterError::Refused { status, body } => ScatterError::Unavailable {
                    shard: name.to_owned(),
                    reason: format!(
                        "listing its series answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                },
                other => other,
            })?;
        let shards = &self.shards;
        let mut terms: Vec<String> = results
            .iter()
            .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|row| row.get(1).and_then(Value::as_str).map(str::to_owned))
            .filter(|value| router.shard_for_tag(shards, value) == shard)
            .map(|value| format!("{key} = {}", literal(&value)))
            .collect();
        if router.shard_for_tag(shards, "") == shard {
            terms.push(format!("{key} = ''"));
        }
        Ok(if terms.is_empty() {
            // Nothing of it here: a condition no series meets.
            format!("({key} = '' AND {key} != '')")
        } else {
            format!("({})", terms.join(" OR "))
        })
    }
}

/// Whether a node is a replica of two of `shards`: it holds the series of both.
fn overlapping(router: &Router, shards: &[ShardId]) -> bool {
    let mut seen: Vec<NodeId> = Vec::new();
    for &shard in shards {
        for &node in &router.shards()[shard].replicas {
            if seen.contains(&node) {
                return true;
            }
        }
        seen.extend(&router.shards()[shard].replicas);
    }
    false
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
