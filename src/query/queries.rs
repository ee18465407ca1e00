//! `SHOW QUERIES` and `KILL QUERY` across the nodes. Each influxd numbers its own queries, so the
//! gateway lists every node's, each id made unique by the node's place in `nodes`, and sends a
//! `KILL QUERY` to the node that owns the id: `(node index + 1) × 10¹²` plus the node's own id.
//! An id no node owns gets influxd's own answer, `no such query id`. Pure: the HTTP handler asks
//! the nodes.

use serde_json::{Map, Value};

use crate::{
    influxql::{Statement, TokenKind},
    node::NodeId,
};

/// Ids a node's own query ids are offset by, per place in `nodes`.
const SPAN: u64 = 1_000_000_000_000;

/// A whole `q` the gateway answers across the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOp {
    /// `SHOW QUERIES`.
    Show,
    /// `KILL QUERY <id>`, the id as the gateway gave it.
    Kill(u64),
}

/// Whether `statements` are one `SHOW QUERIES` or one `KILL QUERY <id>` (without `ON`).
pub fn query_op(statements: &[Statement<'_>]) -> Option<QueryOp> {
    let [statement] = statements else {
        return None;
    };
    match statement.tokens.as_slice() {
        [show, queries] if show.is_keyword("SHOW") && queries.is_keyword("QUERIES") => {
            Some(QueryOp::Show)
        }
        [kill, query, id]
            if kill.is_keyword("KILL")
                && query.is_keyword("QUERY")
                && id.kind == TokenKind::Number =>
        {
            id.text.parse().ok().map(QueryOp::Kill)
        }
        _ => None,
    }
}

/// The gateway's id of query `qid` of node `node`.
pub fn gateway_id(node: NodeId, qid: u64) -> u64 {
    (node as u64 + 1)
        .saturating_mul(SPAN)
        .saturating_add(qid % SPAN)
}

/// The node and its own id behind a gateway id, if `nodes` nodes could have made it.
pub fn owner(id: u64, nodes: usize) -> Option<(NodeId, u64)> {
    let node = usize::try_from(id / SPAN).ok()?.checked_sub(1)?;
    (node < nodes).then_some((node, id % SPAN))
}

/// influxd's answer to a `KILL QUERY` of an id nobody owns.
pub fn no_such_query(id: u64) -> Value {
    serde_json::json!({"results": [{"statement_id": 0, "error": format!("no such query id: {id}")}]})
}

/// One answer listing every node's queries, ids made the gateway's, in node order; nodes that
/// could not be asked are named in a warning.
pub fn merge_lists(answers: &[(NodeId, Value)], unasked: &[String]) -> Value {
    let mut columns = Value::Null;
    let mut rows = Vec::new();
    for (node, answer) in answers {
        let series = &answer["results"][0]["series"][0];
        if columns.is_null() && series["columns"].is_array() {
            columns = series["columns"].clone();
        }
        for row in series["values"].as_array().into_iter().flatten() {
            let mut row = row.clone();
            if let Some(qid) = row.get(0).and_then(Value::as_u64) {
                row[0] = gateway_id(*node, qid).into();
            }
            rows.push(row);
        }
    }
    if columns.is_null() {
        columns = serde_json::json!(["qid", "query", "database", "duration", "status"]);
    }
    let mut result = Map::new();
    result.insert("statement_id".into(), 0.into());
    result.insert(
        "series".into(),
        serde_json::json!([{ "columns": columns, "values": rows }]),
    );
    if !unasked.is_empty() {
        result.insert(
            "messages".into(),
            serde_json::json!([{
                "level": "warning",
                "text": format!("queries of {} not listed: not reachable", unasked.join(", ")),
            }]),
        );
    }
    serde_json::json!({ "results": [Value::Object(result)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::classify_query;

    #[test]
    fn only_a_lone_show_or_kill_is_answered_across_the_nodes() {
        let op = |q: &str| query_op(&classify_query(q).unwrap());
        assert_eq!(op("SHOW QUERIES"), Some(QueryOp::Show));
        assert_eq!(op("show queries;"), Some(QueryOp::Show));
        assert_eq!(
            op("KILL QUERY 2000000000007"),
            Some(QueryOp::Kill(2_000_000_000_007))
        );
        assert_eq!(op("KILL QUERY 7 ON \"h\""), None);
        assert_eq!(op("SHOW QUERIES; SHOW QUERIES"), None);
        assert_eq!(op("SHOW STATS"), None);
    }

    #[test]
    fn ids_name_their_node_and_an_unknown_one_nobody() {
        assert_eq!(gateway_id(0, 36), 1_000_000_000_036);
        assert_eq!(owner(1_000_000_000_036, 3), Some((0, 36)));
        assert_eq!(owner(gateway_id(2, 5), 3), Some((2, 5)));
        assert_eq!(owner(36, 3), None, "an influxd id, not the gateway's");
        assert_eq!(owner(gateway_id(3, 5), 3), None, "no fourth node");
    }

    #[test]
    fn lists_are_merged_with_the_gateways_ids() {
        let list = |qid: u64| serde_json::json!({"results":[{"statement_id":0,"series":[{"columns":["qid","query","database","duration","status"],"values":[[qid,"SHOW QUERIES","","50µs","running"]]}]}]});
        let merged = merge_lists(&[(0, list(7)), (2, list(9))], &["c".to_owned()]);
        let rows = &merged["results"][0]["series"][0]["values"];
        assert_eq!(rows[0][0], 1_000_000_000_007u64);
        assert_eq!(rows[1][0], 3_000_000_000_009u64);
        assert!(merged["results"][0]["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("c"));
    }
}
