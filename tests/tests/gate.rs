//! End-to-end tests of the decision gate: identity tokens, tickets and the audit record
//! around every decision, and that each of them fails closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use agentsafe_e2e::{Run, run_in, run_in_project_state};

/// A scaffolded project with keys, in a temporary folder.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["init", "."]);
    assert_eq!(r.code, 0, "{r:?}");
    dir
}

fn set_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("agentsafe.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in agentsafe.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// `check` of a routine staging change (ALLOW for a developer), as JSON.
const SCALE_STAGING: [&str; 8] = [
    "check",
    "scale-deployment",
    "--target",
    "staging/api-server",
    "--params",
    r#"{"replicas":3}"#,
    "--output",
    "json",
];

/// `SCALE_STAGING` by the caller the flags in `who` name.
fn scale_staging_args<'a>(who: &[&'a str]) -> Vec<&'a str> {
    let mut args = SCALE_STAGING.to_vec();
    args.extend_from_slice(who);
    args
}

fn scale_staging(dir: &Path, who: &[&str]) -> Run {
    run_in(dir, &scale_staging_args(who))
}

fn token(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "issue"];
    all.extend_from_slice(args);
    let r = run_in(dir, &all);
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout.trim().to_owned()
}

#[test]
fn an_allow_carries_a_ticket_that_verifies_for_exactly_that_action_and_target() {
    let p = project();
    let r = scale_staging(p.path(), &["--caller", "agent-1", "--role", "developer"]);
    assert_eq!(r.code, 0, "{r:?}");
    let d = r.json();
    let ticket = d["ticket"].as_str().expect("an ALLOW has a ticket");
    assert!(d["audit_seq"].is_u64(), "{d}");
    let ok = run_in(
        p.path(),
        &[
            "ticket",
            "verify",
            ticket,
            "--action",
            "scale-deployment",
            "--target",
            "staging/api-server",
        ],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    let wrong = run_in(
        p.path(),
        &[
            "ticket",
            "verify",
            ticket,
            "--action",
            "scale-deployment",
            "--target",
            "prod/payments",
            "--output",
            "json",
        ],
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stdout.contains("target_mismatch"), "{}", wrong.stdout);
    // A DENY has no ticket.
    let deny = scale_staging(p.path(), &["--caller", "agent-1", "--role", "nobody"]);
    assert_eq!(deny.code, 3);
    assert!(deny.json().get("ticket").is_none());
}

#[test]
fn tokens_authenticate_and_invalid_tokens_are_denied_never_downgraded() {
    let p = project();
    let t = token(
        p.path(),
        &["--agent", "agent-7", "--role", "developer", "--ttl", "10m"],
    );
    let r = scale_staging(p.path(), &["--token", &t]);
    assert_eq!(r.code, 0, "{r:?}");
    let d = r.json();
    assert_eq!(d["caller"]["id"], "agent-7");
    assert_eq!(d["caller"]["authenticated"], true);

    // A tampered token is DENY invalid_identity, not a plain caller id.
    let mut bad = t.clone();
    bad.replace_range(bad.len() - 4.., "AAAA");
    let r = scale_staging(p.path(), &["--token", &bad]);
    assert_eq!(r.code, 3, "{r:?}");
    let d = r.json();
    assert_eq!(d["reason_code"], "invalid_identity");
    assert_eq!(d["caller"]["authenticated"], false);
    assert!(d["audit_seq"].is_u64(), "the refusal is recorded too: {d}");

    // A token from another issuer's key is refused.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(run_in(other.path(), &["init", "."]).code, 0);
    let foreign = token(other.path(), &["--agent", "agent-7", "--role", "developer"]);
    let r = scale_staging(p.path(), &["--token", &foreign]);
    assert_eq!(r.json()["reason_code"], "invalid_identity");
}

#[test]
fn plain_caller_ids_need_explicit_configuration() {
    let p = project();
    set_config(
        p.path(),
        "allow_unauthenticated = true",
        "allow_unauthenticated = false",
    );
    let r = scale_staging(p.path(), &["--caller", "agent-1", "--role", "developer"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["reason_code"], "invalid_identity");
}

#[test]
fn delegation_depth_comes_from_configuration() {
    let p = project();
    set_config(
        p.path(),
        "max_delegation_depth = 3",
        "max_delegation_depth = 1",
    );
    let root = token(
        p.path(),
        &[
            "--agent",
            "orchestrator",
            "--role",
            "developer",
            "--ttl",
            "30m",
        ],
    );
    let child = run_in(
        p.path(),
        &[
            "token",
            "delegate",
            &root,
            "--agent",
            "worker",
            "--role",
            "developer",
            "--ttl",
            "10m",
        ],
    );
    assert_eq!(child.code, 0, "{child:?}");
    let child = child.stdout.trim().to_owned();
    let r = scale_staging(p.path(), &["--token", &child]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["caller"]["delegation_chain"][0], "orchestrator");
    let grandchild = run_in(
        p.path(),
        &[
            "token",
            "delegate",
            &child,
            "--agent",
            "helper",
            "--role",
            "developer",
            "--ttl",
            "5m",
        ],
    );
    assert_ne!(
        grandchild.code, 0,
        "depth 2 > 1 must be refused when delegating: {grandchild:?}"
    );
    // Widening the roles is refused.
    let wider = run_in(
        p.path(),
        &[
            "token", "delegate", &root, "--agent", "worker", "--role", "sre",
        ],
    );
    assert_ne!(wider.code, 0, "{wider:?}");
}

#[test]
fn an_unwritable_audit_log_turns_every_decision_into_deny() {
    let p = project();
    // The state folder is a regular file: nothing can be written below it (also as root).
    std::fs::write(p.path().join("blocked"), "not a folder").unwrap();
    set_config(
        p.path(),
        "state_dir = \".agentsafe\"",
        "state_dir = \"blocked\"",
    );
    let out = run_in_project_state(
        p.path(),
        &scale_staging_args(&["--caller", "a", "--role", "developer"]),
    );
    assert_eq!(out.code, 3, "{out:?}");
    let d = out.json();
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reason_code"], "audit_unavailable");
    assert!(d.get("ticket").is_none(), "no ticket without a record: {d}");
    assert!(d["diagnostics"].to_string().contains("was ALLOW"), "{d}");
}

#[test]
fn on_audit_failure_allow_is_explicit_and_counted() {
    let p = project();
    // `/dev/full` accepts the open and the lock but fails every write (ENOSPC), while the
    // folder beside it stays writable for the failure counters.
    let state = p.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink("/dev/full", state.join("audit.jsonl")).unwrap();
    set_config(
        p.path(),
        "state_dir = \".agentsafe\"",
        "state_dir = \"state\"",
    );
    let args = scale_staging_args(&["--caller", "a", "--role", "developer"]);
    let denied = run_in_project_state(p.path(), &args);
    assert_eq!(denied.code, 3, "fail closed by default: {denied:?}");
    assert_eq!(denied.json()["reason_code"], "audit_unavailable");

    set_config(
        p.path(),
        "on_audit_failure = \"deny\"",
        "on_audit_failure = \"allow\"",
    );
    let allowed = run_in_project_state(p.path(), &args);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    let d = allowed.json();
    assert!(
        d["diagnostics"]
            .to_string()
            .contains("not recorded in the audit log"),
        "{d}"
    );
    // Once the disk is back, `audit stats` shows both failures.
    std::fs::remove_file(state.join("audit.jsonl")).unwrap();
    std::fs::write(state.join("audit.jsonl"), "").unwrap();
    let stats = run_in_project_state(p.path(), &["audit", "stats", "--output", "json"]);
    assert!(
        stats.stdout.contains("\"failures\": 2") || stats.stdout.contains("\"failures\":2"),
        "{stats:?}"
    );
}

#[test]
fn every_decision_is_in_a_log_that_verifies() {
    let p = project();
    for role in ["developer", "nobody", "sre"] {
        let _ = scale_staging(p.path(), &["--caller", "agent-1", "--role", role]);
    }
    let _ = run_in(
        p.path(),
        &[
            "check",
            "drain-node",
            "--target",
            "staging/node-1",
            "--caller",
            "a",
            "--role",
            "sre",
        ],
    );
    let v = run_in(p.path(), &["audit", "verify", "--output", "json"]);
    assert_eq!(v.code, 0, "{v:?}");
    let shown = run_in(p.path(), &["audit", "show", "--output", "json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let decisions = shown.stdout.matches("\"decision\"").count();
    assert!(decisions >= 4, "{}", shown.stdout);
}

#[test]
fn each_configuration_in_force_is_recorded_once_before_its_decisions() {
    let p = project();
    let count = |dir: &Path| {
        let shown = run_in(
            dir,
            &[
                "audit",
                "show",
                "--event",
                "config_loaded",
                "--output",
                "json",
            ],
        );
        assert_eq!(shown.code, 0, "{shown:?}");
        shown.stdout.matches("\"policy_hash\"").count()
    };
    let _ = scale_staging(p.path(), &["--caller", "agent-1", "--role", "developer"]);
    let _ = scale_staging(p.path(), &["--caller", "agent-2", "--role", "developer"]);
    assert_eq!(count(p.path()), 1);
    // A changed policy file is a new configuration: recorded before the next decision.
    let path = p.path().join("policies/10-read-only.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "reading a secret needs approval",
            "reading a secret needs an approval",
        ),
    )
    .unwrap();
    let _ = scale_staging(p.path(), &["--caller", "agent-1", "--role", "developer"]);
    assert_eq!(count(p.path()), 2);
    assert_eq!(run_in(p.path(), &["audit", "verify"]).code, 0);
}
