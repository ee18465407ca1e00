//! Times as the client asked for them: RFC 3339 like Go writes it, or an integer epoch.

use std::fmt::Write as _;

use serde_json::Value;

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
    pub(super) fn format(&self, ns: i64) -> Value {
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
pub(super) fn rfc3339_nano(ns: i64) -> String {
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
