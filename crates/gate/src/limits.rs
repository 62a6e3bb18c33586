//! Limits around the decision point, kept in the shared state store: operator pauses, the
//! circuit breaker, the rate limit and cumulative risk, all charged to the root of the
//! caller's delegation chain.
//!
//! The gate applies them once per decision, after the PDP decided, and again when an
//! approved request is claimed. Order: pause → open breaker → rate limit → cumulative risk
//! (ALLOW only) → breaker counting (final DENY only). Any state-store failure fails closed:
//! DENY `internal_error`.
//!
//! Unauthenticated callers (plain `--caller` ids, where configuration allows them) are
//! charged under their plain id, like the root of an authenticated chain: they share the
//! limits of any authenticated agent of the same id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentsafe_core::{ApprovalPolicy, Caller, Decision, ReasonCode, Risk, Timestamp, Verdict};
use agentsafe_state::{Standing, StateStore, Windows};
use agentsafe_tickets::HumanDuration;
use serde::Deserialize;

use crate::gate::fail as deny;

/// The `[limits]` section. Every limit is off until its table is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The state database (default `<state_dir>/state.db`), relative to the config file.
    pub database: Option<PathBuf>,
    /// `[limits.rate]`: requests per window per root caller.
    pub rate: Option<RateConfig>,
    /// `[limits.breaker]`: denials that pause a root caller for a cooldown.
    pub breaker: Option<BreakerConfig>,
    /// `[limits.risk]`: cumulative risk per root caller.
    pub risk: Option<RiskConfig>,
}

/// `[limits.rate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests allowed per window.
    pub max: u32,
    /// The sliding window (default `1m`).
    #[serde(default = "one_minute")]
    pub window: HumanDuration,
}

/// `[limits.breaker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Denials within the window that open the breaker.
    pub denials: u32,
    /// The sliding window (default `5m`).
    #[serde(default = "five_minutes")]
    pub window: HumanDuration,
    /// How long the breaker stays open (default `15m`).
    #[serde(default = "fifteen_minutes")]
    pub cooldown: HumanDuration,
}

/// `[limits.risk]`: defaults as agent-safe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// The sliding window (default `1h`).
    pub window: HumanDuration,
    /// From this score an ALLOW becomes REQUIRE_APPROVAL (default 30).
    pub escalate_at: u32,
    /// From this score an ALLOW becomes DENY (default 75).
    pub deny_at: u32,
    /// Score per effective-risk class.
    pub weights: RiskWeights,
}

/// `[limits.risk.weights]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskWeights {
    /// Default 1.
    pub low: u32,
    /// Default 5.
    pub medium: u32,
    /// Default 15.
    pub high: u32,
    /// Default 50.
    pub critical: u32,
}

impl Default for RiskWeights {
    fn default() -> Self {
        RiskWeights {
            low: 1,
            medium: 5,
            high: 15,
            critical: 50,
        }
    }
}

impl RiskWeights {
    fn of(&self, r: Risk) -> u32 {
        match r {
            Risk::Low => self.low,
            Risk::Medium => self.medium,
            Risk::High => self.high,
            Risk::Critical => self.critical,
        }
    }
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            window: HumanDuration::from_secs(3600),
            escalate_at: 30,
            deny_at: 75,
            weights: RiskWeights::default(),
        }
    }
}

fn one_minute() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn five_minutes() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn fifteen_minutes() -> HumanDuration {
    HumanDuration::from_secs(900)
}

impl LimitsConfig {
    /// The state database path.
    pub fn database_path(&self, base: &Path, state_dir: &Path) -> PathBuf {
        match &self.database {
            Some(p) => base.join(p),
            None => state_dir.join("state.db"),
        }
    }

    /// The windows `caller status` reports counts over.
    pub fn windows(&self) -> Windows {
        Windows {
            rate: self
                .rate
                .as_ref()
                .map_or(Duration::from_secs(60), |r| r.window.as_std()),
            breaker: self
                .breaker
                .as_ref()
                .map_or(Duration::from_secs(300), |b| b.window.as_std()),
            risk: self
                .risk
                .as_ref()
                .map_or(Duration::from_secs(3600), |r| r.window.as_std()),
        }
    }
}

/// Why `key` may not act at all, given its standing: an operator's pause, or an open
/// breaker. The one wording for a fresh decision and for a ticket about to be redeemed.
pub(crate) fn refusal(key: &str, standing: &Standing) -> Option<(ReasonCode, String)> {
    if let Some(p) = &standing.paused {
        return Some((
            ReasonCode::CallerPaused,
            format!(
                "caller `{key}` was paused by {} at {}: {}",
                p.by, p.at, p.reason
            ),
        ));
    }
    standing.open_until.map(|until| {
        (
            ReasonCode::CircuitOpen,
            format!("too many recent denials: caller `{key}` is paused until {until}"),
        )
    })
}

/// The key limits are charged to: the root of the delegation chain (the plain id for an
/// unauthenticated caller without a chain).
pub fn key_of(caller: &Caller) -> &str {
    caller.root()
}

/// The limit checks, over the gate's one state store.
#[derive(Debug)]
pub(crate) struct Controls<'a> {
    pub(crate) cfg: &'a LimitsConfig,
    pub(crate) store: Result<&'a dyn StateStore, &'a str>,
}

impl Controls<'_> {
    /// Applies every limit to `d`. Any store failure fails closed: DENY `internal_error`.
    pub(crate) fn apply(&self, d: &mut Decision) {
        let store = match self.store {
            Ok(s) => s,
            Err(e) => {
                deny(d, ReasonCode::InternalError, e.to_owned());
                return;
            }
        };
        if let Err(e) = self.apply_limits(store, d) {
            deny(
                d,
                ReasonCode::InternalError,
                format!("the state store failed, so nothing is allowed: {e}"),
            );
        }
    }

    fn apply_limits(
        &self,
        store: &dyn StateStore,
        d: &mut Decision,
    ) -> Result<(), agentsafe_state::StateError> {
        let cfg = self.cfg;
        let key = key_of(&d.caller).to_owned();
        let now = Timestamp::now();
        if let Some((code, why)) = refusal(&key, &store.standing(&key, now)?) {
            deny(d, code, why);
            return Ok(());
        }
        if let Some(rate) = &cfg.rate {
            let charge = store.rate_charge(&key, now, rate.window.as_std(), rate.max)?;
            if !charge.allowed {
                deny(
                    d,
                    ReasonCode::RateLimited,
                    format!(
                        "caller `{key}` made {} requests in the last {}, the limit is {}",
                        charge.count, rate.window, rate.max
                    ),
                );
                return Ok(());
            }
        }
        if let (Some(risk), true) = (&cfg.risk, d.is_allow()) {
            let weight = d
                .effective_risk
                .map_or(risk.weights.critical, |r| risk.weights.of(r));
            let score = store.risk_charge(&key, now, risk.window.as_std(), weight, risk.deny_at)?;
            d.risk_score = Some(score);
            if score >= risk.deny_at {
                d.escalated_from = Some(Verdict::Allow);
                deny(
                    d,
                    ReasonCode::RiskLimitExceeded,
                    format!(
                        "cumulative risk of `{key}` would be {score} in the last {}, the limit is {}",
                        risk.window, risk.deny_at
                    ),
                );
            } else if score >= risk.escalate_at {
                d.diagnostics
                    .push(format!("was ALLOW ({}): {}", d.reason_code, d.reason));
                d.escalated_from = Some(Verdict::Allow);
                d.decision = Verdict::RequireApproval;
                d.reason_code = ReasonCode::RiskEscalated;
                d.reason = format!(
                    "cumulative risk of `{key}` is {score} in the last {}, approval is needed from {}",
                    risk.window, risk.escalate_at
                );
                if d.approval.is_none() {
                    d.approval = Some(std::sync::Arc::new(ApprovalPolicy {
                        approvers: vec!["approver".to_owned()],
                        required: 1,
                    }));
                }
            }
        }
        if d.decision == Verdict::Deny
            && let Some(b) = &cfg.breaker
            && let Some(until) =
                store.record_denial(&key, now, b.window.as_std(), b.denials, b.cooldown.as_std())?
        {
            d.diagnostics.push(format!(
                "this was denial {} within {}: caller `{key}` is paused until {until}",
                b.denials, b.window
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    fn parse(v: serde_json::Value) -> Result<crate::GateConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn limits_are_off_by_default_and_risk_has_agent_safe_defaults() {
        let off = parse(serde_json::json!({})).unwrap();
        assert!(off.limits.rate.is_none() && off.limits.breaker.is_none());
        assert!(off.limits.risk.is_none());
        let on = parse(serde_json::json!({
            "limits": { "risk": {}, "breaker": { "denials": 3 }, "rate": { "max": 9 } }
        }))
        .unwrap();
        let risk = on.limits.risk.unwrap();
        assert_eq!((risk.escalate_at, risk.deny_at), (30, 75));
        let w = &risk.weights;
        assert_eq!((w.low, w.medium, w.high, w.critical), (1, 5, 15, 50));
        assert_eq!(on.limits.breaker.unwrap().cooldown.as_secs_i64(), 900);
        assert_eq!(on.limits.rate.unwrap().window.as_secs_i64(), 60);
    }

    #[test]
    fn unknown_keys_are_errors() {
        for v in [
            serde_json::json!({"limits": {"rates": 1}}),
            serde_json::json!({"limits": {"rate": {"max": 1, "windwo": "1m"}}}),
            serde_json::json!({"limits": {"risk": {"weights": {"severe": 3}}}}),
            serde_json::json!({"approvals": {"expire": "1h"}}),
            serde_json::json!({"notifications": {"webhooks": [{"url": "http://x", "kind": "teams"}]}}),
        ] {
            assert!(parse(v.clone()).is_err(), "{v}");
        }
    }
}
