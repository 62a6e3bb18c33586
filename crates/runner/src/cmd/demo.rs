//! `agentsafe demo`: the product in one screen, on the embedded example, in a scratch folder.

use std::path::PathBuf;
use std::process::ExitCode;

use agentsafe_core::{Caller, Params, Request, Timestamp, Verdict};
use agentsafe_tickets::store::TicketStore as _;
use agentsafe_tickets::{
    IdentityIssuer, IdentityRequest, KeyPurpose, KeySet, Outcome as RunOutcome, Redemption, Signer,
    SqliteTicketStore, TicketVerifier,
};
use anyhow::Context as _;

use crate::context::{Context, OutputFormat};
use crate::gate::{Claimed, Gate, Outcome};

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
pub fn demo(args: DemoArgs, _outer: &Context) -> anyhow::Result<ExitCode> {
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
    let config = crate::config::load(&config_path)?;
    let ctx = Context {
        output: OutputFormat::Text,
        config,
        config_path: Some(config_path),
        actions_dir: dir.join("actions"),
        policies_dir: dir.join("policies"),
        inventory_path: dir.join("inventory.toml"),
        state_dir: dir.join("state"),
        key_dir: key_dir.clone(),
    };
    let gate = Gate::open(&ctx)?;
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
    let allowed = gate.decide(
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
    let injected = gate.decide(
        &dev,
        request(
            "delete-pod",
            "dev/sandbox",
            serde_json::json!({"pod": "x --all"}),
        ),
    );
    show(&injected);

    step(5, "web-bot names another namespace than its target's");
    let moved = gate.decide(
        &dev,
        request(
            "scale-deployment",
            "staging/api-server",
            serde_json::json!({"replicas": 4, "namespace": "payments"}),
        ),
    );
    show(&moved);

    step(6, "sre-bot asks to drain a staging node (critical risk)");
    let approval = gate.decide(
        &sre,
        request("drain-node", "staging/node-1", serde_json::json!({})),
    );
    show(&approval);

    step(
        7,
        "The ALLOW from step 3 came with a signed single-use ticket; redeem it, then replay it",
    );
    let mut replay_refused = false;
    if let (Some(ticket), true) = (&allowed.ticket, allowed.decision.decision == Verdict::Allow) {
        let cfg = &ctx.config.tickets;
        let verifier = TicketVerifier::new(
            KeySet::load(&cfg.trusted_key_paths(&ctx.config_base(), &key_dir))?,
            cfg,
        );
        let store = SqliteTicketStore::open_with(
            &cfg.database_path(&ctx.config_base(), &ctx.state_dir),
            &cfg.store_options(),
        )?;
        let verified = verifier.verify_for(
            ticket,
            "scale-deployment",
            "staging/api-server",
            Timestamp::now(),
        )?;
        out!(
            "   ticket {} verified: signature, audience, expiry, params digest",
            verified.nonce()
        );
        match store.begin(&verified)? {
            Redemption::Execute(guard) => {
                // The execution pipeline (`agentsafe run`) arrives with the runner; the demo
                // redeems the ticket to show that a second redemption is refused.
                guard.commit(
                    RunOutcome::Succeeded,
                    serde_json::json!({"redeemed_by": "agentsafe demo"}),
                )?;
                out!(
                    "   → redeemed: ISSUED → PENDING → COMMITTED in {}",
                    cfg.database_path(&ctx.config_base(), &ctx.state_dir)
                        .display()
                );
            }
            other => anyhow::bail!("a fresh ticket was not redeemable: {other:?}"),
        }
        // A second process, or this one after a restart, opens the same database.
        let again = SqliteTicketStore::open_with(
            &cfg.database_path(&ctx.config_base(), &ctx.state_dir),
            &cfg.store_options(),
        )?;
        match again.begin(&verified)? {
            Redemption::AlreadyCommitted(receipt) => {
                replay_refused = true;
                out!(
                    "   → replay refused: already redeemed ({:?} at {}), nothing runs twice",
                    receipt.outcome,
                    receipt.committed_at
                );
            }
            other => anyhow::bail!("a replayed ticket was not refused: {other:?}"),
        }
    } else {
        out!("   (step 3 was not allowed, so there is no ticket)");
    }

    step(8, "Verify the audit log with only the audit public key");
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
        && replay_refused;
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
