//! End-to-end tests of limits and approvals shared across processes: the rate limit, the
//! circuit breaker, pauses, cumulative risk, approval requests and their notifications.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;

use agentsafe_e2e::{Run, run_in};

fn project(extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), &["init", "."]);
    assert_eq!(r.code, 0, "{r:?}");
    // Production scaling always needs approval here, whatever the day and time.
    std::fs::write(
        dir.path().join("policies/40-scale-approval.toml"),
        r#"
[[rules]]
id = "prod-scale-approval"
priority = 450
decision = "require_approval"
reason = "production scaling needs approval"
match.actions = ["scale-deployment"]
match.targets.environments = ["prod"]
"#,
    )
    .unwrap();
    let path = dir.path().join("agentsafe.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(extra_config);
    std::fs::write(&path, text).unwrap();
    dir
}

fn token(dir: &Path, agent: &str, roles: &[&str]) -> String {
    let mut args = vec!["token", "issue", "--agent", agent, "--ttl", "30m"];
    for r in roles {
        args.extend(["--role", r]);
    }
    let r = run_in(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout.trim().to_owned()
}

fn delegate(dir: &Path, parent: &str, agent: &str, roles: &[&str]) -> String {
    let mut args = vec![
        "token", "delegate", parent, "--agent", agent, "--ttl", "10m",
    ];
    for r in roles {
        args.extend(["--role", r]);
    }
    let r = run_in(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout.trim().to_owned()
}

/// An ALLOW on staging for a plain `developer` caller.
fn scale_staging(dir: &Path, caller: &str, role: &str) -> Run {
    run_in(
        dir,
        &[
            "check",
            "scale-deployment",
            "--target",
            "staging/api-server",
            "--params",
            r#"{"replicas":3}"#,
            "--caller",
            caller,
            "--role",
            role,
            "--output",
            "json",
        ],
    )
}

/// A REQUIRE_APPROVAL in production for an authenticated SRE.
fn scale_prod(dir: &Path, token: &str, replicas: u32, change: &str) -> Run {
    let params = format!(r#"{{"replicas":{replicas}}}"#);
    run_in(
        dir,
        &[
            "check",
            "scale-deployment",
            "--target",
            "prod/payments",
            "--params",
            &params,
            "--token",
            token,
            "--ticket-id",
            change,
            "--output",
            "json",
        ],
    )
}

fn approve(dir: &Path, id: &str, token: &str) -> Run {
    run_in(
        dir,
        &["approval", "approve", id, "--as", token, "--output", "json"],
    )
}

/// The requester claims the ticket of an approved request.
fn claim(dir: &Path, id: &str, token: &str) -> Run {
    run_in(
        dir,
        &[
            "approval", "claim", id, "--token", token, "--output", "json",
        ],
    )
}

#[test]
fn eight_processes_never_exceed_one_callers_rate_limit_in_total() {
    let p = project("[limits.rate]\nmax = 10\nwindow = \"1h\"\n");
    let dir = p.path().to_owned();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| scale_staging(&dir, "agent-1", "developer"))
                    .collect::<Vec<Run>>()
            })
        })
        .collect();
    let runs: Vec<Run> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let allowed = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(allowed, 10, "{runs:?}");
    for r in runs.iter().filter(|r| r.code != 0) {
        assert_eq!(r.code, 3, "{r:?}");
        assert_eq!(r.json()["reason_code"], "rate_limited", "{r:?}");
    }
    // Another caller has its own budget.
    assert_eq!(scale_staging(&dir, "agent-2", "developer").code, 0);
    let s = run_in(&dir, &["caller", "status", "agent-1", "--output", "json"]);
    assert_eq!(s.json()["rate_count"], 10, "{s:?}");
}

#[test]
fn a_sub_agent_is_charged_to_the_root_of_its_chain() {
    let p = project("[limits.rate]\nmax = 2\nwindow = \"1h\"\n");
    let root = token(p.path(), "orchestrator", &["developer"]);
    let child = delegate(p.path(), &root, "worker", &["developer"]);
    let check = |t: &str| {
        run_in(
            p.path(),
            &[
                "check",
                "scale-deployment",
                "--target",
                "staging/api-server",
                "--params",
                r#"{"replicas":3}"#,
                "--token",
                t,
                "--output",
                "json",
            ],
        )
    };
    assert_eq!(check(&root).code, 0);
    assert_eq!(check(&child).code, 0);
    let r = check(&child);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["reason_code"], "rate_limited");
    assert_eq!(check(&root).json()["reason_code"], "rate_limited");
}

#[test]
fn a_breaker_tripped_in_one_process_is_seen_by_another_and_operators_pause() {
    let p = project("[limits.breaker]\ndenials = 2\nwindow = \"1h\"\ncooldown = \"1h\"\n");
    // Two denials, each in its own process, open the breaker.
    assert_eq!(scale_staging(p.path(), "agent-1", "nobody").code, 3);
    let second = scale_staging(p.path(), "agent-1", "nobody");
    assert_eq!(second.code, 3);
    assert!(second.stdout.contains("paused until"), "{second:?}");
    // A third process sees it, even for a request the policy allows.
    let r = scale_staging(p.path(), "agent-1", "developer");
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["reason_code"], "circuit_open");
    assert_eq!(scale_staging(p.path(), "agent-2", "developer").code, 0);
    let s = run_in(
        p.path(),
        &["caller", "status", "agent-1", "--output", "json"],
    );
    assert!(s.json()["open_until"].is_string(), "{s:?}");
    // An operator closes it.
    assert_eq!(run_in(p.path(), &["caller", "resume", "agent-1"]).code, 0);
    assert_eq!(scale_staging(p.path(), "agent-1", "developer").code, 0);
    // And pauses a caller by hand.
    let r = run_in(
        p.path(),
        &[
            "caller",
            "pause",
            "agent-2",
            "--reason",
            "investigating",
            "--by",
            "ops",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = scale_staging(p.path(), "agent-2", "developer");
    assert_eq!(r.json()["reason_code"], "caller_paused", "{r:?}");
    assert!(r.stdout.contains("investigating"));
    assert_eq!(run_in(p.path(), &["caller", "resume", "agent-2"]).code, 0);
    assert_eq!(scale_staging(p.path(), "agent-2", "developer").code, 0);
}

#[test]
fn cumulative_risk_escalates_then_denies() {
    let p = project(
        "[limits.risk]\nwindow = \"1h\"\nescalate_at = 30\ndeny_at = 75\n\
         [limits.risk.weights]\nlow = 20\nmedium = 20\nhigh = 20\ncritical = 20\n",
    );
    let first = scale_staging(p.path(), "agent-1", "developer");
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.json()["risk_score"], 20);
    let second = scale_staging(p.path(), "agent-1", "developer");
    assert_eq!(second.code, 4, "{second:?}");
    let d = second.json();
    assert_eq!(d["reason_code"], "risk_escalated");
    assert_eq!(d["escalated_from"], "allow");
    assert_eq!(d["risk_score"], 40);
    assert!(d["approval_id"].is_string(), "{d}");
    assert!(d.get("ticket").is_none());
    assert_eq!(
        scale_staging(p.path(), "agent-1", "developer").json()["risk_score"],
        60
    );
    let denied = scale_staging(p.path(), "agent-1", "developer");
    assert_eq!(denied.code, 3);
    let d = denied.json();
    assert_eq!(d["reason_code"], "risk_limit_exceeded");
    assert_eq!(d["escalated_from"], "allow");
    assert_eq!(d["risk_score"], 80);
}

#[test]
fn self_approval_and_approval_by_a_delegate_are_refused_and_one_ticket_is_issued() {
    let p = project("");
    let requester = token(p.path(), "agent-1", &["sre", "approver"]);
    let r = scale_prod(p.path(), &requester, 3, "CHG-42");
    assert_eq!(r.code, 4, "{r:?}");
    let d = r.json();
    assert_eq!(d["change_ticket"], "CHG-42");
    let id = d["approval_id"].as_str().unwrap().to_owned();

    let own = approve(p.path(), &id, &requester);
    assert_eq!(own.code, 1, "{own:?}");
    assert!(own.stderr.contains("cannot approve"), "{own:?}");
    let sub = delegate(p.path(), &requester, "helper", &["approver"]);
    let by_delegate = approve(p.path(), &id, &sub);
    assert_eq!(by_delegate.code, 1, "{by_delegate:?}");
    assert!(
        by_delegate.stderr.contains("cannot approve"),
        "{by_delegate:?}"
    );
    let viewer = token(p.path(), "bob", &["viewer"]);
    let no_role = approve(p.path(), &id, &viewer);
    assert_eq!(no_role.code, 1);
    assert!(no_role.stderr.contains("approver roles"), "{no_role:?}");

    // Two approvers racing in two processes: one approval counts, the other is refused.
    let alice = token(p.path(), "alice", &["approver"]);
    let carol = token(p.path(), "carol", &["approver"]);
    let (dir_a, dir_c, id_a, id_c) = (
        p.path().to_owned(),
        p.path().to_owned(),
        id.clone(),
        id.clone(),
    );
    let ha = std::thread::spawn(move || approve(&dir_a, &id_a, &alice));
    let hc = std::thread::spawn(move || approve(&dir_c, &id_c, &carol));
    let (ra, rc) = (ha.join().unwrap(), hc.join().unwrap());
    let mut codes = [ra.code, rc.code];
    codes.sort_unstable();
    assert_eq!(codes, [0, 1], "{ra:?} {rc:?}");
    // An approval never hands out a ticket: not to the approver, not to `show` or `wait`.
    for r in [&ra, &rc] {
        assert!(!r.stdout.contains("\"ticket\""), "{r:?}");
    }
    let shown = run_in(p.path(), &["approval", "show", &id, "--output", "json"]).json();
    assert_eq!(shown["state"], "approved");
    assert_eq!(shown["change_ticket"], "CHG-42");
    assert_eq!(shown["approvals"].as_array().unwrap().len(), 1, "{shown}");
    assert!(shown.get("ticket").is_none(), "{shown}");
    let w = run_in(p.path(), &["approval", "wait", &id, "--timeout", "1s"]);
    assert_eq!(w.code, 0, "{w:?}");
    assert!(
        !w.stdout.contains("eyJ"),
        "wait without the requester's token shows no ticket: {w:?}"
    );
    // Someone else's token cannot claim it.
    let other = claim(p.path(), &id, &token(p.path(), "mallory", &["sre"]));
    assert_eq!(other.code, 3, "{other:?}");
    assert!(other.json()["ticket"].is_null());
    // The requester claims it once; a second claim gets no second ticket.
    let mine = claim(p.path(), &id, &requester);
    assert_eq!(mine.code, 0, "{mine:?}");
    let ticket = mine.json()["ticket"].as_str().unwrap().to_owned();
    let again = claim(p.path(), &id, &requester);
    assert_eq!(again.code, 3, "{again:?}");
    assert!(
        again.json()["reason"]
            .as_str()
            .unwrap()
            .contains("already claimed")
    );
    let v = run_in(
        p.path(),
        &[
            "ticket",
            "verify",
            &ticket,
            "--action",
            "scale-deployment",
            "--target",
            "prod/payments",
        ],
    );
    assert_eq!(v.code, 0, "{v:?}");
    // Every step is in a log that verifies.
    let a = run_in(p.path(), &["audit", "verify"]);
    assert_eq!(a.code, 0, "{a:?}");
    let log = std::fs::read_to_string(p.path().join(".agentsafe-test-state/audit.jsonl")).unwrap();
    assert!(log.matches(&id).count() >= 4, "{log}");
    assert!(log.contains("CHG-42"));
}

#[test]
fn an_approval_covers_exactly_its_params_and_resolved_requests_stay_resolved() {
    let p = project("[approvals]\nexpiry = \"2s\"\n");
    let requester = token(p.path(), "agent-1", &["sre"]);
    let three = scale_prod(p.path(), &requester, 3, "CHG-1").json();
    let five = scale_prod(p.path(), &requester, 5, "CHG-1").json();
    let (id3, id5) = (
        three["approval_id"].as_str().unwrap().to_owned(),
        five["approval_id"].as_str().unwrap().to_owned(),
    );
    let alice = token(p.path(), "alice", &["approver"]);
    let ok = approve(p.path(), &id3, &alice);
    assert_eq!(ok.code, 0, "{ok:?}");
    let approved = ok.json();
    let claimed = claim(p.path(), &id3, &requester);
    assert_eq!(claimed.code, 0, "{claimed:?}");
    let claimed = claimed.json();
    let ticket = claimed["ticket"].as_str().unwrap();
    // The ticket carries exactly the approved params and digest.
    let shown = run_in(p.path(), &["ticket", "show", ticket, "--output", "json"]);
    assert!(
        shown
            .stdout
            .contains(approved["params_digest"].as_str().unwrap()),
        "{shown:?}"
    );
    assert!(shown.stdout.contains("\"replicas\": 3"), "{shown:?}");
    // The other params are a different request, still waiting.
    assert_ne!(approved["params_digest"], five["params_digest"].clone());
    let other = run_in(p.path(), &["approval", "show", &id5, "--output", "json"]).json();
    assert_eq!(other["state"], "pending");
    assert!(other.get("ticket").is_none());
    // Denied requests cannot be approved; expired ones neither.
    let deny = run_in(
        p.path(),
        &["approval", "deny", &id5, "--as", &alice, "--reason", "no"],
    );
    assert_eq!(deny.code, 0, "{deny:?}");
    assert_eq!(approve(p.path(), &id5, &alice).code, 1);
    let wait = run_in(p.path(), &["approval", "wait", &id5, "--timeout", "1s"]);
    assert_eq!(wait.code, 3, "{wait:?}");
    let late = scale_prod(p.path(), &requester, 7, "CHG-1").json();
    let late_id = late["approval_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let expired = approve(p.path(), &late_id, &alice);
    assert_eq!(expired.code, 1);
    assert!(expired.stderr.contains("expired"), "{expired:?}");
}

#[test]
fn a_rule_can_require_two_distinct_approvers_of_a_named_role() {
    let p = project("");
    std::fs::write(
        p.path().join("policies/40-two-person.toml"),
        r#"
[[rules]]
id = "prod-restart-two-leads"
priority = 500
decision = "require_approval"
reason = "restarts in production need two SRE leads"
approvers = ["sre-lead"]
required_approvals = 2
match.actions = ["restart-deployment"]
match.targets.environments = ["prod"]
"#,
    )
    .unwrap();
    let requester = token(p.path(), "agent-1", &["sre"]);
    let r = run_in(
        p.path(),
        &[
            "check",
            "restart-deployment",
            "--target",
            "prod/payments",
            "--token",
            &requester,
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 4, "{r:?}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let plain_approver = token(p.path(), "dave", &["approver"]);
    assert_eq!(approve(p.path(), &id, &plain_approver).code, 1);
    let lead1 = token(p.path(), "erin", &["sre-lead"]);
    let lead2 = token(p.path(), "frank", &["sre-lead"]);
    let first = approve(p.path(), &id, &lead1);
    assert_eq!(first.code, 4, "one of two: {first:?}");
    let again = approve(p.path(), &id, &lead1);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already approved"));
    // The same person through a token she delegated to herself is not a second approver.
    let lead1_again = delegate(p.path(), &lead1, "erin-laptop", &["sre-lead"]);
    let twice = approve(p.path(), &id, &lead1_again);
    assert_eq!(twice.code, 1, "{twice:?}");
    assert!(twice.stderr.contains("distinct people"), "{twice:?}");
    let second = approve(p.path(), &id, &lead2);
    assert_eq!(second.code, 0, "{second:?}");
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(c.json()["ticket"].is_string());
}

/// A one-request-at-a-time HTTP server on 127.0.0.1 answering `status`; bodies go to the channel.
fn http_server(status: u16) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break text[end + 4..].to_owned();
                    }
                }
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send(body);
        }
    });
    (url, rx)
}

#[test]
fn notifications_are_sent_and_a_failing_endpoint_changes_nothing_but_a_counter() {
    let (events, events_rx) = http_server(200);
    let (slack, slack_rx) = http_server(200);
    let (broken, _broken_rx) = http_server(500);
    // A port nothing listens on.
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let p = project(&format!(
        "[notifications]\nretries = 1\n\
         [[notifications.webhooks]]\nurl = \"{events}\"\n\
         [[notifications.webhooks]]\nurl = \"{slack}\"\nkind = \"slack\"\n\
         [[notifications.webhooks]]\nurl = \"{broken}\"\n\
         [[notifications.webhooks]]\nurl = \"{down}\"\n"
    ));
    let requester = token(p.path(), "agent-1", &["sre"]);
    let r = scale_prod(p.path(), &requester, 3, "CHG-7");
    assert_eq!(r.code, 4, "decisions are unaffected: {r:?}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let timeout = std::time::Duration::from_secs(10);
    let event: serde_json::Value =
        serde_json::from_str(&events_rx.recv_timeout(timeout).unwrap()).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "dev.agentsafe.approval.created");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["change_ticket"], "CHG-7");
    let text = slack_rx.recv_timeout(timeout).unwrap();
    assert!(text.contains("\"text\"") && text.contains(&id), "{text}");

    let alice = token(p.path(), "alice", &["approver"]);
    assert_eq!(approve(p.path(), &id, &alice).code, 0);
    let resolved: serde_json::Value =
        serde_json::from_str(&events_rx.recv_timeout(timeout).unwrap()).unwrap();
    assert_eq!(resolved["type"], "dev.agentsafe.approval.resolved");
    assert_eq!(resolved["data"]["state"], "approved");
    assert!(
        resolved["data"].get("ticket").is_none(),
        "tickets are never sent"
    );

    let stats = run_in(p.path(), &["approval", "stats", "--output", "json"]).json();
    // Two events to each of two failing endpoints.
    assert_eq!(stats["counters"]["notify_failures"], 4, "{stats}");
    assert_eq!(stats["counters"]["notify_sent"], 4, "{stats}");
}

#[test]
fn limits_configuration_is_validated_like_every_other_file() {
    let p = project("[limits.rate]\nmax = 5\nwindwo = \"1m\"\n");
    let r = run_in(p.path(), &["approval", "list"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("windwo"), "{r:?}");
}

#[test]
fn a_rule_added_since_the_request_denies_it_on_approval() {
    let p = project("");
    let requester = token(p.path(), "agent-1", &["sre"]);
    let r = scale_prod(p.path(), &requester, 3, "CHG-9");
    assert_eq!(r.code, 4, "{r:?}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    std::fs::write(
        p.path().join("policies/05-freeze.toml"),
        r#"
[[rules]]
id = "change-freeze"
priority = 2000
decision = "deny"
reason = "change freeze"
match.targets.environments = ["prod"]
"#,
    )
    .unwrap();
    let alice = token(p.path(), "alice", &["approver"]);
    let r = approve(p.path(), &id, &alice);
    assert_eq!(r.code, 0, "{r:?}");
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 3, "{c:?}");
    assert!(c.json()["ticket"].is_null());
    let d = run_in(p.path(), &["approval", "show", &id, "--output", "json"]).json();
    assert_eq!(d["state"], "denied");
    assert!(
        d["denied"]["reason"]
            .as_str()
            .unwrap()
            .contains("change freeze"),
        "{d}"
    );
    assert_eq!(claim(p.path(), &id, &requester).code, 3);
}

/// Defect: `approve` re-decided with the bare PDP, so a requester paused after asking
/// still got a ticket. The claim goes through the limits like a fresh decision.
#[test]
fn a_paused_requester_gets_no_ticket_from_an_approval() {
    let p = project("");
    let requester = token(p.path(), "agent-1", &["sre"]);
    let id = scale_prod(p.path(), &requester, 3, "CHG-5").json()["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paused = run_in(
        p.path(),
        &["caller", "pause", "agent-1", "--reason", "incident"],
    );
    assert_eq!(paused.code, 0, "{paused:?}");
    let alice = token(p.path(), "alice", &["approver"]);
    assert_eq!(approve(p.path(), &id, &alice).code, 0);
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 3, "{c:?}");
    assert_eq!(c.json()["reason_code"], "caller_paused", "{c:?}");
    assert!(c.json()["ticket"].is_null());
    // Resumed, the approval still stands and yields its one ticket.
    assert_eq!(run_in(p.path(), &["caller", "resume", "agent-1"]).code, 0);
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(c.json()["ticket"].is_string());
}

/// Defect: a rule tightened after the request (more approvers) was not enforced: one
/// approval under the old requirement still minted a ticket.
#[test]
fn a_rule_tightened_since_the_request_needs_the_missing_approvals() {
    let p = project("");
    let requester = token(p.path(), "agent-1", &["sre"]);
    let id = scale_prod(p.path(), &requester, 3, "CHG-6").json()["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = token(p.path(), "alice", &["approver"]);
    assert_eq!(approve(p.path(), &id, &alice).code, 0);
    std::fs::write(
        p.path().join("policies/40-scale-approval.toml"),
        r#"
[[rules]]
id = "prod-scale-approval"
priority = 450
decision = "require_approval"
reason = "production scaling needs two approvers now"
required_approvals = 2
match.actions = ["scale-deployment"]
match.targets.environments = ["prod"]
"#,
    )
    .unwrap();
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 4, "{c:?}");
    assert!(c.json()["ticket"].is_null());
    let shown = run_in(p.path(), &["approval", "show", &id, "--output", "json"]).json();
    assert_eq!(
        (shown["state"].as_str(), shown["required"].as_u64()),
        (Some("pending"), Some(2)),
        "{shown}"
    );
    let bob = token(p.path(), "bob", &["approver"]);
    assert_eq!(approve(p.path(), &id, &bob).code, 0);
    let c = claim(p.path(), &id, &requester);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(c.json()["ticket"].is_string());
}

/// Defect: the approval request (and its webhook) existed before the decision's audit
/// record; with the log unwritable the request stayed pending and could later be approved.
#[test]
fn no_approval_request_exists_without_its_decision_record() {
    let p = project("");
    let requester = token(p.path(), "agent-1", &["sre"]);
    // Make the log unwritable: replace it by a folder.
    let state = p.path().join(".agentsafe-test-state");
    std::fs::create_dir_all(&state).unwrap();
    let log = state.join("audit.jsonl");
    let _ = std::fs::remove_file(&log);
    std::fs::create_dir_all(&log).unwrap();
    let r = scale_prod(p.path(), &requester, 3, "CHG-7");
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["reason_code"], "audit_unavailable");
    assert!(r.json()["approval_id"].is_null(), "{r:?}");
    std::fs::remove_dir(&log).unwrap();
    let list = run_in(p.path(), &["approval", "list", "--all", "--output", "json"]);
    assert_eq!(list.json().as_array().unwrap().len(), 0, "{list:?}");
}

/// Defect: a `sensitive` param reached webhooks, `approval list` and `state.db` in clear.
#[test]
fn sensitive_params_never_leave_the_gate_in_clear() {
    let p = project("");
    std::fs::write(
        p.path().join("policies/40-lambda-approval.toml"),
        r#"
[[rules]]
id = "lambda-needs-approval"
priority = 2000
decision = "require_approval"
reason = "lambda invocations need approval here"
match.actions = ["lambda-invoke-function"]
"#,
    )
    .unwrap();
    let requester = token(p.path(), "agent-1", &["sre"]);
    let secret = "hunter2-top-secret-payload";
    let params = format!(r#"{{"payload":{{"card":"{secret}"}}}}"#);
    let target = "staging/thumbnailer";
    let r = run_in(
        p.path(),
        &[
            "check",
            "lambda-invoke-function",
            "--target",
            target,
            "--params",
            &params,
            "--token",
            &requester,
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 4, "{r:?}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let shown = run_in(p.path(), &["approval", "show", &id, "--output", "json"]);
    assert!(!shown.stdout.contains(secret), "{shown:?}");
    assert!(shown.stdout.contains("payload"), "{shown:?}");
    let listed = run_in(p.path(), &["approval", "list", "--output", "json"]);
    assert!(!listed.stdout.contains(secret), "{listed:?}");
    let db = std::fs::read(p.path().join(".agentsafe-test-state/state.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(secret));
    for side in ["state.db-wal"] {
        if let Ok(bytes) = std::fs::read(p.path().join(".agentsafe-test-state").join(side)) {
            assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{side}");
        }
    }
    let alice = token(p.path(), "alice", &["approver"]);
    assert_eq!(approve(p.path(), &id, &alice).code, 0);
    // Claiming without the params is refused (they are only HMACs in the store) ...
    let bare = claim(p.path(), &id, &requester);
    assert_eq!(bare.code, 3, "{bare:?}");
    assert!(bare.stdout.contains("send the params again"), "{bare:?}");
    // ... other params are refused, and the approved ones get the ticket.
    let wrong = run_in(
        p.path(),
        &[
            "approval",
            "claim",
            &id,
            "--token",
            &requester,
            "--params",
            r#"{"payload":{"card":"other"}}"#,
            "--output",
            "json",
        ],
    );
    assert_eq!(wrong.code, 3, "{wrong:?}");
    let right = run_in(
        p.path(),
        &[
            "approval", "claim", &id, "--token", &requester, "--params", &params, "--output",
            "json",
        ],
    );
    assert_eq!(right.code, 0, "{right:?}");
    assert!(right.json()["ticket"].is_string());
}

/// Defect: a pause denied new decisions, but a ticket issued a minute earlier still ran
/// for its whole TTL. The runner asks the gate before redeeming.
#[test]
fn a_pause_stops_tickets_already_issued() {
    let p = project("");
    let allowed = scale_staging(p.path(), "agent-1", "developer");
    assert_eq!(allowed.code, 0, "{allowed:?}");
    let ticket = allowed.json()["ticket"].as_str().unwrap().to_owned();
    let paused = run_in(
        p.path(),
        &["caller", "pause", "agent-1", "--reason", "incident"],
    );
    assert_eq!(paused.code, 0, "{paused:?}");
    let refused = run_in(p.path(), &["run", &ticket, "--output", "json"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let report = refused.json();
    assert_eq!(report["reason_code"], "caller_paused", "{report}");
    assert_eq!(report["record"]["executed"], false);
    // Nothing was redeemed: once resumed, the ticket runs, once.
    assert_eq!(run_in(p.path(), &["caller", "resume", "agent-1"]).code, 0);
    let ran = run_in(p.path(), &["run", &ticket, "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["reason_code"], "executed");
    // The pause and the resume are in the audit log, by whom and why.
    let log = std::fs::read_to_string(p.path().join(".agentsafe-test-state/audit.jsonl")).unwrap();
    assert!(
        log.contains("\"op\":\"pause\"") && log.contains("\"op\":\"resume\""),
        "{log}"
    );
}
