//! Mutations: every node applies the query, in order with its writes, and the answer waits for all.
//!
//! A node that cannot take the mutation now holds it in its disk queue, in order, and applies it
//! when it returns, before any write queued after it. The client's answer then says so in
//! InfluxDB's `messages` field, instead of failing.

use std::{sync::Mutex, time::Duration};

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::node::{
    Delivery, ExchangeError, ForwardedQuery, NodeHandle, NodeResponse, Op, QueuedBecause,
};

/// How a broadcast ended.
#[derive(Debug)]
pub enum BroadcastOutcome {
    /// Every node answered or queued the mutation; this is the answer to pass on.
    Answered(NodeResponse),
    /// Some nodes neither applied nor queued it; the text says which did what.
    Incomplete(String),
}

/// Sends `query` (of `statements` statements) through the actor of each of `nodes` (every node,
/// or one shard's replicas) and combines the answers. The hand-off happens under `order`, as for
/// writes, so every node sees one order.
pub async fn broadcast(
    nodes: &[&NodeHandle],
    order: &Mutex<()>,
    query: &ForwardedQuery,
    statements: usize,
    timeout: Duration,
) -> BroadcastOutcome {
    let deliveries: Vec<_> = {
        let _order = order.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .map(|node| node.deliver(Op::Mutation(query.clone())))
            .collect()
    };
    let answers = join_all(deliveries.into_iter().map(|delivery| async move {
        tokio::time::timeout(timeout, delivery)
            .await
            .unwrap_or(Delivery::Failed(ExchangeError::Timeout(timeout).into()))
    }))
    .await;
    combine(
        nodes.iter().map(|n| n.status().name()).zip(answers),
        statements,
    )
}

/// Every node answered or queued: pass on the first refusal if any node refused (bad credentials,
/// a parse error), else the first node's answer, with a note for each node that queued it (and
/// why) or whose copy could not be queued (it is flagged `needs_resync`). Some node did neither,
/// or no node holds the statement at all: say so, naming every node.
fn combine<'a>(
    answers: impl IntoIterator<Item = (&'a str, Delivery)>,
    statements: usize,
) -> BroadcastOutcome {
    let mut applied: Vec<(&str, NodeResponse)> = Vec::new();
    let mut queued = Vec::new();
    let mut unstored = Vec::new();
    let mut missed = Vec::new();
    let mut first_rejected = None;
    for (name, delivery) in answers {
        match delivery {
            Delivery::Accepted(answer) => applied.push((name, answer)),
            Delivery::Rejected(answer) => {
                first_rejected.get_or_insert(answer);
            }
            Delivery::Queued(because) => queued.push((name, because)),
            Delivery::Failed(e) if e.is_unstored_copy() => unstored.push((name, e)),
            Delivery::Failed(e) => missed.push(format!("{name} ({e})")),
        }
    }
    if applied.is_empty() && queued.is_empty() {
        // A copy not stored is tolerated beside a node that has the statement, never alone.
        missed.extend(unstored.drain(..).map(|(name, e)| format!("{name} ({e})")));
    }
    if !missed.is_empty() {
        let held: Vec<&str> = applied
            .iter()
            .map(|(name, _)| *name)
            .chain(queued.iter().map(|(name, _)| *name))
            .collect();
        let held = if held.is_empty() {
            "no node".to_owned()
        } else {
            held.join(", ")
        };
        return BroadcastOutcome::Incomplete(format!(
            "statement applied or queued on {held} but not on {}",
            missed.join(", ")
        ));
    }
    if let Some(refusal) = first_rejected {
        return BroadcastOutcome::Answered(refusal);
    }
    let mut notes: Vec<String> = queued
        .iter()
        .map(|(name, because)| {
            let when = match because {
                QueuedBecause::Down => "when it returns",
                _ => "behind what is queued before it",
            };
            format!("node {name} is {because}: the statement is queued for it and will be applied, in order, {when}")
        })
        .chain(unstored.iter().map(|(name, e)| {
            format!("node {name} did not get the statement: {e}; it is flagged as needing a resync")
        }))
        .collect();
    // InfluxDB reports a failed statement inside a 200; nodes that disagree have diverged. Show the
    // answer that has the error, and say how each node fared.
    let errors: Vec<Vec<String>> = applied
        .iter()
        .map(|(_, answer)| statement_errors(&answer.body))
        .collect();
    let mut chosen = 0;
    if errors.iter().any(|e| *e != errors[0]) {
        chosen = errors.iter().position(|e| !e.is_empty()).unwrap_or(0);
        let fared: Vec<String> = applied
            .iter()
            .zip(&errors)
            .map(|((name, _), errors)| match errors.as_slice() {
                [] => format!("{name}: ok"),
                errors => format!("{name}: {}", errors.join(", ")),
            })
            .collect();
        notes.push(format!(
            "the nodes answered differently: {}",
            fared.join("; ")
        ));
    }
    let answer = match applied.into_iter().nth(chosen) {
        Some((_, answer)) => with_messages(answer, &notes),
        None => synthesized(statements, &notes),
    };
    BroadcastOutcome::Answered(answer)
}

/// The `error` of every result in an InfluxDB JSON answer.
fn statement_errors(body: &[u8]) -> Vec<String> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    body.get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|result| result.get("error").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// Adds `notes` as warnings to every result of an InfluxDB JSON answer; other answers pass as they are.
fn with_messages(mut answer: NodeResponse, notes: &[String]) -> NodeResponse {
    if notes.is_empty() {
        return answer;
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&answer.body) else {
        return answer;
    };
    let Some(results) = body.get_mut("results").and_then(Value::as_array_mut) else {
        return answer;
    };
    for result in results.iter_mut().filter_map(Value::as_object_mut) {
        let messages = result.entry("messages").or_insert_with(|| json!([]));
        if let Some(messages) = messages.as_array_mut() {
            messages.extend(
                notes
                    .iter()
                    .map(|text| json!({ "level": "warning", "text": text })),
            );
        }
    }
    answer.body = Bytes::from(body.to_string());
    answer
}

/// The answer when every node queued the mutation: one result per statement, each with the notes.
fn synthesized(statements: usize, notes: &[String]) -> NodeResponse {
    let messages: Vec<Value> = notes
        .iter()
        .map(|text| json!({ "level": "warning", "text": text }))
        .collect();
    let results: Vec<Value> = (0..statements.max(1))
        .map(|id| json!({ "statement_id": id, "messages": messages }))
        .collect();
    NodeResponse {
        status: actix_web::http::StatusCode::OK,
        headers: vec![(
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderValue::from_static("application/json"),
        )],
        body: Bytes::from(json!({ "results": results }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{GatewayError, NodeError};
    use actix_web::http::StatusCode;

    #[test]
    fn all_answered_gives_the_first_answer() {
        let outcome = combine(
            [
                ("a", Delivery::Accepted(NodeResponse::of(200, "a"))),
                ("b", Delivery::Accepted(NodeResponse::of(200, "b"))),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        assert_eq!(answer.body, "a");
    }

    #[test]
    fn a_refusal_wins() {
        let outcome = combine(
            [
                ("a", Delivery::Accepted(NodeResponse::of(200, "a"))),
                ("b", Delivery::Rejected(NodeResponse::of(401, "b"))),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_queued_node_is_reported_in_messages() {
        let outcome = combine(
            [
                (
                    "a",
                    Delivery::Accepted(NodeResponse::of(
                        200,
                        r#"{"results":[{"statement_id":0}]}"#,
                    )),
                ),
                ("b", Delivery::Queued(QueuedBecause::Down)),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        let text = body["results"][0]["messages"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("node b is down: the statement is queued"),
            "{text}"
        );
        assert_eq!(body["results"][0]["messages"][0]["level"], "warning");
    }

    #[test]
    fn every_node_queued_still_answers_each_statement() {
        let outcome = combine(
            [
                ("a", Delivery::Queued(QueuedBecause::Draining)),
                ("b", Delivery::Queued(QueuedBecause::Down)),
            ],
            2,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
        assert_eq!(body["results"][1]["statement_id"], 1);
        assert_eq!(body["results"][1]["messages"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn nodes_that_disagree_are_reported() {
        let outcome = combine(
            [
                (
                    "a",
                    Delivery::Accepted(NodeResponse::of(
                        200,
                        r#"{"results":[{"statement_id":0}]}"#,
                    )),
                ),
                (
                    "b",
                    Delivery::Accepted(NodeResponse::of(
                        200,
                        r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
                    )),
                ),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["results"][0]["error"], "database not found: x");
        assert_eq!(
            body["results"][0]["messages"][0]["text"],
            "the nodes answered differently: a: ok; b: database not found: x"
        );
    }

    #[test]
    fn a_node_draining_its_queue_is_not_called_down() {
        let outcome = combine(
            [
                (
                    "a",
                    Delivery::Accepted(NodeResponse::of(
                        200,
                        r#"{"results":[{"statement_id":0}]}"#,
                    )),
                ),
                ("b", Delivery::Queued(QueuedBecause::Draining)),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!()
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            body["results"][0]["messages"][0]["text"],
            "node b is up but replaying its queue: the statement is queued for it and will be applied, in order, behind what is queued before it"
        );
    }

    #[test]
    fn a_copy_not_stored_is_a_warning_beside_a_node_that_applied_it() {
        let full = || {
            Delivery::Failed(NodeError::Gateway(GatewayError::DiskFull {
                free: 10,
                reserve: 20,
            }))
        };
        let outcome = combine(
            [
                (
                    "a",
                    Delivery::Accepted(NodeResponse::of(
                        200,
                        r#"{"results":[{"statement_id":0}]}"#,
                    )),
                ),
                ("b", full()),
            ],
            1,
        );
        let BroadcastOutcome::Answered(answer) = outcome else {
            panic!("{outcome:?}")
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        let text = body["results"][0]["messages"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("node b did not get the statement: disk full ("),
            "{text}"
        );
        assert!(
            text.ends_with("it is flagged as needing a resync"),
            "{text}"
        );

        let BroadcastOutcome::Incomplete(why) = combine([("a", full()), ("b", full())], 1) else {
            panic!("no node holds it")
        };
        assert!(
            why.starts_with("statement applied or queued on no node but not on a (disk full"),
            "{why}"
        );
    }

    #[test]
    fn a_missing_node_is_named() {
        let outcome = combine(
            [
                ("a", Delivery::Accepted(NodeResponse::of(200, "a"))),
                ("b", Delivery::Failed(GatewayError::Stopped.into())),
            ],
            1,
        );
        let BroadcastOutcome::Incomplete(why) = outcome else {
            panic!()
        };
        assert_eq!(
            why,
            "statement applied or queued on a but not on b (node actor stopped)"
        );
    }
}
