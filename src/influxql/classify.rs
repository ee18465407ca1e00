//! Splits a query into statements and tells what each one does to the cluster.

use super::lexer::{LexError, Lexer, Token, TokenKind};

/// What a statement does, which decides where it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// Reads data or schema: any one replica can answer.
    Read,
    /// Changes data or schema (DDL, DELETE, DROP, users, `SELECT … INTO`): every node must apply it.
    Mutation,
    /// About one server's own state (SHOW QUERIES, KILL QUERY, SHOW STATS…): answered by one node.
    NodeLocal,
    /// Not a statement InfluxQL knows; a node answers with InfluxDB's own parse error.
    Unknown,
}

/// One statement of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'q> {
    /// Its tokens, comments and the closing `;` left out.
    pub tokens: Vec<Token<'q>>,
    /// What it does.
    pub kind: StatementKind,
}

/// Splits `q` into its statements and classifies each; empty statements (`;;`) are skipped, as
/// InfluxDB skips them.
pub fn classify_query(q: &str) -> Result<Vec<Statement<'_>>, LexError> {
    let mut statements = Vec::new();
    let mut tokens = Vec::new();
    for token in Lexer::new(q) {
        let token = token?;
        if token.kind == TokenKind::Semicolon {
            push_statement(&mut statements, std::mem::take(&mut tokens));
        } else {
            tokens.push(token);
        }
    }
    push_statement(&mut statements, tokens);
    Ok(statements)
}

fn push_statement<'q>(statements: &mut Vec<Statement<'q>>, tokens: Vec<Token<'q>>) {
    if !tokens.is_empty() {
        let kind = classify(&tokens);
        statements.push(Statement { tokens, kind });
    }
}

/// Classifies one statement by its leading keywords.
pub fn classify(tokens: &[Token<'_>]) -> StatementKind {
    let keyword = |i: usize| {
        tokens
            .get(i)
            .filter(|t| t.kind == TokenKind::Ident)
            .map(|t| t.text.to_ascii_uppercase())
            .unwrap_or_default()
    };
    match keyword(0).as_str() {
        "SELECT" if selects_into(tokens) => StatementKind::Mutation,
        "SELECT" | "EXPLAIN" => StatementKind::Read,
        "SHOW" => match keyword(1).as_str() {
            "QUERIES" | "STATS" | "DIAGNOSTICS" | "SHARDS" | "SUBSCRIPTIONS" => {
                StatementKind::NodeLocal
            }
            "SHARD" if keyword(2) == "GROUPS" => StatementKind::NodeLocal,
            "" => StatementKind::Unknown,
            _ => StatementKind::Read,
        },
        "KILL" => StatementKind::NodeLocal,
        "CREATE" | "DROP" | "ALTER" | "DELETE" | "GRANT" | "REVOKE" | "SET" => {
            StatementKind::Mutation
        }
        _ => StatementKind::Unknown,
    }
}

/// `SELECT … INTO` writes its result, so it is a mutation; an `INTO` inside a subquery counts too.
fn selects_into(tokens: &[Token<'_>]) -> bool {
    tokens.iter().any(|t| t.is_keyword("INTO"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementKind::*;

    fn kinds(q: &str) -> Vec<StatementKind> {
        classify_query(q).unwrap().iter().map(|s| s.kind).collect()
    }

    #[test]
    fn reads() {
        for q in [
            "SELECT * FROM cpu",
            "select mean(v) from \"db\".\"rp\".cpu group by time(1m)",
            "SHOW DATABASES",
            "show measurements with measurement =~ /cpu/",
            "SHOW TAG VALUES FROM cpu WITH KEY = host",
            "SHOW RETENTION POLICIES ON db",
            "SHOW USERS",
            "EXPLAIN ANALYZE SELECT * FROM cpu",
            "SELECT * FROM (SELECT v FROM cpu)",
        ] {
            assert_eq!(kinds(q), vec![Read], "{q}");
        }
    }

    #[test]
    fn mutations() {
        for q in [
            "CREATE DATABASE x",
            "drop database x",
            "CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1",
            "ALTER RETENTION POLICY rp ON db DEFAULT",
            "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO m FROM cpu GROUP BY time(1m) END",
            "DROP MEASUREMENT cpu",
            "DROP SERIES FROM cpu WHERE host = 'a'",
            "DROP SHARD 1",
            "DELETE FROM cpu WHERE time < now()",
            "CREATE USER u WITH PASSWORD 'p'",
            "GRANT ALL TO u",
            "REVOKE READ ON db FROM u",
            "SET PASSWORD FOR u = 'p'",
            "SELECT * INTO copy FROM cpu",
            "SELECT * FROM (SELECT v INTO x FROM cpu)",
        ] {
            assert_eq!(kinds(q), vec![Mutation], "{q}");
        }
    }

    #[test]
    fn node_local_and_unknown() {
        assert_eq!(
            kinds("SHOW QUERIES; KILL QUERY 3; SHOW SHARD GROUPS"),
            vec![NodeLocal; 3]
        );
        assert_eq!(
            kinds("SHOW STATS; show diagnostics; SHOW SHARDS"),
            vec![NodeLocal; 3]
        );
        assert_eq!(kinds("SELEC * FROM cpu"), vec![Unknown]);
        assert_eq!(kinds("SHOW"), vec![Unknown]);
        assert_eq!(kinds("\"SELECT\" 1"), vec![Unknown]);
    }

    #[test]
    fn splits_on_semicolons_outside_literals() {
        let q = "SELECT 'a;b' FROM cpu; -- CREATE DATABASE x;\n;; CREATE DATABASE \"y;z\";";
        assert_eq!(kinds(q), vec![Read, Mutation]);
        assert!(classify_query("   ").unwrap().is_empty());
        assert!(classify_query("SELECT 'x").is_err());
    }

    #[test]
    fn keywords_inside_literals_do_not_count() {
        assert_eq!(kinds("SELECT * FROM \"into\""), vec![Read]);
        assert_eq!(kinds("SELECT * FROM cpu WHERE a = 'INTO'"), vec![Read]);
        assert_eq!(kinds("/* DROP DATABASE x */ SELECT 1"), vec![Read]);
    }
}
