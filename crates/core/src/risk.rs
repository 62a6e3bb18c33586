//! Risk classes, target sensitivity and the effective-risk matrix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// How dangerous an action is in itself, before looking at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Read-only or trivially reversible.
    Low,
    /// Changes state in a reversible way.
    Medium,
    /// Disruptive or hard to undo.
    High,
    /// Destructive, or widens access.
    Critical,
}

impl Risk {
    /// All classes, lowest first.
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    /// The lowercase name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Risk {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Risk::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CoreError::UnknownRisk(s.to_owned()))
    }
}

/// How much harm a mistake on a target would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Nothing of value.
    Public,
    /// Internal systems.
    Internal,
    /// Customer-facing or regulated.
    Restricted,
    /// Production systems whose loss is an incident. Unknown targets are treated as this.
    Critical,
}

impl Sensitivity {
    /// All sensitivities, lowest first.
    pub const ALL: [Sensitivity; 4] = [
        Sensitivity::Public,
        Sensitivity::Internal,
        Sensitivity::Restricted,
        Sensitivity::Critical,
    ];

    /// The lowercase name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Restricted => "restricted",
            Sensitivity::Critical => "critical",
        }
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sensitivity {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sensitivity::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CoreError::UnknownSensitivity(s.to_owned()))
    }
}

/// The effective risk of running an action of risk `action` on a target of `sensitivity`.
///
/// Rows are the action risk, columns the sensitivity (public..critical), as in agent-safe:
///
/// | action risk | public | internal | restricted | critical |
/// |---|---|---|---|---|
/// | low | low | low | medium | high |
/// | medium | low | medium | high | critical |
/// | high | medium | high | critical | critical |
/// | critical | high | critical | critical | critical |
pub fn effective_risk(action: Risk, sensitivity: Sensitivity) -> Risk {
    use Risk::{Critical as C, High as H, Low as L, Medium as M};
    const MATRIX: [[Risk; 4]; 4] = [[L, L, M, H], [L, M, H, C], [M, H, C, C], [H, C, C, C]];
    let row = match action {
        Risk::Low => &MATRIX[0],
        Risk::Medium => &MATRIX[1],
        Risk::High => &MATRIX[2],
        Risk::Critical => &MATRIX[3],
    };
    match sensitivity {
        Sensitivity::Public => row[0],
        Sensitivity::Internal => row[1],
        Sensitivity::Restricted => row[2],
        Sensitivity::Critical => row[3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_agent_safe() {
        let expected = [
            "low low medium high",
            "low medium high critical",
            "medium high critical critical",
            "high critical critical critical",
        ];
        for (risk, row) in Risk::ALL.into_iter().zip(expected) {
            let got: Vec<&str> = Sensitivity::ALL
                .into_iter()
                .map(|s| effective_risk(risk, s).as_str())
                .collect();
            assert_eq!(got.join(" "), row, "row for {risk}");
        }
    }

    #[test]
    fn effective_risk_never_below_a_lower_cell() {
        for r in Risk::ALL {
            for pair in Sensitivity::ALL.windows(2) {
                if let [a, b] = pair {
                    assert!(effective_risk(r, *a) <= effective_risk(r, *b));
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Risk::ALL {
            assert_eq!(r.as_str().parse::<Risk>(), Ok(r));
        }
        for s in Sensitivity::ALL {
            assert_eq!(s.as_str().parse::<Sensitivity>(), Ok(s));
        }
        assert!("severe".parse::<Risk>().is_err());
    }
}
