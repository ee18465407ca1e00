//! When two writes may be on the wire to one node together.
//!
//! A node must end up as if it had applied writes in the order the gateway accepted them: a point
//! written twice keeps the second value (the relay's overwrite caveat is the bug this prevents).
//! Two writes *commute*, so that applying them in either order leaves the node the same, when no
//! point of one can replace a point of the other — and a point only ever replaces one with the same
//! timestamp. So writes whose timestamps lie in disjoint ranges may be in flight together, and a
//! node gets several requests at once (InfluxDB uses its cores for concurrent writes, not for one
//! large one), while writes that might overwrite each other still go one after the other.
//!
//! A line without a timestamp is stamped by influxd on arrival, so its time depends on the order:
//! a write holding one commutes with nothing. So does a write whose span is not known (a replayed
//! record; its order is kept by the replayer anyway).
//!
//! What order still decides between commuting writes is a field's type when two writes give it
//! different types within one shard group: influxd refuses the later one. Replicas that disagree
//! there are handled as any replica that refuses what its peers accepted (a dead letter and a
//! resync flag), never silently.

use crate::line_protocol;

/// The timestamps a write's points carry, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpan {
    /// No line writes a point (blank lines, comments): commutes with everything.
    Nothing,
    /// Every point has a timestamp, from `first` to `last` (inclusive).
    Range {
        /// The earliest timestamp.
        first: i64,
        /// The latest timestamp.
        last: i64,
    },
    /// Some point has no timestamp, or the span was not computed: commutes with nothing.
    Unknown,
}

impl TimeSpan {
    /// The span of a line-protocol body written with `precision` (`/write`'s parameter). Reads
    /// each line's last word, without parsing the rest: a line whose last word is a number either
    /// has it as its timestamp or is refused by influxd (and writes nothing).
    pub fn of(body: &[u8], precision: Option<&str>) -> TimeSpan {
        let Some(unit) = nanoseconds_per_unit(precision) else {
            return TimeSpan::Unknown; // influxd refuses the write
        };
        let mut span = TimeSpan::Nothing;
        let mut start = 0;
        while start < body.len() {
            let end = line_protocol::line_end(body, start);
            let line = &body[start..end];
            start = end + 1;
            // Leading blanks as influxd skips them.
            let line = line
                .iter()
                .position(|&b| !matches!(b, b' ' | b'\t' | 0))
                .map_or(&[][..], |n| &line[n..]);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let Some(space) = memchr::memrchr(b' ', line) else {
                continue; // no field set: influxd refuses the line
            };
            let Some(time) = parse_timestamp(&line[space + 1..]).and_then(|t| t.checked_mul(unit))
            else {
                return TimeSpan::Unknown;
            };
            span = span.with(time);
        }
        span
    }

    /// Whether writes with these spans leave a node the same in either order.
    pub fn commutes_with(self, other: TimeSpan) -> bool {
        match (self, other) {
            (TimeSpan::Nothing, _) | (_, TimeSpan::Nothing) => true,
            (
                TimeSpan::Range { first, last },
                TimeSpan::Range {
                    first: other_first,
                    last: other_last,
                },
            ) => last < other_first || other_last < first,
            _ => false,
        }
    }

    /// The span of two writes sent as one.
    pub fn union(self, other: TimeSpan) -> TimeSpan {
        match (self, other) {
            (TimeSpan::Nothing, span) | (span, TimeSpan::Nothing) => span,
            (TimeSpan::Range { first, last }, TimeSpan::Range { first: f, last: l }) => {
                TimeSpan::Range {
                    first: first.min(f),
                    last: last.max(l),
                }
            }
            _ => TimeSpan::Unknown,
        }
    }

    fn with(self, time: i64) -> TimeSpan {
        self.union(TimeSpan::Range {
            first: time,
            last: time,
        })
    }
}

/// What one unit of `/write`'s `precision` is in nanoseconds; `None` for a precision influxd refuses.
fn nanoseconds_per_unit(precision: Option<&str>) -> Option<i64> {
    Some(match precision.unwrap_or("") {
        "" | "n" | "ns" => 1,
        "u" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// A timestamp as line protocol writes it: an optional `-` and decimal digits, nothing else.
fn parse_timestamp(word: &[u8]) -> Option<i64> {
    let (negative, digits) = match word.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, word),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        value = value.checked_mul(10)?.checked_add(i64::from(digit))?;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(body: &str) -> TimeSpan {
        TimeSpan::of(body.as_bytes(), None)
    }

    fn range(first: i64, last: i64) -> TimeSpan {
        TimeSpan::Range { first, last }
    }

    #[test]
    fn the_span_covers_every_timestamp() {
        assert_eq!(span("cpu v=1 20\nmem v=2 10\ncpu v=3 15\n"), range(10, 20));
        assert_eq!(span("cpu,host=a\\ b s=\"x y\",v=1 -5"), range(-5, -5));
        assert_eq!(span("\n# comment 12\n  \n"), TimeSpan::Nothing);
        assert_eq!(span(""), TimeSpan::Nothing);
    }

    #[test]
    fn a_point_stamped_on_arrival_makes_the_span_unknown() {
        assert_eq!(span("cpu v=1 10\ncpu v=2\n"), TimeSpan::Unknown);
        // The last word is in a string: no timestamp.
        assert_eq!(span("cpu s=\"a 12\""), TimeSpan::Unknown);
        assert_eq!(span("cpu s=\"a\n12\" 5"), range(5, 5));
        // A CRLF line is refused by influxd; whatever it is, it is not taken for a time.
        assert_eq!(span("cpu v=1 10\r\n"), TimeSpan::Unknown);
        assert_eq!(span("cpu v=1 99999999999999999999"), TimeSpan::Unknown);
    }

    #[test]
    fn precision_scales_to_nanoseconds() {
        assert_eq!(
            TimeSpan::of(b"cpu v=1 3", Some("s")),
            range(3_000_000_000, 3_000_000_000)
        );
        assert_eq!(TimeSpan::of(b"cpu v=1 2", Some("u")), range(2_000, 2_000));
        assert_eq!(
            TimeSpan::of(b"cpu v=1 1", Some("h")),
            range(3_600_000_000_000, 3_600_000_000_000)
        );
        assert_eq!(
            TimeSpan::of(b"cpu v=1 1", Some("fortnight")),
            TimeSpan::Unknown
        );
        assert_eq!(
            TimeSpan::of(b"cpu v=1 9223372036854775807", Some("s")),
            TimeSpan::Unknown
        );
    }

    #[test]
    fn only_disjoint_spans_commute() {
        assert!(range(1, 5).commutes_with(range(6, 9)));
        assert!(range(6, 9).commutes_with(range(1, 5)));
        assert!(!range(1, 5).commutes_with(range(5, 9)));
        assert!(!range(1, 9).commutes_with(range(3, 4)));
        assert!(!range(1, 5).commutes_with(TimeSpan::Unknown));
        assert!(TimeSpan::Nothing.commutes_with(TimeSpan::Unknown));
        assert_eq!(range(1, 2).union(range(8, 9)), range(1, 9));
        assert_eq!(range(1, 2).union(TimeSpan::Nothing), range(1, 2));
        assert_eq!(range(1, 2).union(TimeSpan::Unknown), TimeSpan::Unknown);
    }
}
