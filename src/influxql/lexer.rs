//! A tokenizer for InfluxQL, following the rules of InfluxDB 1.x's scanner.
//!
//! It does not build a syntax tree: the gateway only needs to split a `q` into statements and to
//! see their leading keywords and sources, and it must agree with InfluxDB about where strings,
//! quoted identifiers, comments and regexes begin and end, so that a `;` or a keyword inside one of
//! them is never mistaken for structure.
//!
//! InfluxDB decides whether `/` starts a regex from the parser's position; without a parser, the
//! lexer decides from the previous token: after an operand (identifier that is not a keyword,
//! number, string, `)`, bound parameter) it is a division, anywhere else a regex.

use std::fmt;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare identifier or keyword: `SELECT`, `cpu`, `mean`.
    Ident,
    /// A double-quoted identifier, quotes included in the text.
    QuotedIdent,
    /// A single-quoted string literal, quotes included.
    String,
    /// An integer, float or duration literal: `10`, `1.5`, `10m`.
    Number,
    /// A regex literal, slashes included: `/^cpu/`.
    Regex,
    /// A bound parameter: `$host` or `$"host name"`.
    BoundParam,
    /// An operator or punctuation: `(`, `,`, `.`, `=~`, `>=`, `::`.
    Punct,
    /// The statement separator `;`.
    Semicolon,
    /// A character InfluxQL does not use; InfluxDB will report it.
    Illegal,
}

/// One token, borrowing its text from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'q> {
    /// Its kind.
    pub kind: TokenKind,
    /// The exact text of the token in the query.
    pub text: &'q str,
    /// Byte offset of the token in the query.
    pub offset: usize,
}

impl Token<'_> {
    /// True when this is the bare keyword `keyword` (case-insensitive).
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Ident && self.text.eq_ignore_ascii_case(keyword)
    }

    /// True when this is the punctuation `punct`.
    pub fn is_punct(&self, punct: &str) -> bool {
        self.kind == TokenKind::Punct && self.text == punct
    }

    /// Whether a `/` after this token is a division (true) or starts a regex (false).
    fn ends_operand(&self) -> bool {
        match self.kind {
            TokenKind::Ident => !is_reserved(self.text),
            TokenKind::QuotedIdent
            | TokenKind::String
            | TokenKind::Number
            | TokenKind::BoundParam
            | TokenKind::Regex => true,
            TokenKind::Punct => self.text == ")",
            TokenKind::Semicolon | TokenKind::Illegal => false,
        }
    }
}

/// A literal that was opened and never closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {what} starting at byte {offset}")]
pub struct LexError {
    /// What was left open: a string, a quoted identifier, a regex or a comment.
    pub what: &'static str,
    /// Where it started.
    pub offset: usize,
}

/// Iterates over the tokens of a query, skipping white space and comments.
pub struct Lexer<'q> {
    src: &'q str,
    pos: usize,
    previous: Option<Token<'q>>,
    /// Whether the previous token ends an operand, so that a `/` after it divides.
    after_operand: bool,
}

impl<'q> Lexer<'q> {
    /// Starts at the beginning of `src`.
    pub fn new(src: &'q str) -> Self {
        Lexer {
            src,
            pos: 0,
            previous: None,
            after_operand: false,
        }
    }

    fn rest(&self) -> &'q str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.rest().chars();
        chars.next();
        chars.next()
    }

    /// Skips white space and comments; fails on an unterminated block comment.
    fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                let end = body.find("*/").ok_or(LexError {
                    what: "comment",
                    offset: self.pos,
                })?;
                self.pos += 2 + end + 2;
            } else {
                return Ok(());
            }
        }
    }

    /// Advances past a literal closed by `close`, honouring backslash escapes.
    fn delimited(&mut self, close: char, what: &'static str) -> Result<usize, LexError> {
        let start = self.pos;
        let mut escaped = false;
        for (i, c) in self.rest().char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == close {
                return Ok(start + i + c.len_utf8());
            }
        }
        Err(LexError {
            what,
            offset: start,
        })
    }

    fn end_of_run(&self, from: usize, keep: impl Fn(char) -> bool) -> usize {
        let rest = &self.src[from..];
        from + rest.find(|c: char| !keep(c)).unwrap_or(rest.len())
    }

    fn scan(&mut self) -> Result<Option<Token<'q>>, LexError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let (kind, end) = match c {
            '"' => (
                TokenKind::QuotedIdent,
                self.delimited('"', "quoted identifier")?,
            ),
            '\'' => (TokenKind::String, self.delimited('\'', "string")?),
            '/' if !self.after_operand => (TokenKind::Regex, self.delimited('/', "regex")?),
            '$' => match self.peek_second() {
                Some('"') => {
                    self.pos += 1;
                    let end = self.delimited('"', "bound parameter");
                    self.pos = start;
                    (TokenKind::BoundParam, end?)
                }
                _ => (
                    TokenKind::BoundParam,
                    self.end_of_run(start + 1, is_ident_char),
                ),
            },
            ';' => (TokenKind::Semicolon, start + 1),
            c if c.is_ascii_digit()
                || (c == '.' && self.peek_second().is_some_and(|d| d.is_ascii_digit())) =>
            {
                let digits = self.end_of_run(start, |c| c.is_ascii_digit() || c == '.');
                // A duration's unit (`10m`, `5ms`, `3µs`) belongs to the number.
                (
                    TokenKind::Number,
                    self.end_of_run(digits, |c| c.is_alphabetic()),
                )
            }
            c if is_ident_start(c) => (TokenKind::Ident, self.end_of_run(start, is_ident_char)),
            _ => {
                let two = self.rest().get(..2).unwrap_or("");
                if matches!(two, "=~" | "!~" | "!=" | "<>" | "<=" | ">=" | "::") {
                    (TokenKind::Punct, start + 2)
                } else if "+-*/%&|^=<>(),.:".contains(c) {
                    (TokenKind::Punct, start + 1)
                } else {
                    (TokenKind::Illegal, start + c.len_utf8())
                }
            }
        };
        self.pos = end;
        let token = Token {
            kind,
            text: &self.src[start..end],
            offset: start,
        };
        // A type after `::` (`v::field`, `v::tag`) is an operand even when it is a reserved word.
        let cast = self.previous.is_some_and(|t| t.is_punct("::"));
        self.after_operand = token.ends_operand() || (cast && kind == TokenKind::Ident);
        self.previous = Some(token);
        Ok(Some(token))
    }
}

impl<'q> Iterator for Lexer<'q> {
    type Item = Result<Token<'q>, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.scan() {
            Ok(token) => token.map(Ok),
            Err(e) => {
                // Nothing after an unterminated literal can be trusted: stop.
                self.pos = self.src.len();
                Some(Err(e))
            }
        }
    }
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// InfluxQL's reserved words (influxql/token.go): none of them can end an operand.
fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "ALL",
        "ALTER",
        "ANALYZE",
        "AND",
        "ANY",
        "AS",
        "ASC",
        "BEGIN",
        "BY",
        "CARDINALITY",
        "CONTINUOUS",
        "CREATE",
        "DATABASE",
        "DATABASES",
        "DEFAULT",
        "DELETE",
        "DESC",
        "DESTINATIONS",
        "DIAGNOSTICS",
        "DISTINCT",
        "DROP",
        "DURATION",
        "END",
        "EVERY",
        "EXACT",
        "EXPLAIN",
        "FIELD",
        "FOR",
        "FROM",
        "GRANT",
        "GRANTS",
        "GROUP",
        "GROUPS",
        "IN",
        "INF",
        "INSERT",
        "INTO",
        "KEY",
        "KEYS",
        "KILL",
        "LIMIT",
        "MEASUREMENT",
        "MEASUREMENTS",
        "NAME",
        "NOT",
        "OFFSET",
        "ON",
        "OR",
        "ORDER",
        "PASSWORD",
        "POLICIES",
        "POLICY",
        "PRIVILEGES",
        "QUERIES",
        "QUERY",
        "READ",
        "REPLICATION",
        "RESAMPLE",
        "RETENTION",
        "REVOKE",
        "SELECT",
        "SERIES",
        "SET",
        "SHARD",
        "SHARDS",
        "SHOW",
        "SLIMIT",
        "SOFFSET",
        "STATS",
        "SUBSCRIPTION",
        "SUBSCRIPTIONS",
        "TAG",
        "TO",
        "USER",
        "USERS",
        "VALUES",
        "WHERE",
        "WITH",
        "WRITE",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<(TokenKind, &str)> {
        Lexer::new(q)
            .map(|t| t.unwrap())
            .map(|t| (t.kind, t.text))
            .collect()
    }

    use TokenKind::*;

    #[test]
    fn literals_hide_their_contents() {
        assert_eq!(
            kinds(
                r#"SELECT "a;b" FROM "c\"d" WHERE x = 'it\'s; DROP' -- ; DROP
            /* ; */ ;"#
            ),
            vec![
                (Ident, "SELECT"),
                (QuotedIdent, r#""a;b""#),
                (Ident, "FROM"),
                (QuotedIdent, r#""c\"d""#),
                (Ident, "WHERE"),
                (Ident, "x"),
                (Punct, "="),
                (String, r"'it\'s; DROP'"),
                (Semicolon, ";"),
            ]
        );
    }

    #[test]
    fn slash_is_regex_or_division_by_position() {
        assert_eq!(
            kinds("SELECT a / 2, /b;c/ FROM /^cpu/, mem WHERE h =~ /x\\/y/ GROUP BY /t/"),
            vec![
                (Ident, "SELECT"),
                (Ident, "a"),
                (Punct, "/"),
                (Number, "2"),
                (Punct, ","),
                (Regex, "/b;c/"),
                (Ident, "FROM"),
                (Regex, "/^cpu/"),
                (Punct, ","),
                (Ident, "mem"),
                (Ident, "WHERE"),
                (Ident, "h"),
                (Punct, "=~"),
                (Regex, "/x\\/y/"),
                (Ident, "GROUP"),
                (Ident, "BY"),
                (Regex, "/t/"),
            ]
        );
        assert_eq!(kinds("(a) / b")[3], (Punct, "/"));
        assert_eq!(kinds("v::field / 2")[3], (Punct, "/"));
        assert_eq!(kinds("v::tag / 2")[3], (Punct, "/"));
    }

    #[test]
    fn numbers_durations_params_and_operators() {
        assert_eq!(
            kinds("time > now() - 10m AND v::float >= .5 AND h = $host AND g <> $\"a b\""),
            vec![
                (Ident, "time"),
                (Punct, ">"),
                (Ident, "now"),
                (Punct, "("),
                (Punct, ")"),
                (Punct, "-"),
                (Number, "10m"),
                (Ident, "AND"),
                (Ident, "v"),
                (Punct, "::"),
                (Ident, "float"),
                (Punct, ">="),
                (Number, ".5"),
                (Ident, "AND"),
                (Ident, "h"),
                (Punct, "="),
                (BoundParam, "$host"),
                (Ident, "AND"),
                (Ident, "g"),
                (Punct, "<>"),
                (BoundParam, "$\"a b\""),
            ]
        );
    }

    #[test]
    fn unterminated_literals_are_errors() {
        for (q, what) in [
            ("SELECT 'x", "string"),
            ("SELECT \"x", "quoted identifier"),
            ("SELECT * FROM /x", "regex"),
            ("SELECT 1 /* x", "comment"),
        ] {
            let err = Lexer::new(q).find_map(Result::err).unwrap();
            assert_eq!(err.what, what, "{q}");
        }
        let mut lexer = Lexer::new("'x");
        assert!(lexer.next().unwrap().is_err());
        assert!(lexer.next().is_none());
    }

    #[test]
    fn odd_characters_are_illegal_not_fatal() {
        assert_eq!(
            kinds("a # b"),
            vec![(Ident, "a"), (Illegal, "#"), (Ident, "b")]
        );
        assert_eq!(kinds("héllo"), vec![(Ident, "héllo")]);
    }
}
