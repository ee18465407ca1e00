//! The routing scanner against a reference parser: the `influxdb-line-protocol` crate (InfluxDB
//! IOx's) must see the same lines, measurements and tags.
//!
//! The generator keeps to what InfluxDB 1.x and the reference agree on: escapes `\,` `\ ` `\=` in
//! names, and no other backslash (1.x keeps `\\` as two characters, the reference makes one).
//! CRLF endings are left to the unit tests: 1.x itself rejects them, and so does the reference.

use influx_gateway::line_protocol::{lines, LineKind};
use influxdb_line_protocol::parse_lines;
use proptest::prelude::*;

/// A name as written and as meant: characters that need escaping are escaped.
fn name(escaped: &'static [char]) -> impl Strategy<Value = (String, String)> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            1 => Just('_'),
            1 => Just('-'),
            1 => Just('.'),
            1 => proptest::sample::select(escaped),
        ],
        1..10,
    )
    .prop_map(move |chars| {
        let plain: String = chars.iter().collect();
        let written = chars
            .iter()
            .map(|c| {
                if escaped.contains(c) {
                    format!("\\{c}")
                } else {
                    c.to_string()
                }
            })
            .collect();
        (written, plain)
    })
}

/// A field value as written: float, integer, boolean, or a string with separators, escaped quotes
/// and a newline in it.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1000.0f64..1000.0).prop_map(|f| format!("{f}")),
        any::<i32>().prop_map(|i| format!("{i}i")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z ,=]{0,8}".prop_map(|s| format!("\"{s}\"")),
        "[a-z]{0,4}".prop_map(|s| format!("\"say \\\"{s}\\\", x=1\nnext line\"")),
    ]
}

#[derive(Debug, Clone)]
struct Point {
    text: String,
    measurement: String,
    tags: Vec<(String, String)>,
}

fn point() -> impl Strategy<Value = Point> {
    (
        name(&[',', ' ']),
        proptest::collection::vec((name(&[',', ' ', '=']), name(&[',', ' ', '='])), 0..4),
        proptest::collection::vec(("[a-z]{1,5}", field_value()), 1..4),
        proptest::option::of(0i64..2_000_000_000_000_000_000),
    )
        .prop_map(|((m_written, measurement), tags, fields, time)| {
            // Tag keys must be unique for the line to be valid.
            let mut seen = std::collections::HashSet::new();
            let tags: Vec<((String, String), (String, String))> = tags
                .into_iter()
                .filter(|((_, key), _)| seen.insert(key.clone()))
                .collect();
            let mut fseen = std::collections::HashSet::new();
            let fields: Vec<(String, String)> = fields
                .into_iter()
                .filter(|(k, _)| fseen.insert(k.clone()))
                .collect();
            let mut text = m_written;
            for ((key, _), (value, _)) in &tags {
                text.push_str(&format!(",{key}={value}"));
            }
            text.push(' ');
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&fields.join(","));
            if let Some(t) = time {
                text.push_str(&format!(" {t}"));
            }
            Point {
                text,
                measurement,
                tags: tags.into_iter().map(|((_, k), (_, v))| (k, v)).collect(),
            }
        })
}

#[derive(Debug, Clone)]
enum Line {
    Point(Point),
    Comment(String),
    Blank(String),
}

fn body() -> impl Strategy<Value = (String, Vec<Point>)> {
    proptest::collection::vec(
        prop_oneof![
            8 => point().prop_map(Line::Point),
            // No quote in comments: influxd scans a comment like any line, so a quote there can
            // swallow the next line, where the reference reads comments line by line.
            1 => "#[a-z ,=]{0,10}".prop_map(Line::Comment),
            1 => "[ \t]{0,3}".prop_map(Line::Blank),
        ],
        0..20,
    )
    .prop_map(|lines| {
        let mut points = Vec::new();
        let texts: Vec<String> = lines
            .into_iter()
            .map(|line| match line {
                Line::Point(p) => {
                    let text = p.text.clone();
                    points.push(p);
                    text
                }
                Line::Comment(t) | Line::Blank(t) => t,
            })
            .collect();
        (texts.join("\n"), points)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_scanner_sees_what_the_reference_parser_sees((body, points) in body()) {
        let reference: Vec<_> = parse_lines(&body)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TestCaseError::fail(format!("the reference refuses {body:?}: {e}")))?;
        let ours: Vec<_> = lines(body.as_bytes())
            .filter_map(|line| match line.kind {
                LineKind::Point(key) => Some(key),
                _ => None,
            })
            .collect();
        prop_assert_eq!(ours.len(), reference.len());
        prop_assert_eq!(ours.len(), points.len());
        for ((key, parsed), point) in ours.iter().zip(&reference).zip(&points) {
            prop_assert_eq!(key.measurement().unescaped(), parsed.series.measurement.as_str());
            prop_assert_eq!(key.measurement().unescaped(), point.measurement.as_str());
            let tags = parsed.series.tag_set.clone().unwrap_or_default();
            prop_assert_eq!(tags.len(), point.tags.len());
            for (k, v) in tags.iter() {
                let found = key.tag(k.as_str()).map(|t| t.unescaped().into_owned());
                prop_assert_eq!(found.as_deref(), Some(v.as_str()), "tag {}", k.as_str());
            }
        }
    }

    #[test]
    fn spans_give_the_body_back((body, _) in body(), crlf in any::<bool>()) {
        let body = if crlf { body.replace('\n', "\r\n") } else { body };
        let mut joined = Vec::with_capacity(body.len());
        for line in lines(body.as_bytes()) {
            joined.extend_from_slice(&body.as_bytes()[line.span]);
        }
        prop_assert_eq!(joined, body.as_bytes());
    }
}
