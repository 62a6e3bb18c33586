//! Rollback planning: the compensating request for an execution, built from the execution
//! record in the audit log (its params and recorded before-state) and the action's
//! `rollback_params`.
//!
//! A plan is only a request: it goes through the decision point like any other
//! (`agentsafe rollback check`), so no rollback runs unaudited or unauthorised.

use std::path::Path;

use agentsafe_audit::Entry;
use agentsafe_core::{Params, Request};
use agentsafe_pdp::Inventory;
use agentsafe_registry::{Registry, RollbackSource};
use serde::Serialize;
use serde_json::Value;

use crate::RunnerError;
use crate::record::ExecutionRecord;

/// The compensating request for one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackPlan {
    /// The decision whose execution is undone.
    pub rolls_back: String,
    /// The action that was executed.
    pub original_action: String,
    /// The compensating action.
    pub action: String,
    /// The target: the executed one, or (see [`retarget`]) the inventory target the
    /// compensating action acts on.
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
        match ExecutionRecord::from_body(&entry.body) {
            Ok(r) if r.executed => found = Some(entry),
            Ok(r) => refused = Some(format!("{} ({})", r.outcome, r.reason_code)),
            Err(_) => refused = Some("with a record this version cannot read".to_owned()),
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

/// Builds the compensating request from an execution record.
///
/// # Errors
/// When the action is not reversible, is unknown, or a rollback param comes from a value
/// the record had to redact (a sensitive param or a secret state field).
pub fn plan(registry: &Registry, entry: &Entry) -> Result<RollbackPlan, RunnerError> {
    let record = ExecutionRecord::from_body(&entry.body).map_err(|e| {
        RunnerError::Rollback(format!(
            "audit entry {} is not an execution record this version can read: {e}",
            entry.seq
        ))
    })?;
    let action = record.action.as_deref().unwrap_or_default();
    let def = registry.get(action).ok_or_else(|| {
        RunnerError::Rollback(format!("action `{action}` is not in the registry"))
    })?;
    let Some(rollback_action) = def.rollback_action().filter(|_| def.reversible()) else {
        return Err(RunnerError::Rollback(format!(
            "action `{action}` is not reversible: it declares no rollback action"
        )));
    };
    let params: Params = record.params.clone().unwrap_or_default();
    let before: Params = record.before.clone().unwrap_or_default();
    let redacted_params = &record.redacted_params;
    let redacted_state = &record.redacted_state;
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
        target: record.target.clone().unwrap_or_default(),
        params: out,
        from_audit_seq: entry.seq,
    })
}

/// Points `plan` at the target its compensating action acts on, when that is not the
/// executed target's type: `create-namespace` runs on a cluster, its rollback
/// `delete-namespace` on a namespace. The new target is the one inventory target of a type
/// the compensating action accepts that agrees with the executed target on every attribute
/// both have (the same cluster, the same region) and whose attributes equal every param the
/// action binds to them (the namespace created). A plan whose target already fits, or
/// whose executed target the inventory does not know, is returned as it is: the decision
/// point judges it.
///
/// # Errors
/// When no inventory target, or more than one, fits: the operator must list the created
/// object in the inventory (or remove the ambiguity) before it can be rolled back.
pub fn retarget(
    plan: RollbackPlan,
    registry: &Registry,
    inventory: &Inventory,
) -> Result<RollbackPlan, RunnerError> {
    let Some(def) = registry.get(&plan.action) else {
        return Ok(plan);
    };
    let Some(original) = inventory.get(&plan.target) else {
        return Ok(plan);
    };
    let accepts = |ty: &str| def.target_types().iter().any(|t| t == ty);
    if accepts(original.target_type()) {
        return Ok(plan);
    }
    let bound: Vec<(&str, &str)> = def
        .params()
        .iter()
        .filter_map(|p| Some((p.target_attr()?, p.name())))
        .collect();
    let fits: Vec<&str> = inventory
        .targets()
        .into_iter()
        .filter(|t| accepts(t.target_type()))
        .filter(|t| {
            original
                .attributes()
                .iter()
                .all(|(k, v)| t.attribute(k).is_none_or(|tv| tv == v))
        })
        .filter(|t| {
            bound.iter().all(
                |(attr, param)| match (t.attribute(attr), plan.params.get(*param)) {
                    (Some(tv), Some(Value::String(pv))) => tv == pv,
                    _ => false,
                },
            )
        })
        .map(agentsafe_pdp::Target::id)
        .collect();
    let wanted = || {
        bound
            .iter()
            .map(|(attr, param)| {
                let v = plan
                    .params
                    .get(*param)
                    .map(Value::to_string)
                    .unwrap_or_default();
                format!("{attr} = {v}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match fits.as_slice() {
        [one] => Ok(RollbackPlan {
            target: (*one).to_owned(),
            ..plan
        }),
        [] => Err(RunnerError::Rollback(format!(
            "`{}` acts on {} targets, not on `{}` ({}); no inventory target of those types has {} \
             in the same place: add it to the inventory to roll back",
            plan.action,
            def.target_types().join(", "),
            plan.target,
            original.target_type(),
            wanted()
        ))),
        many => Err(RunnerError::Rollback(format!(
            "`{}` could act on several inventory targets with {}: {}; remove the ambiguity to roll back",
            plan.action,
            wanted(),
            many.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn registry() -> Registry {
        Registry::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions"))
            .unwrap()
    }

    fn target(id: &str, ty: &str, attrs: &str) -> String {
        format!(
            "[[targets]]\nid = \"{id}\"\ntype = \"{ty}\"\nenvironment = \"dev\"\nsensitivity = \"internal\"\nowner = \"t\"\nattributes = {{ {attrs} }}\n\n"
        )
    }

    /// The rollback plan of `create-namespace made` on `target` in `cluster`.
    fn delete_made(target: &str, cluster: &str) -> RollbackPlan {
        RollbackPlan {
            rolls_back: "d".into(),
            original_action: "create-namespace".into(),
            action: "delete-namespace".into(),
            target: target.into(),
            params: serde_json::json!({"cluster": cluster, "namespace": "made"})
                .as_object()
                .cloned()
                .unwrap(),
            from_audit_seq: 0,
        }
    }

    #[test]
    fn a_rollback_moves_to_the_inventory_target_its_action_acts_on() {
        let inv = Inventory::parse(
            "inventory.toml",
            &[
                target("dev/cluster", "k8s-cluster", "cluster = \"dev\""),
                target("other/cluster", "k8s-cluster", "cluster = \"other\""),
                target(
                    "dev/made",
                    "k8s-namespace",
                    "cluster = \"dev\", namespace = \"made\"",
                ),
                target(
                    "other/made",
                    "k8s-namespace",
                    "cluster = \"other\", namespace = \"made\"",
                ),
                target(
                    "dev/web",
                    "k8s-namespace",
                    "cluster = \"dev\", namespace = \"web\"",
                ),
            ]
            .concat(),
        )
        .unwrap();
        let reg = registry();
        let plan = retarget(delete_made("dev/cluster", "dev"), &reg, &inv).unwrap();
        assert_eq!(plan.target, "dev/made", "same cluster, same namespace");
        let plan = retarget(delete_made("other/cluster", "other"), &reg, &inv).unwrap();
        assert_eq!(plan.target, "other/made");
        // A plan whose target fits already is left alone.
        let plan = retarget(delete_made("dev/web", "dev"), &reg, &inv).unwrap();
        assert_eq!(plan.target, "dev/web");
    }

    #[test]
    fn no_fitting_target_or_several_is_an_error_that_says_what_to_add() {
        let reg = registry();
        let inv = Inventory::parse(
            "inventory.toml",
            &target("dev/cluster", "k8s-cluster", "cluster = \"dev\""),
        )
        .unwrap();
        let e = retarget(delete_made("dev/cluster", "dev"), &reg, &inv)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("namespace = \"made\"") && e.contains("add it to the inventory"),
            "{e}"
        );
        let inv = Inventory::parse(
            "inventory.toml",
            &[
                target("c", "k8s-cluster", "cluster = \"dev\""),
                target(
                    "a",
                    "k8s-namespace",
                    "cluster = \"dev\", namespace = \"made\"",
                ),
                target(
                    "b",
                    "k8s-namespace",
                    "cluster = \"dev\", namespace = \"made\"",
                ),
            ]
            .concat(),
        )
        .unwrap();
        let e = retarget(delete_made("c", "dev"), &reg, &inv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a, b"), "{e}");
    }
}
