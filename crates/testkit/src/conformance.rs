//! The executor conformance suite: the written contract of
//! [`agentsafe_core::Executor`] as executable checks.
//!
//! Checked for one [`ConformanceCase`]:
//! * the name is a non-empty lowercase id (`[a-z0-9-]+`) and the case's action is supported;
//! * `capture_state` is repeatable and `precheck`, `capture_state` and `dry_run` never
//!   change what `capture_state` returns;
//! * `execute` with an already-cancelled handle acts on nothing and returns
//!   `ExecutorCancelled`;
//! * one `execute` succeeds;
//! * the credentials' secret never appears in the executor's `Debug` output, in an error
//!   message or in an execution report.
//!
//! [`crate::definition`] adds the checks that start from an action definition.

use std::collections::BTreeMap;
use std::future::Future;

use agentsafe_core::{
    ActionContext, Cancel, CoreError, Credentials, Executor, Params, Secret, Timestamp,
};
use serde_json::Value;

/// A canary the suite puts in the credentials and looks for everywhere else.
const CANARY: &str = "conformance-canary-5f3c9a";

/// One scenario to run the suite on.
#[derive(Debug, Clone)]
pub struct ConformanceCase {
    /// What is executed.
    pub ctx: ActionContext,
    /// The prechecks to call (they must not mutate).
    pub prechecks: Vec<String>,
    /// The credentials handed to the executor; the secret is a canary.
    pub credentials: Credentials,
}

impl ConformanceCase {
    /// A case for `action` on `target` with no params.
    pub fn new(action: &str, target: &str) -> ConformanceCase {
        ConformanceCase {
            ctx: ActionContext {
                action: action.to_owned(),
                target: target.to_owned(),
                target_type: None,
                attributes: BTreeMap::new(),
                params: Params::new(),
                decision_id: "0".repeat(32),
                ticket_nonce: "0".repeat(32),
            },
            prechecks: Vec::new(),
            credentials: Credentials {
                kind: "test".into(),
                scope: BTreeMap::new(),
                expires_at: Timestamp::now(),
                lease_id: "conformance".into(),
                secret: Secret::new(CANARY),
            },
        }
    }

    /// Sets the params.
    #[must_use]
    pub fn params(mut self, params: Value) -> Self {
        self.ctx.params = params.as_object().cloned().unwrap_or_default();
        self
    }

    /// Sets the target type and attributes, as the inventory would.
    #[must_use]
    pub fn target(mut self, target_type: &str, attributes: &[(&str, &str)]) -> Self {
        self.ctx.target_type = Some(target_type.to_owned());
        self.ctx.attributes = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self
    }

    /// Adds prechecks to call.
    #[must_use]
    pub fn prechecks(mut self, names: &[&str]) -> Self {
        self.prechecks = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }
}

/// Runs a future to completion on a fresh single-threaded runtime.
///
/// # Panics
/// When the runtime cannot start (a test cannot run without it).
#[expect(clippy::panic, reason = "test support: no runtime, no test")]
pub fn run_blocking<F: Future>(fut: F) -> F::Output {
    // I/O too: executors under test talk to real servers.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    }
}

fn leaks(text: &str) -> bool {
    text.contains(CANARY)
}

/// Runs the suite; returns every broken rule (empty when the executor conforms).
pub async fn check(executor: &dyn Executor, case: &ConformanceCase) -> Vec<String> {
    let mut problems = Vec::new();
    let ctx = &case.ctx;
    let creds = &case.credentials;
    let name = executor.name();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        problems.push(format!("name `{name}` is not a lowercase id"));
    }
    if !executor.supported_actions().supports(&ctx.action) {
        problems.push(format!("action `{}` is not supported", ctx.action));
        return problems;
    }
    if leaks(&format!("{executor:?}")) {
        problems.push("Debug output contains the credential secret".into());
    }
    let capture = |what: &'static str| async move {
        match executor.capture_state(ctx, creds).await {
            Ok(v) => Ok(v),
            Err(e) => Err(format!("capture_state ({what}) failed: {e}")),
        }
    };
    let first = match capture("first").await {
        Ok(v) => v,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    match capture("second").await {
        Ok(v) if v != first => problems.push("capture_state is not repeatable".into()),
        Ok(_) => {}
        Err(e) => problems.push(e),
    }
    for check in &case.prechecks {
        match executor.precheck(ctx, check, creds).await {
            Ok(r) => {
                if leaks(&format!("{r:?}")) {
                    problems.push(format!("precheck `{check}` result contains the secret"));
                }
            }
            Err(e) => {
                if leaks(&e.to_string()) {
                    problems.push(format!("precheck `{check}` error contains the secret"));
                }
            }
        }
        if let Ok(now) = capture("after a precheck").await
            && now != first
        {
            problems.push(format!("precheck `{check}` changed the state"));
        }
    }
    match executor.dry_run(ctx, creds).await {
        Ok(v) if leaks(&format!("{v:?}")) => {
            problems.push("dry_run output contains the secret".into())
        }
        Err(e) if leaks(&e.to_string()) => {
            problems.push("dry_run error contains the secret".into())
        }
        _ => {}
    }
    if let Ok(now) = capture("after dry_run").await
        && now != first
    {
        problems.push("dry_run changed the state".into());
    }
    let cancelled = Cancel::new();
    cancelled.cancel();
    match executor.execute(ctx, creds, &cancelled).await {
        Err(CoreError::ExecutorCancelled) => {}
        Ok(_) => problems.push("execute with a cancelled handle acted".into()),
        Err(e) => problems.push(format!(
            "execute with a cancelled handle returned `{e}` instead of ExecutorCancelled"
        )),
    }
    if let Ok(now) = capture("after a cancelled execute").await
        && now != first
    {
        problems.push("execute with a cancelled handle changed the state".into());
    }
    match executor.execute(ctx, creds, &Cancel::new()).await {
        Ok(report) => {
            if leaks(&format!("{report:?}")) {
                problems.push("the execution report contains the secret".into());
            }
        }
        Err(e) => problems.push(format!("execute failed: {e}")),
    }
    problems
}

/// Runs the suite on a fresh runtime and panics with every broken rule.
///
/// # Panics
/// When the executor breaks the contract.
#[expect(
    clippy::panic,
    reason = "test support: a broken contract fails the test"
)]
pub fn assert_conformance(executor: &dyn Executor, case: &ConformanceCase) {
    let problems = run_blocking(check(executor, case));
    if !problems.is_empty() {
        panic!(
            "executor `{}` breaks the contract:\n- {}",
            executor.name(),
            problems.join("\n- ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecuteBehaviour, MockExecutor};

    #[test]
    fn the_mock_conforms() {
        let mock = MockExecutor::new();
        assert_conformance(
            &mock,
            &ConformanceCase::new("scale-deployment", "t")
                .params(serde_json::json!({"replicas": 5}))
                .prechecks(&["deployment_exists"]),
        );
        assert_eq!(mock.object("t")["replicas"], 5);
        assert_eq!(mock.executions(), 2, "one cancelled call, one real");
    }

    #[test]
    fn a_failing_executor_is_reported() {
        let mock = MockExecutor::new().behaviour(ExecuteBehaviour::Fail);
        let problems = run_blocking(check(&mock, &ConformanceCase::new("a", "t")));
        assert!(
            problems.iter().any(|p| p.contains("execute failed")),
            "{problems:?}"
        );
        let mock = MockExecutor::new().only(&["b"]);
        let problems = run_blocking(check(&mock, &ConformanceCase::new("a", "t")));
        assert_eq!(problems, ["action `a` is not supported"]);
    }
}
