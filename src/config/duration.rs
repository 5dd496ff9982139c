//! Human durations in config files (`500ms`, `30s`, `5m`, `24h`, `1h30m`).
//!
//! A dedicated type, rather than integers of seconds, keeps units explicit in every YAML file and
//! lets a bad value fail deserialization with the key path attached.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
    /// Whole seconds, rounded up, for protocol fields that only take seconds.
    pub fn whole_secs_ceil(self) -> u64 {
        let d = self.0;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Why a duration was refused; the text is quoted back so the message stands alone next to its
/// key path (or `--ttl`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?} (expected e.g. 500ms, 30s, 5m, 24h)")]
    Malformed(String),
    /// A number too long for any integer type.
    #[error("invalid duration {0:?}")]
    Number(String),
    #[error("duration {0:?} needs a unit (ms, s, m, h, d)")]
    MissingUnit(String),
    #[error("unknown duration unit {unit:?} in {text:?}")]
    UnknownUnit { unit: String, text: String },
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Parses a sequence of `<number><unit>` pairs; units are `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = s.as_bytes();
    let mut total: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(DurationError::Malformed(text.to_string()));
        }
        let number: u128 = s[start..i]
            .parse()
            .map_err(|_| DurationError::Number(text.to_string()))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let millis_per_unit: u128 = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    text: text.to_string(),
                })
            }
        };
        total = total
            .checked_add(number.saturating_mul(millis_per_unit))
            .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    }
    // Ten years is far beyond any sensible timeout or lifetime; refusing more keeps arithmetic safe.
    if total > 10 * 365 * 86_400_000 {
        return Err(DurationError::TooLarge(text.to_string()));
    }
    Ok(Duration::from_millis(total as u64))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as 500ms, 30s, 5m or 24h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "-1s",
            "1.5s",
            "99999999999999999999999h",
            "5 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
