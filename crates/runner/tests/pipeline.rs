//! The execution pipeline against the mock and dry-run executors: conformance, prechecks
//! that block, and a panicking or hanging executor that still gets its credentials
//! revoked and its outcome recorded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentsafe_audit::{AuditConfig, AuditLog, SigningKey, SigningKeySource};
use agentsafe_core::{Caller, Credentials, Executor, Request, Timestamp};
use agentsafe_pdp::Pdp;
use agentsafe_runner::{
    CredentialProvider, CredentialRequest, DryRunExecutor, RunKind, RunOutcome, Runner,
    RunnerError, SimulatedProvider, Timeouts,
};
use agentsafe_testkit::{
    ConformanceCase, DryRunBehaviour, ExecuteBehaviour, MockExecutor, assert_conformance,
};
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{
    KeySet, MemoryTicketStore, Outcome, Signer, TicketConfig, TicketState, TicketStore as _,
    TicketVerifier,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    dir: tempfile::TempDir,
    pdp: Pdp,
    issuer: TicketIssuer,
    verifier: TicketVerifier,
    store: MemoryTicketStore,
    audit: AuditLog,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let pdp = Pdp::load(
        &root.join("actions"),
        &root.join("policies"),
        &root.join("inventory.toml"),
    )
    .unwrap();
    let signer = Signer::generate();
    let key = signer.verifying_key();
    let cfg = TicketConfig::default();
    let issuer = TicketIssuer::new(signer, &cfg).unwrap();
    let verifier = TicketVerifier::new(KeySet::from_keys([key]).unwrap(), &cfg);
    let audit = AuditLog::open(
        &dir.path().join("log").join("audit.jsonl"),
        SigningKeySource::Key(SigningKey::from_bytes(&[7; 32])),
        &AuditConfig::default(),
    )
    .unwrap();
    Fixture {
        dir,
        pdp,
        issuer,
        verifier,
        store: MemoryTicketStore::new(),
        audit,
    }
}

impl Fixture {
    fn ticket(&self, action: &str, target: &str, params: serde_json::Value) -> String {
        let request = Request {
            action: action.into(),
            target: target.into(),
            caller: Caller {
                id: "agent-1".into(),
                roles: vec!["developer".into()],
                ..Caller::default()
            },
            params: params.as_object().cloned().unwrap(),
            ..Request::default()
        };
        let d = self.pdp.decide(&request);
        assert!(d.is_allow(), "{d:?}");
        self.issuer
            .issue(&d, Timestamp::now())
            .unwrap()
            .into_token()
    }

    fn runner<'a>(&'a self, creds: &'a dyn CredentialProvider) -> Runner<'a> {
        Runner::new(
            self.pdp.registry(),
            self.pdp.inventory(),
            &self.verifier,
            &self.store,
            &self.audit,
            creds,
        )
        .with_timeouts(Timeouts {
            precheck: Duration::from_secs(5),
            capture: Duration::from_secs(5),
            execute: Duration::from_millis(200),
        })
    }

    fn scale(&self, replicas: i64) -> String {
        self.ticket(
            "scale-deployment",
            "staging/api-server",
            serde_json::json!({ "replicas": replicas }),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log").join("audit.jsonl")).unwrap()
    }
}

/// A provider whose secrets are a known canary, to prove they never leak.
#[derive(Debug, Default)]
struct Canary(SimulatedProvider);

const CANARY: &str = "canary-secret-91d2";

impl CredentialProvider for Canary {
    fn name(&self) -> &str {
        "canary"
    }
    fn issue(&self, request: &CredentialRequest) -> Result<Credentials, RunnerError> {
        let mut c = self.0.issue(request)?;
        c.secret = agentsafe_core::Secret::new(CANARY);
        Ok(c)
    }
    fn revoke(&self, credentials: &Credentials) -> Result<(), RunnerError> {
        self.0.revoke(credentials)
    }
}

fn nonce_of(report: &agentsafe_runner::RunReport, f: &Fixture) -> agentsafe_tickets::Nonce {
    let line = f
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("\"event\":\"execution\""))
        .unwrap()
        .to_owned();
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["body"]["reason_code"], report.reason_code.as_str());
    entry["links"]["ticket_nonce"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_dry_run_executor_conforms() {
    let f = fixture();
    let exec = DryRunExecutor::new(f.dir.path(), Arc::new(f.pdp.registry().clone()));
    assert_conformance(
        &exec,
        &ConformanceCase::new("scale-deployment", "staging/api-server")
            .target(
                "k8s-deployment",
                &[("namespace", "web"), ("name", "api-server")],
            )
            .params(serde_json::json!({"namespace": "web", "name": "api-server", "replicas": 5}))
            .prechecks(&["deployment_exists", "replicas_within_hpa_bounds"]),
    );
}

#[test]
fn the_dry_run_executor_conforms_on_every_catalogue_action() {
    let f = fixture();
    let exec = DryRunExecutor::new(f.dir.path(), Arc::new(f.pdp.registry().clone()));
    for def in f.pdp.registry().actions() {
        let mut params = serde_json::Map::new();
        for p in def.params() {
            let v = match p.param_type() {
                agentsafe_registry::ParamType::Integer => serde_json::json!(2),
                agentsafe_registry::ParamType::Boolean => serde_json::json!(false),
                _ => serde_json::json!("x1"),
            };
            params.insert(p.name().to_owned(), v);
        }
        let checks: Vec<&str> = def.prechecks().iter().map(|p| p.name()).collect();
        assert_conformance(
            &exec,
            &ConformanceCase::new(def.name(), &format!("t/{}", def.name()))
                .target(&def.target_types()[0], &[])
                .params(serde_json::Value::Object(params))
                .prechecks(&checks),
        );
    }
}

#[test]
fn a_run_executes_once_records_state_and_revokes_credentials() {
    let f = fixture();
    let creds = Canary::default();
    let exec = Arc::new(MockExecutor::new().with_object(
        "staging/api-server",
        serde_json::json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 3}}),
    ));
    let token = f.scale(5);
    let r = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert!(r.is_success());
    assert_eq!(exec.executions(), 1);
    assert_eq!(r.record.to_body()["before"]["replicas"], 3);
    assert_eq!((creds.0.live(), creds.0.revoked()), (0, 1));
    let again = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(again.outcome, RunOutcome::Refused);
    assert_eq!(again.reason_code.as_str(), "replayed");
    assert_eq!(exec.executions(), 1, "a replay executes nothing");
    let everything = format!("{}{:?}{:?}", f.log(), r, again);
    assert!(!everything.contains(CANARY), "a credential leaked");
}

/// A ticket for `staging/api-server` (cluster `staging-eu-1`) on an executor that acts in
/// `prod-eu-1` only: refused at the first call, recorded as a failed run with its own code,
/// nothing executed, the credentials revoked.
#[test]
fn a_ticket_for_another_cluster_stops_at_the_first_call() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(
        MockExecutor::new()
            .located("cluster", "prod-eu-1")
            .with_object(
                "staging/api-server",
                serde_json::json!({"spec": {"replicas": 3}}),
            ),
    );
    let token = f.scale(5);
    let r = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed, "{r:?}");
    assert_eq!(r.reason_code.as_str(), "wrong_location");
    assert!(!r.is_success());
    assert!(
        r.message.starts_with(
            "the executor refused the ticket's location at precheck `deployment_exists`, so nothing was executed"
        ) && r.message.contains("cluster `staging-eu-1`")
            && r.message.contains("`prod-eu-1`"),
        "{}",
        r.message
    );
    assert_eq!(
        (exec.prechecks_run(), exec.dry_runs(), exec.executions()),
        (1, 0, 0),
        "stopped at the first call"
    );
    let body = r.record.to_body();
    assert_eq!(body["executed"], false);
    assert_eq!(body["reason_code"], "wrong_location");
    assert_eq!(body["params"]["cluster"], "staging-eu-1", "{body}");
    assert_eq!(exec.object("staging/api-server")["spec"]["replicas"], 3);
    assert_eq!((creds.live(), creds.revoked()), (0, 1));
    // The refused ticket is spent: it cannot be run again elsewhere.
    let again = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(again.reason_code.as_str(), "replayed");

    // A preview meets the same refusal; on an executor of the ticket's cluster it passes.
    let token = f.scale(4);
    let prod = Arc::new(MockExecutor::new().located("cluster", "prod-eu-1"));
    let r = f
        .runner(&creds)
        .run_blocking(&token, prod, &RunKind::Preview)
        .unwrap();
    assert_eq!(r.reason_code.as_str(), "wrong_location", "{r:?}");
    let staging = Arc::new(MockExecutor::new().located("cluster", "staging-eu-1"));
    let r = f
        .runner(&creds)
        .run_blocking(&token, staging, &RunKind::Execution)
        .unwrap();
    assert_eq!(r.reason_code.as_str(), "executed", "{r:?}");
}

#[test]
fn the_backends_dry_run_is_the_last_gate_before_execute() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(
        MockExecutor::new().dry_run(DryRunBehaviour::Refuse("admission webhook said no".into())),
    );
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed, "{r:?}");
    assert_eq!(r.reason_code.as_str(), "dry_run_refused");
    assert!(
        r.message.contains("admission webhook said no"),
        "{}",
        r.message
    );
    assert_eq!(
        (exec.dry_runs(), exec.executions()),
        (1, 0),
        "refused: nothing executes"
    );
    let last = r.record.to_body()["prechecks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["name"].as_str(), last["result"].as_str()),
        (Some("server_dry_run"), Some("failed"))
    );
    assert_eq!((creds.live(), creds.revoked()), (0, 1));

    let exec = Arc::new(MockExecutor::new().dry_run(DryRunBehaviour::Accept));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(6), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert_eq!((exec.dry_runs(), exec.executions()), (1, 1));
    assert!(
        r.record.to_body()["prechecks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "server_dry_run" && c["result"] == "passed"),
        "{}",
        r.record.to_body()["prechecks"]
    );

    // A backend without a dry run: nothing recorded for it, the run goes on.
    let exec = Arc::new(MockExecutor::new());
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(7), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert!(
        !r.record.to_body()["prechecks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "server_dry_run")
    );
}

#[test]
fn a_preview_executes_nothing_and_leaves_the_ticket_redeemable_once() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(
        MockExecutor::new()
            .with_object(
                "staging/api-server",
                serde_json::json!({"spec": {"replicas": 3}}),
            )
            .dry_run(DryRunBehaviour::Accept),
    );
    let token = f.scale(5);
    let preview = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Preview)
        .unwrap();
    assert_eq!(preview.outcome, RunOutcome::Succeeded, "{preview:?}");
    assert_eq!(preview.reason_code.as_str(), "previewed");
    assert_eq!(preview.record.to_body()["kind"], "preview");
    assert_eq!(preview.record.to_body()["executed"], false);
    assert_eq!(preview.record.to_body()["before"]["replicas"], 3);
    assert_eq!(
        preview.record.to_body()["output"]["would_apply"]["replicas"],
        5
    );
    assert_eq!((exec.executions(), exec.dry_runs()), (0, 1));
    assert_eq!(
        (creds.live(), creds.revoked()),
        (0, 1),
        "credentials revoked after a preview too"
    );
    assert!(f.log().contains("\"event\":\"preview\""), "{}", f.log());

    // Previewing again is harmless; the real run still happens exactly once.
    let again = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Preview)
        .unwrap();
    assert_eq!(again.reason_code.as_str(), "previewed");
    let run = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(run.outcome, RunOutcome::Succeeded, "{run:?}");
    assert_eq!(exec.executions(), 1);

    // Once redeemed, there is nothing left to preview.
    let late = f
        .runner(&creds)
        .run_blocking(&token, exec.clone(), &RunKind::Preview)
        .unwrap();
    assert_eq!(
        (late.outcome, late.reason_code.as_str()),
        (RunOutcome::Refused, "replayed")
    );
    assert_eq!(exec.executions(), 1);
}

#[test]
fn a_refused_preview_says_why_and_still_executes_nothing() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec =
        Arc::new(MockExecutor::new().dry_run(DryRunBehaviour::Refuse("quota exceeded".into())));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec.clone(), &RunKind::Preview)
        .unwrap();
    assert_eq!(
        (r.outcome, r.reason_code.as_str()),
        (RunOutcome::Failed, "dry_run_refused")
    );
    assert!(r.message.contains("quota exceeded"), "{}", r.message);
    assert_eq!(exec.executions(), 0);
}

#[test]
fn an_object_that_does_not_exist_yet_is_captured_as_nulls_not_as_a_failure() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(MockExecutor::new().missing_is_not_found());
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert_eq!(exec.executions(), 1);
    let body = r.record.to_body();
    let before = body["before"].as_object().unwrap();
    assert!(
        !before.is_empty() && before.values().all(serde_json::Value::is_null),
        "{before:?}"
    );
    // After the execution the object exists, so the after-capture worked and said nothing.
    assert!(r.record.to_body()["after"].is_object(), "{:?}", r.record);
    assert!(!r.message.contains("cannot capture"), "{}", r.message);
}

#[test]
fn a_failing_precheck_stops_the_run_and_an_advisory_one_does_not() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec =
        Arc::new(MockExecutor::new().failing_precheck("deployment_exists", "no such deployment"));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert_eq!(r.reason_code.as_str(), "precheck_failed");
    assert!(r.message.contains("no such deployment"), "{}", r.message);
    assert_eq!(
        exec.executions(),
        0,
        "nothing executes after a failed precheck"
    );
    assert_eq!((creds.live(), creds.revoked()), (0, 1));
    let record = f.store.get(nonce_of(&r, &f)).unwrap().unwrap();
    assert_eq!(record.state, TicketState::Committed);
    assert_eq!(record.receipt.unwrap().outcome, Outcome::Failed);

    let exec = Arc::new(
        MockExecutor::new().failing_precheck("resource_quota_allows_replicas", "quota tight"),
    );
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(4), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert_eq!(exec.executions(), 1);

    let exec = Arc::new(MockExecutor::new().unsupported_precheck("deployment_exists"));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(6), exec.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(
        r.reason_code.as_str(),
        "precheck_failed",
        "an unknown check fails closed"
    );
    assert_eq!(exec.executions(), 0);
}

#[test]
fn a_panicking_executor_still_revokes_and_records() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(MockExecutor::new().behaviour(ExecuteBehaviour::Panic));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec, &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Unknown);
    assert_eq!(r.reason_code.as_str(), "executor_panicked");
    assert!(r.audit_seq.is_some(), "the outcome is recorded");
    assert_eq!((creds.live(), creds.revoked()), (0, 1));
    let record = f.store.get(nonce_of(&r, &f)).unwrap().unwrap();
    assert_eq!(record.receipt.unwrap().outcome, Outcome::Unknown);
}

#[test]
fn a_hanging_executor_times_out_is_cancelled_and_still_revokes() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec = Arc::new(MockExecutor::new().behaviour(ExecuteBehaviour::Hang));
    let r = f
        .runner(&creds)
        .run_blocking(&f.scale(5), exec, &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Unknown);
    assert_eq!(r.reason_code.as_str(), "timed_out");
    assert!(r.audit_seq.is_some());
    assert_eq!((creds.live(), creds.revoked()), (0, 1));
}

#[test]
fn an_unsupported_action_is_refused_before_redemption() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let token = f.scale(5);
    let only = Arc::new(MockExecutor::new().only(&["restart-deployment"]));
    let r = f
        .runner(&creds)
        .run_blocking(&token, only.clone(), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.reason_code.as_str(), "unsupported_action");
    assert_eq!(creds.revoked(), 0, "no credential was issued");
    // The ticket was not burnt: a capable executor can still run it.
    let r = f
        .runner(&creds)
        .run_blocking(&token, Arc::new(MockExecutor::new()), &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
}

#[test]
fn a_forged_ticket_is_refused_and_recorded() {
    let f = fixture();
    let creds = SimulatedProvider::new();
    let exec: Arc<dyn Executor> = Arc::new(MockExecutor::new());
    let r = f
        .runner(&creds)
        .run_blocking("not.a.ticket", exec, &RunKind::Execution)
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Refused);
    assert_eq!(r.reason_code.as_str(), "invalid_ticket");
    assert!(r.audit_seq.is_some());
}

#[test]
fn the_harness_runs_an_executor_through_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let pdp = Pdp::load(
        &root.join("actions"),
        &root.join("policies"),
        &root.join("inventory.toml"),
    )
    .unwrap();
    let harness = agentsafe_runner::Harness::new(pdp, dir.path()).unwrap();
    let request = Request {
        action: "scale-deployment".into(),
        target: "staging/api-server".into(),
        caller: Caller {
            id: "agent-1".into(),
            roles: vec!["developer".into()],
            ..Caller::default()
        },
        params: serde_json::json!({"replicas": 4})
            .as_object()
            .cloned()
            .unwrap(),
        ..Request::default()
    };
    let exec = Arc::new(MockExecutor::new());
    let ticket = harness.ticket(&request).unwrap();
    let first = harness
        .run_ticket(exec.clone(), &ticket, &RunKind::Execution)
        .unwrap();
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{first:?}");
    let again = harness
        .run_ticket(exec.clone(), &ticket, &RunKind::Execution)
        .unwrap();
    assert_eq!(again.reason_code.as_str(), "replayed");
    assert_eq!(exec.executions(), 1, "exactly once");
    assert_eq!(harness.live_credentials(), 0);
    let denied = Request {
        target: "prod/payments".into(),
        ..request
    };
    let e = harness.run(exec, &denied, &RunKind::Execution).unwrap_err();
    assert!(e.to_string().contains("does not allow"), "{e}");
}
