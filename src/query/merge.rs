//! One read statement answered by several shards: the text each shard is asked, and how their
//! answers become the one a single InfluxDB holding all the data would give.
//!
//! Every series (one measurement and tag set) lives on one shard, except the series of a
//! measurement spread by a tag (`by_tag`) when the statement does not group by that tag: then one
//! output series gathers points from several shards. So:
//!
//! - **SHOW** lists are unioned, de-duplicated and sorted as InfluxDB sorts them (databases and
//!   retention policies keep their creation order, which every node shares).
//! - **Raw rows** of the same series are interleaved by time (`ORDER BY time DESC` respected).
//! - **Series that cannot span shards** are unioned whatever the functions: each is complete where
//!   it lives. Series are ordered by name, then tags.
//! - **Aggregates over series spanning shards** are recombined exactly: `count` and `sum` add up,
//!   `min` and `max` compare, `mean` is asked as `sum` and `count`, `spread` as `max` and `min`;
//!   a lone `min`, `max`, `first` or `last` without `GROUP BY time` keeps the time of the point it
//!   selects. Other `first`/`last` lose that time in an aggregate answer: shards are asked for a
//!   count per bucket (which buckets hold points) and, in a second statement, for the raw points,
//!   and the earliest or latest point of each bucket wins. Every `fill` other than `none` is asked
//!   as `fill(null)` and applied after the merge, where a bucket empty on one shard may not be
//!   empty overall.
//! - **Limits** apply after the merge: shards are asked for `LIMIT n+offset` and `SLIMIT
//!   n+soffset` without the offsets.
//!
//! Refused, naming the function and the shards, rather than answered wrongly: functions that need
//! all of a series' points in one place (percentile, median, mode, stddev, distinct, integral,
//! derivative and the other transformations, top/bottom, sample, holt_winters), expressions over
//! aggregates, wildcard selectors, `tz()`, subqueries, and cardinality statements.
//! Float sums are added per shard and then across shards, so their last bit can differ from one
//! node's, whose addition order differs too.

use std::{cmp::Ordering, collections::HashMap, fmt::Write as _, ops::Range};

use serde_json::{Map, Number, Value};

use crate::influxql::{
    select::{shape, Field, Fill, Shape},
    Statement, Token,
};

/// What the engine needs to know about the shards a statement touches.
pub struct ScatterContext<'a> {
    /// Names of the shards involved, for error messages.
    pub shards: &'a [&'a str],
    /// Tag keys by which some measurement the statement reads is spread over shards. Empty: no
    /// output series can span shards.
    pub shard_tags: &'a [&'a str],
}

/// A statement rewritten for the shards and how to combine their answers.
#[derive(Debug)]
pub struct Scatter {
    /// The statement to send to every shard.
    pub text: String,
    /// How their answers are combined.
    pub merger: Merger,
}

/// Why a statement cannot be answered exactly across shards; its text is the client's error.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The statement uses something whose answer cannot be recombined from parts.
    #[error("{what} cannot be computed exactly across shards {shards}: {why}")]
    NotMergeable {
        /// The function or construct.
        what: String,
        /// The shards, comma-separated.
        shards: String,
        /// Why, and what to do instead.
        why: &'static str,
    },
}

/// How the answers of the shards are combined.
#[derive(Debug)]
pub struct Merger {
    mode: Mode,
    /// Each shard also answers a second statement: the raw points of `first`/`last` fields.
    points: bool,
    descending: bool,
    limit: Option<u64>,
    offset: u64,
    slimit: Option<u64>,
    soffset: u64,
}

#[derive(Debug)]
enum Mode {
    /// SHOW lists: union; `keep_order` for lists in creation order.
    Show { keep_order: bool },
    /// Raw rows, or series that never span shards: interleave by time.
    Rows,
    /// Aggregates recombined per time bucket.
    Aggregate { columns: Vec<Output>, fill: Fill },
    /// One selector keeping its point's time: the best row wins.
    Pick { name: String, function: Pick },
    /// `count(*)` or `sum(*)`: every column combined the same way.
    Wildcard { function: Combine },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    Min,
    Max,
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// The value of the earliest point in the bucket (its count says whether there is one).
    First,
    /// The value of the latest point in the bucket.
    Last,
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Spread,
}

/// One output column of an aggregate, computed from shard columns named `__gw_{i}` (and
/// `__gw_{i}_a`, `__gw_{i}_b` for the two halves of `mean` and `spread`).
#[derive(Debug)]
struct Output {
    name: String,
    combine: Combine,
    index: usize,
}

/// The functions that recombine exactly.
const COMBINABLE: &[&str] = &[
    "count", "sum", "min", "max", "mean", "spread", "first", "last",
];

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
        Some(Ok(keep_order)) => (Mode::Show { keep_order }, None),
        _ => select_mode(q, tokens, &shape, context, &mut edits)
            .map_err(|(what, why)| refuse(&what, why))?,
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
        },
    })
}

/// `Some(Ok(keep_order))` for a SHOW list that unions, `Some(Err(what))` for one that does not,
/// `None` for anything else.
fn show_kind(tokens: &[Token<'_>]) -> Option<Result<bool, String>> {
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
    Some(match (word(1).as_str(), word(2).as_str()) {
        ("DATABASES", _) | ("RETENTION", "POLICIES") => Ok(true),
        ("MEASUREMENTS", _) | ("SERIES", _) => Ok(false),
        ("TAG", "KEYS") | ("TAG", "VALUES") | ("FIELD", "KEYS") => Ok(false),
        _ => Err(format!("SHOW {}", word(1))),
    })
}

type Refused = (String, &'static str);

/// How a SELECT's answers merge, with the edits its text needs and, for `first`/`last` beside
/// other fields or under `GROUP BY time`, the statement asking for their raw points.
fn select_mode(
    q: &str,
    tokens: &[Token<'_>],
    shape: &Shape,
    context: &ScatterContext<'_>,
    edits: &mut Vec<(Range<usize>, String)>,
) -> Result<(Mode, Option<String>), Refused> {
    let calls: Vec<&str> = shape
        .fields
        .iter()
        .filter_map(|f| f.field.function())
        .collect();
    // An expression with a call in it (`mean(v) * 2`) aggregates; plain arithmetic does not.
    let aggregating_expression = shape.fields.iter().any(|f| {
        f.field == Field::Expression
            && tokens[f.tokens.clone()]
                .windows(2)
                .any(|w| w[0].kind == crate::influxql::TokenKind::Ident && w[1].is_punct("("))
    });
    if calls.is_empty() && !aggregating_expression {
        return Ok((Mode::Rows, None));
    }
    let groups_by_every_shard_tag = shape.group_by_all
        || context
            .shard_tags
            .iter()
            .all(|t| shape.group_by_tags.iter().any(|g| g == t));
    if groups_by_every_shard_tag {
        // Every output series lives on one shard: whatever it computes is complete there.
        return Ok((Mode::Rows, None));
    }
    let not_combinable = "it needs all of a series' points in one place; add GROUP BY the shard tag, or query one shard's series";
    for field in &shape.fields {
        match &field.field {
            Field::Raw => {
                return Err(("mixing raw fields and aggregates".into(), not_combinable))
            }
            Field::Expression => {
                return Err((
                    "an expression over aggregates".into(),
                    "the gateway recombines plain function calls only; compute the expression on the client",
                ))
            }
            Field::Nested { text, .. } => return Err((text.clone(), not_combinable)),
            Field::Call { function, .. } if !COMBINABLE.contains(&function.as_str()) => {
                return Err((format!("{function}()"), not_combinable))
            }
            Field::Call { .. } => {}
        }
    }
    let wildcard = shape
        .fields
        .iter()
        .any(|f| matches!(f.field, Field::Call { wildcard: true, .. }));
    if wildcard {
        let function = match calls.as_slice() {
            [only, rest @ ..] if rest.iter().all(|f| f == only) => *only,
            _ => "",
        };
        return match function {
            "count" if shape.fields.len() == 1 => Ok((
                Mode::Wildcard {
                    function: Combine::Count,
                },
                None,
            )),
            "sum" if shape.fields.len() == 1 => Ok((
                Mode::Wildcard {
                    function: Combine::Sum,
                },
                None,
            )),
            _ => Err((
                format!("{}() over a wildcard", calls[0]),
                "name the fields instead of * or a regex",
            )),
        };
    }
    let selector = |f: &str| match f {
        "min" => Some(Pick::Min),
        "max" => Some(Pick::Max),
        "first" => Some(Pick::First),
        "last" => Some(Pick::Last),
        _ => None,
    };
    let single_pick = match calls.as_slice() {
        [only] if !shape.group_by_time => selector(only),
        _ => None,
    };
    // Ask each shard for plainly named parts.
    let mut names: Vec<String> = Vec::new();
    let mut columns = Vec::new();
    // `first`/`last` among others or per bucket: the time of the point they select is lost in
    // the aggregate answer, so their raw points are asked for beside it.
    let mut point_fields: Vec<String> = Vec::new();
    for (index, field) in shape.fields.iter().enumerate() {
        let Field::Call {
            function,
            tokens: call,
            ..
        } = &field.field
        else {
            continue;
        };
        let args_from = tokens.get(call.start + 1).map_or(0, |t| t.offset);
        let call_end = tokens
            .get(call.end - 1)
            .map_or(0, |t| t.offset + t.text.len());
        let args = q.get(args_from..call_end).unwrap_or("()");
        let combine = match (function.as_str(), single_pick) {
            ("count", _) => Combine::Count,
            ("sum", _) => Combine::Sum,
            ("min", _) | ("first", Some(_)) => Combine::Min,
            ("max", _) | ("last", Some(_)) => Combine::Max,
            ("first", None) => Combine::First,
            ("last", None) => Combine::Last,
            ("mean", _) => Combine::Mean,
            _ => Combine::Spread,
        };
        let text = match combine {
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
        };
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
    let fill = shape.fill.0.clone();
    if matches!(fill, Fill::Value(_) | Fill::Previous | Fill::Linear) {
        // A bucket empty on one shard may not be empty overall: fill after the merge.
        if let Some(arg) = &shape.fill.1 {
            edits.push((arg.clone(), "null".to_owned()));
        }
    }
    let points =
        (!point_fields.is_empty()).then(|| points_statement(q, tokens, shape, &point_fields));
    Ok((Mode::Aggregate { columns, fill }, points))
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

/// The client's `epoch` parameter: how times are written in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// RFC 3339 strings with nanoseconds, InfluxDB's default.
    Rfc3339,
    /// Integer hours.
    Hours,
    /// Integer minutes.
    Minutes,
    /// Integer seconds.
    Seconds,
    /// Integer milliseconds.
    Millis,
    /// Integer microseconds.
    Micros,
    /// Integer nanoseconds.
    Nanos,
}

impl Epoch {
    /// Reads `epoch` as InfluxDB does: an unknown unit means nanoseconds.
    pub fn parse(param: Option<&str>) -> Epoch {
        match param {
            None | Some("") => Epoch::Rfc3339,
            Some("h") => Epoch::Hours,
            Some("m") => Epoch::Minutes,
            Some("s") => Epoch::Seconds,
            Some("ms") => Epoch::Millis,
            Some("u") | Some("µ") => Epoch::Micros,
            Some(_) => Epoch::Nanos,
        }
    }

    /// The parameter that asks a node for this format.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Epoch::Rfc3339 => None,
            Epoch::Hours => Some("h"),
            Epoch::Minutes => Some("m"),
            Epoch::Seconds => Some("s"),
            Epoch::Millis => Some("ms"),
            Epoch::Micros => Some("u"),
            Epoch::Nanos => Some("ns"),
        }
    }

    /// A time in nanoseconds, written in this format.
    fn format(&self, ns: i64) -> Value {
        // Go's integer division, as influxd converts.
        let per = match self {
            Epoch::Rfc3339 => return Value::String(rfc3339_nano(ns)),
            Epoch::Hours => 3_600_000_000_000,
            Epoch::Minutes => 60_000_000_000,
            Epoch::Seconds => 1_000_000_000,
            Epoch::Millis => 1_000_000,
            Epoch::Micros => 1_000,
            Epoch::Nanos => 1,
        };
        Value::from(ns / per)
    }
}

/// Go's `time.RFC3339Nano` in UTC: the fraction without trailing zeros, none when zero.
fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A number as InfluxDB's JSON carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(value: &Value) -> Option<Num> {
        match value {
            Value::Number(n) => n
                .as_i64()
                .map(Num::Int)
                .or_else(|| n.as_f64().map(Num::Float)),
            _ => None,
        }
    }

    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a
                .checked_add(b)
                .map_or(Num::Float(a as f64 + b as f64), Num::Int),
            _ => Num::Float(self.float() + other.float()),
        }
    }

    fn sub(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a
                .checked_sub(b)
                .map_or(Num::Float(a as f64 - b as f64), Num::Int),
            _ => Num::Float(self.float() - other.float()),
        }
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            _ => self.float().total_cmp(&other.float()),
        }
    }

    fn json(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) => float_json(f),
        }
    }
}

/// A float as Go's encoder writes it: an integral value without `.0`.
fn float_json(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// One output series being built: its key and the parts the shards gave.
struct Group {
    name: Option<Value>,
    tags: Option<Value>,
    parts: Vec<Part>,
    /// Raw points behind `first`/`last`, when they were asked for.
    points: Vec<Part>,
}

/// One shard's columns and rows of one series.
type Part = (Vec<String>, Vec<Value>);

/// Adds the series of one shard's result to `groups`, keyed by name and tags.
fn collect(
    result: Value,
    groups: &mut Vec<Group>,
    index: &mut HashMap<String, usize>,
    messages: &mut Vec<Value>,
    points: bool,
) {
    let Value::Object(mut result) = result else {
        return;
    };
    if let Some(Value::Array(list)) = result.remove("messages") {
        for m in list {
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
    }
    let Some(Value::Array(series)) = result.remove("series") else {
        return;
    };
    for s in series {
        let Value::Object(mut s) = s else { continue };
        let name = s.remove("name");
        let tags = s.remove("tags");
        let key = format!("{name:?}\u{0}{tags:?}");
        let columns: Vec<String> = match s.remove("columns") {
            Some(Value::Array(c)) => c
                .into_iter()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        };
        let rows = match s.remove("values") {
            Some(Value::Array(v)) => v,
            _ => Vec::new(),
        };
        let at = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                name,
                tags,
                parts: Vec::new(),
                points: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[at];
        if points {
            group.points.push((columns, rows));
        } else {
            group.parts.push((columns, rows));
        }
    }
}

impl Merger {
    /// Combines the shards' answers to one statement (asked with `epoch=ns`), each shard's
    /// `results` array, into the result InfluxDB would give, without `statement_id`, times
    /// written for `epoch`.
    pub fn merge(&self, answers: Vec<Vec<Value>>, epoch: Epoch) -> Value {
        if let Some(failed) = answers.iter().flatten().find(|r| r.get("error").is_some()) {
            let mut out = Map::new();
            out.insert("error".into(), failed["error"].clone());
            return Value::Object(out);
        }
        let mut messages: Vec<Value> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for answer in answers {
            let mut results = answer.into_iter();
            if let Some(result) = results.next() {
                collect(result, &mut groups, &mut index, &mut messages, false);
            }
            if self.points {
                if let Some(result) = results.next() {
                    collect(result, &mut groups, &mut index, &mut messages, true);
                }
            }
        }
        if !matches!(self.mode, Mode::Show { keep_order: true }) {
            groups.sort_by(|a, b| {
                compare_values(a.name.as_ref(), b.name.as_ref())
                    .then_with(|| tag_key(&a.tags).cmp(&tag_key(&b.tags)))
            });
            // influxd walks its series backwards too when the rows go backwards.
            if self.descending {
                groups.reverse();
            }
        }
        let series: Vec<Value> = self
            .series_limits(groups)
            .into_iter()
            .filter_map(|group| self.series(group, epoch))
            .collect();
        let mut out = Map::new();
        if !series.is_empty() {
            out.insert("series".into(), Value::Array(series));
        }
        if !messages.is_empty() {
            out.insert("messages".into(), Value::Array(messages));
        }
        Value::Object(out)
    }

    /// `SLIMIT` and `SOFFSET` as influxd 1.x applies them: within each measurement, and an
    /// `SOFFSET` without `SLIMIT` keeps no series at all.
    fn series_limits(&self, groups: Vec<Group>) -> Vec<Group> {
        if self.slimit.is_none() && self.soffset == 0 {
            return groups;
        }
        let limit = self.slimit.unwrap_or(0);
        let mut kept = Vec::new();
        let mut current: Option<Option<Value>> = None;
        let mut seen = 0u64;
        for group in groups {
            if current.as_ref() != Some(&group.name) {
                current = Some(group.name.clone());
                seen = 0;
            }
            if seen >= self.soffset && seen - self.soffset < limit {
                kept.push(group);
            }
            seen += 1;
        }
        kept
    }

    /// One merged output series, or `None` when the limits leave it no rows.
    fn series(&self, group: Group, epoch: Epoch) -> Option<Value> {
        let (columns, mut rows) = match &self.mode {
            Mode::Show { keep_order } => show_rows(group.parts, *keep_order),
            Mode::Rows => self.raw_rows(group.parts),
            Mode::Aggregate { columns, fill } => {
                self.aggregate(group.parts, group.points, columns, fill)
            }
            Mode::Pick { name, function } => pick(group.parts, name, *function),
            Mode::Wildcard { function } => self.wildcard(group.parts, *function),
        };
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let take = self
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        rows = rows.into_iter().skip(skip).take(take).collect();
        if rows.is_empty() {
            return None;
        }
        if columns.first().is_some_and(|c| c == "time") {
            for row in &mut rows {
                if let Some(t) = row.as_array_mut().and_then(|r| r.first_mut()) {
                    if let Some(ns) = t.as_i64() {
                        *t = epoch.format(ns);
                    }
                }
            }
        }
        let mut s = Map::new();
        if let Some(name) = group.name {
            s.insert("name".into(), name);
        }
        if let Some(tags) = group.tags {
            s.insert("tags".into(), tags);
        }
        s.insert(
            "columns".into(),
            Value::Array(columns.into_iter().map(Value::String).collect()),
        );
        s.insert("values".into(), Value::Array(rows));
        Some(Value::Object(s))
    }

    /// Rows of one series from several shards, interleaved by time; columns unioned when the
    /// shards saw different fields (`SELECT *`).
    fn raw_rows(&self, parts: Vec<(Vec<String>, Vec<Value>)>) -> (Vec<String>, Vec<Value>) {
        let same = parts.windows(2).all(|w| w[0].0 == w[1].0);
        let columns: Vec<String> = if same {
            parts.first().map(|p| p.0.clone()).unwrap_or_default()
        } else {
            let mut names: Vec<String> = parts
                .iter()
                .flat_map(|p| p.0.iter().skip(1).cloned())
                .collect();
            names.sort();
            names.dedup();
            std::iter::once("time".to_owned()).chain(names).collect()
        };
        let several = parts.len() > 1;
        let mut rows: Vec<Value> = Vec::new();
        for (cols, part_rows) in parts {
            if same {
                rows.extend(part_rows);
                continue;
            }
            let at: Vec<Option<usize>> = columns
                .iter()
                .map(|c| cols.iter().position(|k| k == c))
                .collect();
            for row in part_rows {
                let cells = row.as_array().cloned().unwrap_or_default();
                rows.push(Value::Array(
                    at.iter()
                        .map(|i| i.and_then(|i| cells.get(i).cloned()).unwrap_or(Value::Null))
                        .collect(),
                ));
            }
        }
        if several {
            // Stable: rows of one time keep the shards' order.
            let time = |r: &Value| r.get(0).and_then(Value::as_i64).unwrap_or(i64::MIN);
            if self.descending {
                rows.sort_by_key(|r| std::cmp::Reverse(time(r)));
            } else {
                rows.sort_by_key(time);
            }
        }
        (columns, rows)
    }

    /// Buckets of one series from several shards, recombined column by column, then filled.
    fn aggregate(
        &self,
        parts: Vec<Part>,
        points: Vec<Part>,
        outputs: &[Output],
        fill: &Fill,
    ) -> (Vec<String>, Vec<Value>) {
        // time → one accumulator per output column
        let mut buckets: Vec<(i64, Vec<Acc>)> = Vec::new();
        let mut at: HashMap<i64, usize> = HashMap::new();
        for (cols, rows) in parts {
            let find = |name: &str| cols.iter().position(|c| c == name);
            let sources: Vec<(Option<usize>, Option<usize>)> = outputs
                .iter()
                .map(|o| match o.combine {
                    Combine::Mean | Combine::Spread => (
                        find(&format!("__gw_{}_a", o.index)),
                        find(&format!("__gw_{}_b", o.index)),
                    ),
                    _ => (find(&format!("__gw_{}", o.index)), None),
                })
                .collect();
            for row in rows {
                let Some(cells) = row.as_array() else {
                    continue;
                };
                let time = cells.first().and_then(Value::as_i64).unwrap_or(0);
                let slot = *at.entry(time).or_insert_with(|| {
                    buckets.push((time, vec![Acc::default(); outputs.len()]));
                    buckets.len() - 1
                });
                for ((output, acc), (a, b)) in
                    outputs.iter().zip(&mut buckets[slot].1).zip(&sources)
                {
                    let a = a.and_then(|i| cells.get(i)).and_then(Num::of);
                    let b = b.and_then(|i| cells.get(i)).and_then(Num::of);
                    acc.add(output.combine, a, b);
                }
            }
        }
        buckets.sort_by_key(|(t, _)| *t);
        // A point belongs to the latest bucket starting at or before it.
        for (cols, rows) in points {
            let columns: Vec<Option<usize>> = outputs
                .iter()
                .map(|o| {
                    let name = format!("__gw_r{}", o.index);
                    cols.iter().position(|c| *c == name)
                })
                .collect();
            for row in rows {
                let Some(cells) = row.as_array() else {
                    continue;
                };
                let Some(time) = cells.first().and_then(Value::as_i64) else {
                    continue;
                };
                let slot = buckets.partition_point(|(start, _)| *start <= time);
                let Some((_, accs)) = slot.checked_sub(1).and_then(|s| buckets.get_mut(s)) else {
                    continue;
                };
                for ((output, acc), column) in outputs.iter().zip(accs).zip(&columns) {
                    if let Some(value) = column.and_then(|i| cells.get(i)).filter(|v| !v.is_null())
                    {
                        acc.see(output.combine, time, value);
                    }
                }
            }
        }
        let mut cells: Vec<(i64, Vec<Option<Value>>)> = buckets
            .into_iter()
            .map(|(time, accs)| {
                let values = outputs
                    .iter()
                    .zip(accs)
                    .map(|(o, acc)| acc.value(o.combine))
                    .collect();
                (time, values)
            })
            .collect();
        fill_buckets(&mut cells, outputs, fill);
        if self.descending {
            cells.reverse();
        }
        let rows = cells
            .into_iter()
            .map(|(time, values)| {
                let row = std::iter::once(Value::from(time))
                    .chain(values.into_iter().map(|v| v.unwrap_or(Value::Null)));
                Value::Array(row.collect())
            })
            .collect();
        let columns = std::iter::once("time".to_owned())
            .chain(outputs.iter().map(|o| o.name.clone()))
            .collect();
        (columns, rows)
    }

    /// `count(*)` / `sum(*)`: every column combined the same way, per time.
    fn wildcard(
        &self,
        parts: Vec<(Vec<String>, Vec<Value>)>,
        function: Combine,
    ) -> (Vec<String>, Vec<Value>) {
        let mut names: Vec<String> = parts
            .iter()
            .flat_map(|p| p.0.iter().skip(1).cloned())
            .collect();
        names.sort();
        names.dedup();
        let outputs: Vec<Output> = names
            .iter()
            .enumerate()
            .map(|(index, name)| Output {
                name: name.clone(),
                combine: function,
                index,
            })
            .collect();
        // Rename the shards' columns to the indices `aggregate` reads.
        let parts = parts
            .into_iter()
            .map(|(cols, rows)| {
                let cols = cols
                    .into_iter()
                    .map(|c| match names.iter().position(|n| *n == c) {
                        Some(i) => format!("__gw_{i}"),
                        None => c,
                    })
                    .collect();
                (cols, rows)
            })
            .collect();
        self.aggregate(parts, Vec::new(), &outputs, &Fill::Null)
    }
}

/// Fills empty buckets (`None`) as `fill` says, in time order; under `fill(null)` an empty count
/// is 0, as influxd writes it.
fn fill_buckets(cells: &mut [(i64, Vec<Option<Value>>)], outputs: &[Output], fill: &Fill) {
    for (i, output) in outputs.iter().enumerate() {
        match fill {
            Fill::Value(n) => {
                for (_, values) in cells.iter_mut() {
                    values[i].get_or_insert_with(|| Value::Number(n.clone()));
                }
            }
            Fill::Previous => {
                let mut last: Option<Value> = None;
                for (_, values) in cells.iter_mut() {
                    match &values[i] {
                        Some(v) => last = Some(v.clone()),
                        None => values[i].clone_from(&last),
                    }
                }
            }
            Fill::Linear => interpolate(cells, i),
            Fill::Null | Fill::None => {}
        }
        if output.combine == Combine::Count && *fill == Fill::Null {
            for (_, values) in cells.iter_mut() {
                values[i].get_or_insert(Value::from(0));
            }
        }
    }
}

/// `fill(linear)` as influxd computes it: between the known buckets around an empty one,
/// `slope * (t - t0) + v0` in floating point, truncated back for integers.
fn interpolate(cells: &mut [(i64, Vec<Option<Value>>)], i: usize) {
    let known: Vec<(usize, i64, Num)> = cells
        .iter()
        .enumerate()
        .filter_map(|(k, (t, values))| values[i].as_ref().and_then(Num::of).map(|n| (k, *t, n)))
        .collect();
    for pair in known.windows(2) {
        let ((a, t0, v0), (b, t1, v1)) = (pair[0], pair[1]);
        for (t, values) in &mut cells[a + 1..b] {
            let m = (v1.float() - v0.float()) / (t1 - t0) as f64;
            let v = m * (*t - t0) as f64 + v0.float();
            let value = match (v0, v1) {
                // Truncation toward zero, as Go's int64() conversion does.
                (Num::Int(_), Num::Int(_)) => Num::Int(v as i64),
                _ => Num::Float(v),
            };
            values[i] = Some(value.json());
        }
    }
}

/// Partial results of one output column in one bucket.
#[derive(Debug, Clone, Default)]
struct Acc {
    a: Option<Num>,
    b: Option<Num>,
    /// For `first`/`last`: the selected point so far, its time and value.
    point: Option<(i64, Value)>,
}

impl Acc {
    fn add(&mut self, combine: Combine, a: Option<Num>, b: Option<Num>) {
        let merge = |old: Option<Num>, new: Option<Num>, how: fn(Num, Num) -> Num| match (old, new)
        {
            (Some(x), Some(y)) => Some(how(x, y)),
            (x, None) => x,
            (None, y) => y,
        };
        let sum: fn(Num, Num) -> Num = Num::add;
        let min: fn(Num, Num) -> Num = |x, y| if y.cmp(x) == Ordering::Less { y } else { x };
        let max: fn(Num, Num) -> Num = |x, y| if y.cmp(x) == Ordering::Greater { y } else { x };
        match combine {
            Combine::Count | Combine::Sum | Combine::First | Combine::Last => {
                self.a = merge(self.a, a, sum)
            }
            Combine::Min => self.a = merge(self.a, a, min),
            Combine::Max => self.a = merge(self.a, a, max),
            Combine::Mean => {
                self.a = merge(self.a, a, sum);
                self.b = merge(self.b, b, sum);
            }
            Combine::Spread => {
                self.a = merge(self.a, a, max);
                self.b = merge(self.b, b, min);
            }
        }
    }

    /// A raw point of a `first`/`last` field: kept if it comes before (after) the one held.
    fn see(&mut self, combine: Combine, time: i64, value: &Value) {
        let better = match (&self.point, combine) {
            (None, _) => true,
            (Some((held, _)), Combine::First) => time < *held,
            (Some((held, _)), Combine::Last) => time > *held,
            _ => false,
        };
        if better {
            self.point = Some((time, value.clone()));
        }
    }

    /// The combined value; `None` when the bucket is empty everywhere.
    fn value(&self, combine: Combine) -> Option<Value> {
        match combine {
            Combine::First | Combine::Last => self
                .a
                .filter(|n| n.cmp(Num::Int(0)) == Ordering::Greater)
                .and_then(|_| self.point.as_ref().map(|(_, v)| v.clone())),
            Combine::Count => self
                .a
                .filter(|n| n.cmp(Num::Int(0)) != Ordering::Equal)
                .map(Num::json),
            Combine::Sum | Combine::Min | Combine::Max => self.a.map(Num::json),
            Combine::Mean => match (self.a, self.b) {
                (Some(sum), Some(count)) if count.float() > 0.0 => {
                    Some(float_json(sum.float() / count.float()))
                }
                _ => None,
            },
            Combine::Spread => match (self.a, self.b) {
                (Some(max), Some(min)) => Some(max.sub(min).json()),
                _ => None,
            },
        }
    }
}

/// A lone selector without `GROUP BY time`: the best row across the shards, with its point's time.
fn pick(
    parts: Vec<(Vec<String>, Vec<Value>)>,
    name: &str,
    function: Pick,
) -> (Vec<String>, Vec<Value>) {
    let mut best: Option<(i64, Num)> = None;
    for (_, rows) in parts {
        for row in rows {
            let Some(cells) = row.as_array() else {
                continue;
            };
            let (Some(time), Some(value)) = (
                cells.first().and_then(Value::as_i64),
                cells.get(1).and_then(Num::of),
            ) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((t, v)) => match function {
                    // Ties go to the earlier point, as influxd's reducers keep it.
                    Pick::Max => value.cmp(v).then(t.cmp(&time)) == Ordering::Greater,
                    Pick::Min => value.cmp(v).then(time.cmp(&t)) == Ordering::Less,
                    Pick::First => time < t,
                    Pick::Last => time > t,
                },
            };
            if better {
                best = Some((time, value));
            }
        }
    }
    let rows = best
        .map(|(t, v)| vec![Value::Array(vec![Value::from(t), v.json()])])
        .unwrap_or_default();
    (vec!["time".to_owned(), name.to_owned()], rows)
}

/// SHOW rows from several shards: de-duplicated, sorted unless they keep creation order.
fn show_rows(parts: Vec<(Vec<String>, Vec<Value>)>, keep_order: bool) -> (Vec<String>, Vec<Value>) {
    let columns = parts.first().map(|p| p.0.clone()).unwrap_or_default();
    let mut rows: Vec<Value> = Vec::new();
    for (_, part_rows) in parts {
        for row in part_rows {
            // Databases and policies: one row per name, the first shard's.
            let duplicate = if keep_order {
                rows.iter().any(|r| r.get(0) == row.get(0))
            } else {
                rows.contains(&row)
            };
            if !duplicate {
                rows.push(row);
            }
        }
    }
    if !keep_order {
        rows.sort_by(compare_rows);
    }
    (columns, rows)
}

fn compare_rows(a: &Value, b: &Value) -> Ordering {
    let (a, b) = (a.as_array(), b.as_array());
    let empty = Vec::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    for (x, y) in a.iter().zip(b) {
        let order = compare_values(Some(x), Some(y));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Strings by bytes, as Go sorts them; numbers by value; anything else by its JSON text.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.as_bytes().cmp(y.as_bytes()),
        (Some(x), Some(y)) => match (Num::of(x), Num::of(y)) {
            (Some(p), Some(q)) => p.cmp(q),
            _ => x.to_string().cmp(&y.to_string()),
        },
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
    }
}

/// A series' tags as InfluxDB orders series: by the tag values in key order.
fn tag_key(tags: &Option<Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = tags
        .as_ref()
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::classify_query;
    use serde_json::json;

    /// Answers of one result each, one per shard.
    fn each(results: Vec<Value>) -> Vec<Vec<Value>> {
        results.into_iter().map(|r| vec![r]).collect()
    }

    fn plan(q: &str, shard_tags: &[&str]) -> Result<Scatter, Refusal> {
        let statement = classify_query(q).unwrap().remove(0);
        scatter(
            q,
            &statement,
            &ScatterContext {
                shards: &["s1", "s2"],
                shard_tags,
            },
        )
    }

    #[test]
    fn times_are_written_as_go_writes_them() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            rfc3339_nano(1_600_000_007_000_000_001),
            "2020-09-13T12:26:47.000000001Z"
        );
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            Epoch::parse(Some("ms")).format(1_600_000_007_123_456_789),
            json!(1_600_000_007_123i64)
        );
        assert_eq!(float_json(2.0), json!(2));
        assert_eq!(float_json(2.125), json!(2.125));
    }

    #[test]
    fn shards_are_asked_for_parts_and_enough_rows() {
        let s = plan(
            "SELECT mean(v), count(v) AS c, spread(n) FROM m WHERE time > 0 GROUP BY time(1m) fill(7) LIMIT 3 OFFSET 2",
            &["customer"],
        )
        .unwrap();
        assert_eq!(
            s.text,
            "SELECT sum(v) AS \"__gw_0_a\", count(v) AS \"__gw_0_b\", count(v) AS \"__gw_1\", max(n) AS \"__gw_2_a\", min(n) AS \"__gw_2_b\" FROM m WHERE time > 0 GROUP BY time(1m) fill(null) LIMIT 5"
        );
        let s = plan("SHOW MEASUREMENTS LIMIT 2 OFFSET 1", &[]).unwrap();
        assert_eq!(s.text, "SHOW MEASUREMENTS LIMIT 3");
        let s = plan("SELECT v FROM a, b SLIMIT 2 SOFFSET 2", &[]).unwrap();
        assert_eq!(s.text, "SELECT v FROM a, b SLIMIT 4");
    }

    #[test]
    fn what_does_not_recombine_is_refused_by_name() {
        for (q, what) in [
            ("SELECT percentile(v, 90) FROM m", "percentile()"),
            ("SELECT count(distinct(v)) FROM m", "count(distinct(v))"),
            ("SELECT mean(v) * 2 FROM m", "an expression"),
            (
                "SELECT mode(v) FROM m WHERE time > 0 GROUP BY time(1m)",
                "mode()",
            ),
            ("SELECT max(*) FROM m", "max() over a wildcard"),
            ("SHOW SERIES CARDINALITY", "cardinality"),
        ] {
            let why = plan(q, &["customer"]).unwrap_err().to_string();
            assert!(
                why.starts_with(what) && why.contains("s1, s2"),
                "{q}: {why}"
            );
        }
        // Grouped by the shard tag every series lives on one shard: anything goes.
        assert!(plan(
            "SELECT percentile(v, 90) FROM m GROUP BY customer",
            &["customer"]
        )
        .is_ok());
        assert!(plan("SELECT percentile(v, 90) FROM a, b", &[]).is_ok());
        assert!(plan("SELECT mean(v) FROM m tz('Europe/Paris')", &[]).is_err());
    }

    #[test]
    fn aggregates_recombine() {
        let s = plan(
            "SELECT mean(v), count(v), spread(v) FROM m GROUP BY time(1m)",
            &["customer"],
        )
        .unwrap();
        let part = |rows: Value| json!({"statement_id": 0, "series": [{"name": "m", "columns": ["time", "__gw_0_a", "__gw_0_b", "__gw_1", "__gw_2_a", "__gw_2_b"], "values": rows}]});
        let merged = s.merger.merge(
            each(vec![
                part(json!([
                    [0, 3, 2, 2, 2, 1],
                    [60_000_000_000i64, null, 0, 0, null, null]
                ])),
                part(json!([
                    [0, 1.5, 1, 1, 1.5, 1.5],
                    [60_000_000_000i64, null, 0, 0, null, null]
                ])),
            ]),
            Epoch::Seconds,
        );
        assert_eq!(
            merged,
            json!({"series": [{"name": "m", "columns": ["time", "mean", "count", "spread"], "values": [[0, 1.5, 3, 1], [60, null, 0, null]]}]})
        );
    }

    #[test]
    fn a_lone_selector_keeps_its_points_time() {
        let s = plan("SELECT max(v) FROM m", &["customer"]).unwrap();
        let part = |t: i64, v: f64| json!({"series": [{"name": "m", "columns": ["time", "__gw_0"], "values": [[t, v]]}]});
        let merged = s
            .merger
            .merge(each(vec![part(5, 2.5), part(3, 4.0)]), Epoch::Nanos);
        assert_eq!(
            merged,
            json!({"series": [{"name": "m", "columns": ["time", "max"], "values": [[3, 4]]}]})
        );
    }

    #[test]
    fn show_lists_union_and_raw_rows_interleave() {
        let s = plan("SHOW MEASUREMENTS LIMIT 2 OFFSET 1", &[]).unwrap();
        let part = |names: Value| json!({"series": [{"name": "measurements", "columns": ["name"], "values": names}]});
        let merged = s.merger.merge(
            each(vec![
                part(json!([["cpu"], ["http"]])),
                part(json!([["disk"], ["http"], ["net"]])),
            ]),
            Epoch::Rfc3339,
        );
        assert_eq!(merged["series"][0]["values"], json!([["disk"], ["http"]]));

        let s = plan("SELECT v FROM m ORDER BY time DESC LIMIT 3", &["customer"]).unwrap();
        let part = |rows: Value| json!({"series": [{"name": "m", "columns": ["time", "v"], "values": rows}]});
        let merged = s.merger.merge(
            each(vec![
                part(json!([[4, 1], [1, 2]])),
                part(json!([[3, 3], [2, 4]])),
            ]),
            Epoch::Nanos,
        );
        assert_eq!(
            merged["series"][0]["values"],
            json!([[4, 1], [3, 3], [2, 4]])
        );
        let failed = s.merger.merge(
            each(vec![part(json!([])), json!({"error": "boom"})]),
            Epoch::Nanos,
        );
        assert_eq!(failed, json!({"error": "boom"}));
    }
}
