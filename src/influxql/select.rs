//! The shape of a read statement, as far as merging answers across shards needs it: the fields of
//! a `SELECT`, its `GROUP BY`, `fill`, `ORDER BY`, `tz` and the limit clauses, with the tokens each
//! came from so that the statement can be rewritten for the shards.

use std::ops::Range;

use super::{
    classify::Statement,
    lexer::{Token, TokenKind},
    sources::identifier,
};

/// One field of a `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `name`, `name::type` or `*`: a raw value.
    Raw,
    /// `function(args)`, the whole field.
    Call {
        /// The function, lower case.
        function: String,
        /// Whether its first argument is `*` or a regex (one column per matching field).
        wildcard: bool,
        /// Token range of the call itself, `function(...)`, in the statement.
        tokens: Range<usize>,
    },
    /// A call with calls inside (`count(distinct(v))`, `derivative(mean(v), 1m)`).
    Nested {
        /// The outer function, lower case.
        function: String,
        /// The call as written, without spaces, for messages.
        text: String,
    },
    /// Anything else: arithmetic, literals.
    Expression,
}

/// A field and its `AS` alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectField {
    /// What it computes.
    pub field: Field,
    /// The alias, if any.
    pub alias: Option<String>,
    /// Token range of the whole field, alias included.
    pub tokens: Range<usize>,
}

/// A limit clause's value and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The number.
    pub value: u64,
    /// Token range of the keyword and the number.
    pub tokens: Range<usize>,
}

/// What `fill(...)` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// `fill(null)`, the default.
    Null,
    /// `fill(none)`.
    None,
    /// `fill(previous)`.
    Previous,
    /// `fill(linear)`.
    Linear,
    /// `fill(<number>)`, as written.
    Value(serde_json::Number),
}

/// The parts of a statement that decide how shard answers merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The `SELECT` fields (empty for `SHOW`).
    pub fields: Vec<SelectField>,
    /// Whether `GROUP BY time(...)` is present.
    pub group_by_time: bool,
    /// Tags named in `GROUP BY` (unquoted); `*` is `group_by_all`.
    pub group_by_tags: Vec<String>,
    /// `GROUP BY *`.
    pub group_by_all: bool,
    /// The `fill(...)` option and the token range of its argument.
    pub fill: (Fill, Option<Range<usize>>),
    /// `ORDER BY time DESC`.
    pub descending: bool,
    /// `LIMIT n`.
    pub limit: Option<Clause>,
    /// `OFFSET n`.
    pub offset: Option<Clause>,
    /// `SLIMIT n`.
    pub slimit: Option<Clause>,
    /// `SOFFSET n`.
    pub soffset: Option<Clause>,
    /// A `tz(...)` clause is present.
    pub tz: bool,
    /// Token ranges of clauses a rewrite may replace: the field list, `GROUP BY ...`,
    /// `fill(...)` and `ORDER BY ...`.
    pub ranges: Ranges,
    /// A subquery is among the sources.
    pub subquery: bool,
}

/// Where some clauses of a statement are, as token ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    /// The `SELECT` fields.
    pub fields: Option<Range<usize>>,
    /// `GROUP BY` and its dimensions.
    pub group_by: Option<Range<usize>>,
    /// `fill(...)`.
    pub fill: Option<Range<usize>>,
    /// `ORDER BY ...`.
    pub order_by: Option<Range<usize>>,
}

/// Reads the shape of `statement`; `None` when it is not one the gateway can follow.
pub fn shape(statement: &Statement<'_>) -> Option<Shape> {
    let tokens = &statement.tokens;
    let mut shape = Shape {
        fields: Vec::new(),
        group_by_time: false,
        group_by_tags: Vec::new(),
        group_by_all: false,
        fill: (Fill::Null, None),
        descending: false,
        limit: None,
        offset: None,
        slimit: None,
        soffset: None,
        tz: false,
        subquery: false,
        ranges: Ranges::default(),
    };
    let depths = depths(tokens)?;
    let top = |i: usize| depths[i] == 0;
    if tokens.first()?.is_keyword("SELECT") {
        let from = (0..tokens.len()).find(|&i| top(i) && tokens[i].is_keyword("FROM"))?;
        shape.fields = fields(tokens, 1..from)?;
        shape.ranges.fields = Some(1..from);
    }
    // Strings and quoted names are tokens of their own: a second SELECT keyword is a subquery.
    shape.subquery = tokens.iter().filter(|t| t.is_keyword("SELECT")).count() > 1;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if !top(i) {
            i += 1;
            continue;
        }
        let number = |j: usize| {
            tokens
                .get(j)
                .filter(|n| n.kind == TokenKind::Number)
                .and_then(|n| n.text.parse::<u64>().ok())
        };
        let clause = |j: usize| {
            number(j + 1).map(|value| Clause {
                value,
                tokens: j..j + 2,
            })
        };
        if t.is_keyword("GROUP") && tokens.get(i + 1).is_some_and(|n| n.is_keyword("BY")) {
            let end = group_by(tokens, i + 2, &mut shape)?;
            shape.ranges.group_by = Some(i..end);
            i = end;
            continue;
        } else if t.is_keyword("fill") && tokens.get(i + 1).is_some_and(|n| n.is_punct("(")) {
            let arg = tokens.get(i + 2)?;
            shape.fill = (fill_of(arg)?, Some(i + 2..i + 3));
            shape.ranges.fill = Some(i..i + 4);
            if !tokens.get(i + 3).is_some_and(|n| n.is_punct(")")) {
                return None;
            }
            i += 4;
            continue;
        } else if t.is_keyword("ORDER") {
            // ORDER BY time [ASC|DESC]
            let direction = tokens
                .get(i + 3)
                .filter(|n| n.is_keyword("DESC") || n.is_keyword("ASC"));
            shape.descending = direction.is_some_and(|n| n.is_keyword("DESC"));
            shape.ranges.order_by = Some(i..i + 3 + usize::from(direction.is_some()));
        } else if t.is_keyword("LIMIT") {
            shape.limit = Some(clause(i)?);
        } else if t.is_keyword("OFFSET") {
            shape.offset = Some(clause(i)?);
        } else if t.is_keyword("SLIMIT") {
            shape.slimit = Some(clause(i)?);
        } else if t.is_keyword("SOFFSET") {
            shape.soffset = Some(clause(i)?);
        } else if t.is_keyword("tz") && tokens.get(i + 1).is_some_and(|n| n.is_punct("(")) {
            shape.tz = true;
        }
        i += 1;
    }
    Some(shape)
}

/// Parenthesis depth before each token; `None` when they do not balance.
fn depths(tokens: &[Token<'_>]) -> Option<Vec<u32>> {
    let mut depth = 0u32;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        if t.is_punct(")") {
            depth = depth.checked_sub(1)?;
        }
        out.push(depth);
        if t.is_punct("(") {
            depth += 1;
        }
    }
    (depth == 0).then_some(out)
}

fn fields(tokens: &[Token<'_>], range: Range<usize>) -> Option<Vec<SelectField>> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut start = range.start;
    for i in range.clone() {
        let t = &tokens[i];
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth = depth.checked_sub(1)?;
        } else if depth == 0 && t.is_punct(",") {
            out.push(field(tokens, start..i)?);
            start = i + 1;
        }
    }
    out.push(field(tokens, start..range.end)?);
    Some(out)
}

fn field(tokens: &[Token<'_>], range: Range<usize>) -> Option<SelectField> {
    let all = &tokens[range.clone()];
    if all.is_empty() {
        return None;
    }
    // `expr AS alias`
    let (expr, alias) = match all {
        [rest @ .., as_kw, alias] if as_kw.is_keyword("AS") => (rest, Some(identifier(alias)?)),
        _ => (all, None),
    };
    let field = match expr {
        [name] if matches!(name.kind, TokenKind::Ident | TokenKind::QuotedIdent) => Field::Raw,
        [star] if star.is_punct("*") => Field::Raw,
        [name, cast, ty]
            if matches!(name.kind, TokenKind::Ident | TokenKind::QuotedIdent)
                && cast.is_punct("::")
                && ty.kind == TokenKind::Ident =>
        {
            Field::Raw
        }
        [function, open, .., close]
            if function.kind == TokenKind::Ident && open.is_punct("(") && close.is_punct(")") =>
        {
            let args = &expr[2..expr.len() - 1];
            // The call must be the whole expression: its `(` closes at the end.
            let mut depth = 0i32;
            let whole = args.iter().all(|t| {
                if t.is_punct("(") {
                    depth += 1;
                } else if t.is_punct(")") {
                    depth -= 1;
                }
                depth >= 0
            });
            if !whole || depth != 0 {
                Field::Expression
            } else if args.iter().any(|t| t.is_punct("(")) {
                Field::Nested {
                    function: function.text.to_ascii_lowercase(),
                    text: expr.iter().map(|t| t.text).collect(),
                }
            } else {
                Field::Call {
                    function: function.text.to_ascii_lowercase(),
                    wildcard: args
                        .first()
                        .is_some_and(|a| a.is_punct("*") || a.kind == TokenKind::Regex),
                    tokens: range.start..range.start + expr.len(),
                }
            }
        }
        _ => Field::Expression,
    };
    Some(SelectField {
        field,
        alias,
        tokens: range,
    })
}

impl Field {
    /// The (outer) function, if the field is a call.
    pub fn function(&self) -> Option<&str> {
        match self {
            Field::Call { function, .. } | Field::Nested { function, .. } => Some(function),
            Field::Raw | Field::Expression => None,
        }
    }
}

/// Reads `GROUP BY` dimensions from `i`; returns where they end.
fn group_by(tokens: &[Token<'_>], mut i: usize, shape: &mut Shape) -> Option<usize> {
    loop {
        let t = tokens.get(i)?;
        if t.is_keyword("time") && tokens.get(i + 1).is_some_and(|n| n.is_punct("(")) {
            shape.group_by_time = true;
            i += 2;
            while !tokens.get(i)?.is_punct(")") {
                i += 1;
            }
            i += 1;
        } else if t.is_punct("*") {
            shape.group_by_all = true;
            i += 1;
        } else if t.kind == TokenKind::Regex {
            // Tags matching a regex: which ones is not known here; treat as every tag.
            shape.group_by_all = true;
            i += 1;
        } else {
            shape.group_by_tags.push(identifier(t)?);
            i += 1;
        }
        match tokens.get(i) {
            Some(n) if n.is_punct(",") => i += 1,
            _ => return Some(i),
        }
    }
}

fn fill_of(arg: &Token<'_>) -> Option<Fill> {
    Some(match arg.kind {
        TokenKind::Ident if arg.text.eq_ignore_ascii_case("null") => Fill::Null,
        TokenKind::Ident if arg.text.eq_ignore_ascii_case("none") => Fill::None,
        TokenKind::Ident if arg.text.eq_ignore_ascii_case("previous") => Fill::Previous,
        TokenKind::Ident if arg.text.eq_ignore_ascii_case("linear") => Fill::Linear,
        TokenKind::Number => Fill::Value(arg.text.parse().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::classify_query;

    fn shape_of(q: &str) -> Shape {
        shape(&classify_query(q).unwrap()[0]).unwrap()
    }

    fn functions(shape: &Shape) -> Vec<Option<&str>> {
        shape.fields.iter().map(|f| f.field.function()).collect()
    }

    #[test]
    fn fields_and_aliases() {
        let s = shape_of("SELECT mean(v) AS m, count(*), v, \"x\"::field, v * 2, count(distinct(v)), max(/re/) FROM cpu");
        assert_eq!(
            functions(&s),
            vec![
                Some("mean"),
                Some("count"),
                None,
                None,
                None,
                Some("count"),
                Some("max")
            ]
        );
        assert_eq!(s.fields[0].alias.as_deref(), Some("m"));
        assert!(matches!(
            s.fields[1].field,
            Field::Call { wildcard: true, .. }
        ));
        assert_eq!(s.fields[2].field, Field::Raw);
        assert_eq!(s.fields[4].field, Field::Expression);
        assert!(
            matches!(&s.fields[5].field, Field::Nested { function, text } if function == "count" && text == "count(distinct(v))")
        );
        assert!(matches!(
            s.fields[6].field,
            Field::Call { wildcard: true, .. }
        ));
    }

    #[test]
    fn clauses() {
        let s = shape_of("SELECT count(v) FROM cpu WHERE time > 0 GROUP BY time(1m, 10s), \"host\", region fill(0) ORDER BY time DESC LIMIT 3 OFFSET 2 SLIMIT 4 SOFFSET 1 tz('UTC')");
        assert!(s.group_by_time);
        assert_eq!(s.group_by_tags, vec!["host", "region"]);
        assert_eq!(s.fill.0, Fill::Value(0.into()));
        assert!(s.descending);
        assert_eq!(s.limit.as_ref().map(|c| c.value), Some(3));
        assert_eq!(s.offset.as_ref().map(|c| c.value), Some(2));
        assert_eq!(s.slimit.as_ref().map(|c| c.value), Some(4));
        assert_eq!(s.soffset.as_ref().map(|c| c.value), Some(1));
        assert!(s.tz);
        assert!(!s.subquery);
        let q = "SELECT count(v) FROM cpu WHERE time > 0 GROUP BY time(1m, 10s), \"host\", region fill(0) ORDER BY time DESC LIMIT 3";
        let statement = classify_query(q).unwrap().remove(0);
        let s = shape(&statement).unwrap();
        let text = |r: Option<Range<usize>>| {
            let r = r.unwrap();
            statement.tokens[r]
                .iter()
                .map(|t| t.text)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(text(s.ranges.fields.clone()), "count ( v )");
        assert_eq!(
            text(s.ranges.group_by.clone()),
            "GROUP BY time ( 1m , 10s ) , \"host\" , region"
        );
        assert_eq!(text(s.ranges.fill.clone()), "fill ( 0 )");
        assert_eq!(text(s.ranges.order_by.clone()), "ORDER BY time DESC");
        let s = shape_of(
            "SELECT max(m) FROM (SELECT mean(v) AS m FROM cpu GROUP BY time(1m)) GROUP BY *",
        );
        assert!(s.subquery && s.group_by_all && !s.group_by_time);
        let s = shape_of("SHOW TAG VALUES FROM cpu WITH KEY = host LIMIT 5");
        assert!(s.fields.is_empty());
        assert_eq!(s.limit.as_ref().map(|c| c.value), Some(5));
    }
}
