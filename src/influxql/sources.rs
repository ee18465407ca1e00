//! What a read statement reads: its `FROM` sources and `ON` database, found from its tokens.
//!
//! Enough for routing, not a parser: the sources of `SELECT` (including those of subqueries, at
//! any depth) and of the `SHOW` statements that accept `FROM`. A statement whose sources cannot
//! be told for sure is reported as reading every measurement, so it is sent to every shard.

use super::{
    classify::Statement,
    lexer::{Token, TokenKind},
};

/// A measurement a statement reads, as its `FROM` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The database, when the name is qualified (`"db"."rp"."cpu"`, `db..cpu`).
    pub db: Option<String>,
    /// The measurement, or a regex matching measurements.
    pub measurement: Measurement,
}

/// How a source names its measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measurement {
    /// One measurement, unquoted and unescaped.
    Name(String),
    /// Every measurement the regex (slashes removed) matches.
    Regex(String),
}

/// What one read statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reads {
    /// Only schema (databases, retention policies, users, continuous queries).
    Schema {
        /// Whether every shard must be asked and the answers merged: continuous queries live on
        /// one shard's nodes on a sharded cluster, and databases and retention policies may differ
        /// while a mutation is still queued for a node. Users and grants reach every node alike.
        merge: bool,
    },
    /// The listed sources, in the database `on` (from `ON db`) or the request's.
    Sources {
        /// The `ON` database, if any.
        on: Option<String>,
        /// The sources, subqueries' included.
        sources: Vec<Source>,
        /// Whether a subquery is among them.
        subquery: bool,
    },
    /// Any measurement (a data `SHOW` without `FROM`, or sources the gateway cannot read).
    Everything {
        /// The `ON` database, if any.
        on: Option<String>,
    },
}

/// Keywords that end a `FROM` list.
const AFTER_FROM: &[&str] = &[
    "WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET", "FILL", "TZ", "WITH", "INTO",
];

/// What `statement`, a read, reads.
pub fn reads(statement: &Statement<'_>) -> Reads {
    let tokens = &statement.tokens;
    let first = tokens.first();
    if first.is_some_and(|t| t.is_keyword("SHOW")) {
        let second = tokens.get(1);
        let schema = |word: &str| second.is_some_and(|t| t.is_keyword(word));
        if schema("DATABASES") || schema("RETENTION") || schema("CONTINUOUS") {
            return Reads::Schema { merge: true };
        }
        if schema("USERS") || schema("GRANTS") {
            return Reads::Schema { merge: false };
        }
    }
    let on = on_database(tokens);
    let Some(from) = top_level_from(tokens) else {
        return Reads::Everything { on };
    };
    let mut sources = Vec::new();
    let mut subquery = false;
    match source_list(&tokens[from + 1..], &mut sources, &mut subquery) {
        Some(_) if !sources.is_empty() => Reads::Sources {
            on,
            sources,
            subquery,
        },
        _ => Reads::Everything { on },
    }
}

/// The database named by `ON db`, outside parentheses.
pub fn on_database(tokens: &[Token<'_>]) -> Option<String> {
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate() {
        match token.text {
            "(" if token.kind == TokenKind::Punct => depth += 1,
            ")" if token.kind == TokenKind::Punct => depth -= 1,
            _ if depth == 0 && token.is_keyword("ON") => {
                return tokens.get(i + 1).and_then(identifier);
            }
            _ => {}
        }
    }
    None
}

/// The index of the statement's own `FROM` (not a subquery's).
pub(super) fn top_level_from(tokens: &[Token<'_>]) -> Option<usize> {
    top_level_keyword(tokens, "FROM")
}

/// The index of the first `keyword` outside parentheses.
pub(super) fn top_level_keyword(tokens: &[Token<'_>], keyword: &str) -> Option<usize> {
    let mut depth = 0i32;
    tokens.iter().position(|token| {
        if token.is_punct("(") {
            depth += 1;
        } else if token.is_punct(")") {
            depth -= 1;
        }
        depth == 0 && token.is_keyword(keyword)
    })
}

/// Reads a comma-separated source list; returns how many tokens it took, or `None` when it is not
/// one the gateway understands.
pub(super) fn source_list(
    tokens: &[Token<'_>],
    sources: &mut Vec<Source>,
    subquery: &mut bool,
) -> Option<usize> {
    let mut i = 0;
    loop {
        let token = tokens.get(i)?;
        if token.is_punct("(") {
            // A subquery: its own sources count, at any depth.
            let close = matching_paren(tokens, i)?;
            let inner = &tokens[i + 1..close];
            let from = top_level_from(inner)?;
            source_list(&inner[from + 1..], sources, subquery)?;
            *subquery = true;
            i = close + 1;
        } else {
            i += qualified_source(&tokens[i..], sources)?;
        }
        match tokens.get(i) {
            Some(t) if t.is_punct(",") => i += 1,
            None => return Some(i),
            Some(t) if t.kind == TokenKind::Ident && is_clause(t.text) => return Some(i),
            Some(t) if t.is_punct(")") => return Some(i),
            Some(_) => return None,
        }
    }
}

fn is_clause(word: &str) -> bool {
    AFTER_FROM.iter().any(|k| word.eq_ignore_ascii_case(k))
}

/// `m`, `rp.m`, `db.rp.m`, `db..m`, and the same with a regex last; returns tokens taken.
pub(super) fn qualified_source(tokens: &[Token<'_>], sources: &mut Vec<Source>) -> Option<usize> {
    // Parts separated by dots; an empty part (`db..m`) is the default retention policy.
    let mut parts: Vec<Option<&Token<'_>>> = vec![None];
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        match token.kind {
            TokenKind::Punct if token.text == "." => parts.push(None),
            TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::Regex
                if parts.last().is_some_and(Option::is_none) =>
            {
                if token.kind == TokenKind::Ident && is_clause(token.text) {
                    break;
                }
                if let Some(last) = parts.last_mut() {
                    *last = Some(token);
                }
            }
            _ => break,
        }
        i += 1;
    }
    if parts.len() > 3 {
        return None;
    }
    let last = (*parts.last()?)?;
    let db = if parts.len() == 3 {
        parts[0].and_then(identifier)
    } else {
        None
    };
    let measurement = match last.kind {
        TokenKind::Regex => Measurement::Regex(regex_body(last.text).to_owned()),
        _ => Measurement::Name(identifier(last)?),
    };
    sources.push(Source { db, measurement });
    Some(i)
}

fn matching_paren(tokens: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if token.is_punct("(") {
            depth += 1;
        } else if token.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// An identifier's name: bare, or double-quoted with `\"` and `\\` escapes.
pub fn identifier(token: &Token<'_>) -> Option<String> {
    match token.kind {
        TokenKind::Ident => Some(token.text.to_owned()),
        TokenKind::QuotedIdent => {
            let inner = token.text.strip_prefix('"')?.strip_suffix('"')?;
            let mut name = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(next @ ('"' | '\\'))) => {
                        name.push(next);
                        chars.next();
                    }
                    _ => name.push(c),
                }
            }
            Some(name)
        }
        _ => None,
    }
}

fn regex_body(text: &str) -> &str {
    text.strip_prefix('/')
        .and_then(|t| t.strip_suffix('/'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::classify_query;

    fn reads_of(q: &str) -> Reads {
        reads(&classify_query(q).unwrap()[0])
    }

    fn name(db: Option<&str>, m: &str) -> Source {
        Source {
            db: db.map(str::to_owned),
            measurement: Measurement::Name(m.to_owned()),
        }
    }

    fn from(sources: Vec<Source>, subquery: bool) -> Reads {
        Reads::Sources {
            on: None,
            sources,
            subquery,
        }
    }

    #[test]
    fn select_sources() {
        assert_eq!(
            reads_of("SELECT * FROM cpu WHERE host = 'a'"),
            from(vec![name(None, "cpu")], false)
        );
        assert_eq!(
            reads_of("SELECT v FROM cpu, \"my \\\"mem\\\"\" LIMIT 1"),
            from(vec![name(None, "cpu"), name(None, "my \"mem\"")], false)
        );
        assert_eq!(
            reads_of("SELECT v FROM \"db\".\"rp\".\"cpu\", db..mem, rp.disk GROUP BY *"),
            from(
                vec![
                    name(Some("db"), "cpu"),
                    name(Some("db"), "mem"),
                    name(None, "disk")
                ],
                false
            )
        );
        assert_eq!(
            reads_of("SELECT v FROM /^cpu/, db.rp./net/"),
            from(
                vec![
                    Source {
                        db: None,
                        measurement: Measurement::Regex("^cpu".into())
                    },
                    Source {
                        db: Some("db".into()),
                        measurement: Measurement::Regex("net".into())
                    }
                ],
                false
            )
        );
        assert_eq!(
            reads_of("SELECT max(m) FROM (SELECT mean(v) AS m FROM cpu, (SELECT v FROM mem) GROUP BY time(1m)) WHERE time > 0"),
            from(vec![name(None, "cpu"), name(None, "mem")], true)
        );
        assert_eq!(
            reads_of("SELECT v FROM \"from\" WHERE a = 'FROM x'"),
            from(vec![name(None, "from")], false)
        );
    }

    #[test]
    fn show_sources_and_on() {
        assert_eq!(
            reads_of("SHOW TAG KEYS ON telegraf FROM cpu"),
            Reads::Sources {
                on: Some("telegraf".into()),
                sources: vec![name(None, "cpu")],
                subquery: false
            }
        );
        assert_eq!(
            reads_of("SHOW MEASUREMENTS ON \"db\" WITH MEASUREMENT =~ /c/"),
            Reads::Everything {
                on: Some("db".into())
            }
        );
        assert_eq!(
            reads_of("SHOW TAG VALUES FROM cpu WITH KEY = host"),
            from(vec![name(None, "cpu")], false)
        );
        assert_eq!(reads_of("SHOW SERIES"), Reads::Everything { on: None });
        assert_eq!(reads_of("SHOW DATABASES"), Reads::Schema { merge: true });
        assert_eq!(
            reads_of("SHOW RETENTION POLICIES ON db"),
            Reads::Schema { merge: true }
        );
        assert_eq!(reads_of("SHOW USERS"), Reads::Schema { merge: false });
    }

    #[test]
    fn what_cannot_be_read_is_everything() {
        assert_eq!(reads_of("SELECT v FROM"), Reads::Everything { on: None });
        assert_eq!(
            reads_of("SELECT v FROM a.b.c.d"),
            Reads::Everything { on: None }
        );
        assert_eq!(
            reads_of("SELECT v FROM (SELECT v"),
            Reads::Everything { on: None }
        );
        assert_eq!(reads_of("SELECT 1"), Reads::Everything { on: None });
    }
}
