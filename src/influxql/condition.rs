//! Narrowing a `SELECT` with one more condition, for the statement a shard is asked when a node
//! may hold series of other shards.

use super::{Lexer, TokenKind};

/// Clauses that end a `WHERE` condition (or, without one, where it goes).
const AFTER_WHERE: &[&str] = &[
    "GROUP", "ORDER", "LIMIT", "OFFSET", "SLIMIT", "SOFFSET", "FILL", "TZ",
];

/// `statement`, one `SELECT`, with `condition` ANDed to its `WHERE` (added where it has none);
/// `None` when it does not lex or is not a `SELECT`.
pub fn and_where(statement: &str, condition: &str) -> Option<String> {
    let tokens = Lexer::new(statement).collect::<Result<Vec<_>, _>>().ok()?;
    if !tokens.first()?.is_keyword("SELECT") {
        return None;
    }
    let mut depth = 0usize;
    let (mut from_seen, mut where_end) = (false, None);
    // Where the last token before the clauses that follow `WHERE` ends: text after it (a
    // comment, white space) stays after the insertion, on a line of its own.
    let mut last_end = 0;
    for token in &tokens {
        match token.kind {
            TokenKind::Semicolon if depth == 0 => break,
            _ if depth == 0 && from_seen && AFTER_WHERE.iter().any(|k| token.is_keyword(k)) => {
                break
            }
            TokenKind::Punct if token.text == "(" => depth += 1,
            TokenKind::Punct if token.text == ")" => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if token.is_keyword("FROM") => from_seen = true,
            _ if from_seen && where_end.is_none() && token.is_keyword("WHERE") => {
                where_end = Some(token.offset + token.text.len());
            }
            _ => {}
        }
        last_end = token.offset + token.text.len();
    }
    if !from_seen {
        return None;
    }
    let tail = &statement[last_end..];
    Some(match where_end {
        Some(end) => format!(
            "{} ({}) AND {condition}\n{tail}",
            &statement[..end],
            statement[end..last_end].trim()
        ),
        None => format!("{} WHERE {condition}\n{tail}", &statement[..last_end]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_is_anded_or_added_before_the_clauses_that_follow() {
        let c = r#"("host" = 'a')"#;
        assert_eq!(
            and_where("SELECT count(v) FROM mem", c).as_deref(),
            Some("SELECT count(v) FROM mem WHERE (\"host\" = 'a')\n")
        );
        assert_eq!(
            and_where(
                "SELECT mean(v) FROM mem WHERE time > now() - 1h OR x = 'group' GROUP BY time(1m) fill(none) LIMIT 3",
                c
            )
            .as_deref(),
            Some("SELECT mean(v) FROM mem WHERE (time > now() - 1h OR x = 'group') AND (\"host\" = 'a')\n GROUP BY time(1m) fill(none) LIMIT 3")
        );
        assert_eq!(
            and_where("select v from \"where\" order by time desc", c).as_deref(),
            Some("select v from \"where\" WHERE (\"host\" = 'a')\n order by time desc")
        );
        // A comment before the next clause, or ending the condition, stays where it was.
        assert_eq!(
            and_where("SELECT v FROM mem -- x\nGROUP BY k", c).as_deref(),
            Some("SELECT v FROM mem WHERE (\"host\" = 'a')\n -- x\nGROUP BY k")
        );
        assert_eq!(
            and_where("SELECT v FROM mem WHERE a = 1 -- c\nLIMIT 1", c).as_deref(),
            Some("SELECT v FROM mem WHERE (a = 1) AND (\"host\" = 'a')\n -- c\nLIMIT 1")
        );
        assert_eq!(and_where("SHOW SERIES FROM mem", c), None);
        assert_eq!(and_where("SELECT 'unterminated FROM m", c), None);
    }
}
