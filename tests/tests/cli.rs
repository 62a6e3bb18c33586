//! End-to-end tests of the decision commands: the real `agentsafe` binary on the shipped
//! example and on scaffolded projects.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use agentsafe_e2e::{run, run_in};

#[test]
fn check_exit_codes_follow_the_decision() {
    let allow = run(&[
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--caller",
        "agent-1",
        "--role",
        "developer",
        "--params",
        r#"{"replicas":3}"#,
    ]);
    assert_eq!(allow.code, 0, "{allow:?}");
    assert!(allow.stdout.starts_with("ALLOW"), "{}", allow.stdout);

    let deny = run(&[
        "check",
        "scale-deployment",
        "--target",
        "prod/payments",
        "--caller",
        "agent-1",
        "--role",
        "sre",
        "--params",
        r#"{"replicas":3}"#,
    ]);
    assert_eq!(deny.code, 3, "{deny:?}");

    let approval = run(&[
        "check",
        "drain-node",
        "--target",
        "staging/node-1",
        "--caller",
        "agent-1",
        "--role",
        "sre",
    ]);
    assert_eq!(approval.code, 4, "{approval:?}");
}

#[test]
fn check_json_is_the_decision_value() {
    let r = run(&[
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--caller",
        "agent-1",
        "--role",
        "developer",
        "--params",
        r#"{"replicas":3}"#,
        "--ticket-id",
        "CHG-9",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let d = r.json();
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["reason_code"], "rule_matched");
    assert_eq!(d["rule_id"], "staging-routine-changes");
    assert_eq!(d["params"]["namespace"], "web", "bound from the inventory");
    assert_eq!(d["params"]["name"], "api-server");
    assert_eq!(d["target"]["id"], "staging/api-server");
    assert_eq!(d["caller"]["authenticated"], false);
    assert_eq!(d["action_risk"], "medium");
    assert_eq!(d["effective_risk"], "medium");
    assert_eq!(d["change_ticket"], "CHG-9");
    assert_eq!(d["decision_id"].as_str().map(str::len), Some(32));
    assert_eq!(d["policy_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn trace_ids_are_checked_and_recorded() {
    let args = |t: &'static str| {
        vec![
            "check",
            "rollout-status",
            "--target",
            "staging/api-server",
            "--caller",
            "a",
            "--role",
            "developer",
            "--output",
            "json",
            "--trace-id",
            t,
        ]
    };
    let r = run(&args(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(run(&args("not-a-trace")).code, 2);
    assert_eq!(run(&args("00000000000000000000000000000000")).code, 2);
}

#[test]
fn the_policy_judges_what_the_executor_will_act_on() {
    // agent-safe judged the target while the executor acted on unrelated params.
    let r = run(&[
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--caller",
        "a",
        "--role",
        "developer",
        "--params",
        r#"{"replicas":3,"namespace":"payments"}"#,
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 3);
    assert_eq!(r.json()["reason_code"], "param_target_mismatch");
}

#[test]
fn unknown_targets_keep_their_id_and_are_critical() {
    let r = run(&[
        "check",
        "rollout-status",
        "--target",
        "prod/ghost",
        "--caller",
        "a",
        "--role",
        "sre",
        "--params",
        r#"{"namespace":"x","name":"y"}"#,
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    let d = r.json();
    assert_eq!(d["target"]["id"], "prod/ghost");
    assert_eq!(d["target"]["known"], false);
    assert_eq!(d["target"]["sensitivity"], "critical");
    assert_eq!(d["rule_id"], "deny-unknown-targets");
}

#[test]
fn bad_params_json_is_an_error_naming_the_flag() {
    let r = run(&[
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--caller",
        "a",
        "--params",
        "{replicas: 3}",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("--params: invalid JSON at line 1, column 2"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "check",
        "scale-deployment",
        "--target",
        "staging/api-server",
        "--caller",
        "a",
        "--params",
        "[1]",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("expected a JSON object"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["check"]).code, 2);
    assert_eq!(run(&["no-such-command"]).code, 2);
    assert_eq!(run(&["--help"]).code, 0);
}

#[test]
fn validate_and_test_pass_on_the_shipped_example() {
    let v = run(&["validate"]);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains("ok: 33 actions"), "{}", v.stdout);
    assert!(
        !v.stdout.contains("warning:"),
        "the shipped policies have no dead rules: {}",
        v.stdout
    );
    let t = run(&["test"]);
    assert_eq!(t.code, 0, "{t:?}");
    assert!(t.stdout.contains(" passed, 0 failed"), "{}", t.stdout);
    assert!(
        t.stdout.contains("coverage: 17/17 rules exercised"),
        "{}",
        t.stdout
    );
}

#[test]
fn list_and_show_actions() {
    let all = run(&["list-actions", "--output", "json"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(33));
    let critical = run(&["list-actions", "--risk", "critical", "--output", "json"]).json();
    let names: Vec<&str> = critical
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"drain-node"));
    let aws = run(&["list-actions", "--tag", "aws"]);
    assert!(aws.stdout.contains("13 actions"), "{}", aws.stdout);
    let show = run(&["show-action", "exec-pod", "--output", "json"]).json();
    assert_eq!(show["name"], "exec-pod");
    let missing = run(&["show-action", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("unknown action `nope`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn init_scaffolds_a_working_project_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let r = run_in(dir.path(), &["init", project.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    for path in [
        "actions/scale-deployment.toml",
        "policies/00-guardrails.toml",
        "policies/tests/baseline.toml",
        "inventory.toml",
        "agentsafe.toml",
    ] {
        assert!(project.join(path).is_file(), "{path} missing");
    }
    assert_eq!(run_in(&project, &["validate"]).code, 0);
    let t = run_in(&project, &["test"]);
    assert_eq!(t.code, 0, "{t:?}");
    let again = run_in(dir.path(), &["init", project.to_str().unwrap()]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn a_policy_typo_is_an_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(run_in(p, &["init", "."]).code, 0);
    std::fs::write(
        p.join("policies/99-typo.toml"),
        "[[rules]]\nid = \"x\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\nmatch.callers.rolse = [\"sre\"]\n",
    )
    .unwrap();
    let r = run_in(p, &["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("99-typo.toml:6:"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown field `rolse`"), "{}", r.stderr);
    // A decision with an unreadable policy set is a refusal, never an ALLOW.
    let c = run_in(
        p,
        &[
            "check",
            "scale-deployment",
            "--target",
            "staging/api-server",
            "--caller",
            "a",
            "--role",
            "developer",
            "--params",
            r#"{"replicas":1}"#,
        ],
    );
    assert_eq!(c.code, 1, "{c:?}");
}

#[test]
fn validate_warns_about_rules_that_never_fire() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(run_in(p, &["init", "."]).code, 0);
    std::fs::write(
        p.join("policies/99-dead.toml"),
        "[[rules]]\nid = \"dead\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\nmatch.targets.known = false\n\n[[rules]]\nid = \"no-such-action\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\nmatch.actions = [\"scale-deploymnet\"]\n",
    )
    .unwrap();
    let r = run_in(p, &["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("rule `dead`: can never fire: rule `deny-unknown-targets`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("rule `no-such-action`: matches no action in the registry"),
        "{}",
        r.stdout
    );
    assert_eq!(run_in(p, &["validate", "--deny-warnings"]).code, 1);
}

#[test]
fn policy_test_failures_and_empty_runs_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(run_in(p, &["init", "."]).code, 0);
    std::fs::write(
        p.join("wrong.toml"),
        "[[case]]\nname = \"expects the wrong thing\"\naction = \"drain-node\"\ntarget = \"staging/node-1\"\ncaller = { id = \"a\", roles = [\"sre\"] }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let r = run_in(p, &["test", "wrong.toml"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("FAIL  expects the wrong thing"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("expected ALLOW, got REQUIRE_APPROVAL"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("0 passed, 1 failed"), "{}", r.stdout);
    assert!(r.stdout.contains("not exercised: "), "{}", r.stdout);
    std::fs::write(p.join("empty.toml"), "").unwrap();
    let e = run_in(p, &["test", "empty.toml"]);
    assert_eq!(e.code, 1, "{e:?}");
}

#[test]
fn plans_decide_every_step_and_exit_with_the_most_restrictive() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(run_in(p, &["init", "."]).code, 0);
    std::fs::write(
        p.join("plan.toml"),
        "caller = { id = \"agent-1\", roles = [\"sre\"] }\n\n[[steps]]\naction = \"scale-deployment\"\ntarget = \"staging/api-server\"\nparams = { replicas = 4 }\n\n[[steps]]\naction = \"drain-node\"\ntarget = \"staging/node-1\"\n",
    )
    .unwrap();
    let r = run_in(p, &["plan", "plan.toml", "--output", "json"]);
    assert_eq!(r.code, 4, "{r:?}");
    let plan = r.json();
    assert_eq!(plan["decision"], "require_approval");
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["decision"], "allow");
    assert_eq!(steps[0]["plan_id"], plan["plan_id"]);
    assert_eq!(steps[1]["plan_id"], plan["plan_id"]);
    std::fs::write(
        p.join("bad.toml"),
        "[[steps]]\naction = \"x\"\ntarget = \"y\"\nparms = {}\n",
    )
    .unwrap();
    let bad = run_in(p, &["plan", "bad.toml", "--caller", "a"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("bad.toml:4:1: unknown field `parms`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn config_file_paths_and_typos() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(run_in(p, &["init", "project"]).code, 0);
    // Run from elsewhere with --config: paths resolve against the config file's folder.
    let cfg = p.join("project/agentsafe.toml");
    let r = run_in(p, &["--config", cfg.to_str().unwrap(), "validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::write(
        &cfg,
        "[paths]\nactions = \"actions\"\npolicy = \"policies\"\n",
    )
    .unwrap();
    let r = run_in(p, &["--config", cfg.to_str().unwrap(), "validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("agentsafe.toml:3:1: unknown field `policy`"),
        "{}",
        r.stderr
    );
    // Without any project files, commands refuse instead of guessing.
    let empty = tempfile::tempdir().unwrap();
    let r = run_in(
        empty.path(),
        &["check", "rollout-status", "--target", "x", "--caller", "a"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("agentsafe init"), "{}", r.stderr);
}

#[test]
fn demo_runs_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &["demo", "--dir", dir.path().join("demo").to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    for needle in [
        "→ ALLOW  (rule_matched, rule staging-routine-changes)",
        "→ DENY  (invalid_params)",
        "→ DENY  (param_target_mismatch)",
        "→ REQUIRE_APPROVAL  (rule_matched, rule staging-critical-approval)",
        "→ replay refused: already redeemed",
        "every leaf and checkpoint verified",
        "is rejected: audit log verification failed at seq",
        "Every step behaved as designed.",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing `{needle}` in:\n{}",
            r.stdout
        );
    }
    // The demo's state stays inspectable: its audit log verifies from the CLI too.
    let demo = dir.path().join("demo");
    let v = run_in(
        &demo,
        &[
            "audit",
            "verify",
            "state/audit.jsonl",
            "--key",
            demo.join("keys/audit.pub.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(v.code, 0, "{v:?}");
}
