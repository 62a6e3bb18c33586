//! An integrator's custom executor: `ReplicaBook` keeps deployment replica counts in
//! memory, a stand-in for whatever in-house system an integrator wants agents to act on.
//!
//! It implements [`agentsafe_core::Executor`] and passes the `agentsafe-testkit`
//! conformance suite (see the tests below). Two ways to use it:
//!
//! * `src/main.rs`: in-process, deciding through the gate ([`agentsafe_gate::Gate`]:
//!   identity, policy, limits, ticket, audit record) and running through
//!   [`agentsafe_runner::Runner`]. `cargo run -p agentsafe-example-custom-executor`.
//! * `src/bin/agentsafe-replica-book.rs`: the whole `agentsafe` command line with
//!   `--executor replica-book` added, in ten lines (`agentsafe_cli::main_with`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use agentsafe_core::executor::async_trait;
use agentsafe_core::{
    ActionContext, ActionSupport, Cancel, CoreError, Credentials, ExecutionReport, Executor,
    PrecheckResult,
};
use serde_json::{Value, json};

/// Replica counts by target id, in memory.
#[derive(Debug, Default)]
pub struct ReplicaBook {
    replicas: Mutex<BTreeMap<String, i64>>,
}

impl ReplicaBook {
    /// Sets the replica count of `target`.
    pub fn set(&self, target: &str, replicas: i64) {
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_owned(), replicas);
    }

    /// The replica count of `target`.
    pub fn get(&self, target: &str) -> Option<i64> {
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
            .copied()
    }
}

#[async_trait]
impl Executor for ReplicaBook {
    fn name(&self) -> &str {
        "replica-book"
    }

    fn supported_actions(&self) -> ActionSupport {
        ActionSupport::Only(vec!["scale-deployment".into()])
    }

    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        _credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        Ok(match check {
            "deployment_exists" if self.get(&ctx.target).is_some() => {
                PrecheckResult::Passed(format!("`{}` is in the book", ctx.target))
            }
            "deployment_exists" => {
                PrecheckResult::Failed(format!("`{}` is not in the book", ctx.target))
            }
            "replicas_within_hpa_bounds" => {
                PrecheckResult::Passed("the book has no autoscalers".into())
            }
            _ => PrecheckResult::Unsupported,
        })
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        _credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        // Shaped like the Deployment object the catalogue's state paths point into.
        let replicas = self
            .get(&ctx.target)
            .ok_or_else(|| CoreError::ExecutorNotFound(format!("deployment `{}`", ctx.target)))?;
        Ok(
            json!({"spec": {"replicas": replicas}, "status": {"readyReplicas": replicas, "availableReplicas": replicas}}),
        )
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        if cancel.is_cancelled() {
            return Err(CoreError::ExecutorCancelled);
        }
        // A real backend would authenticate with `credentials.secret.expose()`, limited to
        // `credentials.scope` (here: namespace `web`, resource `api-server`).
        let _ = &credentials.scope;
        let replicas = ctx
            .params
            .get("replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| CoreError::ExecutorBackend {
                executor: "replica-book".into(),
                message: "param `replicas` is missing".into(),
            })?;
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ctx.target.clone(), replicas);
        Ok(ExecutionReport {
            summary: format!("replica-book: {} now has {replicas} replicas", ctx.target),
            output: Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentsafe_testkit::{ConformanceCase, assert_conformance};

    #[test]
    fn replica_book_passes_the_conformance_suite() {
        let book = ReplicaBook::default();
        book.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("staging/api-server".into(), 3);
        assert_conformance(
            &book,
            &ConformanceCase::new("scale-deployment", "staging/api-server")
                .params(json!({"replicas": 4}))
                .prechecks(&["deployment_exists", "replicas_within_hpa_bounds"]),
        );
        assert_eq!(book.get("staging/api-server"), Some(4));
    }
}
