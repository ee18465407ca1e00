//! Points as influxd answers them (`SELECT * … GROUP BY *`, `epoch=ns`) turned back into line
//! protocol that writes exactly the same points, and a digest of them for comparing replicas.
//!
//! JSON loses a field's type (`5` may be the integer 5 or the float 5.0), so each field's type
//! comes from `SHOW FIELD KEYS`. Floats go out in Rust's shortest form that reads back to the same
//! bits; names and values are escaped as line protocol requires.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::Xxh3;

/// A field's type, as `SHOW FIELD KEYS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `float`: written bare.
    Float,
    /// `integer`: written with `i`.
    Integer,
    /// `unsigned`: written with `u`.
    Unsigned,
    /// `string`: written quoted.
    String,
    /// `boolean`.
    Boolean,
}

impl FieldType {
    /// The type `SHOW FIELD KEYS` calls `name`.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }
}

/// The field types of one measurement in one retention policy, and, for a field whose type
/// differs between shard groups, its type in the chunk being read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    fields: BTreeMap<String, FieldType>,
    /// Fields influxd lists with several types (one per type, when shard groups disagree).
    conflicted: BTreeSet<String>,
    /// The chunk `[start, end)` the types below are for.
    chunk: Option<(i64, i64)>,
    /// The node they were asked of: replicas may disagree, so each is asked its own.
    node: Option<String>,
    /// The type each conflicted field has in that chunk on that node, once asked.
    in_chunk: BTreeMap<String, FieldType>,
}

impl Schema {
    /// Adds `field`; a field listed again with another type is conflicted: its type is then asked
    /// per chunk ([`Schema::resolve`]), as JSON cannot tell an integer from a float like `1`.
    pub fn insert(&mut self, field: &str, kind: FieldType) {
        let known = self.fields.entry(field.to_owned()).or_insert(kind);
        if *known != kind {
            self.conflicted.insert(field.to_owned());
        }
    }

    /// Takes the fields of `fresh` (read again), keeping the chunk and what is known of it.
    pub fn refresh(&mut self, fresh: Schema) {
        self.fields = fresh.fields;
        self.conflicted = fresh.conflicted;
    }

    /// Starts the chunk `[start, end)`: conflicted fields' types are asked again for it.
    pub fn enter_chunk(&mut self, start: i64, end: i64) {
        if self.chunk != Some((start, end)) {
            self.chunk = Some((start, end));
            self.in_chunk.clear();
        }
    }

    /// Reads from the node at `url`: conflicted fields' types are asked again of it.
    pub fn enter_node(&mut self, url: &str) {
        if self.node.as_deref() != Some(url) {
            self.node = Some(url.to_owned());
            self.in_chunk.clear();
        }
    }

    /// The chunk being read, and the conflicted fields among `columns` whose type in it is not
    /// known yet.
    pub fn unresolved<'c>(&self, columns: &'c [String]) -> Option<((i64, i64), Vec<&'c str>)> {
        let chunk = self.chunk?;
        let fields: Vec<&str> = columns
            .iter()
            .filter(|c| self.conflicted.contains(*c) && !self.in_chunk.contains_key(*c))
            .map(String::as_str)
            .collect();
        (!fields.is_empty()).then_some((chunk, fields))
    }

    /// Sets the type conflicted `field` has in the current chunk.
    pub fn resolve(&mut self, field: &str, kind: FieldType) {
        self.in_chunk.insert(field.to_owned(), kind);
    }

    /// Every field and its type, by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldType)> {
        self.fields
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
    }

    /// The type of `field` (in the current chunk, for a conflicted one), if known.
    pub fn get(&self, field: &str) -> Option<FieldType> {
        self.in_chunk
            .get(field)
            .or_else(|| self.fields.get(field))
            .copied()
    }
}

/// One series (or part of one, in a chunked answer) of a query's result.
#[derive(Debug, Clone, Deserialize)]
pub struct SeriesPart {
    /// The measurement (absent from the answers of some `SHOW` statements).
    #[serde(default)]
    pub name: String,
    /// Tag values by key (absent when the series has no tags).
    #[serde(default)]
    pub tags: Map<String, Value>,
    /// `time`, then the fields.
    pub columns: Vec<String>,
    /// One row per point.
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

impl SeriesPart {
    /// The value of tag `key`, if the series has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).and_then(Value::as_str)
    }
}

/// Why a series could not be turned back into line protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The answer was not `GROUP BY *` with `epoch=ns`.
    #[error("unexpected answer shape: {0}")]
    Shape(String),
    /// A field that `SHOW FIELD KEYS` did not list (created since it was read).
    #[error("field {0:?} has no known type")]
    UnknownField(String),
    /// A value that does not fit its field's type.
    #[error("field {field:?}: {value} is not a {kind:?}")]
    Mismatch {
        /// The field.
        field: String,
        /// The value, as JSON.
        value: String,
        /// The type it should have.
        kind: FieldType,
    },
}

/// What one encoding wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Points written.
    pub points: u64,
    /// Their earliest and latest timestamps.
    pub span: Option<(i64, i64)>,
}

impl Encoded {
    /// Counts a point at `time`.
    pub fn add(&mut self, time: i64) {
        self.points += 1;
        self.span = Some(match self.span {
            Some((first, last)) => (first.min(time), last.max(time)),
            None => (time, time),
        });
    }

    /// Both together.
    pub fn merge(&mut self, other: Encoded) {
        self.points += other.points;
        if let Some((first, last)) = other.span {
            self.span = Some(match self.span {
                Some((a, b)) => (a.min(first), b.max(last)),
                None => (first, last),
            });
        }
    }
}

/// Appends one line per row of `part` to `out`, with nanosecond timestamps.
pub fn encode(
    part: &SeriesPart,
    schema: &Schema,
    out: &mut Vec<u8>,
) -> Result<Encoded, EncodeError> {
    let mut encoded = Encoded::default();
    for_each_point(part, schema, |key, time, fields| {
        out.extend_from_slice(key);
        out.push(b' ');
        out.extend_from_slice(fields);
        out.push(b' ');
        out.extend_from_slice(time.to_string().as_bytes());
        out.push(b'\n');
        encoded.add(time);
    })?;
    Ok(encoded)
}

/// Calls `point` with the escaped series key, the timestamp and the escaped field set of each row
/// of `part` that holds a field.
pub fn for_each_point(
    part: &SeriesPart,
    schema: &Schema,
    mut point: impl FnMut(&[u8], i64, &[u8]),
) -> Result<(), EncodeError> {
    if part.columns.first().map(String::as_str) != Some("time") {
        return Err(EncodeError::Shape(format!(
            "first column is {:?}, not time",
            part.columns.first()
        )));
    }
    let fields: Vec<(&str, FieldType)> = part.columns[1..]
        .iter()
        .map(|name| {
            schema
                .get(name)
                .map(|kind| (name.as_str(), kind))
                .ok_or_else(|| EncodeError::UnknownField(name.clone()))
        })
        .collect::<Result<_, _>>()?;
    let mut key = Vec::with_capacity(64);
    escape(&part.name, MEASUREMENT, &mut key);
    for (tag, value) in &part.tags {
        let Some(value) = value.as_str().filter(|v| !v.is_empty()) else {
            continue; // influxd lists a key the series lacks with an empty value
        };
        key.push(b',');
        escape(tag, KEY, &mut key);
        key.push(b'=');
        escape(value, KEY, &mut key);
    }
    let mut set = Vec::with_capacity(64);
    for row in &part.values {
        let time = row
            .first()
            .and_then(Value::as_i64)
            .ok_or_else(|| EncodeError::Shape(format!("time {:?} is not epoch=ns", row.first())))?;
        set.clear();
        for ((name, kind), value) in fields.iter().zip(&row[1..]) {
            if value.is_null() {
                continue;
            }
            if !set.is_empty() {
                set.push(b',');
            }
            escape(name, KEY, &mut set);
            set.push(b'=');
            field_value(name, *kind, value, &mut set)?;
        }
        // A row without a field is no point.
        if !set.is_empty() {
            point(&key, time, &set);
        }
    }
    Ok(())
}

/// Characters escaped in a measurement name.
const MEASUREMENT: &[u8] = b", ";
/// Characters escaped in tag keys, tag values and field keys.
const KEY: &[u8] = b", =";

fn escape(text: &str, special: &[u8], out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn field_value(
    name: &str,
    kind: FieldType,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mismatch = || EncodeError::Mismatch {
        field: name.to_owned(),
        value: value.to_string(),
        kind,
    };
    match kind {
        FieldType::Float => {
            let x = value.as_f64().ok_or_else(mismatch)?;
            // `{}` is the shortest text that parses back to the same bits.
            out.extend_from_slice(x.to_string().as_bytes());
        }
        FieldType::Integer => {
            let n = value.as_i64().ok_or_else(mismatch)?;
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'i');
        }
        FieldType::Unsigned => {
            let n = value.as_u64().ok_or_else(mismatch)?;
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'u');
        }
        FieldType::String => {
            let s = value.as_str().ok_or_else(mismatch)?;
            out.push(b'"');
            for &b in s.as_bytes() {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        FieldType::Boolean => {
            let b = value.as_bool().ok_or_else(mismatch)?;
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
    }
    Ok(())
}

/// A running digest of points: equal for two replicas exactly when they hold the same points
/// (in influxd's own order, which is the same on every node: series key, then time).
#[derive(Clone, Default)]
pub struct Digest {
    hasher: Xxh3,
    points: u64,
}

impl Digest {
    /// Adds the line protocol made by [`encode`].
    pub fn update(&mut self, lines: &[u8], points: u64) {
        self.hasher.update(lines);
        self.points += points;
    }

    /// `(points, hash)`.
    pub fn finish(&self) -> (u64, u64) {
        (self.points, self.hasher.digest())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (points, hash) = self.finish();
        write!(f, "Digest({points} points, {hash:016x})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(fields: &[(&str, FieldType)]) -> Schema {
        let mut schema = Schema::default();
        for (name, kind) in fields {
            schema.insert(name, *kind);
        }
        schema
    }

    fn part(value: Value) -> SeriesPart {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_type_and_escape_survives_the_trip() {
        let schema = schema(&[
            ("f", FieldType::Float),
            ("i", FieldType::Integer),
            ("s", FieldType::String),
            ("b", FieldType::Boolean),
            ("u", FieldType::Unsigned),
            ("odd key=1", FieldType::Float),
        ]);
        let part = part(json!({
            "name": "cpu load,x",
            "tags": {"host": "a b", "k=1": "v,2", "missing": ""},
            "columns": ["time", "b", "f", "i", "odd key=1", "s", "u"],
            "values": [
                [1, true, 5, 5, null, "say \"hi\"\\", 7],
                [2, null, 0.1, -9223372036854775808i64, 1e21, null, null],
                [3, null, null, null, null, null, null]
            ]
        }));
        let mut out = Vec::new();
        let encoded = encode(&part, &schema, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cpu\\ load\\,x,host=a\\ b,k\\=1=v\\,2 b=true,f=5,i=5i,s=\"say \\\"hi\\\"\\\\\",u=7u 1\n\
             cpu\\ load\\,x,host=a\\ b,k\\=1=v\\,2 f=0.1,i=-9223372036854775808i,odd\\ key\\=1=1000000000000000000000 2\n"
        );
        assert_eq!(
            encoded,
            Encoded {
                points: 2,
                span: Some((1, 2))
            }
        );
    }

    #[test]
    fn floats_keep_their_bits() {
        let schema = schema(&[("f", FieldType::Float)]);
        for x in [
            0.1f64,
            1.0 / 3.0,
            1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            -2.5e-8,
            123_456_789.123_456_79,
        ] {
            let text = serde_json::to_string(
                &json!({"name": "m", "columns": ["time", "f"], "values": [[0, x]]}),
            )
            .unwrap();
            let part: SeriesPart = serde_json::from_str(&text).unwrap();
            let mut out = Vec::new();
            encode(&part, &schema, &mut out).unwrap();
            let line = String::from_utf8(out).unwrap();
            let value = line
                .trim_end()
                .strip_prefix("m f=")
                .unwrap()
                .strip_suffix(" 0")
                .unwrap();
            assert_eq!(
                value.parse::<f64>().unwrap().to_bits(),
                x.to_bits(),
                "{line}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_shapes_are_errors() {
        let part1 = part(json!({"name": "m", "columns": ["time", "x"], "values": [[0, 1]]}));
        assert_eq!(
            encode(&part1, &Schema::default(), &mut Vec::new()),
            Err(EncodeError::UnknownField("x".into()))
        );
        let part2 = part(
            json!({"name": "m", "columns": ["time", "x"], "values": [["2020-01-01T00:00:00Z", 1]]}),
        );
        let ints = schema(&[("x", FieldType::Integer)]);
        assert!(matches!(
            encode(&part2, &ints, &mut Vec::new()),
            Err(EncodeError::Shape(_))
        ));
        let part3 = part(json!({"name": "m", "columns": ["time", "x"], "values": [[0, 1.5]]}));
        assert!(matches!(
            encode(&part3, &ints, &mut Vec::new()),
            Err(EncodeError::Mismatch { .. })
        ));
    }

    #[test]
    fn the_digest_tells_points_apart() {
        let mut a = Digest::default();
        let mut b = Digest::default();
        a.update(b"m v=1 1\n", 1);
        b.update(b"m v=1 1\n", 1);
        assert_eq!(a.finish(), b.finish());
        b.update(b"m v=2 2\n", 1);
        assert_ne!(a.finish(), b.finish());
    }
}
