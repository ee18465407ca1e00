//! The operator's statement filter: `query.deny` lists statements the gateway refuses before any
//! node sees them.
//!
//! A rule is the leading keywords of the statements it refuses (`GRANT`, `CREATE USER`, `DROP
//! DATABASE`), compared without regard to case with the statements as the InfluxQL lexer reads
//! them: comments are not statements, a quoted identifier or a bound parameter is never a keyword,
//! and every statement of a `q` is checked, so `select 1; grant ...` is refused. A query the
//! gateway cannot read (it does not lex, or its `q` is in a multipart body) is refused while rules
//! are set: what cannot be checked does not pass.

use std::fmt;

use super::Classified;
use crate::{
    config::{ConfigError, DEFAULT_DENY},
    influxql::{Statement, TokenKind},
};

/// One `query.deny` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// The keywords, upper case.
    words: Vec<String>,
}

impl TryFrom<String> for DenyRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        if words.is_empty()
            || !words
                .iter()
                .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Err(format!(
                "{text:?} is not a statement's leading keywords (e.g. \"GRANT\", \"DROP DATABASE\")"
            ));
        }
        Ok(DenyRule { words })
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words.join(" "))
    }
}

impl DenyRule {
    fn matches(&self, statement: &Statement<'_>) -> bool {
        statement.tokens.len() >= self.words.len()
            && self
                .words
                .iter()
                .zip(&statement.tokens)
                .all(|(word, token)| {
                    token.kind == TokenKind::Ident && token.text.eq_ignore_ascii_case(word)
                })
    }
}

/// Compiles `query.deny`; a rule that is not a statement's leading keywords is an error naming
/// the key.
pub fn compile(rules: &[String]) -> Result<Vec<DenyRule>, ConfigError> {
    rules
        .iter()
        .map(|r| {
            DenyRule::try_from(r.clone()).map_err(|why| ConfigError::invalid("query.deny", why))
        })
        .collect()
}

/// The default rules.
pub fn default_rules() -> Vec<DenyRule> {
    DEFAULT_DENY
        .iter()
        .filter_map(|r| DenyRule::try_from((*r).to_owned()).ok())
        .collect()
}

/// Why a query is refused; its text is the client's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A statement matches a rule.
    #[error(
        "statement {index} ({statement}) is refused by the gateway's query.deny rule {rule:?}"
    )]
    Statement {
        /// Its place in the query, from 1.
        index: usize,
        /// Its text, shortened.
        statement: String,
        /// The rule it matched.
        rule: String,
    },
    /// The query could not be read, so it could not be checked.
    #[error("the gateway cannot check this query against query.deny: {0}")]
    Unreadable(String),
}

/// Checks every statement of `q` against `rules`.
pub fn check(rules: &[DenyRule], q: &Classified<'_>) -> Result<(), Denied> {
    if rules.is_empty() {
        return Ok(());
    }
    let statements = match q {
        Classified::Statements(statements) => statements,
        Classified::Absent => return Ok(()),
        Classified::Unknown => return Err(Denied::Unreadable(
            "its q is in a body the gateway does not decode; send it as a form or URL parameter"
                .into(),
        )),
        Classified::Unlexable(e) => return Err(Denied::Unreadable(e.to_string())),
    };
    for (i, statement) in statements.iter().enumerate() {
        if let Some(rule) = rules.iter().find(|r| r.matches(statement)) {
            let mut shown: String = statement
                .tokens
                .iter()
                .map(|t| t.text)
                .collect::<Vec<_>>()
                .join(" ");
            if shown.len() > 80 {
                let cut = (0..=80)
                    .rev()
                    .find(|&i| shown.is_char_boundary(i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            return Err(Denied::Statement {
                index: i + 1,
                statement: shown,
                rule: rule.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryText;

    fn rules(list: &[&str]) -> Vec<DenyRule> {
        list.iter()
            .map(|r| DenyRule::try_from((*r).to_owned()).unwrap())
            .collect()
    }

    fn denied(rules: &[DenyRule], q: &str) -> Option<String> {
        let q = QueryText::Found(q.to_owned());
        check(rules, &Classified::of(&q))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn every_statement_is_checked_whatever_its_disguise() {
        let r = default_rules();
        for q in [
            "GRANT ALL TO bob",
            "select 1; grant read on db to bob",
            "/* hi */ GrAnT ALL TO bob -- there",
            "SHOW DATABASES;\nCREATE   USER x WITH PASSWORD 'p'",
            "SET PASSWORD FOR bob = 'x'",
            "REVOKE ALL PRIVILEGES FROM bob",
        ] {
            assert!(denied(&r, q).is_some(), "{q}");
        }
        assert_eq!(
            denied(&r, "SHOW USERS; drop user bob").as_deref(),
            Some("statement 2 (drop user bob) is refused by the gateway's query.deny rule \"DROP USER\"")
        );
        for q in [
            "SELECT * FROM \"grant\"",
            "SELECT 'GRANT ALL TO bob' FROM cpu",
            "SHOW GRANTS FOR bob",
            "CREATE DATABASE users",
            "\"GRANT\" ALL TO bob",
        ] {
            assert_eq!(denied(&r, q), None, "{q}");
        }
    }

    #[test]
    fn what_cannot_be_read_is_refused_only_when_rules_are_set() {
        let r = rules(&["DROP DATABASE"]);
        assert!(denied(&r, "DROP DATABASE 'x").is_some());
        assert!(check(&r, &Classified::Unknown).is_err());
        assert!(check(&[], &Classified::Unknown).is_ok());
        assert!(denied(&[], "GRANT ALL TO bob").is_none());
        assert!(denied(&r, "DROP MEASUREMENT cpu").is_none());
    }

    #[test]
    fn rules_are_keywords() {
        assert!(DenyRule::try_from("drop   database".to_owned()).is_ok());
        assert!(DenyRule::try_from("".to_owned()).is_err());
        assert!(DenyRule::try_from("DROP *".to_owned()).is_err());
    }
}
