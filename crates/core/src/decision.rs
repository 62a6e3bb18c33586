//! A decision as a value: the verdict, why, and everything needed to replay it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Caller, CoreError, Params, Risk, Sensitivity};

/// The answer to a request.
///
/// Ordered by restrictiveness: `Allow < RequireApproval < Deny`, so the most
/// restrictive of several verdicts is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The action may run.
    Allow,
    /// The action may run once an approver agrees.
    RequireApproval,
    /// The action must not run.
    Deny,
}

impl Verdict {
    /// All verdicts, least restrictive first.
    pub const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::RequireApproval, Verdict::Deny];

    /// The snake_case name used in configuration and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::RequireApproval => "require_approval",
            Verdict::Deny => "deny",
        }
    }

    /// The upper-case label used in human-readable output (`ALLOW`, `DENY`, `REQUIRE_APPROVAL`).
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Allow => "ALLOW",
            Verdict::RequireApproval => "REQUIRE_APPROVAL",
            Verdict::Deny => "DENY",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Verdict {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s || v.label() == s)
            .ok_or_else(|| CoreError::UnknownVerdict(s.to_owned()))
    }
}

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a decision came out as it did. A stable, documented list: the
        /// snake_case names are part of the public interface.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ReasonCode {
            $($(#[$doc])* $variant,)*
        }

        impl ReasonCode {
            /// Every reason code, in documentation order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ReasonCode::$variant => $name,)*
                }
            }
        }
    };
}

reason_codes! {
    /// A policy rule matched and decided.
    RuleMatched => "rule_matched",
    /// No rule matched: everything not allowed is denied.
    DefaultDeny => "default_deny",
    /// The action is not in the registry.
    UnknownAction => "unknown_action",
    /// The params broke the action's declared types or constraints.
    InvalidParams => "invalid_params",
    /// A target-bound param differs from the target's attribute.
    ParamTargetMismatch => "param_target_mismatch",
    /// The action cannot run on a target of this type.
    TargetTypeMismatch => "target_type_mismatch",
    /// The target is not in the inventory and the action binds params to target
    /// attributes, so there is nothing to bind them to: never allowed, whatever a rule says.
    UnknownTarget => "unknown_target",
    /// The request itself was malformed (empty action or target, bad ids).
    InvalidRequest => "invalid_request",
    /// The caller's identity token was invalid, expired, not yet valid or wrongly signed,
    /// or an unauthenticated caller id was given where configuration forbids it.
    InvalidIdentity => "invalid_identity",
    /// The caller's delegation chain is deeper than configuration allows.
    DelegationTooDeep => "delegation_too_deep",
    /// The audit record could not be written, so nothing is allowed.
    AuditUnavailable => "audit_unavailable",
    /// Something went wrong while deciding; the decision point failed closed.
    InternalError => "internal_error",
    /// The caller (charged to the root of its delegation chain) exceeded its rate limit.
    RateLimited => "rate_limited",
    /// Too many recent denials tripped the caller's circuit breaker; it is cooling down.
    CircuitOpen => "circuit_open",
    /// An operator paused the caller.
    CallerPaused => "caller_paused",
    /// The caller's cumulative risk crossed the escalation threshold: an ALLOW became REQUIRE_APPROVAL.
    RiskEscalated => "risk_escalated",
    /// The caller's cumulative risk crossed the denial threshold.
    RiskLimitExceeded => "risk_limit_exceeded",
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonCode {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReasonCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| CoreError::UnknownReasonCode(s.to_owned()))
    }
}

/// A 128-bit identifier for a decision (or a plan): 48 bits of Unix milliseconds
/// followed by 80 random bits, printed as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecisionId(u128);

impl DecisionId {
    /// Builds an id from a millisecond timestamp and 80 random bits (the high bits of `random` are ignored).
    pub fn from_parts(unix_ms: u64, random: u128) -> Self {
        let time = u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80;
        DecisionId(time | (random & ((1u128 << 80) - 1)))
    }

    /// The raw 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The raw value as big-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl From<u128> for DecisionId {
    fn from(value: u128) -> Self {
        DecisionId(value)
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for DecisionId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CoreError::InvalidDecisionId(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(DecisionId)
            .map_err(|_| CoreError::InvalidDecisionId(s.to_owned()))
    }
}

impl Serialize for DecisionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DecisionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who must agree before a REQUIRE_APPROVAL decision may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Roles that may approve (any one of them).
    pub approvers: Vec<String>,
    /// How many distinct approvers are needed.
    pub required: u32,
}

/// What the decision point knew about the requested target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// The target id exactly as requested, also when it is unknown.
    pub id: String,
    /// Whether the inventory knows the target.
    pub known: bool,
    /// The target type, when known.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<Arc<str>>,
    /// The environment, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Arc<str>>,
    /// The sensitivity it was evaluated with: `critical` for unknown targets.
    pub sensitivity: Sensitivity,
}

/// The outcome of evaluating one request, with everything needed to explain and replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// A fresh 128-bit id for this decision.
    pub decision_id: DecisionId,
    /// ALLOW, DENY or REQUIRE_APPROVAL.
    pub decision: Verdict,
    /// The stable reason code.
    pub reason_code: ReasonCode,
    /// A human-readable explanation.
    pub reason: String,
    /// The id of the rule that decided, if a rule did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<Arc<str>>,
    /// The requested action name.
    pub action: String,
    /// The requested target.
    pub target: TargetInfo,
    /// The caller, as authenticated (or not).
    pub caller: Caller,
    /// The action's own risk class, when the action is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_risk: Option<Risk>,
    /// The effective risk (action risk against target sensitivity), when the action is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_risk: Option<Risk>,
    /// The params after target binding and defaults (as requested when they were invalid).
    pub params: Params,
    /// The external change ticket the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_ticket: Option<String>,
    /// When the decision was evaluated, from the decision point's own clock.
    pub evaluated_at: jiff::Timestamp,
    /// A hash of the policy set, registry and inventory in force.
    pub policy_hash: Arc<str>,
    /// The plan this decision belongs to, if it was decided as a plan step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<DecisionId>,
    /// The caller's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The caller's W3C trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// For REQUIRE_APPROVAL: who may approve, and how many distinct approvers are needed.
    /// Shared with the rule that decided, so a decision does not copy it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Arc<ApprovalPolicy>>,
    /// The caller's cumulative risk score over the configured window, when limits apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u32>,
    /// The verdict before limits escalated it (for example ALLOW before `risk_escalated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_from: Option<Verdict>,
    /// Problems found while deciding (invalid params, errors that made it fail closed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

impl Decision {
    /// Whether the action may run without anyone else's say.
    pub fn is_allow(&self) -> bool {
        self.decision == Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_order_is_restrictiveness() {
        assert!(Verdict::Allow < Verdict::RequireApproval);
        assert!(Verdict::RequireApproval < Verdict::Deny);
        assert_eq!(Verdict::ALL.into_iter().max(), Some(Verdict::Deny));
    }

    #[test]
    fn reason_codes_round_trip_through_serde_and_str() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_string(code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.as_str().parse::<ReasonCode>(), Ok(*code));
        }
    }

    #[test]
    fn decision_id_is_32_hex_digits_and_time_ordered() {
        let a = DecisionId::from_parts(1, u128::MAX);
        let b = DecisionId::from_parts(2, 0);
        assert!(a < b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<DecisionId>(), Ok(a));
        assert!("xyz".parse::<DecisionId>().is_err());
        assert!(
            "+0000000000000000000000000000000"
                .parse::<DecisionId>()
                .is_err()
        );
    }
}
