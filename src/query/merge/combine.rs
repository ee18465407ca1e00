//! Combining the shards' answers to one statement: series keyed by name and tags, rows
//! interleaved, buckets recombined and filled, limits applied, times formatted.

use std::{cmp::Ordering, collections::HashMap};

use serde_json::{Map, Number, Value};

use super::{Combine, Epoch, Merger, Mode, Output, Pick};
use crate::influxql::select::Fill;

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
pub(super) fn float_json(f: f64) -> Value {
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
        if !self.mode.is_schema_list() {
            every_tag_key(&mut groups);
            groups.sort_by(|a, b| {
                compare_values(a.name.as_ref(), b.name.as_ref())
                    .then_with(|| tag_key(&a.tags).cmp(&tag_key(&b.tags)))
            });
            // influxd walks its series backwards too when the rows go backwards.
            if self.descending {
                groups.reverse();
            }
        }
        let mut series: Vec<Value> = self
            .series_limits(groups)
            .into_iter()
            .filter_map(|group| self.series(group, epoch))
            .collect();
        if self.one_wildcard {
            // What influxd puts in a column a series lacks: its fill value for `count(*)` and the
            // like under `fill(n)`, null otherwise.
            let pad = match &self.mode {
                Mode::Wildcard {
                    fill: Fill::Value(n),
                    ..
                } => Value::Number(n.clone()),
                _ => Value::Null,
            };
            every_column(&mut series, &pad);
        }
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
            Mode::Show {
                keep_order,
                unique_names,
            } => show_rows(group.parts, *keep_order, *unique_names),
            Mode::Rows => self.raw_rows(group.parts),
            Mode::Aggregate { columns, fill } => {
                self.aggregate(group.parts, group.points, columns, fill)
            }
            Mode::Pick { name, function } => pick(group.parts, name, *function),
            Mode::Wildcard { function, fill } => self.wildcard(group.parts, *function, fill),
        };
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let take = self
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        rows = rows.into_iter().skip(skip).take(take).collect();
        if rows.is_empty() && !self.mode.is_schema_list() {
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
        if !rows.is_empty() {
            s.insert("values".into(), Value::Array(rows));
        }
        Some(Value::Object(s))
    }

    /// Rows of one series from several shards, interleaved by time; columns unioned when the
    /// shards saw different fields (`SELECT *`).
    fn raw_rows(&self, parts: Vec<Part>) -> Part {
        let same = parts.windows(2).all(|w| w[0].0 == w[1].0);
        let columns: Vec<String> = if same {
            parts.first().map(|p| p.0.clone()).unwrap_or_default()
        } else {
            std::iter::once("time".to_owned())
                .chain(value_columns(parts.iter().map(|p| p.0.as_slice())))
                .collect()
        };
        let several = parts.len() > 1;
        let mut rows: Vec<Value> = Vec::new();
        for (cols, part_rows) in parts {
            if same {
                rows.extend(part_rows);
                continue;
            }
            let at = positions(&columns, &cols);
            rows.extend(
                part_rows
                    .iter()
                    .map(|row| realigned(row, &at, &Value::Null)),
            );
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
    ) -> Part {
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
    fn wildcard(&self, parts: Vec<Part>, function: Combine, fill: &Fill) -> Part {
        let names = value_columns(parts.iter().map(|p| p.0.as_slice()));
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
        self.aggregate(parts, Vec::new(), &outputs, fill)
    }
}

/// Gives every grouped series each tag key some series of the statement has, `""` where it has
/// none, keys in order: influxd groups by the union of the keys of all a statement's sources
/// (`GROUP BY *`), where a shard knows only those of its own series.
fn every_tag_key(groups: &mut [Group]) {
    let mut keys: Vec<String> = groups
        .iter()
        .filter_map(|g| g.tags.as_ref().and_then(Value::as_object))
        .flat_map(|tags| tags.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    for group in groups {
        // A series of a measurement without tags comes back without them, where influxd gives
        // it every key of the union too.
        let tags = group.tags.get_or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(tags) = tags else {
            continue;
        };
        if tags.keys().eq(keys.iter()) {
            continue;
        }
        let mut all = Map::new();
        for key in &keys {
            let value = tags.remove(key).unwrap_or_else(|| Value::from(""));
            all.insert(key.clone(), value);
        }
        *tags = all;
    }
}

/// Gives every series of a statement the same columns when the shards' differ: `time`, then the
/// union of the others sorted, `pad` (null, or a fill value) where a series has none, as influxd
/// expands a lone wildcard (`SELECT *`, `count(*)`) over all of a statement's sources where a
/// shard sees only its own.
fn every_column(series: &mut [Value], pad: &Value) {
    let columns_of = |s: &Value| -> Vec<String> {
        s["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let all: Vec<Vec<String>> = series.iter().map(columns_of).collect();
    if all.windows(2).all(|w| w[0] == w[1])
        || all
            .iter()
            .any(|c| c.first().map(String::as_str) != Some("time"))
    {
        return;
    }
    let union: Vec<String> = std::iter::once("time".to_owned())
        .chain(value_columns(all.iter().map(Vec::as_slice)))
        .collect();
    for (one, columns) in series.iter_mut().zip(all) {
        if columns == union {
            continue;
        }
        let at = positions(&union, &columns);
        if let Some(Value::Array(rows)) = one.get_mut("values") {
            for row in rows.iter_mut().filter(|row| row.is_array()) {
                *row = realigned(row, &at, pad);
            }
        }
        one["columns"] = Value::Array(union.iter().cloned().map(Value::String).collect());
    }
}

/// Every column but time among the column lists (each `time` first), sorted as InfluxDB sorts
/// `SELECT *` columns.
fn value_columns<'c>(lists: impl Iterator<Item = &'c [String]>) -> Vec<String> {
    let mut names: Vec<String> = lists.flat_map(|c| c.iter().skip(1).cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// For each column of `to`, where it is among `from`.
fn positions(to: &[String], from: &[String]) -> Vec<Option<usize>> {
    to.iter()
        .map(|c| from.iter().position(|k| k == c))
        .collect()
}

/// A row written for one list of columns, rewritten for another ([`positions`] of the one in the
/// other): `pad` for a column it lacks.
fn realigned(row: &Value, at: &[Option<usize>], pad: &Value) -> Value {
    let cells = row.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        at.iter()
            .map(|i| {
                i.and_then(|i| cells.get(i).cloned())
                    .unwrap_or_else(|| pad.clone())
            })
            .collect(),
    )
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
fn pick(parts: Vec<Part>, name: &str, function: Pick) -> Part {
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
fn show_rows(parts: Vec<Part>, keep_order: bool, unique_names: bool) -> Part {
    let columns = parts.first().map(|p| p.0.clone()).unwrap_or_default();
    let mut rows: Vec<Value> = Vec::new();
    for (_, part_rows) in parts {
        for row in part_rows {
            let duplicate = if unique_names {
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
    use serde_json::json;

    #[test]
    fn series_that_saw_different_columns_all_get_the_union() {
        let mut series = vec![
            json!({"name": "cpu", "columns": ["time", "host", "v"], "values": [[1, "a", 0.5]]}),
            json!({"name": "disk", "columns": ["time", "used", "host"], "values": [[2, 7, "b"]]}),
        ];
        every_column(&mut series, &Value::Null);
        assert_eq!(
            series,
            vec![
                json!({"name": "cpu", "columns": ["time", "host", "used", "v"],
                       "values": [[1, "a", null, 0.5]]}),
                json!({"name": "disk", "columns": ["time", "host", "used", "v"],
                       "values": [[2, "b", 7, null]]}),
            ]
        );
    }

    #[test]
    fn series_that_saw_the_same_columns_keep_their_order() {
        let same = vec![
            json!({"name": "a", "columns": ["time", "v", "n"], "values": [[1, 1, 2]]}),
            json!({"name": "b", "columns": ["time", "v", "n"], "values": [[1, 3, 4]]}),
        ];
        let mut series = same.clone();
        every_column(&mut series, &Value::Null);
        assert_eq!(series, same);
    }

    #[test]
    fn grouped_series_get_every_tag_key_in_order() {
        let group = |name: &str, tags: Value| Group {
            name: Some(Value::from(name)),
            tags: Some(tags),
            parts: Vec::new(),
            points: Vec::new(),
        };
        let mut groups = vec![
            group("cpu", json!({"region": "east", "host": "h0"})),
            group("disk", json!({"host": "h1"})),
        ];
        every_tag_key(&mut groups);
        let tags: Vec<String> = groups
            .iter()
            .map(|g| serde_json::to_string(&g.tags).unwrap_or_default())
            .collect();
        assert_eq!(
            tags,
            [
                r#"{"host":"h0","region":"east"}"#,
                r#"{"host":"h1","region":""}"#
            ]
        );
    }
}
