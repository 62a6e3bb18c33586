//! `agentsafe ticket`: verify and inspect execution tickets, reconcile tickets a crash left
//! pending, and prune expired redemption records.

use std::process::ExitCode;

use agentsafe_core::Timestamp;
use agentsafe_tickets::danger;
use agentsafe_tickets::{
    KeySet, Nonce, Outcome, SqliteTicketStore, TicketExpectation, TicketRecord, TicketStore,
    TicketVerifier,
};

use crate::cmd::token::read_token;
use crate::context::Context;
use crate::exit;

/// `agentsafe ticket ...`
#[derive(Debug, clap::Subcommand)]
pub enum TicketCommand {
    /// Verify a ticket's signature, type, audience, expiry and params digest; exits 1 with the
    /// reason code when it is invalid
    Verify(VerifyArgs),
    /// Show a ticket's claims and its redemption state, by token or by nonce
    Show(ShowArgs),
    /// Record the outcome of a ticket a crash left PENDING; it never becomes executable again
    Reconcile(ReconcileArgs),
    /// Remove redemption records of tickets that expired longer ago than `[tickets] retention`
    Prune,
}

/// Arguments of `agentsafe ticket verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The ticket, or `-` to read it from stdin.
    pub token: String,
    /// Require the ticket to be for this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Require the ticket to be for this target.
    #[arg(long)]
    pub target: Option<String>,
}

/// Arguments of `agentsafe ticket show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A ticket (or `-` for stdin), or a ticket nonce (32 hex digits).
    pub ticket: String,
}

/// Arguments of `agentsafe ticket reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The nonce of the PENDING ticket.
    pub nonce: Nonce,
    /// What happened, as determined by the operator.
    #[arg(long, value_enum)]
    pub outcome: OutcomeArg,
    /// A note recorded with the outcome (what was checked).
    #[arg(long)]
    pub note: Option<String>,
}

/// The outcome given to `ticket reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutcomeArg {
    /// The action ran and succeeded.
    Succeeded,
    /// The action failed (or did not run).
    Failed,
    /// It cannot be determined.
    Unknown,
}

impl From<OutcomeArg> for Outcome {
    fn from(value: OutcomeArg) -> Self {
        match value {
            OutcomeArg::Succeeded => Outcome::Succeeded,
            OutcomeArg::Failed => Outcome::Failed,
            OutcomeArg::Unknown => Outcome::Unknown,
        }
    }
}

/// Runs `agentsafe ticket ...`.
///
/// # Errors
/// When keys or the database cannot be opened, or a reconciliation is refused.
pub fn run(cmd: TicketCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        TicketCommand::Verify(args) => verify(args, ctx),
        TicketCommand::Show(args) => show(args, ctx),
        TicketCommand::Reconcile(args) => reconcile(args, ctx),
        TicketCommand::Prune => {
            let store = open_store(ctx)?;
            let removed = store.prune(Timestamp::now())?;
            if ctx.json() {
                out!("{}", serde_json::json!({ "removed": removed }));
            } else {
                out!("removed {removed} expired ticket record(s)");
            }
            Ok(ExitCode::from(exit::ALLOW))
        }
    }
}

fn verifier(ctx: &Context) -> anyhow::Result<TicketVerifier> {
    let cfg = &ctx.config.tickets;
    let keys = KeySet::load(&cfg.trusted_key_paths(&ctx.config_base(), &ctx.key_dir))?;
    Ok(TicketVerifier::new(keys, cfg))
}

fn database(ctx: &Context) -> std::path::PathBuf {
    ctx.config
        .tickets
        .database_path(&ctx.config_base(), &ctx.state_dir)
}

fn open_store(ctx: &Context) -> anyhow::Result<SqliteTicketStore> {
    let path = database(ctx);
    if !path.is_file() {
        anyhow::bail!("no ticket database at `{}`", path.display());
    }
    Ok(SqliteTicketStore::open_with(
        &path,
        &ctx.config.tickets.store_options(),
    )?)
}

fn verify(args: VerifyArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let token = read_token(&args.token)?;
    let expect = TicketExpectation {
        action: args.action.as_deref(),
        target: args.target.as_deref(),
    };
    match verifier(ctx)?.verify_with(&token, expect, Timestamp::now()) {
        Ok(ticket) => {
            if ctx.json() {
                let doc = serde_json::json!({
                    "valid": true,
                    "nonce": ticket.nonce(),
                    "kid": ticket.kid(),
                    "claims": ticket.claims_json(),
                });
                out!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                out!("valid ticket {}", ticket.nonce());
                out!("  action:     {}", ticket.action());
                out!("  target:     {}", ticket.target());
                out!("  caller:     {}", ticket.caller().id);
                out!("  decision:   {}", ticket.decision_id());
                out!("  params:     {}", ticket.params_digest());
                out!("  expires at: {}", ticket.expires_at());
            }
            Ok(ExitCode::from(exit::ALLOW))
        }
        Err(e) => super::print_invalid(ctx, "ticket", e.code(), None, &e.to_string()),
    }
}

fn show(args: ShowArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (nonce, token_doc) = match args.ticket.parse::<Nonce>() {
        Ok(nonce) => (nonce, None),
        Err(_) => {
            let token = read_token(&args.ticket)?;
            let (header, claims) = danger::decode_unverified(&token)?;
            let nonce: Nonce = claims
                .get("nonce")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| anyhow::anyhow!("the token has no ticket nonce"))?
                .parse()?;
            let verdict = match verifier(ctx).and_then(|v| Ok(v.verify(&token, Timestamp::now())?))
            {
                Ok(_) => "valid".to_owned(),
                Err(e) => format!("invalid: {e:#}"),
            };
            (nonce, Some((header, claims, verdict)))
        }
    };
    let path = database(ctx);
    let record: Option<TicketRecord> = if path.is_file() {
        open_store(ctx)?.get(nonce)?
    } else {
        None
    };
    if ctx.json() {
        let doc = match &token_doc {
            Some((header, claims, verdict)) => serde_json::json!({
                "nonce": nonce,
                "verification": verdict,
                "header": header,
                "claims": claims,
                "record": record,
            }),
            None => serde_json::json!({ "nonce": nonce, "record": record }),
        };
        out!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("ticket {nonce}");
        if let Some((_, claims, verdict)) = &token_doc {
            out!("  verification: {verdict}");
            out!(
                "  claims (as decoded): {}",
                serde_json::to_string_pretty(claims)?
            );
        }
        match &record {
            None => out!("  state: unknown to `{}`", path.display()),
            Some(r) => {
                out!("  state: {}", r.state);
                out!("  action: {}  target: {}", r.action, r.target);
                out!("  decision: {}", r.decision_id);
                out!("  expires at: {}", r.expires_at);
                if let Some(t) = r.pending_at {
                    out!("  redemption began: {t}");
                }
                if let Some(receipt) = &r.receipt {
                    out!(
                        "  outcome: {}{} at {}",
                        receipt.outcome,
                        if receipt.reconciled {
                            " (reconciled)"
                        } else {
                            ""
                        },
                        receipt.committed_at
                    );
                    if let Some(note) = &receipt.note {
                        out!("  note: {note}");
                    }
                    out!("  receipt: {}", receipt.receipt);
                }
            }
        }
    }
    Ok(ExitCode::from(exit::ALLOW))
}

fn reconcile(args: ReconcileArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = open_store(ctx)?;
    let receipt = store.reconcile(args.nonce, args.outcome.into(), args.note.as_deref())?;
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&receipt)?);
    } else {
        out!(
            "ticket {} is now committed with outcome {}; it will not execute again",
            receipt.nonce,
            receipt.outcome
        );
    }
    Ok(ExitCode::from(exit::ALLOW))
}
