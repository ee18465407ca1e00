//! Rewriting a statement for the shards: which parts each is asked for, and how their answers
//! will be combined.

use std::ops::Range;

use super::{Combine, Merger, Mode, Output, Pick, Refusal, Scatter, ScatterContext, COMBINABLE};
use crate::influxql::{
    select::{shape, Field, Fill, Shape},
    Statement, Token, TokenKind,
};

/// Plans `statement` of query `q` across the shards of `context`.
pub fn scatter(
    q: &str,
    statement: &Statement<'_>,
    context: &ScatterContext<'_>,
) -> Result<Scatter, Refusal> {
    let refuse = |what: &str, why: &'static str| Refusal::NotMergeable {
        what: what.to_owned(),
        shards: context.shards.join(", "),
        why,
    };
    let tokens = &statement.tokens;
    let show = show_kind(tokens);
    if let Some(Err(what)) = &show {
        return Err(refuse(
            what,
            "the parts cannot be added up; ask each measurement, or use SHOW SERIES / SHOW MEASUREMENTS",
        ));
    }
    let shape = shape(statement).ok_or_else(|| {
        refuse(
            "this statement",
            "the gateway could not read its structure; send it to one shard's measurements at a time",
        )
    })?;
    if shape.subquery {
        return Err(refuse(
            "a subquery",
            "its inner answers would be computed per shard; query each shard's measurements separately",
        ));
    }
    if shape.tz {
        return Err(refuse(
            "tz()",
            "merged answers are written in UTC; drop tz() and convert on the client",
        ));
    }
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let (mode, points) = match show {
        Some(Ok(mode)) => (mode, None),
        _ => select_mode(q, tokens, &shape, context, &mut edits)
            .map_err(|u| refuse(&u.what, u.why))?,
    };
    // Limits after the merge: every shard gives enough rows and series for any of them to place.
    let offset = shape.offset.as_ref().map_or(0, |c| c.value);
    let soffset = shape.soffset.as_ref().map_or(0, |c| c.value);
    for (keyword, limit, skip, skipped) in [
        ("LIMIT", &shape.limit, &shape.offset, offset),
        ("SLIMIT", &shape.slimit, &shape.soffset, soffset),
    ] {
        if let Some(c) = skip {
            edits.push((c.tokens.clone(), String::new()));
        }
        if let Some(c) = limit {
            let rows = c.value.saturating_add(skipped);
            edits.push((c.tokens.clone(), format!("{keyword} {rows}")));
        }
    }
    let mut text = rewrite(q, tokens, edits);
    if let Some(points) = &points {
        text.push_str("; ");
        text.push_str(points);
    }
    Ok(Scatter {
        text,
        merger: Merger {
            points: points.is_some(),
            mode,
            descending: shape.descending,
            limit: shape.limit.as_ref().map(|c| c.value),
            offset,
            slimit: shape.slimit.as_ref().map(|c| c.value),
            soffset,
            one_wildcard: one_wildcard(tokens, &shape),
        },
    })
}

/// Whether the statement's one field is a wildcard: `*`, a regex, or a call on one (`count(*)`).
/// Only then are its columns the sorted union of its sources' fields and tags, which the merge
/// can rebuild from the shards' answers.
fn one_wildcard(tokens: &[Token<'_>], shape: &Shape) -> bool {
    let [only] = shape.fields.as_slice() else {
        return false;
    };
    match &only.field {
        Field::Call { wildcard, .. } => *wildcard,
        Field::Raw => tokens
            .get(only.tokens.clone())
            .and_then(<[Token<'_>]>::first)
            .is_some_and(|t| t.is_punct("*") || t.kind == TokenKind::Regex),
        _ => false,
    }
}

/// `Some(Ok(mode))` for a SHOW list that unions, `Some(Err(what))` for one that does not, `None`
/// for anything else.
fn show_kind(tokens: &[Token<'_>]) -> Option<Result<Mode, String>> {
    if !tokens.first()?.is_keyword("SHOW") {
        return None;
    }
    if tokens.iter().any(|t| t.is_keyword("CARDINALITY")) {
        return Some(Err("cardinality".to_owned()));
    }
    let word = |i: usize| {
        tokens
            .get(i)
            .map(|t| t.text.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let show = |keep_order, unique_names| {
        Ok(Mode::Show {
            keep_order,
            unique_names,
        })
    };
    Some(match (word(1).as_str(), word(2).as_str()) {
        ("DATABASES", _) | ("RETENTION", "POLICIES") => show(true, true),
        ("CONTINUOUS", "QUERIES") => show(true, false),
        ("MEASUREMENTS", _) | ("SERIES", _) => show(false, false),
        ("TAG", "KEYS") | ("TAG", "VALUES") | ("FIELD", "KEYS") => show(false, false),
        _ => Err(format!("SHOW {}", word(1))),
    })
}

/// What in a SELECT cannot be merged exactly across shards, and what the client can do instead.
#[derive(Debug)]
struct Unmergeable {
    /// The part of the statement at fault.
    what: String,
    /// Why, and the way around it.
    why: &'static str,
}

impl Unmergeable {
    fn new(what: impl Into<String>, why: &'static str) -> Self {
        Unmergeable {
            what: what.into(),
            why,
        }
    }
}

/// How a SELECT's answers merge, with the edits its text needs and, for `first`/`last` beside
/// other fields or under `GROUP BY time`, the statement asking for their raw points.
fn select_mode(
    q: &str,
    tokens: &[Token<'_>],
    shape: &Shape,
    context: &ScatterContext<'_>,
    edits: &mut Vec<(Range<usize>, String)>,
) -> Result<(Mode, Option<String>), Unmergeable> {
    let calls: Vec<&str> = shape
        .fields
        .iter()
        .filter_map(|f| f.field.function())
        .collect();
    let aggregating_expression = aggregating_expression(tokens, shape);
    if calls.is_empty() && !aggregating_expression {
        return Ok((Mode::Rows, None));
    }
    if groups_by_every_shard_tag(shape, context) {
        // Every output series lives on one shard: whatever it computes is complete there.
        return Ok((Mode::Rows, None));
    }
    check_combinable(shape)?;
    if let Some(mode) = wildcard_mode(shape, &calls, edits) {
        return mode.map(|mode| (mode, None));
    }
    let single_pick = match calls.as_slice() {
        [only] if !shape.group_by_time => selector(only),
        _ => None,
    };
    // `first`/`last` among others or per bucket: the time of the point they select is lost in
    // the aggregate answer, so their raw points are asked for beside it.
    let mut point_fields: Vec<String> = Vec::new();
    let mut columns = ask_for_parts(q, tokens, shape, single_pick, edits, &mut point_fields);
    if let Some(function) = single_pick {
        if let Some(output) = columns.pop() {
            return Ok((
                Mode::Pick {
                    name: output.name,
                    function,
                },
                None,
            ));
        }
    }
    let fill = merged_fill(shape, edits);
    let points =
        (!point_fields.is_empty()).then(|| points_statement(q, tokens, shape, &point_fields));
    Ok((Mode::Aggregate { columns, fill }, points))
}

/// Whether an expression field aggregates: one with a call in it (`mean(v) * 2`) does, plain
/// arithmetic does not.
fn aggregating_expression(tokens: &[Token<'_>], shape: &Shape) -> bool {
    shape.fields.iter().any(|f| {
        f.field == Field::Expression
            && tokens[f.tokens.clone()]
                .windows(2)
                .any(|w| w[0].kind == crate::influxql::TokenKind::Ident && w[1].is_punct("("))
    })
}

/// Whether the statement groups by every tag that spreads a measurement over shards.
fn groups_by_every_shard_tag(shape: &Shape, context: &ScatterContext<'_>) -> bool {
    shape.group_by_all
        || context
            .shard_tags
            .iter()
            .all(|t| shape.group_by_tags.iter().any(|g| g == t))
}

/// Refuses a field whose answers from several shards cannot be recombined into one.
fn check_combinable(shape: &Shape) -> Result<(), Unmergeable> {
    let not_combinable = "it needs all of a series' points in one place; add GROUP BY the shard tag, or query one shard's series";
    for field in &shape.fields {
        match &field.field {
            Field::Raw => {
                return Err(Unmergeable::new(
                    "mixing raw fields and aggregates",
                    not_combinable,
                ))
            }
            Field::Expression => {
                return Err(Unmergeable::new(
                    "an expression over aggregates",
                    "the gateway recombines plain function calls only; compute the expression on the client",
                ))
            }
            Field::Nested { text, .. } => {
                return Err(Unmergeable::new(text.clone(), not_combinable))
            }
            Field::Call { function, .. } if !COMBINABLE.contains(&function.as_str()) => {
                return Err(Unmergeable::new(format!("{function}()"), not_combinable))
            }
            Field::Call { .. } => {}
        }
    }
    Ok(())
}

/// For a call over a wildcard, whose columns are known only from the answers: the mode if it is a
/// lone `count` or `sum`, else the refusal; `None` without a wildcard.
fn wildcard_mode(
    shape: &Shape,
    calls: &[&str],
    edits: &mut Vec<(Range<usize>, String)>,
) -> Option<Result<Mode, Unmergeable>> {
    let wildcard = shape
        .fields
        .iter()
        .any(|f| matches!(f.field, Field::Call { wildcard: true, .. }));
    if !wildcard {
        return None;
    }
    let function = match calls {
        [only, rest @ ..] if rest.iter().all(|f| f == only) => *only,
        _ => "",
    };
    Some(match function {
        "count" if shape.fields.len() == 1 => Ok(Mode::Wildcard {
            function: Combine::Count,
            fill: merged_fill(shape, edits),
        }),
        "sum" if shape.fields.len() == 1 => Ok(Mode::Wildcard {
            function: Combine::Sum,
            fill: merged_fill(shape, edits),
        }),
        _ => Err(Unmergeable::new(
            format!("{}() over a wildcard", calls[0]),
            "name the fields instead of * or a regex",
        )),
    })
}

/// The point a selector function picks, for `min`, `max`, `first` and `last`.
fn selector(function: &str) -> Option<Pick> {
    match function {
        "min" => Some(Pick::Min),
        "max" => Some(Pick::Max),
        "first" => Some(Pick::First),
        "last" => Some(Pick::Last),
        _ => None,
    }
}

/// Asks each shard for plainly named parts of every call, and says how each output column is put
/// back together from them; the raw points `first`/`last` need go to `point_fields`.
fn ask_for_parts(
    q: &str,
    tokens: &[Token<'_>],
    shape: &Shape,
    single_pick: Option<Pick>,
    edits: &mut Vec<(Range<usize>, String)>,
    point_fields: &mut Vec<String>,
) -> Vec<Output> {
    let mut names: Vec<String> = Vec::new();
    let mut columns = Vec::new();
    for (index, field) in shape.fields.iter().enumerate() {
        let Field::Call {
            function,
            tokens: call,
            ..
        } = &field.field
        else {
            continue;
        };
        let args = call_args(q, tokens, call);
        let combine = combine_of(function, single_pick);
        let text = shard_parts(function, args, index, combine, point_fields);
        edits.push((field.tokens.clone(), text));
        let name = unique_name(
            &mut names,
            field.alias.clone().unwrap_or_else(|| function.clone()),
        );
        columns.push(Output {
            name,
            combine,
            index,
        });
    }
    columns
}

/// The call's arguments as written, parentheses included.
fn call_args<'q>(q: &'q str, tokens: &[Token<'_>], call: &Range<usize>) -> &'q str {
    let args_from = tokens.get(call.start + 1).map_or(0, |t| t.offset);
    let call_end = tokens
        .get(call.end - 1)
        .map_or(0, |t| t.offset + t.text.len());
    q.get(args_from..call_end).unwrap_or("()")
}

/// How the shards' answers to `function` combine; a lone selector's are compared as values.
fn combine_of(function: &str, single_pick: Option<Pick>) -> Combine {
    match (function, single_pick) {
        ("count", _) => Combine::Count,
        ("sum", _) => Combine::Sum,
        ("min", _) | ("first", Some(_)) => Combine::Min,
        ("max", _) | ("last", Some(_)) => Combine::Max,
        ("first", None) => Combine::First,
        ("last", None) => Combine::Last,
        ("mean", _) => Combine::Mean,
        _ => Combine::Spread,
    }
}

/// The fields the shards are asked for in place of field `index`, `function` over `args`.
fn shard_parts(
    function: &str,
    args: &str,
    index: usize,
    combine: Combine,
    point_fields: &mut Vec<String>,
) -> String {
    match combine {
        Combine::Mean => {
            format!("sum{args} AS \"__gw_{index}_a\", count{args} AS \"__gw_{index}_b\"")
        }
        Combine::Spread => {
            format!("max{args} AS \"__gw_{index}_a\", min{args} AS \"__gw_{index}_b\"")
        }
        Combine::First | Combine::Last => {
            // The count tells which buckets hold points; the values come from the points.
            let inner = args
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or(args);
            point_fields.push(format!("{inner} AS \"__gw_r{index}\""));
            format!("count{args} AS \"__gw_{index}\"")
        }
        _ => format!("{function}{args} AS \"__gw_{index}\""),
    }
}

/// [`fill_after_merge`], where without time buckets `fill(null)` fills nothing: influxd's count
/// of a field a measurement lacks is null there, not the 0 of an empty bucket.
fn merged_fill(shape: &Shape, edits: &mut Vec<(Range<usize>, String)>) -> Fill {
    match fill_after_merge(shape, edits) {
        Fill::Null if !shape.group_by_time => Fill::None,
        fill => fill,
    }
}

/// The fill to apply after the merge, with the edit that has the shards fill with nulls instead.
fn fill_after_merge(shape: &Shape, edits: &mut Vec<(Range<usize>, String)>) -> Fill {
    let fill = shape.fill.0.clone();
    if matches!(fill, Fill::Value(_) | Fill::Previous | Fill::Linear) {
        // A bucket empty on one shard may not be empty overall: fill after the merge.
        if let Some(arg) = &shape.fill.1 {
            edits.push((arg.clone(), "null".to_owned()));
        }
    }
    fill
}

/// The statement asking a shard for the raw points behind `first`/`last`: the same sources,
/// condition and tags, no time grouping, fill, order or limits.
fn points_statement(q: &str, tokens: &[Token<'_>], shape: &Shape, fields: &[String]) -> String {
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    if let Some(range) = &shape.ranges.fields {
        edits.push((range.clone(), fields.join(", ")));
    }
    if let Some(range) = &shape.ranges.group_by {
        let tags: Vec<String> = shape
            .group_by_tags
            .iter()
            .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let group_by = if tags.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {}", tags.join(", "))
        };
        edits.push((range.clone(), group_by));
    }
    for range in [&shape.ranges.fill, &shape.ranges.order_by]
        .into_iter()
        .flatten()
    {
        edits.push((range.clone(), String::new()));
    }
    for clause in [&shape.limit, &shape.offset, &shape.slimit, &shape.soffset]
        .into_iter()
        .flatten()
    {
        edits.push((clause.tokens.clone(), String::new()));
    }
    rewrite(q, tokens, edits)
}

/// InfluxDB's column names: a repeated name gets `_1`, `_2`, ...
fn unique_name(taken: &mut Vec<String>, base: String) -> String {
    let mut name = base.clone();
    let mut n = 0;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}_{n}");
    }
    taken.push(name.clone());
    name
}

/// The statement's text with token ranges replaced; what lies between tokens is kept.
fn rewrite(q: &str, tokens: &[Token<'_>], mut edits: Vec<(Range<usize>, String)>) -> String {
    let (Some(first), Some(last)) = (tokens.first(), tokens.last()) else {
        return String::new();
    };
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(q.len());
    let mut cursor = first.offset;
    for (range, text) in edits {
        let (Some(from), Some(to)) = (
            tokens.get(range.start),
            tokens.get(range.end.saturating_sub(1)),
        ) else {
            continue;
        };
        if from.offset < cursor {
            continue; // overlapping edits never happen; never corrupt the text if they do
        }
        out.push_str(q.get(cursor..from.offset).unwrap_or_default());
        out.push_str(&text);
        cursor = to.offset + to.text.len();
    }
    out.push_str(
        q.get(cursor..last.offset + last.text.len())
            .unwrap_or_default(),
    );
    // A clause removed at the end leaves the space before it.
    out.truncate(out.trim_end().len());
    out
}
