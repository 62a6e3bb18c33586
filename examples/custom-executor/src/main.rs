//! An integrator's custom executor, run through the agentsafe pipeline.
//!
//! `ReplicaBook` keeps deployment replica counts in memory: a stand-in for whatever
//! in-house system an integrator wants agents to act on. It implements
//! [`agentsafe_core::Executor`], passes the `agentsafe-testkit` conformance suite (see the
//! tests below), and runs through [`agentsafe_runner::Runner`]: the ticket is verified and
//! redeemed once, credentials are scoped and revoked, prechecks gate the run, before and
//! after state are recorded in the audit log.
//!
//! `cargo run -p agentsafe-example-custom-executor`

#![allow(
    clippy::print_stdout,
    reason = "an example program prints what it does"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use agentsafe_audit::{AuditConfig, AuditLog, SigningKey, SigningKeySource};
use agentsafe_core::executor::async_trait;
use agentsafe_core::{
    ActionContext, ActionSupport, Caller, Cancel, CoreError, Credentials, ExecutionReport,
    Executor, PrecheckResult, Request, Timestamp,
};
use agentsafe_pdp::Pdp;
use agentsafe_runner::{RunKind, Runner, SimulatedProvider};
use agentsafe_tickets::{
    KeySet, MemoryTicketStore, Signer, TicketConfig, TicketIssuer, TicketVerifier,
};
use serde_json::{Value, json};

/// Replica counts by target id, in memory.
#[derive(Debug, Default)]
pub struct ReplicaBook {
    replicas: Mutex<BTreeMap<String, i64>>,
}

impl ReplicaBook {
    fn get(&self, target: &str) -> Option<i64> {
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

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pdp = Pdp::load(
        &root.join("actions"),
        &root.join("policies"),
        &root.join("inventory.toml"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Keys, the redemption store and the audit log: in memory and a temporary folder here;
    // the `agentsafe` binary uses key files, SQLite and the configured log.
    let dir = tempfile::tempdir()?;
    let signer = Signer::generate();
    let trusted = KeySet::from_keys([signer.verifying_key()])?;
    let tickets = TicketConfig::default();
    let issuer = TicketIssuer::new(signer, &tickets)?;
    let verifier = TicketVerifier::new(trusted, &tickets);
    let store = MemoryTicketStore::new();
    let audit = AuditLog::open(
        &dir.path().join("audit.jsonl"),
        // A fixed key keeps the example self-contained; deployments load a key file kept
        // away from the log (`agentsafe keys generate`).
        SigningKeySource::Key(SigningKey::from_bytes(&[42; 32])),
        &AuditConfig::default(),
    )?;
    let credentials = SimulatedProvider::new();

    // 1. A decision, and its ticket.
    let decision = pdp.decide(&Request {
        action: "scale-deployment".into(),
        target: "staging/api-server".into(),
        caller: Caller {
            id: "example-agent".into(),
            roles: vec!["developer".into()],
            ..Caller::default()
        },
        params: json!({"replicas": 6})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..Request::default()
    });
    println!(
        "decision: {} ({})",
        decision.decision.label(),
        decision.reason
    );
    let ticket = issuer.issue(&decision, Timestamp::now())?.into_token();

    // 2. The custom executor, through the pipeline.
    let book = Arc::new(ReplicaBook::default());
    book.replicas
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert("staging/api-server".into(), 2);
    let runner = Runner::new(pdp.registry(), &verifier, &store, &audit, &credentials)
        .with_inventory(pdp.inventory());
    let report = runner.run_blocking(&ticket, book.clone(), &RunKind::Execution)?;
    println!(
        "run: {} ({}): {}",
        report.outcome, report.reason_code, report.message
    );
    println!(
        "state diff: {}",
        report.record.get("diff").unwrap_or(&Value::Null)
    );
    println!("credentials still live: {}", credentials.live());

    // 3. The same ticket again is refused: it executes at most once.
    let replay = runner.run_blocking(&ticket, book, &RunKind::Execution)?;
    println!("replay: {} ({})", replay.outcome, replay.reason_code);
    audit.close()?;
    Ok(())
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
