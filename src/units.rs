//! Human-readable durations (`500ms`, `5s`, `24h`) and sizes (`512MiB`) for the YAML configuration.

use std::time::Duration;

use serde::{de, Deserializer};

/// Parses a duration such as `500ms`, `5s` or `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("{text:?} is not a duration (expected e.g. \"500ms\", \"5s\", \"24h\")")
    })
}

/// Parses a size such as `512MiB`, `10GiB` or `25MB` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| {
            format!("{text:?} is not a size (expected e.g. \"512MiB\", \"10GiB\", \"25MB\")")
        })
}

/// Formats a duration the way the configuration accepts it.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Accepts a YAML string and hands it to `parse`; a bare number is refused with a hint.
///
/// A visitor, not an untagged enum: serde_yaml only names the key (`health.interval: ...`) for
/// errors raised while it is visiting the value.
struct TextVisitor<T> {
    parse: fn(&str) -> Result<T, String>,
    /// The unit suggested for a bare number: `s` for a duration, `MiB` for a size.
    unit: &'static str,
}

impl<T> de::Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a string with a unit, e.g. \"5{}\"", self.unit)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        let unit = self.unit;
        Err(E::custom(format!(
            "{n} has no unit (write it with one, e.g. \"{n}{unit}\")"
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        Err(E::custom(format!("{n} has no unit and is negative")))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
        let unit = self.unit;
        Err(E::custom(format!(
            "{n} has no unit (write it with one, e.g. \"{n}{unit}\")"
        )))
    }
}

fn deserialize_text<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, String>,
    unit: &'static str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(TextVisitor { parse, unit })
}

/// `#[serde(deserialize_with = "units::duration")]` for [`Duration`] fields.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserialize_text(deserializer, parse_duration, "s")
}

/// `#[serde(deserialize_with = "units::optional_duration")]`: a duration, or `off` for none.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize_text(
        deserializer,
        |text| match text.trim() {
            "off" => Ok(None),
            text => parse_duration(text).map(Some),
        },
        "s",
    )
}

/// `#[serde(deserialize_with = "units::size")]` for byte counts.
pub fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserialize_text(deserializer, parse_size, "MiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("\"5 parsecs\" is not a duration"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("10GiB"), Ok(10 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("25MB"), Ok(25_000_000));
        assert!(parse_size("lots").unwrap_err().contains("is not a size"));
    }
}
