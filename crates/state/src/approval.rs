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
    /// Enough approvers agreed and the ticket was issued.
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
}

/// An approval request created by a REQUIRE_APPROVAL decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The request id (32 hex digits).
    pub id: String,
    /// The decision that required approval.
    pub decision_id: String,
    /// The request as decided: authenticated caller, params after binding, change ticket.
    pub request: Request,
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
    /// The one ticket issued on approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// That ticket's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_nonce: Option<String>,
    /// The decision id of the re-evaluation that was approved.
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
