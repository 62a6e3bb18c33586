//! Approval requests as stored: what was asked, by whom, for which params, and who agreed.

use agentsafe_core::{Request, Risk};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers agreed: the requester may claim its one ticket (once).
    Approved,
    /// An approver denied it, or the policy denied it when re-evaluated.
    Denied,
    /// Nobody resolved it before its expiry.
    Expired,
}

impl ApprovalState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }
}

/// One approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The approver's verified id.
    pub approver: String,
    /// When.
    pub at: Timestamp,
    /// Why, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The root of the approver's delegation chain: two votes with one root are one approver.
    #[serde(default)]
    pub root: String,
    /// The approver's roles when it voted, so a tightened rule can be checked against them.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// An approval request created by a REQUIRE_APPROVAL decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The request id (32 hex digits).
    pub id: String,
    /// The decision that required approval.
    pub decision_id: String,
    /// The request as decided: caller, params after binding (sensitive values HMAC-redacted,
    /// never stored in clear), change ticket.
    pub request: Request,
    /// Whether the requester's identity was verified (deserialising a caller never says so).
    #[serde(default)]
    pub authenticated: bool,
    /// Names of the params whose values are stored redacted: a claim must send them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted_params: Vec<String>,
    /// `sha256:` digest of the canonical params: an approval covers exactly these.
    pub params_digest: String,
    /// The effective risk, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// The rule that required approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The decision's reason.
    pub reason: String,
    /// Roles that may approve.
    pub approvers: Vec<String>,
    /// How many distinct approvers are needed.
    pub required: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires unless resolved.
    pub expires_at: Timestamp,
    /// The stored state (see [`ApprovalRecord::state_at`] for expiry).
    pub state: ApprovalState,
    /// Approvals given so far, in order.
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// Who denied it, or why the policy did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<Vote>,
    /// When it was approved or denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// The nonce of the one ticket the requester claimed; the ticket itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_nonce: Option<String>,
    /// The decision id of the claim that issued the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_decision_id: Option<String>,
}

impl ApprovalRecord {
    /// The state at `now`: a pending request past its expiry is expired.
    pub fn state_at(&self, now: Timestamp) -> ApprovalState {
        if self.state == ApprovalState::Pending && now >= self.expires_at {
            ApprovalState::Expired
        } else {
            self.state
        }
    }

    /// The caller that asked: the request's caller id.
    pub fn requester(&self) -> &str {
        &self.request.caller.id
    }
}
