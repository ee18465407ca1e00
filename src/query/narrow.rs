//! Asking a shard for its own series only, when one of its nodes may hold other shards' series
//! too: a node that is a replica of two shards, or data on the move (copies arriving, writes
//! going to both layouts, copies not yet deleted). Left alone, such a node answers for every
//! series it holds, and the merge counts them twice.
//!
//! Each shard is asked, by name, for the measurements the routes place on it (a regex source
//! expanded into names on the replica asked), and for each measurement spread over shards by a
//! tag, in a statement of its own, for the series whose tag value the routes place on it. A
//! `SELECT` never puts two measurements' points in one series, and `SLIMIT` counts within each,
//! so the merged answers hold the points the one statement would. What a wildcard (`*`,
//! `GROUP BY *`) expands to differs, as for any statement spanning shards: influxd takes the union
//! over all of a statement's sources, a statement asked of some sees only theirs, and the merge
//! gives every series the union (`merge::combine`).

use std::collections::HashSet;

use futures_util::{
    future::join_all,
    stream::{self, StreamExt},
};
use serde_json::Value;

use super::shard_ask::{ask, ClientParams, Cluster, ScatterError};
use crate::{
    influxql::{
        classify_query,
        condition::and_where,
        from::FromList,
        quote::{ident, literal},
        sources::{on_database, Measurement},
        Statement,
    },
    node::{ForwardedQuery, NodeId},
    router::{Placement, Router, ShardId},
};

/// How many statements one shard's narrowing asks at once, listings or narrowed statements: a
/// regex may match many spread measurements, and one query must not trip influxd's
/// max-concurrent-queries.
pub(super) const AT_ONCE: usize = 4;

/// How the statement sent to every shard is narrowed to each shard's own series.
pub(super) struct Narrowing {
    /// The statements of the text sent (a merge may add one for raw points), each with its
    /// `FROM` list; every one reads the same sources.
    statements: Vec<(String, FromList)>,
    /// The database of the sources that do not name one.
    db: Option<String>,
}

/// One statement a shard is asked: the `FROM` list, and the condition naming its series of a
/// measurement spread by a tag.
struct Piece {
    from: String,
    condition: Option<String>,
}

/// One shard being asked, and what asking it takes.
pub(super) struct Asked<'a, C> {
    /// The running gateway.
    pub gateway: &'a C,
    /// The routes the statement was planned with.
    pub router: &'a Router,
    /// The client for reads.
    pub http: &'a awc::Client,
    /// What the client asked for, besides `q`.
    pub params: &'a ClientParams,
    /// The shard's replicas, best first.
    pub order: &'a [NodeId],
    /// The shard's name, for errors.
    pub name: &'a str,
    /// The shard.
    pub shard: ShardId,
}

impl Narrowing {
    /// How to narrow `text`, the statement planned for every shard in place of `statement`:
    /// `None` for what needs no narrowing (schema lists are de-duplicated by the merge) or what
    /// influxd refuses anyway (no database); an error, the statement's refusal, when a `SELECT`'s
    /// sources cannot be read (a bound parameter for a name, say): sent whole, it would count the
    /// series of other shards.
    pub(super) fn of(
        statement: &Statement<'_>,
        text: &str,
        params: &ClientParams,
    ) -> Result<Option<Self>, String> {
        if !statement
            .tokens
            .first()
            .is_some_and(|t| t.is_keyword("SELECT"))
        {
            return Ok(None);
        }
        let unreadable = || {
            "a node here holds the series of other shards too (it is a replica of two shards, or \
             data is being moved), so each shard must be asked for its measurements by name, and \
             the gateway cannot read this statement's FROM: name the measurements plainly"
                .to_owned()
        };
        let mut statements = Vec::new();
        for one in classify_query(text).map_err(|_| unreadable())? {
            let (Some(first), Some(last)) = (one.tokens.first(), one.tokens.last()) else {
                continue;
            };
            let own = text
                .get(first.offset..last.offset + last.text.len())
                .ok_or_else(unreadable)?;
            let lexed = classify_query(own).map_err(|_| unreadable())?;
            let list = lexed
                .first()
                .and_then(|one| FromList::of(own, one))
                .ok_or_else(unreadable)?;
            statements.push((own.to_owned(), list));
        }
        let db = on_database(&statement.tokens).or_else(|| {
            params
                .passed
                .iter()
                .find(|(k, _)| k == "db")
                .map(|(_, v)| v.clone())
        });
        let Some((_, list)) = statements.first() else {
            return Err(unreadable());
        };
        // Without a database influxd refuses the statement: let it say so.
        if db.is_none() && list.sources.iter().any(|w| w.source.db.is_none()) {
            return Ok(None);
        }
        Ok(Some(Narrowing { statements, db }))
    }

    /// The requests asking `asked.shard` for its own series; none when it holds none of the
    /// measurements read.
    pub(super) async fn requests(
        &self,
        asked: &Asked<'_, impl Cluster>,
    ) -> Result<Vec<ForwardedQuery>, ScatterError> {
        let pieces = self.pieces(asked).await?;
        let mut requests = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let mut texts = Vec::with_capacity(self.statements.len());
            for (text, list) in &self.statements {
                let own = list.replaced(text, &piece.from);
                let own = match &piece.condition {
                    None => own,
                    Some(condition) => {
                        and_where(&own, condition).ok_or_else(|| ScatterError::Unavailable {
                            shard: asked.name.to_owned(),
                            reason: format!("the gateway could not narrow {own:?} to its series"),
                        })?
                    }
                };
                texts.push(own);
            }
            requests.push(asked.params.request(&texts.join(";\n"), Some("ns")));
        }
        Ok(requests)
    }

    /// The statements `asked.shard` must be asked, by their `FROM` and condition. The listings
    /// they need are asked side by side: each regex's measurements at once (a `FROM` names few),
    /// then the spread measurements' tag values [`AT_ONCE`] at a time.
    async fn pieces(&self, asked: &Asked<'_, impl Cluster>) -> Result<Vec<Piece>, ScatterError> {
        let Some((_, list)) = self.statements.first() else {
            return Ok(Vec::new());
        };
        let sources = list.sources.iter().filter_map(|written| {
            let db = written.source.db.as_ref().or(self.db.as_ref())?;
            Some((written, db))
        });
        let named = join_all(sources.map(|(written, db)| async move {
            let names = match &written.source.measurement {
                Measurement::Name(name) => vec![name.clone()],
                Measurement::Regex(regex) => {
                    let q = format!(
                        "SHOW MEASUREMENTS ON {} WITH MEASUREMENT =~ /{regex}/",
                        ident(db)
                    );
                    listing(asked, &q, 0).await?
                }
            };
            Ok::<_, ScatterError>((written, db, names))
        }))
        .await;
        let mut plain: Vec<String> = Vec::new();
        let mut spread = Vec::new();
        let mut seen: HashSet<(&str, String)> = HashSet::new();
        for named in named {
            let (written, db, names) = named?;
            for name in names {
                if !seen.insert((&written.qualifier, name.clone())) {
                    continue;
                }
                let from = format!("{}{}", written.qualifier, ident(&name));
                match asked.router.placement(db, &name) {
                    Placement::Shard(shard) if shard == asked.shard => plain.push(from),
                    Placement::Shard(_) => {}
                    Placement::ByTag { key, shards } if shards.contains(&asked.shard) => {
                        spread.push((from, db, name, key.name(), shards));
                    }
                    Placement::ByTag { .. } => {}
                }
            }
        }
        let conditions: Vec<Result<String, ScatterError>> = stream::iter(
            spread
                .iter()
                .map(|(_, db, name, key, shards)| tag_condition(asked, (db, name, key), shards)),
        )
        .buffered(AT_ONCE)
        .collect()
        .await;
        let mut pieces = Vec::with_capacity(spread.len() + 1);
        if !plain.is_empty() {
            pieces.push(Piece {
                from: plain.join(", "),
                condition: None,
            });
        }
        for ((from, ..), condition) in spread.into_iter().zip(conditions) {
            pieces.push(Piece {
                from,
                condition: Some(condition?),
            });
        }
        Ok(pieces)
    }
}

/// The condition naming the series of `measurement` (in `db`, spread by tag `key` over
/// `shards`) that `asked.shard` holds: every value of the tag its replica knows that the routes
/// place there (the empty one for series without the tag).
///
/// The listing is asked of the shard's replicas in the order the statement will be. Should the
/// replica that answered it fail before the statement is asked, the next one is asked the
/// statement with the first one's list: while data moves it may hold values the first did not
/// list yet, whose points that one answer then lacks.
async fn tag_condition(
    asked: &Asked<'_, impl Cluster>,
    (db, measurement, key): (&str, &str, &str),
    shards: &[ShardId],
) -> Result<String, ScatterError> {
    let q = format!(
        "SHOW TAG VALUES ON {} FROM {} WITH KEY = {}",
        ident(db),
        ident(measurement),
        ident(key)
    );
    let key = ident(key);
    let router = asked.router;
    let mut terms: Vec<String> = listing(asked, &q, 1)
        .await?
        .into_iter()
        .filter(|value| router.shard_for_tag(shards, value) == asked.shard)
        .map(|value| format!("{key} = {}", literal(&value)))
        .collect();
    if router.shard_for_tag(shards, "") == asked.shard {
        terms.push(format!("{key} = ''"));
    }
    Ok(if terms.is_empty() {
        // Nothing of it here: a condition no series meets.
        format!("({key} = '' AND {key} != '')")
    } else {
        format!("({})", terms.join(" OR "))
    })
}

/// Column `column` of every row a `SHOW` statement gives, asked of the shard's replicas in the
/// order the statement will be (see [`tag_condition`]).
async fn listing(
    asked: &Asked<'_, impl Cluster>,
    q: &str,
    column: usize,
) -> Result<Vec<String>, ScatterError> {
    let request = asked.params.request(q, None);
    let results = ask(asked.gateway, asked.http, asked.order, asked.name, &request)
        .await
        // Its refusal would read as the whole query's: the client would get one node's answer.
        .map_err(|e| match e {
            ScatterError::Refused { status, body } => ScatterError::Unavailable {
                shard: asked.name.to_owned(),
                reason: format!(
                    "listing its series answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            },
            other => other,
        })?;
    // influxd answers a statement that failed (no such database, a timeout) with 200 and the
    // error in its result: an empty list read from it would drop the shard's series unseen. The
    // error is the statement's, as one influxd would have given it.
    if let Some(error) = results.iter().find_map(|r| r.get("error")) {
        return Err(ScatterError::Failed {
            error: error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned),
        });
    }
    Ok(results
        .iter()
        .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|row| row.get(column).and_then(Value::as_str).map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrowing(q: &str) -> Result<Option<Narrowing>, String> {
        let statements = classify_query(q).expect("lexes");
        let params = ClientParams::new("db=db", None, None);
        Narrowing::of(&statements[0], q, &params)
    }

    #[test]
    fn a_select_with_named_sources_is_narrowed_statement_by_statement() {
        let q = "SELECT v FROM cpu, \"db\"..disk; SELECT v FROM cpu, \"db\"..disk";
        let narrowing = narrowing(q).expect("readable").expect("narrowed");
        assert_eq!(narrowing.statements.len(), 2);
        assert_eq!(narrowing.db.as_deref(), Some("db"));
    }

    #[test]
    fn what_needs_no_narrowing_is_sent_whole() {
        assert!(matches!(
            narrowing("SHOW TAG KEYS FROM cpu, disk"),
            Ok(None)
        ));
        let statements = classify_query("SELECT v FROM cpu").expect("lexes");
        let no_db = ClientParams::new("", None, None);
        assert!(matches!(
            Narrowing::of(&statements[0], "SELECT v FROM cpu", &no_db),
            Ok(None)
        ));
    }

    #[test]
    fn a_select_whose_sources_cannot_be_read_is_refused_rather_than_sent_whole() {
        let why = narrowing("SELECT v FROM cpu, $m").err().expect("refused");
        assert!(why.contains("by name"), "{why}");
    }
}
