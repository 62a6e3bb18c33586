//! Unit and property tests of evaluation, on a small inline registry.

use super::*;
use agentsafe_core::{Caller, Risk};
use proptest::prelude::*;

const SCALE: &str = r#"
name = "scale-deployment"
version = "1.0.0"
description = "scale"
risk = "medium"
target_types = ["k8s-deployment"]
reversible = false

[[params]]
name = "namespace"
type = "string"
target_attr = "namespace"
constraints = { pattern = "[a-z0-9]([-a-z0-9]*[a-z0-9])?", max_length = 63 }

[[params]]
name = "name"
type = "string"
target_attr = "name"
constraints = { pattern = "[a-z0-9]([-a-z0-9]*[a-z0-9])?", max_length = 63 }

[[params]]
name = "replicas"
type = "integer"
constraints = { min = 0, max = 50 }
"#;

const DRAIN: &str = r#"
name = "drain-node"
version = "1.0.0"
description = "drain"
risk = "critical"
target_types = ["k8s-node"]
reversible = false

[[params]]
name = "node"
type = "string"
target_attr = "node"
constraints = { pattern = "[a-z0-9]([-a-z0-9]*[a-z0-9])?" }
"#;

const INVENTORY: &str = r#"
[[targets]]
id = "prod/api"
type = "k8s-deployment"
environment = "prod"
sensitivity = "critical"
labels = { tier = "web" }
attributes = { cluster = "c1", namespace = "prod", name = "api" }

[[targets]]
id = "dev/api"
type = "k8s-deployment"
environment = "dev"
sensitivity = "internal"
attributes = { cluster = "c1", namespace = "dev", name = "api" }

[[targets]]
id = "node-1"
type = "k8s-node"
environment = "prod"
sensitivity = "restricted"
attributes = { cluster = "c1", node = "node-1" }
"#;

fn pdp(policies: &str) -> Pdp {
    let registry = Registry::from_sources(&[("scale.toml", SCALE), ("drain.toml", DRAIN)]).unwrap();
    let policies = PolicySet::from_sources(&[("p.toml", policies)]).unwrap();
    let inventory = Inventory::parse("inventory.toml", INVENTORY).unwrap();
    Pdp::new(registry, policies, inventory)
}

fn req(action: &str, target: &str, params: serde_json::Value) -> Request {
    Request {
        action: action.into(),
        target: target.into(),
        caller: Caller {
            id: "agent-1".into(),
            roles: vec!["sre".into()],
            ..Caller::default()
        },
        params: params.as_object().cloned().unwrap_or_default(),
        ..Request::default()
    }
}

const ALLOW_SRE: &str = r#"
[[rules]]
id = "sre-scale"
priority = 10
decision = "allow"
reason = "sres may scale"
match = { actions = ["scale-*"], callers = { roles = ["sre"] } }
"#;

#[test]
fn the_pdp_is_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Pdp>();
    let pdp = std::sync::Arc::new(pdp(ALLOW_SRE));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pdp = std::sync::Arc::clone(&pdp);
            std::thread::spawn(move || {
                (0..200)
                    .map(|_| {
                        pdp.decide(&req(
                            "scale-deployment",
                            "dev/api",
                            serde_json::json!({"replicas": 1}),
                        ))
                    })
                    .all(|d| d.decision == Verdict::Allow)
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn refusals_keep_the_request_and_its_risk() {
    let pdp = pdp(ALLOW_SRE);
    let r = req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    );
    let d = pdp.refuse(&r, ReasonCode::InvalidIdentity, "bad token");
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::InvalidIdentity)
    );
    assert_eq!(d.target.id, "dev/api");
    assert_eq!(d.effective_risk, Some(Risk::Medium));
    assert_eq!(d.params["replicas"], 1);
}

#[test]
fn approval_decisions_say_who_may_approve() {
    let p = r#"
[[rules]]
id = "two-leads"
priority = 1
decision = "require_approval"
reason = "two leads"
approvers = ["sre-lead", "platform-lead"]
required_approvals = 2
match = {}

[[rules]]
id = "default-approver"
priority = 0
decision = "require_approval"
reason = "someone"
match = {}
"#;
    let d = pdp(p).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    ));
    let a = d
        .approval
        .as_deref()
        .cloned()
        .expect("an approval requirement");
    assert_eq!(
        (a.approvers, a.required),
        (vec!["sre-lead".to_owned(), "platform-lead".to_owned()], 2)
    );
    let only_default = pdp(&p.replace("priority = 1", "priority = -1")).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    ));
    assert_eq!(
        only_default
            .approval
            .as_deref()
            .map(|a| (a.approvers.clone(), a.required)),
        Some((vec!["approver".to_owned()], 1))
    );
}

#[test]
fn bound_values_that_break_their_param_are_still_refused() {
    // The inventory itself can hold a bad value: binding must not launder it.
    let inventory = INVENTORY.replace(
        r#"namespace = "dev", name = "api""#,
        r#"namespace = "Dev Space", name = "api""#,
    );
    let registry = Registry::from_sources(&[("scale.toml", SCALE), ("drain.toml", DRAIN)]).unwrap();
    let pdp = Pdp::new(
        registry,
        PolicySet::from_sources(&[("p.toml", ALLOW_SRE)]).unwrap(),
        Inventory::parse("inventory.toml", &inventory).unwrap(),
    );
    let d = pdp.decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    ));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::InvalidParams),
        "{d:?}"
    );
    assert!(d.reason.contains("namespace"), "{}", d.reason);
}

#[test]
fn default_deny_without_rules() {
    let d = pdp("").decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 2}),
    ));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::DefaultDeny)
    );
}

#[test]
fn binding_fills_omitted_params_from_the_target() {
    let d = pdp(ALLOW_SRE).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 2}),
    ));
    assert_eq!(d.decision, Verdict::Allow, "{d:?}");
    assert_eq!(d.params["namespace"], "dev");
    assert_eq!(d.params["name"], "api");
    assert_eq!(d.rule_id.as_deref(), Some("sre-scale"));
    assert_eq!(d.action_risk, Some(Risk::Medium));
    assert_eq!(d.effective_risk, Some(Risk::Medium));
}

#[test]
fn a_param_that_points_elsewhere_is_denied() {
    let d = pdp(ALLOW_SRE).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 2, "namespace": "prod"}),
    ));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::ParamTargetMismatch)
    );
    assert!(d.reason.contains("`prod`"), "{}", d.reason);
}

#[test]
fn wrong_target_type_is_denied() {
    let d = pdp(ALLOW_SRE).decide(&req(
        "scale-deployment",
        "node-1",
        serde_json::json!({"replicas": 2}),
    ));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::TargetTypeMismatch)
    );
}

#[test]
fn unknown_action_is_denied_and_keeps_the_name() {
    let d = pdp(ALLOW_SRE).decide(&req("scale-everything", "dev/api", serde_json::json!({})));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::UnknownAction)
    );
    assert_eq!(d.action, "scale-everything");
}

#[test]
fn invalid_params_list_every_problem_even_when_empty() {
    let d = pdp(ALLOW_SRE).decide(&req("scale-deployment", "dev/api", serde_json::json!({})));
    assert_eq!(
        (d.decision, d.reason_code),
        (Verdict::Deny, ReasonCode::InvalidParams)
    );
    assert!(
        d.diagnostics.iter().any(|p| p.contains("replicas")),
        "{:?}",
        d.diagnostics
    );
    let d = pdp(ALLOW_SRE).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 99, "extra": 1}),
    ));
    assert_eq!(d.reason_code, ReasonCode::InvalidParams);
    assert!(d.diagnostics.len() >= 2, "{:?}", d.diagnostics);
}

#[test]
fn unknown_target_is_critical_and_keeps_its_id() {
    let policies = r#"
[[rules]]
id = "allow-all-scale"
priority = 1
decision = "allow"
reason = "ok"
match = { actions = ["scale-deployment"], targets = { sensitivities = ["public", "internal"] } }
"#;
    let d = pdp(policies).decide(&req(
        "scale-deployment",
        "prod/unlisted",
        serde_json::json!({"replicas": 1, "namespace": "x", "name": "y"}),
    ));
    assert_eq!(d.decision, Verdict::Deny);
    assert_eq!(d.target.id, "prod/unlisted");
    assert!(!d.target.known);
    assert_eq!(d.target.sensitivity, Sensitivity::Critical);
    assert_eq!(d.effective_risk, Some(Risk::Critical));
}

#[test]
fn target_bound_params_are_never_allowed_on_an_unknown_target() {
    let policies = r#"
[[rules]]
id = "allow-all"
priority = 1
decision = "allow"
reason = "ok"
match = {}

[[rules]]
id = "approve-drain"
priority = 5
decision = "require_approval"
reason = "ask"
match = { actions = ["drain-node"] }
"#;
    let pdp = pdp(policies);
    // Params naming any namespace, or none at all: nothing to bind them to.
    for params in [
        serde_json::json!({"replicas": 1, "namespace": "kube-system", "name": "coredns"}),
        serde_json::json!({"replicas": 1}),
    ] {
        let d = pdp.decide(&req("scale-deployment", "prod/unlisted", params));
        assert_eq!(d.decision, Verdict::Deny, "{d:?}");
        assert_eq!(d.reason_code, ReasonCode::UnknownTarget, "{d:?}");
        assert_eq!(d.rule_id, None, "{d:?}");
        assert!(d.reason.contains("`prod/unlisted`"), "{}", d.reason);
        assert!(d.reason.contains("rule `allow-all`"), "{}", d.reason);
    }
    let d = pdp.decide(&req(
        "drain-node",
        "node-9",
        serde_json::json!({"node": "node-9"}),
    ));
    assert_eq!(
        (d.decision, d.reason_code, d.approval.is_none()),
        (Verdict::Deny, ReasonCode::UnknownTarget, true),
        "{d:?}"
    );
    // Known targets are bound and decided by the rules as before.
    let d = pdp.decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    ));
    assert_eq!(d.decision, Verdict::Allow, "{d:?}");
}

#[test]
fn lint_warns_about_rules_allowing_bound_actions_on_unknown_targets() {
    let p = r#"
[[rules]]
id = "allow-unknown"
priority = 5
decision = "allow"
reason = "x"
match = { actions = ["scale-deployment"], targets = { known = false } }

[[rules]]
id = "approve-anything"
priority = 4
decision = "require_approval"
reason = "x"
match = { actions = ["drain-node"] }

[[rules]]
id = "known-only"
priority = 3
decision = "allow"
reason = "x"
match = { targets = { known = true } }

[[rules]]
id = "prod-only"
priority = 3
decision = "allow"
reason = "x"
match = { targets = { environments = ["prod"] } }

[[rules]]
id = "deny-unknown"
priority = 2
decision = "deny"
reason = "x"
match = { targets = { known = false } }
"#;
    let w = pdp(p).lint();
    let hits: Vec<&str> = w
        .iter()
        .filter(|w| w.kind == WarningKind::UnknownTargetBinding)
        .map(|w| w.rule_id.as_str())
        .collect();
    assert_eq!(hits, ["allow-unknown", "approve-anything"], "{w:?}");
    let first = w
        .iter()
        .find(|w| w.kind == WarningKind::UnknownTargetBinding)
        .map(|w| w.message.clone())
        .unwrap_or_default();
    assert!(first.contains("`scale-deployment`"), "{first}");
    assert!(first.contains("unknown_target"), "{first}");

    // A deny rule for unknown targets evaluated first already decides there: no warning.
    let guarded = format!(
        "[[rules]]\nid = \"guard\"\npriority = 100\ndecision = \"deny\"\nreason = \"x\"\nmatch = {{ targets = {{ known = false }} }}\n{p}"
    );
    let w = pdp(&guarded).lint();
    assert!(
        !w.iter()
            .any(|w| w.kind == WarningKind::UnknownTargetBinding),
        "{w:?}"
    );
}

#[test]
fn most_restrictive_wins_at_equal_priority_whatever_the_order() {
    let a = r#"
[[rules]]
id = "z-allow"
priority = 5
decision = "allow"
reason = "allow"
match = { actions = ["*"] }
"#;
    let b = r#"
[[rules]]
id = "a-approve"
priority = 5
decision = "require_approval"
reason = "approve"
match = { actions = ["scale-deployment"] }
"#;
    for (x, y) in [(a, b), (b, a)] {
        let registry = Registry::from_sources(&[("scale.toml", SCALE)]).unwrap();
        let policies = PolicySet::from_sources(&[("1.toml", x), ("2.toml", y)]).unwrap();
        let pdp = Pdp::new(
            registry,
            policies,
            Inventory::parse("i", INVENTORY).unwrap(),
        );
        let d = pdp.decide(&req(
            "scale-deployment",
            "dev/api",
            serde_json::json!({"replicas": 1}),
        ));
        assert_eq!(d.decision, Verdict::RequireApproval);
        assert_eq!(d.rule_id.as_deref(), Some("a-approve"));
    }
}

#[test]
fn higher_priority_beats_restrictiveness() {
    let p = r#"
[[rules]]
id = "deny-low"
priority = 1
decision = "deny"
reason = "no"
match = {}

[[rules]]
id = "allow-high"
priority = 2
decision = "allow"
reason = "yes"
match = { callers = { agent_ids = ["agent-1"] } }
"#;
    let d = pdp(p).decide(&req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    ));
    assert_eq!(d.rule_id.as_deref(), Some("allow-high"));
}

#[test]
fn caller_conditions() {
    let p = r#"
[[rules]]
id = "delegated-shallow"
priority = 1
decision = "allow"
reason = "ok"
match = { callers = { delegated_from = ["orchestrator"], max_delegation_depth = 1, authenticated = true, groups = ["platform"] } }
"#;
    let pdp = pdp(p);
    let mut r = req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    );
    r.caller.groups = vec!["platform".into()];
    r.caller.authenticated = true;
    r.caller.delegation_chain = vec!["orchestrator".into()];
    assert_eq!(pdp.decide(&r).decision, Verdict::Allow);
    r.caller.delegation_chain = vec!["orchestrator".into(), "middle".into()];
    assert_eq!(pdp.decide(&r).decision, Verdict::Deny, "depth 2 > 1");
    r.caller.delegation_chain = vec!["orchestrator".into()];
    r.caller.authenticated = false;
    assert_eq!(pdp.decide(&r).decision, Verdict::Deny, "unauthenticated");
}

#[test]
fn require_ticket_and_labels_and_effective_risk() {
    let p = r#"
[[rules]]
id = "prod-with-ticket"
priority = 1
decision = "allow"
reason = "ok"
match = { require_ticket = true, effective_risk = ["critical"], targets = { labels = { tier = "w*" } } }
"#;
    let pdp = pdp(p);
    let mut r = req(
        "scale-deployment",
        "prod/api",
        serde_json::json!({"replicas": 1}),
    );
    assert_eq!(pdp.decide(&r).decision, Verdict::Deny);
    r.change_ticket = Some("CHG-1".into());
    let d = pdp.decide(&r);
    assert_eq!(d.decision, Verdict::Allow, "{d:?}");
    assert_eq!(d.change_ticket.as_deref(), Some("CHG-1"));
    for blank in ["", " ", "\t \n"] {
        r.change_ticket = Some(blank.into());
        let d = pdp.decide(&r);
        assert_eq!(d.decision, Verdict::Deny, "{blank:?}: {d:?}");
        assert_eq!(d.change_ticket, None, "{blank:?}: {d:?}");
    }
}

#[test]
fn time_windows_use_the_given_clock() {
    let p = r#"
[[rules]]
id = "business-hours"
priority = 1
decision = "allow"
reason = "ok"
match = { time = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00", timezone = "Europe/Berlin" } }
"#;
    let pdp = pdp(p);
    let r = req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    );
    // Monday 2026-01-05 09:30 in Berlin is 08:30 UTC.
    assert_eq!(
        pdp.decide_at(&r, "2026-01-05T08:30:00Z".parse().unwrap())
            .decision,
        Verdict::Allow
    );
    assert_eq!(
        pdp.decide_at(&r, "2026-01-05T07:30:00Z".parse().unwrap())
            .decision,
        Verdict::Deny
    );
    // Saturday.
    assert_eq!(
        pdp.decide_at(&r, "2026-01-10T10:00:00Z".parse().unwrap())
            .decision,
        Verdict::Deny
    );
}

#[test]
fn plans_link_steps_and_take_the_most_restrictive() {
    let pdp = pdp(ALLOW_SRE);
    let plan = pdp.decide_plan(&[
        req(
            "scale-deployment",
            "dev/api",
            serde_json::json!({"replicas": 1}),
        ),
        req("drain-node", "node-1", serde_json::json!({})),
    ]);
    assert_eq!(plan.decision, Verdict::Deny);
    assert_eq!(plan.steps.len(), 2);
    assert!(plan.steps.iter().all(|s| s.plan_id == Some(plan.plan_id)));
    assert_ne!(plan.steps[0].decision_id, plan.steps[1].decision_id);
}

#[test]
fn agent_specific_rules_are_indexed_but_keep_order() {
    let p = r#"
[[rules]]
id = "generic-deny"
priority = 5
decision = "deny"
reason = "no"
match = { actions = ["scale-deployment"] }

[[rules]]
id = "agent-allow-low"
priority = 1
decision = "allow"
reason = "yes"
match = { callers = { agent_ids = ["agent-1"] } }

[[rules]]
id = "agent-allow-high"
priority = 9
decision = "allow"
reason = "yes"
match = { callers = { agent_ids = ["agent-1", "agent-2"] } }
"#;
    let pdp = pdp(p);
    let mut r = req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    );
    assert_eq!(pdp.decide(&r).rule_id.as_deref(), Some("agent-allow-high"));
    r.caller.id = "agent-3".into();
    assert_eq!(pdp.decide(&r).rule_id.as_deref(), Some("generic-deny"));
}

#[test]
fn lint_finds_shadowed_and_dead_rules() {
    let p = r#"
[[rules]]
id = "deny-prod"
priority = 10
decision = "deny"
reason = "no"
match = { targets = { environments = ["prod"] } }

[[rules]]
id = "allow-prod-scale"
priority = 5
decision = "allow"
reason = "never fires"
match = { actions = ["scale-deployment"], targets = { environments = ["prod"] } }

[[rules]]
id = "typo-action"
priority = 5
decision = "allow"
reason = "x"
match = { actions = ["scale-deploymnet"] }

[[rules]]
id = "no-such-env"
priority = 5
decision = "allow"
reason = "x"
match = { targets = { environments = ["qa"] } }
"#;
    let w = pdp(p).lint();
    let kinds: Vec<(String, WarningKind)> = w.iter().map(|w| (w.rule_id.clone(), w.kind)).collect();
    assert!(
        kinds.contains(&("allow-prod-scale".into(), WarningKind::Shadowed)),
        "{w:?}"
    );
    assert!(
        kinds.contains(&("typo-action".into(), WarningKind::NoAction)),
        "{w:?}"
    );
    assert!(
        kinds.contains(&("no-such-env".into(), WarningKind::NoTarget)),
        "{w:?}"
    );
    assert!(!kinds.iter().any(|(id, _)| id == "deny-prod"), "{w:?}");
}

#[test]
fn policy_hash_ignores_file_order_but_not_content() {
    let r = || Registry::from_sources(&[("scale.toml", SCALE)]).unwrap();
    let i = || Inventory::parse("i", INVENTORY).unwrap();
    let one =
        "[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"deny\"\nreason = \"r\"\nmatch = {}\n";
    let two =
        "[[rules]]\nid = \"b\"\npriority = 1\ndecision = \"deny\"\nreason = \"r\"\nmatch = {}\n";
    let h = |srcs: &[(&str, &str)]| {
        Pdp::new(r(), PolicySet::from_sources(srcs).unwrap(), i())
            .policy_hash()
            .to_owned()
    };
    assert_eq!(
        h(&[("1.toml", one), ("2.toml", two)]),
        h(&[("2.toml", two), ("1.toml", one)])
    );
    assert_ne!(h(&[("1.toml", one)]), h(&[("1.toml", two)]));
}

// --- property tests -------------------------------------------------------

#[derive(Debug, Clone)]
struct GenRule {
    priority: i64,
    decision: &'static str,
    action: &'static str,
    env: Option<&'static str>,
    role: Option<&'static str>,
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        0i64..4,
        prop::sample::select(vec!["allow", "deny", "require_approval"]),
        prop::sample::select(vec!["*", "scale-*", "scale-deployment", "drain-node"]),
        prop::option::of(prop::sample::select(vec!["prod", "dev"])),
        prop::option::of(prop::sample::select(vec!["sre", "dev"])),
    )
        .prop_map(|(priority, decision, action, env, role)| GenRule {
            priority,
            decision,
            action,
            env,
            role,
        })
}

fn render(rules: &[GenRule], offset: usize) -> String {
    let mut s = String::new();
    for (i, r) in rules.iter().enumerate() {
        s.push_str(&format!(
            "[[rules]]\nid = \"r{}\"\npriority = {}\ndecision = \"{}\"\nreason = \"x\"\nmatch.actions = [\"{}\"]\n",
            i + offset,
            r.priority,
            r.decision,
            r.action
        ));
        if let Some(e) = r.env {
            s.push_str(&format!("match.targets.environments = [\"{e}\"]\n"));
        }
        if let Some(role) = r.role {
            s.push_str(&format!("match.callers.roles = [\"{role}\"]\n"));
        }
    }
    s
}

fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    for target in ["dev/api", "prod/api"] {
        for role in ["sre", "dev", "none"] {
            let mut r = req(
                "scale-deployment",
                target,
                serde_json::json!({"replicas": 1}),
            );
            r.caller.roles = vec![role.into()];
            out.push(r);
        }
    }
    let mut d = req("drain-node", "node-1", serde_json::json!({}));
    d.caller.roles = vec!["sre".into()];
    out.push(d);
    out
}

fn build(files: &[(String, String)]) -> Pdp {
    let registry = Registry::from_sources(&[("scale.toml", SCALE), ("drain.toml", DRAIN)]).unwrap();
    let policies = PolicySet::from_sources(files).unwrap();
    Pdp::new(
        registry,
        policies,
        Inventory::parse("i", INVENTORY).unwrap(),
    )
}

fn outcome(d: &Decision) -> (Verdict, ReasonCode, Option<String>) {
    (
        d.decision,
        d.reason_code,
        d.rule_id.as_deref().map(str::to_owned),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rule_order_and_file_split_never_change_a_decision(rules in prop::collection::vec(gen_rule(), 0..8), split in 0usize..8) {
        let split = split.min(rules.len());
        let together = build(&[("all.toml".into(), render(&rules, 0))]);
        let (a, b) = rules.split_at(split);
        // Reverse the rule order inside each file and swap the files.
        let ra: Vec<GenRule> = a.iter().rev().cloned().collect();
        let rb: Vec<GenRule> = b.iter().rev().cloned().collect();
        let split_files = build(&[
            ("b.toml".into(), render(&rb, split)),
            ("a.toml".into(), render(&ra, 0)),
        ]);
        // Renumber: reversing changed which index each rule got, so compare by content.
        let _ = &split_files;
        let reversed_ids: Vec<GenRule> = rules.iter().rev().cloned().collect();
        let reversed = build(&[("all.toml".into(), render_with_ids(&reversed_ids, rules.len()))]);
        for r in requests() {
            let x = together.decide(&r);
            prop_assert_eq!(outcome(&x), outcome(&reversed.decide(&r)));
            prop_assert_eq!(x.decision, split_files.decide(&r).decision);
        }
    }

    #[test]
    fn adding_a_deny_rule_never_turns_a_deny_into_an_allow(rules in prop::collection::vec(gen_rule(), 0..8), extra in gen_rule()) {
        let base = build(&[("a.toml".into(), render(&rules, 0))]);
        let deny = GenRule { decision: "deny", ..extra };
        let mut more = rules.clone();
        more.push(deny);
        let with = build(&[("a.toml".into(), render(&more, 0))]);
        for r in requests() {
            let before = base.decide(&r).decision;
            let after = with.decide(&r).decision;
            prop_assert!(after >= before, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn without_an_allow_rule_nothing_is_allowed(rules in prop::collection::vec(gen_rule(), 0..8)) {
        let rules: Vec<GenRule> = rules.into_iter().filter(|r| r.decision != "allow").collect();
        let pdp = build(&[("a.toml".into(), render(&rules, 0))]);
        for r in requests() {
            prop_assert_ne!(pdp.decide(&r).decision, Verdict::Allow);
        }
    }
}

/// Renders rules in the given order but with ids as if they were in reverse order,
/// so each rule keeps its id while its position changes.
fn render_with_ids(reversed: &[GenRule], n: usize) -> String {
    let mut s = String::new();
    for (i, r) in reversed.iter().enumerate() {
        let one = render(std::slice::from_ref(r), n - 1 - i);
        s.push_str(&one);
    }
    s
}

#[test]
fn ids_with_control_characters_are_invalid_requests() {
    let pdp = pdp(ALLOW_SRE);
    let ok = req(
        "scale-deployment",
        "dev/api",
        serde_json::json!({"replicas": 1}),
    );
    assert_eq!(pdp.decide(&ok).decision, Verdict::Allow);
    let forged = "dev/api\n2026-01-01 ALLOW forged-line";
    for mutate in [
        (|r: &mut Request, v: &str| r.target = v.to_owned()) as fn(&mut Request, &str),
        |r, v| r.caller.id = format!("agent-1{v}"),
        |r, v| r.change_ticket = Some(format!("CHG-1{v}")),
        |r, v| r.action = format!("scale-deployment{v}"),
    ] {
        let mut r = ok.clone();
        mutate(&mut r, forged);
        let d = pdp.decide(&r);
        assert_eq!(
            (d.decision, d.reason_code),
            (Verdict::Deny, ReasonCode::InvalidRequest),
            "{r:?}"
        );
        assert!(d.reason.contains("control character"), "{}", d.reason);
    }
}
