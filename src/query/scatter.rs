//! Answering a read query that spans shards: statement by statement, each from one replica of
//! every shard concerned, merged into the answer one InfluxDB holding all the data would give.
//!
//! Each statement is sent on its own, as a form POST carrying the client's parameters (`db`, `rp`,
//! `params`, credentials) with `q` replaced; statements that need merging are asked for with
//! `epoch=ns`, so that times compare as integers, and formatted for the client afterwards. Like
//! InfluxDB, a statement that fails stops the query: the ones after it are "not executed". The
//! answers are buffered to be merged, so each is bounded by `query.max_shard_answer_size`; the
//! merged answer is one JSON document even when `chunked=true` was asked for.

use bytes::Bytes;
use futures_util::{
    future::join_all,
    stream::{self, StreamExt},
};
use serde_json::{Map, Value};

use super::{
    merge::{self, ScatterContext},
    narrow::{Asked, Narrowing, AT_ONCE},
    shard_ask::{ask, ClientParams, Cluster, ScatterError},
    Routed, Target,
};
use crate::{
    influxql::Statement,
    node::NodeId,
    router::{Router, ShardId},
};

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
            failed_result("not executed")
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
                Err(refusal) => return Ok(failed_result(refusal.to_string())),
            };
            let request = params.request(&plan.text, Some("ns"));
            let narrowing = if gateway.strays_possible() || overlapping(router, shards) {
                match Narrowing::of(&routed.statement, &plan.text, params) {
                    Ok(narrowing) => narrowing,
                    Err(why) => return Ok(failed_result(why)),
                }
            } else {
                None
            };
            let asked = shards.iter().zip(&names).map(|(&shard, name)| {
                let order = gateway.replica_read_order(&router.shards()[shard].replicas);
                let (request, narrowing) = (&request, &narrowing);
                async move {
                    let Some(narrowing) = narrowing else {
                        return Ok(vec![ask(gateway, http, &order, name, request).await?]);
                    };
                    let asked = Asked {
                        gateway,
                        router,
                        http,
                        params,
                        order: &order,
                        name,
                        shard,
                    };
                    let requests = narrowing.requests(&asked).await?;
                    let answers = requests
                        .iter()
                        .map(|request| ask(gateway, http, &order, name, request));
                    let answers = stream::iter(answers).buffered(AT_ONCE).collect().await;
                    first_error(answers)
                }
            });
            // Every shard's answer awaited, and the first failure in shard order reported: the
            // client hears the same error whichever shard answered first.
            let answers = match first_error(join_all(asked).await) {
                Ok(answers) => answers,
                Err(ScatterError::Failed { error }) => return Ok(failed_result(error)),
                Err(e) => return Err(e),
            };
            let answers = answers.into_iter().flatten().collect();
            Ok(plan.merger.merge(answers, params.epoch))
        }
    }
}

/// A statement's result that says it failed, in InfluxDB's words.
fn failed_result(error: impl Into<String>) -> Value {
    let mut result = Map::new();
    result.insert("error".into(), Value::String(error.into()));
    Value::Object(result)
}

/// The answers in order, or the first failure among them.
fn first_error<T>(results: Vec<Result<T, ScatterError>>) -> Result<Vec<T>, ScatterError> {
    results.into_iter().collect()
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

/// A statement's result from a one-statement answer.
fn first_result(results: Vec<Value>) -> Result<Value, ScatterError> {
    Ok(results
        .into_iter()
        .next()
        .unwrap_or_else(|| Value::Object(Map::new())))
}
