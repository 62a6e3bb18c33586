//! `agentsafe approval`: list, show, approve, deny and wait for approval requests.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentsafe_core::Timestamp;
use agentsafe_state::{ApprovalRecord, ApprovalState, StateStore};

use crate::approvals::{self, ApproveOutcome};
use crate::context::Context;
use crate::exit;

/// `agentsafe approval ...`
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalCommand {
    /// List approval requests (pending ones unless --all)
    List(ListArgs),
    /// Show one approval request, with its ticket once approved
    Show(IdArg),
    /// Approve a request as the holder of an approver token; the last required approval
    /// re-evaluates the policy and issues exactly one ticket
    Approve(ResolveArgs),
    /// Deny a pending request
    Deny(ResolveArgs),
    /// Wait until a request is resolved: exit 0 and print the ticket when approved, 3 when
    /// denied or expired, 1 on timeout
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

/// Arguments of `approval wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The approval request id.
    pub id: String,
    /// How long to wait, such as `30s` or `10m`.
    #[arg(long, value_parser = agentsafe_core::duration::parse, default_value = "5m")]
    pub timeout: Duration,
}

/// Runs an `approval` subcommand.
///
/// # Errors
/// When the state store cannot be opened or the request does not exist.
pub fn run(cmd: ApprovalCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = crate::limits::open_store(ctx)?;
    match cmd {
        ApprovalCommand::List(a) => list(&store, ctx, a.all),
        ApprovalCommand::Show(a) => {
            let r = get(&store, &a.id)?;
            print_record(ctx, &r, true)?;
            Ok(ExitCode::from(exit::ALLOW))
        }
        ApprovalCommand::Approve(a) => {
            let token = crate::cmd::token::read_token(&a.token)?;
            let who = approvals::verify_approver(ctx, &token)?;
            let pdp = ctx.load_pdp()?;
            match approvals::approve(ctx, &store, &pdp, &a.id, &who, a.reason.as_deref())? {
                ApproveOutcome::Counted(r) => {
                    print_record(ctx, &r, false)?;
                    if !ctx.json() {
                        out!(
                            "approval by {} recorded; {} of {} approvals",
                            who.id,
                            r.votes.len(),
                            r.required
                        );
                    }
                    Ok(ExitCode::from(exit::REQUIRE_APPROVAL))
                }
                ApproveOutcome::Approved(r) => {
                    print_record(ctx, &r, true)?;
                    Ok(ExitCode::from(exit::ALLOW))
                }
                ApproveOutcome::DeniedByPolicy(r) => {
                    print_record(ctx, &r, false)?;
                    Ok(ExitCode::from(exit::DENY))
                }
            }
        }
        ApprovalCommand::Deny(a) => {
            let token = crate::cmd::token::read_token(&a.token)?;
            let who = approvals::verify_approver(ctx, &token)?;
            let r = approvals::deny(ctx, &store, &a.id, &who, a.reason.as_deref())?;
            print_record(ctx, &r, false)?;
            Ok(ExitCode::from(exit::ALLOW))
        }
        ApprovalCommand::Wait(a) => wait(&store, ctx, &a),
        ApprovalCommand::Stats => stats(&store, ctx),
    }
}

fn get(store: &dyn StateStore, id: &str) -> anyhow::Result<ApprovalRecord> {
    store
        .approval(id)?
        .ok_or_else(|| anyhow::anyhow!("no approval request `{id}`"))
}

fn list(store: &dyn StateStore, ctx: &Context, all: bool) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let rows: Vec<ApprovalRecord> = store
        .approvals()?
        .into_iter()
        .filter(|r| all || r.state_at(now) == ApprovalState::Pending)
        .collect();
    if ctx.json() {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| approvals::summary_json(r, now))
            .collect();
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

fn print_record(ctx: &Context, r: &ApprovalRecord, with_ticket: bool) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let mut v = approvals::summary_json(r, now);
    if with_ticket && let (Some(obj), Some(t)) = (v.as_object_mut(), &r.ticket) {
        obj.insert("ticket".into(), t.clone().into());
    }
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
    if with_ticket && let Some(t) = &r.ticket {
        out!("  ticket:      {t}");
    }
    Ok(())
}

fn wait(store: &dyn StateStore, ctx: &Context, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + a.timeout;
    loop {
        let r = get(store, &a.id)?;
        match r.state_at(Timestamp::now()) {
            ApprovalState::Approved => {
                if ctx.json() {
                    print_record(ctx, &r, true)?;
                } else {
                    out!("{}", r.ticket.as_deref().unwrap_or_default());
                }
                return Ok(ExitCode::from(exit::ALLOW));
            }
            ApprovalState::Denied | ApprovalState::Expired => {
                print_record(ctx, &r, false)?;
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

fn stats(store: &dyn StateStore, ctx: &Context) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
    for r in store.approvals()? {
        *by_state.entry(r.state_at(now).as_str()).or_default() += 1;
    }
    let counters = store.counters()?;
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
