//! End to end through the real binary: check → ticket → run (dry-run) → audit verify →
//! rollback plan → rollback check → rollback run, plus refusals and a blocking precheck.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use agentsafe_e2e::{Run, run_in};

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["init", "."]);
    assert_eq!(r.code, 0, "{r:?}");
    dir
}

const DEV: &[&str] = &["--caller", "agent-1", "--role", "developer"];

/// An ALLOW for scaling staging/api-server: (ticket, decision id).
fn allow_scale(dir: &Path, replicas: u32) -> (String, String) {
    let params = format!(r#"{{"replicas":{replicas}}}"#);
    let mut args = vec![
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--params",
        &params,
        "--output",
        "json",
    ];
    args.extend_from_slice(DEV);
    let r = run_in(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    let d = r.json();
    (
        d["ticket"].as_str().unwrap().to_owned(),
        d["decision_id"].as_str().unwrap().to_owned(),
    )
}

fn run_json(dir: &Path, args: &[&str]) -> (Run, serde_json::Value) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let r = run_in(dir, &all);
    let v = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r, v)
}

#[test]
fn check_run_verify_rollback_plan_check_and_run() {
    let p = project();
    let dir = p.path();
    let (ticket, decision) = allow_scale(dir, 5);

    let (r, report) = run_json(dir, &["run", &ticket, "--executor", "dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(report["record"]["before"]["replicas"], 3);
    assert_eq!(report["record"]["after"]["replicas"], 5);
    assert_eq!(report["record"]["diff"]["replicas"]["after"], 5);
    assert!(report["record"]["prechecks"].as_array().unwrap().len() >= 2);

    // The same ticket again, as a second process would present it.
    let (r, again) = run_json(dir, &["run", &ticket]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(again["outcome"], "refused");
    assert_eq!(again["reason_code"], "replayed");

    let r = run_in(dir, &["audit", "verify"]);
    assert_eq!(r.code, 0, "{r:?}");
    let log = std::fs::read_to_string(dir.join(".agentsafe-test-state/audit.jsonl")).unwrap();
    let executions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "execution")
        .collect();
    assert_eq!(executions.len(), 2, "the run and the refused replay");
    assert_eq!(executions[0]["links"]["decision_id"], decision.as_str());
    assert!(executions[0]["links"]["ticket_nonce"].is_string());
    assert!(
        !log.contains("simulated-"),
        "a credential reached the audit log"
    );

    let (r, plan) = run_json(dir, &["rollback", "plan", &decision]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(plan["action"], "scale-deployment");
    assert_eq!(plan["target"], "staging/api-server");
    assert_eq!(plan["params"]["replicas"], 3);

    let mut args = vec!["rollback", "check", decision.as_str()];
    args.extend_from_slice(DEV);
    let (r, checked) = run_json(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(checked["decision"], "allow");
    assert_eq!(checked["params"]["replicas"], 3);
    assert!(
        checked["audit_seq"].is_u64(),
        "the rollback decision is audited"
    );

    let mut args = vec!["rollback", "run", decision.as_str()];
    args.extend_from_slice(DEV);
    let (r, ran) = run_json(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(ran["run"]["record"]["kind"], "rollback");
    assert_eq!(ran["run"]["record"]["rolls_back"], decision.as_str());
    assert_eq!(ran["run"]["record"]["after"]["replicas"], 3);
    let r = run_in(dir, &["audit", "verify"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn a_failing_precheck_stops_the_run_and_burns_the_ticket() {
    let p = project();
    let dir = p.path();
    let state = dir.join(".agentsafe-test-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("dry-run-world.json"),
        r#"{"objects": {}, "failing_prechecks": {"staging/api-server": {"deployment_exists": "deleted by someone"}}}"#,
    )
    .unwrap();
    let (ticket, decision) = allow_scale(dir, 5);
    let (r, report) = run_json(dir, &["run", &ticket]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["reason_code"], "precheck_failed");
    assert_eq!(report["record"]["executed"], false);
    let world = std::fs::read_to_string(state.join("dry-run-world.json")).unwrap();
    assert!(!world.contains("replicas"), "nothing was executed: {world}");
    let (r, again) = run_json(dir, &["run", &ticket]);
    assert_eq!(r.code, 1);
    assert_eq!(again["reason_code"], "replayed");
    let r = run_in(dir, &["rollback", "plan", &decision]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("never executed"), "{}", r.stderr);
}

#[test]
fn bad_tickets_and_missing_executors_exit_1_with_a_clear_message() {
    let p = project();
    let dir = p.path();
    let (r, report) = run_json(dir, &["run", "eyJhbGciOiJub25lIn0.e30.x"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["reason_code"], "invalid_ticket");
    let (ticket, _) = allow_scale(dir, 4);
    let r = run_in(dir, &["run", &ticket, "--executor", "nope"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("unknown executor `nope`") && r.stderr.contains("`k8s`"),
        "{}",
        r.stderr
    );
    // A backend whose configuration cannot be read: a clear error naming it, before
    // anything is redeemed.
    let cfg = std::fs::read_to_string(dir.join("agentsafe.toml")).unwrap();
    std::fs::write(
        dir.join("agentsafe.toml"),
        format!("{cfg}\n[executors.k8s]\nkubeconfig = \"no-such-kubeconfig\"\n"),
    )
    .unwrap();
    let r = run_in(dir, &["run", &ticket, "--executor", "k8s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("[executors.k8s]") && r.stderr.contains("no-such-kubeconfig"),
        "{}",
        r.stderr
    );
    // The ticket was not touched by the refusals: it still runs.
    let r = run_in(dir, &["run", &ticket]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("SUCCEEDED"), "{}", r.stdout);
}

#[test]
fn the_demo_runs_a_ticket_refuses_its_replay_and_plans_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["demo"]);
    assert_eq!(r.code, 0, "{r:?}");
    for needle in [
        "→ SUCCEEDED  (executed)",
        "replicas 3 → 4",
        "→ replay refused: already redeemed",
        "→ scale-deployment on staging/api-server with {\"cluster\":\"staging-eu-1\",\"name\":\"api-server\",\"namespace\":\"web\",\"replicas\":3}",
        "Every step behaved as designed.",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing `{needle}` in:\n{}",
            r.stdout
        );
    }
}

#[test]
fn sensitive_params_never_reach_the_audit_log_through_check_and_run() {
    let p = project();
    let secret = "hunter2-do-not-log";
    let params = format!(r#"{{"payload": {{"api_key": "{secret}"}}}}"#);
    let check = run_in(
        p.path(),
        &[
            "check",
            "lambda-invoke-function",
            "--target",
            "staging/thumbnailer",
            "--caller",
            "agent-1",
            "--role",
            "developer",
            "--params",
            &params,
            "--output",
            "json",
        ],
    );
    assert_eq!(check.code, 0, "{check:?}");
    let ticket = check.json()["ticket"]
        .as_str()
        .expect("an ALLOW has a ticket")
        .to_owned();
    let ran = run_in(
        p.path(),
        &["run", &ticket, "--executor", "dry-run", "--output", "json"],
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
        "the run's output shows the secret: {ran:?}"
    );
    let log = std::fs::read_to_string(p.path().join(".agentsafe-test-state/audit.jsonl")).unwrap();
    assert!(
        log.contains("\"event\":\"decision\"") && log.contains("\"event\":\"execution\""),
        "{log}"
    );
    assert!(
        !log.contains(secret),
        "the audit log holds the secret:\n{log}"
    );
    // Redacted, not dropped: the record keeps a keyed HMAC of the value.
    assert!(log.contains("hmac-sha256:"), "{log}");
}
