//! Durations written as short strings in configuration and on the command line (`30s`, `5m`, `1h30m`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with whole-second precision, written as a sequence of
/// `<integer><unit>` groups with units `s`, `m`, `h`, `d` (`30s`, `5m`, `1h30m`, `7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(u64);

/// The error for text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`, expected for example `30s`, `5m`, `1h` or `1h30m`")]
pub struct DurationParseError(String);

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(secs)
    }

    /// The whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The whole seconds as a signed number, saturating at `i64::MAX`.
    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// As a standard library duration.
    pub const fn as_std(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl FromStr for HumanDuration {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = agentsafe_core::duration::parse(s).map_err(|_| DurationParseError(s.to_owned()))?;
        // Token lifetimes are whole seconds (JWT `exp` is in seconds).
        if d.subsec_nanos() != 0 {
            return Err(DurationParseError(s.to_owned()));
        }
        Ok(HumanDuration(d.as_secs()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&agentsafe_core::duration::format(self.as_std()))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, secs, back) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("1h", 3600, "1h"),
            ("24h", 86_400, "1d"),
            ("1h30m", 5400, "1h30m"),
            ("0s", 0, "0s"),
            ("90s", 90, "1m30s"),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(d.to_string(), back);
        }
        for bad in ["", "5", "m", "5x", "-5s", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
