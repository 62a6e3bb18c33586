//! Rollback planning: the compensating request for an execution, built from the execution
//! record in the audit log (its params and recorded before-state) and the action's
//! `rollback_params`.
//!
//! A plan is only a request: it goes through the decision point like any other
//! (`agentsafe rollback check`), so no rollback runs unaudited or unauthorised.

use std::path::Path;

use agentsafe_audit::Entry;
use agentsafe_core::{Params, Request};
use agentsafe_registry::{Registry, RollbackSource};
use serde::Serialize;
use serde_json::Value;

use crate::RunnerError;

/// The compensating request for one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackPlan {
    /// The decision whose execution is undone.
    pub rolls_back: String,
    /// The action that was executed.
    pub original_action: String,
    /// The compensating action.
    pub action: String,
    /// The same target.
    pub target: String,
    /// The compensating params, from the recorded params and before-state.
    pub params: Params,
    /// The audit position of the execution record used.
    pub from_audit_seq: u64,
}

impl RollbackPlan {
    /// The plan as a request for the decision point (the caller is filled by the gate).
    pub fn request(&self) -> Request {
        Request {
            action: self.action.clone(),
            target: self.target.clone(),
            params: self.params.clone(),
            ..Request::default()
        }
    }
}

/// The last execution or rollback record of `decision_id` that executed, scanning the log.
///
/// # Errors
/// When the log cannot be read, or no record of an execution for the decision exists.
pub fn find_record(log: &Path, decision_id: &str) -> Result<Entry, RunnerError> {
    let mut found: Option<Entry> = None;
    let mut refused: Option<String> = None;
    agentsafe_audit::read::for_each_entry(log, |entry, _| {
        let Ok(entry) = entry else { return };
        if !matches!(entry.event.as_str(), "execution" | "rollback")
            || entry.links.decision_id.as_deref() != Some(decision_id)
        {
            return;
        }
        if entry.body.get("executed") == Some(&Value::Bool(true)) {
            found = Some(entry);
        } else {
            refused = Some(format!(
                "{} ({})",
                entry
                    .body
                    .get("outcome")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                entry
                    .body
                    .get("reason_code")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ));
        }
    })?;
    match (found, refused) {
        (Some(e), _) => Ok(e),
        (None, Some(why)) => Err(RunnerError::Rollback(format!(
            "decision `{decision_id}` was never executed (its run ended {why}), so there is nothing to roll back"
        ))),
        (None, None) => Err(RunnerError::Rollback(format!(
            "no execution record for decision `{decision_id}` in `{}`",
            log.display()
        ))),
    }
}

fn strings(body: &Value, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the compensating request from an execution record.
///
/// # Errors
/// When the action is not reversible, is unknown, or a rollback param comes from a value
/// the record had to redact (a sensitive param or a secret state field).
pub fn plan(registry: &Registry, entry: &Entry) -> Result<RollbackPlan, RunnerError> {
    let body = &entry.body;
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let action = text("action");
    let def = registry.get(action).ok_or_else(|| {
        RunnerError::Rollback(format!("action `{action}` is not in the registry"))
    })?;
    let Some(rollback_action) = def.rollback_action().filter(|_| def.reversible()) else {
        return Err(RunnerError::Rollback(format!(
            "action `{action}` is not reversible: it declares no rollback action"
        )));
    };
    let params: Params = body
        .get("params")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let before: Params = body
        .get("before")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let redacted_params = strings(body, "redacted_params");
    let redacted_state = strings(body, "redacted_state");
    let mut out = Params::new();
    for rp in def.rollback_params() {
        let source = rp.source();
        let secret = match source {
            RollbackSource::Param(p) => redacted_params.contains(p),
            RollbackSource::State(_) => source
                .state_field()
                .is_some_and(|f| redacted_state.iter().any(|r| r == f)),
        };
        if secret {
            return Err(RunnerError::Rollback(format!(
                "rollback param `{}` comes from `{source}`, which is secret and was not recorded",
                rp.name()
            )));
        }
        match source.resolve(&params, &before) {
            Some(v) if !v.is_null() => {
                out.insert(rp.name().to_owned(), v.clone());
            }
            _ => {
                return Err(RunnerError::Rollback(format!(
                    "rollback param `{}` comes from `{source}`, which the execution record does not hold",
                    rp.name()
                )));
            }
        }
    }
    Ok(RollbackPlan {
        rolls_back: entry.links.decision_id.clone().unwrap_or_default(),
        original_action: action.to_owned(),
        action: rollback_action.to_owned(),
        target: text("target").to_owned(),
        params: out,
        from_audit_seq: entry.seq,
    })
}
