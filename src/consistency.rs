//! Write consistency levels: how many replicas of a shard must accept a write before it is answered.

use std::{fmt, str::FromStr};

use serde::Deserialize;

/// A write consistency level, as in InfluxDB Enterprise's `?consistency=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Every replica holds the write, accepted or durably queued; none need have accepted it yet.
    Any,
    /// One replica accepted the write.
    One,
    /// A majority of the replicas accepted the write.
    Quorum,
    /// Every replica accepted the write.
    All,
}

impl Consistency {
    /// How many of `replicas` must accept a write directly for this level to be met (the others
    /// must hold it in their queues).
    pub fn required(self, replicas: usize) -> usize {
        match self {
            Consistency::Any => 0,
            Consistency::One => replicas.min(1),
            Consistency::Quorum => replicas / 2 + 1,
            Consistency::All => replicas,
        }
    }

    /// The lowercase name used in YAML and in `?consistency=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Any => "any",
            Consistency::One => "one",
            Consistency::Quorum => "quorum",
            Consistency::All => "all",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "any" => Ok(Consistency::Any),
            "one" => Ok(Consistency::One),
            "quorum" => Ok(Consistency::Quorum),
            "all" => Ok(Consistency::All),
            _ => Err(format!(
                "invalid consistency {text:?} (expected any, one, quorum or all)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_replicas() {
        assert_eq!(Consistency::One.required(3), 1);
        assert_eq!(Consistency::Quorum.required(1), 1);
        assert_eq!(Consistency::Quorum.required(2), 2);
        assert_eq!(Consistency::Quorum.required(3), 2);
        assert_eq!(Consistency::Quorum.required(4), 3);
        assert_eq!(Consistency::All.required(3), 3);
        assert_eq!(Consistency::Any.required(3), 0);
    }

    #[test]
    fn parses_any_case() {
        assert_eq!("QUORUM".parse(), Ok(Consistency::Quorum));
        assert!("two"
            .parse::<Consistency>()
            .unwrap_err()
            .contains("\"two\""));
    }
}
