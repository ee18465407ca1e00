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

mod combine;
mod epoch;
mod plan;

use crate::influxql::select::Fill;

pub use epoch::Epoch;
pub use plan::scatter;

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
    /// The statement's one field is a wildcard: every series gets the union of the columns.
    one_wildcard: bool,
}

#[derive(Debug)]
enum Mode {
    /// SHOW lists: union.
    Show {
        /// Schema lists (databases, retention policies, continuous queries): in creation order,
        /// and a series with no rows kept, as influxd lists a database without continuous
        /// queries.
        keep_order: bool,
        /// One row per name, the first shard's: a retention policy altered on one shard's nodes
        /// sooner than on another's is still one policy.
        unique_names: bool,
    },
    /// Raw rows, or series that never span shards: interleave by time.
    Rows,
    /// Aggregates recombined per time bucket.
    Aggregate { columns: Vec<Output>, fill: Fill },
    /// One selector keeping its point's time: the best row wins.
    Pick { name: String, function: Pick },
    /// `count(*)` or `sum(*)`: every column combined the same way.
    Wildcard {
        /// How every column combines.
        function: Combine,
        /// What fills an empty bucket, after the merge.
        fill: Fill,
    },
}

impl Mode {
    /// Whether this is a schema list: kept in creation order, with its empty series.
    fn is_schema_list(&self) -> bool {
        matches!(
            self,
            Mode::Show {
                keep_order: true,
                ..
            }
        )
    }
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

#[cfg(test)]
mod tests {
    use super::{combine::float_json, epoch::rfc3339_nano, *};
    use crate::influxql::classify_query;
    use serde_json::json;
    use serde_json::Value;

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
