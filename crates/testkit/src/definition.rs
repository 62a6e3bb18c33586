//! Conformance to an action definition: an executor implements what an `actions/*.toml`
//! file declares for it.
//!
//! Checked for one [`ActionDef`] and one [`ConformanceCase`] of it:
//! * the case is for the definition's action and its params fit the definition;
//! * every precheck the action declares, other than advisory ones, is implemented: the
//!   executor's `precheck` does not answer `PrecheckResult::Unsupported` (the runner would
//!   fail every run of the action closed);
//! * every declared `state_fields` path resolves in the object `capture_state` returns;
//! * for a reversible action, every `rollback_params` entry can be filled from the params
//!   and the captured before-state, as `agentsafe rollback` fills it.
//!
//! [`assert_definition_conformance`] runs these and the contract suite of
//! [`crate::conformance`] on the same case.

use agentsafe_core::{CoreError, Executor, Params, PrecheckResult};
use agentsafe_registry::ActionDef;
use serde_json::Value;

use crate::conformance::{ConformanceCase, check, run_blocking};

impl ConformanceCase {
    /// A case for `def` on `target`: the action's name, `params` (an object) with the
    /// definition's defaults applied when they fit it, the first target type the action
    /// names, and every precheck it declares (advisory ones too: none may mutate).
    ///
    /// Params that do not fit the definition are kept as given, and
    /// [`check_definition`] reports them.
    pub fn from_definition(def: &ActionDef, target: &str, params: Value) -> ConformanceCase {
        let mut case = ConformanceCase::new(def.name(), target).params(params);
        if let Ok(checked) = def.validate_params(&case.ctx.params) {
            case.ctx.params = checked;
        }
        case.ctx.target_type = def.target_types().first().cloned();
        case.prechecks = def
            .prechecks()
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        case
    }
}

/// Whether an answer of `precheck` means the executor does not implement the check.
fn unimplemented(answer: &Result<PrecheckResult, CoreError>) -> bool {
    matches!(
        answer,
        Ok(PrecheckResult::Unsupported) | Err(CoreError::ExecutorUnsupported { .. })
    )
}

/// Checks `executor` against what `def` declares, on `case`; returns every broken rule
/// (empty when the executor implements the definition). Calls `precheck` and
/// `capture_state` only: nothing is executed.
pub async fn check_definition(
    executor: &dyn Executor,
    def: &ActionDef,
    case: &ConformanceCase,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ctx = &case.ctx;
    let creds = &case.credentials;
    if ctx.action != def.name() {
        problems.push(format!(
            "the case is for action `{}`, the definition for `{}`",
            ctx.action,
            def.name()
        ));
        return problems;
    }
    // What the runner hands the executor: the params after validation, defaults applied.
    let params: Params = match def.validate_params(&ctx.params) {
        Ok(checked) => checked,
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "the case's params do not fit `{}`: {}",
                def.name(),
                errors.join("; ")
            ));
            ctx.params.clone()
        }
    };
    for precheck in def.prechecks().iter().filter(|p| !p.advisory()) {
        let answer = executor.precheck(ctx, precheck.name(), creds).await;
        if unimplemented(&answer) {
            problems.push(format!(
                "declared precheck `{}` is not implemented (`Unsupported`)",
                precheck.name()
            ));
        }
    }
    let object = match executor.capture_state(ctx, creds).await {
        Ok(object) => object,
        Err(e) => {
            problems.push(format!("capture_state failed: {e}"));
            return problems;
        }
    };
    // The before-state as the runner records it: each field by name, `null` if absent.
    let mut before = Params::new();
    for field in def.state_fields() {
        let value = field.path().resolve(&object, &params);
        if value.is_none() {
            problems.push(format!(
                "state field `{}` (`{}`) does not resolve in the captured state",
                field.name(),
                field.path()
            ));
        }
        before.insert(
            field.name().to_owned(),
            value.cloned().unwrap_or(Value::Null),
        );
    }
    if def.reversible() {
        for rp in def.rollback_params() {
            let filled = rp
                .source()
                .resolve(&params, &before)
                .is_some_and(|v| !v.is_null());
            if !filled {
                problems.push(format!(
                    "rollback param `{}` comes from `{}`, which the params and the captured state do not fill",
                    rp.name(),
                    rp.source()
                ));
            }
        }
    }
    problems
}

/// Runs [`check_definition`] and then the contract suite ([`check`]) on `case`, on a fresh
/// runtime, and panics with every broken rule.
///
/// # Panics
/// When the executor does not implement the definition or breaks the contract.
#[expect(
    clippy::panic,
    reason = "test support: a broken contract fails the test"
)]
pub fn assert_definition_conformance(
    executor: &dyn Executor,
    def: &ActionDef,
    case: &ConformanceCase,
) {
    let problems = run_blocking(async {
        // The definition checks read the state before the contract suite executes.
        let mut problems = check_definition(executor, def, case).await;
        problems.extend(check(executor, case).await);
        problems
    });
    if !problems.is_empty() {
        panic!(
            "executor `{}` does not conform to `{}`:\n- {}",
            executor.name(),
            def.name(),
            problems.join("\n- ")
        );
    }
}

#[cfg(test)]
mod tests;
