//! `agentsafe caller`: pause, resume and inspect the limits of a caller, keyed by the root
//! of its delegation chain.

use std::process::ExitCode;

use agentsafe_gate::Gate;

use crate::context::Context;
use crate::exit;

/// `agentsafe caller ...`
#[derive(Debug, clap::Subcommand)]
pub enum CallerCommand {
    /// Pause a caller (and everything delegated from it): every decision is DENY
    /// `caller_paused` until `resume`
    Pause(PauseArgs),
    /// Lift a pause and close an open circuit breaker
    Resume(IdArg),
    /// Show pause, breaker, rate and risk state
    Status(IdArg),
}

/// Arguments of `caller pause`.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The root caller id.
    pub id: String,
    /// Why, shown in every refused decision.
    #[arg(long, default_value = "paused by an operator")]
    pub reason: String,
    /// Who pauses it (default `$USER`).
    #[arg(long)]
    pub by: Option<String>,
}

/// A caller id.
#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The root caller id.
    pub id: String,
}

/// Runs a `caller` subcommand.
///
/// # Errors
/// When the state store cannot be opened or written.
pub fn run(cmd: CallerCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let gate = ctx.gate()?;
    let id = match cmd {
        CallerCommand::Pause(a) => {
            let by =
                a.by.or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "operator".to_owned());
            gate.pause(&a.id, &by, &a.reason)?;
            if !ctx.json() {
                out!("caller `{}` paused", a.id);
            }
            a.id
        }
        CallerCommand::Resume(a) => {
            let by = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
            let lifted = gate.resume(&a.id, &by)?;
            if !ctx.json() {
                out!(
                    "caller `{}` {}",
                    a.id,
                    if lifted { "resumed" } else { "was not paused" }
                );
            }
            a.id
        }
        CallerCommand::Status(a) => a.id,
    };
    status(&gate, ctx, &id)
}

fn status(gate: &Gate, ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let cfg = &ctx.config.limits;
    let s = gate.caller_state(id)?;
    if ctx.json() {
        let mut v = serde_json::to_value(&s)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("caller".into(), id.into());
            obj.insert("rate_limit".into(), cfg.rate.as_ref().map(|r| r.max).into());
            obj.insert(
                "risk_limits".into(),
                cfg.risk
                    .as_ref()
                    .map(
                        |r| serde_json::json!({"escalate_at": r.escalate_at, "deny_at": r.deny_at}),
                    )
                    .into(),
            );
        }
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::from(exit::ALLOW));
    }
    let w = cfg.windows();
    out!("caller {id}");
    match &s.paused {
        Some(p) => out!("  paused:     by {} at {}: {}", p.by, p.at, p.reason),
        None => out!("  paused:     no"),
    }
    match s.open_until {
        Some(u) => out!("  breaker:    open until {u}"),
        None => out!(
            "  breaker:    closed ({} denials in the last {})",
            s.denials,
            agentsafe_core::duration::format(w.breaker)
        ),
    }
    let limit = cfg
        .rate
        .as_ref()
        .map_or_else(|| "no limit".to_owned(), |r| format!("limit {}", r.max));
    out!(
        "  requests:   {} in the last {} ({limit})",
        s.rate_count,
        agentsafe_core::duration::format(w.rate)
    );
    out!(
        "  risk score: {} in the last {}",
        s.risk_score,
        agentsafe_core::duration::format(w.risk)
    );
    Ok(ExitCode::from(exit::ALLOW))
}
