//! `agentsafe demo`: the product in one screen, on the embedded example, in a scratch folder.

use std::path::PathBuf;
use std::process::ExitCode;

use agentsafe_core::{Caller, Params, Request, Timestamp, Verdict};
use agentsafe_runner::executors::dry_run;
use agentsafe_runner::record::{PrecheckStatus, RunCode};
use agentsafe_runner::{RunKind, RunReport};
use agentsafe_tickets::{IdentityIssuer, IdentityRequest, KeyPurpose, Signer};
use anyhow::Context as _;

use crate::cmd::run::run_ticket;
use crate::context::{Context, OutputFormat};
use agentsafe_gate::{Claimed, Outcome};

/// Arguments of `agentsafe demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder to run in (default: a fresh temporary folder, removed afterwards). Kept
    /// afterwards when given, so the audit log and database can be inspected.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn step(n: u32, title: &str) {
    out!("\n{n}. {title}");
}

fn show(o: &Outcome) {
    let d = &o.decision;
    let rule = d
        .rule_id
        .as_deref()
        .map(|r| format!(", rule {r}"))
        .unwrap_or_default();
    out!("   → {}  ({}{rule})", d.decision.label(), d.reason_code);
    out!("     {}", d.reason);
    for diag in d
        .diagnostics
        .iter()
        .filter(|x| !d.reason.contains(x.as_str()))
    {
        out!("     - {diag}");
    }
    if let Some(seq) = o.audit_seq {
        out!("     recorded in the audit log as entry {seq}");
    }
}

fn show_run(r: &RunReport) {
    let rec = &r.record;
    out!(
        "   → {}  ({})",
        r.outcome.as_str().to_uppercase(),
        r.reason_code
    );
    out!("     {}", r.message);
    if !rec.prechecks.is_empty() {
        let passed = rec
            .prechecks
            .iter()
            .filter(|c| c.result == PrecheckStatus::Passed)
            .count();
        out!("     prechecks: {passed}/{} passed", rec.prechecks.len());
    }
    if let Some(diff) = rec.diff.as_ref().filter(|d| !d.is_empty()) {
        let list: Vec<String> = diff
            .iter()
            .map(|(k, v)| format!("{k} {} → {}", v.before, v.after))
            .collect();
        out!(
            "     before/after state captured, credentials revoked; diff: {}",
            list.join(", ")
        );
    }
    if let Some(seq) = r.audit_seq {
        out!("     recorded in the audit log as entry {seq}");
    }
    for w in &r.warnings {
        out!("     warning: {w}");
    }
}

fn request(action: &str, target: &str, params: serde_json::Value) -> Request {
    Request {
        action: action.into(),
        target: target.into(),
        caller: Caller::default(),
        params: params.as_object().cloned().unwrap_or_else(Params::new),
        ..Request::default()
    }
}

/// `agentsafe demo`.
pub fn demo(args: DemoArgs, outer: &Context) -> anyhow::Result<ExitCode> {
    let scratch;
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create `{}`", d.display()))?;
            d
        }
        None => {
            scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
            scratch.path().to_path_buf()
        }
    };
    out!(
        "agentsafe demo — the shipped catalogue, policies and inventory, in {}",
        dir.display()
    );

    step(
        1,
        "Scaffold the example and generate separate identity, ticket and audit signing keys",
    );
    let files = crate::embedded::write_to(&dir, true)?;
    let key_dir = dir.join("keys");
    agentsafe_tickets::keys::generate_key_files(&key_dir, &KeyPurpose::ALL, true)?;
    let config_path = dir.join("agentsafe.toml");
    let (config, config_bytes) = agentsafe::config::load(&config_path)?;
    let project = agentsafe::Project {
        config,
        config_path: Some(config_path),
        config_bytes: Some(config_bytes),
        actions_dir: dir.join("actions"),
        policies_dir: dir.join("policies"),
        inventory_path: dir.join("inventory.toml"),
        state_dir: dir.join("state"),
        key_dir: key_dir.clone(),
    };
    let ctx = Context::from_project(project, OutputFormat::Text, outer.executors.clone());
    let gate = ctx.gate()?;
    out!(
        "   {} files; {} actions, {} rules, {} targets; keys in {} (the audit log is in {})",
        files.len(),
        gate.pdp().registry().len(),
        gate.pdp().policies().len(),
        gate.pdp().inventory().len(),
        key_dir.display(),
        ctx.state_dir.display()
    );

    step(2, "Issue signed identity tokens for two agents");
    let identity = IdentityIssuer::new(
        Signer::load(&KeyPurpose::Identity.private_key_path(&key_dir))?,
        &ctx.config.identity,
    )?;
    let token = |agent: &str, role: &str| -> anyhow::Result<String> {
        let req = IdentityRequest {
            agent: agent.into(),
            roles: vec![role.into()],
            groups: Vec::new(),
        };
        Ok(identity.issue(&req, "1h".parse()?, Timestamp::now())?.token)
    };
    let dev = Claimed {
        token: Some(token("web-bot", "developer")?),
        plain: None,
    };
    let sre = Claimed {
        token: Some(token("sre-bot", "sre")?),
        plain: None,
    };
    out!(
        "   web-bot (role developer) and sre-bot (role sre): EdDSA JWTs, verifiable by any JWT library"
    );

    step(3, "web-bot asks to scale staging/api-server to 4 replicas");
    let allowed = gate.check(
        &dev,
        request(
            "scale-deployment",
            "staging/api-server",
            serde_json::json!({"replicas": 4}),
        ),
    );
    show(&allowed);
    out!(
        "     params after binding to the inventory: {}",
        serde_json::Value::Object(allowed.decision.params.clone())
    );

    step(
        4,
        "web-bot tries to smuggle a flag through a pod name: delete-pod `x --all`",
    );
    let injected = gate.check(
        &dev,
        request(
            "delete-pod",
            "dev/sandbox",
            serde_json::json!({"pod": "x --all"}),
        ),
    );
    show(&injected);

    step(5, "web-bot names another namespace than its target's");
    let moved = gate.check(
        &dev,
        request(
            "scale-deployment",
            "staging/api-server",
            serde_json::json!({"replicas": 4, "namespace": "payments"}),
        ),
    );
    show(&moved);

    step(6, "sre-bot asks to drain a staging node (critical risk)");
    let approval = gate.check(
        &sre,
        request("drain-node", "staging/node-1", serde_json::json!({})),
    );
    show(&approval);

    step(
        7,
        "Run the ticket from step 3 through the dry-run executor, then replay it",
    );
    let mut replay_refused = false;
    let mut ran = None;
    if let (Some(ticket), true) = (&allowed.ticket, allowed.decision.decision == Verdict::Allow) {
        let report = run_ticket(&ctx, ticket, dry_run::NAME, &RunKind::Execution)?;
        show_run(&report);
        if report.is_success() {
            ran = Some(allowed.decision.decision_id.to_string());
        }
        // A second process, or this one after a restart, presents the same ticket.
        let again = run_ticket(&ctx, ticket, dry_run::NAME, &RunKind::Execution)?;
        replay_refused = again.reason_code == RunCode::Replayed;
        if replay_refused {
            out!("   → replay refused: already redeemed, nothing runs twice");
            out!("     {}", again.message);
            if let Some(seq) = again.audit_seq {
                out!("     the refusal is recorded in the audit log as entry {seq}");
            }
        } else {
            show_run(&again);
        }
    } else {
        out!("   (step 3 was not allowed, so there is no ticket)");
    }

    step(
        8,
        "Plan the rollback of step 7 from its recorded before-state, and ask the PDP about it",
    );
    let mut rollback_planned = false;
    if let Some(decision_id) = &ran {
        let plan = crate::cmd::rollback::build_plan(&ctx, decision_id)?;
        out!(
            "   → {} on {} with {}  (from audit entry {})",
            plan.action,
            plan.target,
            serde_json::Value::Object(plan.params.clone()),
            plan.from_audit_seq
        );
        let mut request = plan.request();
        request.correlation_id = Some(format!("rollback-of-{decision_id}"));
        let check = gate.check(&dev, request);
        show(&check);
        rollback_planned = plan.params.get("replicas") == Some(&serde_json::json!(3));
    } else {
        out!("   (nothing ran in step 7, so there is nothing to roll back)");
    }

    step(9, "Verify the audit log with only the audit public key");
    // Close the log first: its final checkpoint covers every entry above.
    if let Some(e) = ctx.shutdown() {
        out!("   warning: the audit log did not close cleanly: {e}");
    }
    let log = ctx.config.audit.log_path(&ctx.state_dir);
    let public =
        agentsafe_audit::keys::load_verifying_key(&KeyPurpose::Audit.public_key_path(&key_dir))?;
    let report = agentsafe_audit::verify_log(&log, &public, None)?;
    out!(
        "   → ok: {} entries, every leaf and checkpoint verified",
        report.entries
    );
    let tampered = dir.join("tampered.jsonl");
    let text = std::fs::read_to_string(&log)?.replacen(
        "\"decision\":\"deny\"",
        "\"decision\":\"allow\"",
        1,
    );
    std::fs::write(&tampered, text)?;
    // The tampered copy keeps the real checkpoints, as an attacker editing the log would.
    let checkpoints =
        |log: &std::path::Path| PathBuf::from(format!("{}.checkpoints", log.display()));
    std::fs::copy(checkpoints(&log), checkpoints(&tampered))?;
    match agentsafe_audit::verify_log(&tampered, &public, None) {
        Ok(_) => out!("   (the tampered copy verified: this is a bug)"),
        Err(e) => out!("   → a copy with one DENY edited into an ALLOW is rejected: {e}"),
    }

    let ok = allowed.decision.decision == Verdict::Allow
        && injected.decision.decision == Verdict::Deny
        && moved.decision.decision == Verdict::Deny
        && approval.decision.decision == Verdict::RequireApproval
        && replay_refused
        && rollback_planned;
    out!(
        "\n{}",
        if ok {
            "Every step behaved as designed. Next: `agentsafe init my-project`, then edit policies/ and inventory.toml."
        } else {
            "Some step did not behave as designed: see above."
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::ERROR)
    })
}
