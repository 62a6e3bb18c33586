//! `agentsafe approval`: list, show, approve, deny and wait for approval requests.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentsafe_core::Timestamp;
use agentsafe_gate::{ApprovalRecord, ApprovalState, ApproveOutcome, Claimed, Gate, summary_json};

use crate::cmd::decide::{
    CallerArgs, caller_from, claimed, parse_params, print_outcome, verdict_code,
};
use crate::context::Context;
use crate::exit;

/// `agentsafe approval ...`
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalCommand {
    /// List approval requests (pending ones unless --all)
    List(ListArgs),
    /// Show one approval request (sensitive params are shown as their HMACs)
    Show(IdArg),
    /// Vote for a request as the holder of an approver token; distinct approvers are
    /// distinct people (delegation roots)
    Approve(ResolveArgs),
    /// Deny a pending request
    Deny(ResolveArgs),
    /// As the requester, claim the one ticket of an approved request: the request is
    /// decided again under the policy and limits in force now
    Claim(ClaimArgs),
    /// Wait until a request is resolved; with the requester's --token, claim its ticket
    /// once approved. Exit 0 when approved (and claimed), 3 when denied or expired, 1 on
    /// timeout
    Wait(WaitArgs),
    /// Counts of requests by state, and notification deliveries and failures
    Stats,
}

/// Arguments of `approval list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Also list resolved and expired requests.
    #[arg(long)]
    pub all: bool,
}

/// One request id.
#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The approval request id.
    pub id: String,
}

/// Arguments of `approval approve` and `approval deny`.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// The approval request id.
    pub id: String,
    /// The approver's identity token (`agentsafe token issue --role approver`); `-` reads stdin.
    #[arg(
        long = "as",
        value_name = "TOKEN",
        env = "AGENTSAFE_APPROVER_TOKEN",
        hide_env_values = true
    )]
    pub token: String,
    /// Why, recorded with the answer.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Arguments of `approval claim`.
#[derive(Debug, clap::Args)]
pub struct ClaimArgs {
    /// The approval request id.
    pub id: String,
    #[command(flatten)]
    pub who: CallerArgs,
    /// The params again, as a JSON object: needed when the action has sensitive params
    /// (the store keeps only their HMACs). They must be exactly those approved.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
}

/// Arguments of `approval wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The approval request id.
    pub id: String,
    /// How long to wait, such as `30s` or `10m`.
    #[arg(long, value_parser = agentsafe_core::duration::parse, default_value = "5m")]
    pub timeout: Duration,
    /// The requester's identity token: claim the ticket once approved.
    #[arg(long, env = "AGENTSAFE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The params again (see `approval claim`).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
}

/// Runs an `approval` subcommand.
///
/// # Errors
/// When the state store cannot be opened or the request does not exist.
pub fn run(cmd: ApprovalCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let gate = ctx.gate()?;
    match cmd {
        ApprovalCommand::List(a) => list(&gate, ctx, a.all),
        ApprovalCommand::Show(a) => {
            let r = gate.approval(&a.id)?;
            print_record(ctx, &r)?;
            Ok(ExitCode::from(exit::ALLOW))
        }
        ApprovalCommand::Approve(a) => {
            let token = crate::cmd::token::read_token(&a.token)?;
            match gate.approve(&a.id, &token, a.reason.as_deref())? {
                ApproveOutcome::Counted(r) => {
                    print_record(ctx, &r)?;
                    if !ctx.json() {
                        out!(
                            "approval recorded; {} of {} approvals",
                            r.votes.len(),
                            r.required
                        );
                    }
                    Ok(ExitCode::from(exit::REQUIRE_APPROVAL))
                }
                ApproveOutcome::Approved(r) => {
                    print_record(ctx, &r)?;
                    if !ctx.json() {
                        out!(
                            "approved: the requester claims its ticket with `agentsafe approval claim {}`",
                            r.id
                        );
                    }
                    Ok(ExitCode::from(exit::ALLOW))
                }
            }
        }
        ApprovalCommand::Deny(a) => {
            let token = crate::cmd::token::read_token(&a.token)?;
            let r = gate.deny(&a.id, &token, a.reason.as_deref())?;
            print_record(ctx, &r)?;
            Ok(ExitCode::from(exit::ALLOW))
        }
        ApprovalCommand::Claim(a) => {
            let claimed = claimed(&a.who, caller_from(&a.who))?;
            let params = a
                .params
                .as_deref()
                .map(|p| parse_params(Some(p)))
                .transpose()?;
            let outcome = gate.claim(&a.id, &claimed, params);
            if ctx.json() {
                out!("{}", serde_json::to_string_pretty(&outcome.to_json()?)?);
            } else {
                print_outcome(&outcome);
            }
            Ok(verdict_code(outcome.decision.decision))
        }
        ApprovalCommand::Wait(a) => wait(&gate, ctx, &a),
        ApprovalCommand::Stats => stats(&gate, ctx),
    }
}

fn list(gate: &Gate, ctx: &Context, all: bool) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let rows: Vec<ApprovalRecord> = gate
        .approvals()?
        .into_iter()
        .filter(|r| all || r.state_at(now) == ApprovalState::Pending)
        .collect();
    if ctx.json() {
        let v: Vec<serde_json::Value> = rows.iter().map(|r| summary_json(r, now)).collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else if rows.is_empty() {
        out!("no {}approval requests", if all { "" } else { "pending " });
    } else {
        for r in &rows {
            out!(
                "{}  {:<8}  {} on {} by {}  {}/{} approvals  expires {}",
                r.id,
                r.state_at(now).as_str(),
                r.request.action,
                r.request.target,
                r.request.caller.id,
                r.votes.len(),
                r.required,
                r.expires_at
            );
        }
    }
    Ok(ExitCode::from(exit::ALLOW))
}

fn print_record(ctx: &Context, r: &ApprovalRecord) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let v = summary_json(r, now);
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    out!(
        "approval {}: {}  {} on {} by {}",
        r.id,
        r.state_at(now).as_str().to_uppercase(),
        r.request.action,
        r.request.target,
        r.request.caller.id
    );
    out!("  reason:      {}", r.reason);
    if let Some(rule) = &r.rule_id {
        out!("  rule:        {rule}");
    }
    out!(
        "  params:      {} ({})",
        serde_json::Value::Object(r.request.params.clone()),
        r.params_digest
    );
    if let Some(t) = &r.request.change_ticket {
        out!("  change:      {t}");
    }
    out!(
        "  approvers:   {} of role {} ({} so far: {})",
        r.required,
        r.approvers.join(" | "),
        r.votes.len(),
        r.votes
            .iter()
            .map(|v| v.approver.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(d) = &r.denied {
        out!(
            "  denied by:   {}{}",
            d.approver,
            d.reason
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    out!("  expires:     {}", r.expires_at);
    if let Some(n) = &r.ticket_nonce {
        out!("  claimed:     ticket {n} was issued to the requester");
    }
    Ok(())
}

fn wait(gate: &Gate, ctx: &Context, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + a.timeout;
    loop {
        let r = gate.approval(&a.id)?;
        match r.state_at(Timestamp::now()) {
            ApprovalState::Approved => {
                let Some(token) = &a.token else {
                    print_record(ctx, &r)?;
                    return Ok(ExitCode::from(exit::ALLOW));
                };
                let token = crate::cmd::token::read_token(token)?;
                let params = a
                    .params
                    .as_deref()
                    .map(|p| parse_params(Some(p)))
                    .transpose()?;
                let outcome = gate.claim(&a.id, &Claimed::token(token), params);
                if ctx.json() {
                    out!("{}", serde_json::to_string_pretty(&outcome.to_json()?)?);
                } else if let Some(t) = &outcome.ticket {
                    out!("{t}");
                } else {
                    print_outcome(&outcome);
                }
                return Ok(verdict_code(outcome.decision.decision));
            }
            ApprovalState::Denied | ApprovalState::Expired => {
                print_record(ctx, &r)?;
                return Ok(ExitCode::from(exit::DENY));
            }
            ApprovalState::Pending => {}
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "approval `{}` is still pending after {}",
                a.id,
                agentsafe_core::duration::format(a.timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
    }
}

fn stats(gate: &Gate, ctx: &Context) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
    for r in gate.approvals()? {
        *by_state.entry(r.state_at(now).as_str()).or_default() += 1;
    }
    let counters = gate.state_store()?.counters()?;
    if ctx.json() {
        let v = serde_json::json!({ "requests": by_state, "counters": counters });
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (k, v) in &by_state {
            out!("{k:<20} {v}");
        }
        for (k, v) in &counters {
            out!("{k:<20} {v}");
        }
    }
    Ok(ExitCode::from(exit::ALLOW))
}
