//! A statement's own `FROM` list as written, and the statement with another list in its place:
//! for the statement a shard is asked when a node may hold the series of other shards, and must
//! be asked for its own measurements by name.

use std::ops::Range;

use super::{
    classify::Statement,
    sources::{qualified_source, top_level_from, Source},
    TokenKind,
};

/// One source of a `FROM` list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// What it names.
    pub source: Source,
    /// The text before the measurement: `"db"."rp".`, `rp.`, `db..`, or nothing.
    pub qualifier: String,
}

/// A statement's own `FROM` list: its sources and where the list is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromList {
    /// The sources, in order.
    pub sources: Vec<Written>,
    /// Byte range of the list in the text the statement was lexed from.
    span: Range<usize>,
}

impl FromList {
    /// The statement's own `FROM` list; `None` when it has none, or a subquery is in it.
    pub fn of(text: &str, statement: &Statement<'_>) -> Option<FromList> {
        let tokens = &statement.tokens;
        let from = top_level_from(tokens)?;
        let mut written = Vec::new();
        let mut i = from + 1;
        loop {
            let start = tokens.get(i)?;
            let mut one = Vec::with_capacity(1);
            let taken = qualified_source(&tokens[i..], &mut one)?;
            let measurement = tokens.get(i + taken.checked_sub(1)?)?;
            written.push(Written {
                source: one.pop()?,
                qualifier: text.get(start.offset..measurement.offset)?.to_owned(),
            });
            i += taken;
            match tokens.get(i) {
                Some(t) if t.is_punct(",") => i += 1,
                // A subquery's list, or something the gateway does not read.
                Some(t) if t.kind != TokenKind::Ident => return None,
                _ => break,
            }
        }
        let first = tokens.get(from + 1)?;
        let last = tokens.get(i - 1)?;
        Some(FromList {
            sources: written,
            span: first.offset..last.offset + last.text.len(),
        })
    }

    /// `statement` (the text the list was read from) with `sources` in place of the list.
    pub fn replaced(&self, statement: &str, sources: &str) -> String {
        let mut out = String::with_capacity(statement.len() + sources.len());
        out.push_str(&statement[..self.span.start]);
        out.push_str(sources);
        out.push_str(&statement[self.span.end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::{classify_query, sources::Measurement};

    fn list(q: &str) -> Option<FromList> {
        FromList::of(q, classify_query(q).ok()?.first()?)
    }

    #[test]
    fn each_source_keeps_its_qualifier_as_written() {
        let q = r#"SELECT v FROM cpu, "db"."rp"."disk io", db..net, rp./^m/ WHERE time > 0"#;
        let found = list(q).expect("a list");
        let names: Vec<(&str, &Measurement)> = found
            .sources
            .iter()
            .map(|w| (w.qualifier.as_str(), &w.source.measurement))
            .collect();
        assert_eq!(
            names,
            [
                ("", &Measurement::Name("cpu".into())),
                (r#""db"."rp"."#, &Measurement::Name("disk io".into())),
                ("db..", &Measurement::Name("net".into())),
                ("rp.", &Measurement::Regex("^m".into())),
            ]
        );
        assert_eq!(
            found.replaced(q, r#"rp."mem""#),
            r#"SELECT v FROM rp."mem" WHERE time > 0"#
        );
    }

    #[test]
    fn a_list_at_the_end_or_before_any_clause_is_replaced_whole() {
        let q = "SELECT count(v) FROM a,b GROUP BY time(1m) SLIMIT 2";
        assert_eq!(
            list(q).expect("a list").replaced(q, r#""b""#),
            r#"SELECT count(v) FROM "b" GROUP BY time(1m) SLIMIT 2"#
        );
        let q = "SELECT * FROM /./";
        assert_eq!(
            list(q).expect("a list").replaced(q, "x, y"),
            "SELECT * FROM x, y"
        );
    }

    #[test]
    fn a_subquery_or_no_from_gives_no_list() {
        assert_eq!(
            list("SELECT max(m) FROM (SELECT mean(v) AS m FROM a, b)"),
            None
        );
        assert_eq!(list("SELECT v FROM a, (SELECT v FROM b)"), None);
        assert_eq!(list("SHOW MEASUREMENTS"), None);
    }
}
