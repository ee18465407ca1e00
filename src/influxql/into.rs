//! What a statement that writes a query's results back reads and where it writes them:
//! `SELECT ... INTO` and `CREATE CONTINUOUS QUERY`.
//!
//! A node computes such a statement from its own data and writes the result to itself. On a
//! sharded cluster that is right only when every source and the target live on one shard: the
//! router decides that from what is read here.

use super::{
    classify::Statement,
    lexer::{Token, TokenKind},
    sources::{identifier, on_database, source_list, top_level_from, top_level_keyword, Source},
};

/// The sources and target of a statement that writes query results back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    /// The continuous query's `ON` database (`None` for `SELECT ... INTO`: the request's).
    pub on: Option<String>,
    /// What the `SELECT` reads.
    pub sources: Vec<Source>,
    /// Where it writes.
    pub into: Into,
}

/// The `INTO` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Into {
    /// The database, when the target names one (`"db"."rp"."m"`).
    pub db: Option<String>,
    /// The measurement; `None` for `:MEASUREMENT`, each source's own name.
    pub measurement: Option<String>,
}

/// Why a statement that writes back could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// No `INTO` at all (a continuous query must have one).
    #[error("it has no INTO")]
    NoInto,
    /// No `INTO` outside subqueries (an `INTO` inside one).
    #[error("its INTO is inside a subquery")]
    NestedInto,
    /// The `INTO` target is not `m`, `rp.m`, `db.rp.m` or one of those ending in `:MEASUREMENT`.
    #[error("its INTO target could not be read")]
    Target,
    /// The `FROM` list could not be read.
    #[error("its FROM list could not be read")]
    Sources,
}

/// Reads `statement` if it writes query results back; `None` for any other statement.
pub fn write_back(statement: &Statement<'_>) -> Option<Result<WriteBack, Unreadable>> {
    let tokens = &statement.tokens[..];
    let first = tokens.first()?;
    let (on, select) = if first.is_keyword("CREATE")
        && tokens.get(1).is_some_and(|t| t.is_keyword("CONTINUOUS"))
    {
        let begin = tokens.iter().position(|t| t.is_keyword("BEGIN"))?;
        let end = tokens.iter().rposition(|t| t.is_keyword("END"))?;
        let select = tokens.get(begin + 1..end)?;
        (on_database(&tokens[..begin]), select)
    } else if first.is_keyword("SELECT") && tokens.iter().any(|t| t.is_keyword("INTO")) {
        (None, tokens)
    } else {
        return None;
    };
    Some(read(on, select))
}

fn read(on: Option<String>, select: &[Token<'_>]) -> Result<WriteBack, Unreadable> {
    let from = top_level_from(select).ok_or(Unreadable::Sources)?;
    let into = top_level_keyword(&select[..from], "INTO").ok_or_else(|| {
        if select.iter().any(|t| t.is_keyword("INTO")) {
            Unreadable::NestedInto
        } else {
            Unreadable::NoInto
        }
    })?;
    let into = target(&select[into + 1..from]).ok_or(Unreadable::Target)?;
    let mut sources = Vec::new();
    let mut subquery = false;
    match source_list(&select[from + 1..], &mut sources, &mut subquery) {
        Some(_) if !sources.is_empty() => Ok(WriteBack { on, sources, into }),
        _ => Err(Unreadable::Sources),
    }
}

/// `m`, `rp.m`, `db.rp.m`, `db..m`, each with `:MEASUREMENT` in place of `m`.
fn target(tokens: &[Token<'_>]) -> Option<Into> {
    let parts: Vec<&[Token<'_>]> = tokens.split(|t| t.is_punct(".")).collect();
    let (last, qualifiers) = parts.split_last()?;
    let measurement = match last {
        [name] => Some(identifier(name)?),
        [colon, word] if colon.is_punct(":") && word.is_keyword("MEASUREMENT") => None,
        _ => return None,
    };
    let name_or_empty = |part: &[Token<'_>]| match part {
        [] => Some(None),
        [name] if matches!(name.kind, TokenKind::Ident | TokenKind::QuotedIdent) => {
            Some(identifier(name))
        }
        _ => None,
    };
    let db = match qualifiers {
        [] | [_] => {
            name_or_empty(qualifiers.first().copied().unwrap_or(&[]))?;
            None
        }
        [db, rp] => {
            name_or_empty(rp)?;
            name_or_empty(db)?
        }
        _ => return None,
    };
    Some(Into { db, measurement })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::{classify_query, sources::Measurement};

    fn of(q: &str) -> Option<Result<WriteBack, Unreadable>> {
        write_back(&classify_query(q).unwrap()[0])
    }

    fn named(db: Option<&str>, m: &str) -> Source {
        Source {
            db: db.map(str::to_owned),
            measurement: Measurement::Name(m.to_owned()),
        }
    }

    #[test]
    fn a_continuous_query_reads_its_sources_and_target() {
        assert_eq!(
            of(
                "CREATE CONTINUOUS QUERY \"c q\" ON telegraf RESAMPLE EVERY 1m FOR 5m BEGIN \
                SELECT mean(v) INTO \"telegraf\".\"autogen\".\"cpu_1m\" FROM cpu, \"other\"..mem \
                GROUP BY time(1m), * END"
            ),
            Some(Ok(WriteBack {
                on: Some("telegraf".into()),
                sources: vec![named(None, "cpu"), named(Some("other"), "mem")],
                into: Into {
                    db: Some("telegraf".into()),
                    measurement: Some("cpu_1m".into()),
                },
            }))
        );
    }

    #[test]
    fn targets_of_every_form() {
        let into = |q: &str| of(q).unwrap().map(|w| w.into);
        let at = |db: Option<&str>, m: Option<&str>| {
            Ok(Into {
                db: db.map(str::to_owned),
                measurement: m.map(str::to_owned),
            })
        };
        assert_eq!(into("SELECT * INTO m FROM cpu"), at(None, Some("m")));
        assert_eq!(into("SELECT * INTO rp.m FROM cpu"), at(None, Some("m")));
        assert_eq!(
            into("SELECT * INTO db.rp.m FROM cpu"),
            at(Some("db"), Some("m"))
        );
        assert_eq!(
            into("SELECT * INTO db..m FROM cpu"),
            at(Some("db"), Some("m"))
        );
        assert_eq!(
            into("SELECT * INTO \"d b\".\"r\".:MEASUREMENT FROM /c/"),
            at(Some("d b"), None)
        );
        assert_eq!(into("SELECT * INTO :measurement FROM cpu"), at(None, None));
        assert_eq!(
            into("SELECT * INTO a.b.c.d FROM cpu"),
            Err(Unreadable::Target)
        );
        assert_eq!(into("SELECT * INTO 'm' FROM cpu"), Err(Unreadable::Target));
    }

    #[test]
    fn other_statements_are_not_read() {
        assert_eq!(of("SELECT * FROM cpu"), None);
        assert_eq!(of("CREATE DATABASE x"), None);
        assert_eq!(
            of("CREATE CONTINUOUS QUERY c ON db BEGIN SELECT max(v) FROM cpu END"),
            Some(Err(Unreadable::NoInto))
        );
        assert_eq!(
            of("SELECT * FROM (SELECT v INTO x FROM cpu)"),
            Some(Err(Unreadable::NestedInto))
        );
        assert_eq!(
            of("SELECT max(v) INTO x FROM (SELECT v FROM cpu)"),
            Some(Ok(WriteBack {
                on: None,
                sources: vec![named(None, "cpu")],
                into: Into {
                    db: None,
                    measurement: Some("x".into()),
                },
            }))
        );
    }
}
