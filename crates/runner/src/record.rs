//! The execution record: what a run did, as one serde type written to the audit log
//! (`execution`, `rollback` and `preview` events) and read back by rollback planning and
//! every front end. Secrets are redacted before a record is built; credentials never
//! appear in it.

use std::collections::BTreeMap;
use std::fmt;

use agentsafe_core::{Params, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pipeline::RunOutcome;

macro_rules! run_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a run ended as it did: a stable, documented list (the snake_case names are
        /// part of the public interface, as decision reason codes are).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum RunCode {
            $($(#[$doc])* $variant,)*
        }

        impl RunCode {
            /// Every run code, in documentation order.
            pub const ALL: &'static [RunCode] = &[$(RunCode::$variant,)*];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RunCode::$variant => $name,)*
                }
            }
        }
    };
}

run_codes! {
    /// The action ran.
    Executed => "executed",
    /// A preview ran: prechecks, state and the backend's dry run; nothing executed.
    Previewed => "previewed",
    /// The ticket did not verify (signature, audience, expiry, format).
    InvalidTicket => "invalid_ticket",
    /// The ticket was redeemed before: nothing runs twice.
    Replayed => "replayed",
    /// The ticket is PENDING (another runner executes it, or one crashed): reconcile it.
    Pending => "pending",
    /// The ticket's action is not in the registry.
    UnknownAction => "unknown_action",
    /// The executor does not support the action.
    UnsupportedAction => "unsupported_action",
    /// The ticket store could not be read or written.
    StoreUnavailable => "store_unavailable",
    /// The root caller of the ticket is paused by an operator.
    CallerPaused => "caller_paused",
    /// The root caller's circuit breaker is open.
    CircuitOpen => "circuit_open",
    /// The enforcement point refused the ticket for another reason (its state store failed).
    AdmissionFailed => "admission_failed",
    /// Credentials could not be issued.
    CredentialsFailed => "credentials_failed",
    /// The executor refused the ticket's location before sending anything: a Kubernetes
    /// cluster not mapped in `[executors.k8s] clusters`, an AWS account other than the one
    /// its credentials belong to (or not in `[executors.aws] accounts`), or no location.
    WrongLocation => "wrong_location",
    /// A blocking precheck failed or could not be evaluated.
    PrecheckFailed => "precheck_failed",
    /// The before-state could not be captured.
    StateCaptureFailed => "state_capture_failed",
    /// The backend refused the change in its own dry run.
    DryRunRefused => "dry_run_refused",
    /// The executor reported a failure.
    ExecutionFailed => "execution_failed",
    /// The executor panicked mid-execution: the backend state is unknown.
    ExecutorPanicked => "executor_panicked",
    /// The executor did not finish in time and was cancelled: the backend state is unknown.
    TimedOut => "timed_out",
}

impl fmt::Display for RunCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An ordinary execution.
    Execution,
    /// A compensating action.
    Rollback,
    /// A preview that executed nothing.
    Preview,
}

/// How a precheck came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecheckStatus {
    /// It held.
    Passed,
    /// It did not hold (or erred, panicked, timed out).
    Failed,
    /// The executor cannot evaluate it.
    Unsupported,
}

/// One precheck as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckEntry {
    /// The precheck's name (or `server_dry_run` for the backend's dry run).
    pub name: String,
    /// Whether a failure only warns.
    pub advisory: bool,
    /// How it came out.
    pub result: PrecheckStatus,
    /// The executor's explanation.
    pub detail: String,
}

/// One changed state field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The value before (null when absent).
    pub before: Value,
    /// The value after (null when absent).
    pub after: Value,
}

/// The state fields that changed, by name.
pub type StateDiff = BTreeMap<String, Change>;

/// A run as recorded. Refusals (nothing redeemed) carry only what the ticket said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Which event this is.
    pub kind: RecordKind,
    /// The ticket's action, when the ticket verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The ticket's target, when the ticket verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The ticket's caller id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The executor's name.
    pub executor: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Why.
    pub reason_code: RunCode,
    /// A human explanation.
    pub message: String,
    /// Whether `execute` was called.
    pub executed: bool,
    /// The params the ticket signed, sensitive values HMAC-redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Params>,
    /// The prechecks, in order, then the backend's dry run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prechecks: Vec<PrecheckEntry>,
    /// The declared state fields before (secret-looking ones redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Map<String, Value>>,
    /// The declared state fields after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Map<String, Value>>,
    /// What changed between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<StateDiff>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Milliseconds per step (`prechecks_ms`, `capture_before_ms`, `dry_run_ms`,
    /// `execute_ms`, `capture_after_ms`, `total_ms`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, u64>,
    /// The kind of credential issued for the run, never the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_kind: Option<String>,
    /// The executor's one-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The executor's output as recorded (secret-looking values redacted; all of it for
    /// an action tagged `secrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Params whose values are HMACs here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted_params: Vec<String>,
    /// State fields whose values are HMACs here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted_state: Vec<String>,
    /// For a rollback: the decision whose execution it compensates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<String>,
}

impl ExecutionRecord {
    /// A record of a run that ended before anything was redeemed.
    pub fn refusal(kind: RecordKind, executor: &str, code: RunCode, message: String) -> Self {
        ExecutionRecord {
            kind,
            action: None,
            target: None,
            caller: None,
            executor: executor.to_owned(),
            outcome: RunOutcome::Refused,
            reason_code: code,
            message,
            executed: false,
            params: None,
            prechecks: Vec::new(),
            before: None,
            after: None,
            diff: None,
            started_at: None,
            timings: BTreeMap::new(),
            credentials_kind: None,
            summary: None,
            output: None,
            redacted_params: Vec::new(),
            redacted_state: Vec::new(),
            rolls_back: None,
        }
    }

    /// The record as the JSON object the audit log stores.
    pub fn to_body(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a record back from an audit entry's body.
    ///
    /// # Errors
    /// When the body is not an execution record.
    pub fn from_body(body: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_codes_round_trip() {
        for code in RunCode::ALL {
            let json = serde_json::to_string(code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut r = ExecutionRecord::refusal(
            RecordKind::Execution,
            "dry-run",
            RunCode::Replayed,
            "nothing runs twice".into(),
        );
        r.action = Some("scale-deployment".into());
        r.diff = Some(BTreeMap::from([(
            "replicas".to_owned(),
            Change {
                before: 2.into(),
                after: 3.into(),
            },
        )]));
        assert_eq!(ExecutionRecord::from_body(&r.to_body()).ok(), Some(r));
    }
}
