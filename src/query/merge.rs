//! Merging the answers of several shards to one statement.
//!
//! Not written yet: every statement that spans shards is refused with an error that names the
//! shards, so that no client ever gets a partial answer presented as a whole one.

use crate::influxql::Statement;

/// What the engine needs to know about the shards a statement touches.
pub struct ScatterContext<'a> {
    /// Names of the shards involved, for error messages.
    pub shards: &'a [&'a str],
    /// Tag keys by which some measurement the statement reads is spread over shards.
    pub shard_tags: &'a [&'a str],
}

/// A statement rewritten for the shards and how to combine their answers.
pub struct Scatter {
    /// The statement to send to every shard.
    pub text: String,
    /// How their answers are combined.
    pub merger: Merger,
}

/// How the answers of the shards are combined.
pub struct Merger {
    _private: (),
}

/// Why a statement cannot be answered exactly across shards; its text is the client's error.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Merging answers across shards is not available.
    #[error("this statement reads data on shards {shards}, and answers spanning shards are not merged by this version of the gateway")]
    NotMerged {
        /// The shards, comma-separated.
        shards: String,
    },
}

/// Plans `statement` of `q` across the shards of `context`.
pub fn scatter(
    _q: &str,
    _statement: &Statement<'_>,
    context: &ScatterContext<'_>,
) -> Result<Scatter, Refusal> {
    Err(Refusal::NotMerged {
        shards: context.shards.join(", "),
    })
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
}

impl Merger {
    /// Combines the shards' result objects for one statement.
    pub fn merge(&self, results: Vec<serde_json::Value>, _epoch: Epoch) -> serde_json::Value {
        // Unreachable while `scatter` refuses every statement; an error result, never a guess.
        let _ = results;
        serde_json::json!({ "error": "answers spanning shards are not merged by this version" })
    }
}
