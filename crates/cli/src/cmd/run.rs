//! `agentsafe run TICKET`: execute what a ticket allows, through the execution pipeline.

use std::process::ExitCode;

use agentsafe_runner::record::{PrecheckStatus, RecordKind};
use agentsafe_runner::{RunKind, RunReport};

use crate::context::Context;
use crate::exit;

/// Arguments of `agentsafe run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The ticket from an ALLOW (`check --output json` prints it), or `-` to read stdin.
    pub ticket: String,
    /// The executor: `dry-run` (a simulator), `k8s` (Kubernetes, `[executors.k8s]`) or
    /// `aws` (`[executors.aws]`). Default: `[runner] executor`, else `dry-run`.
    #[arg(long)]
    pub executor: Option<String>,
    /// Preview only: run the prechecks, read the state and ask the backend to validate the
    /// change (Kubernetes `dryRun=All`, EC2 `DryRun`). Nothing executes and the ticket is
    /// not redeemed, so it can still run once afterwards. Recorded as a `preview` event.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `token` through the pipeline with the executor called `executor`, through the
/// process's gate (its audit log; its pause and breaker before redemption).
///
/// # Errors
/// When the executor is not available or the keys, ticket database or audit log cannot be
/// opened; nothing is redeemed then. Every later problem is in the report.
pub fn run_ticket(
    ctx: &Context,
    token: &str,
    executor: &str,
    kind: &RunKind,
) -> anyhow::Result<RunReport> {
    let gate = ctx.gate()?;
    Ok(ctx
        .project
        .run_ticket(&gate, &ctx.executors, token, executor, kind)?)
}

/// Prints a run report as text.
pub fn print_report(r: &RunReport) {
    let rec = &r.record;
    let preview = rec.kind == RecordKind::Preview;
    out!(
        "{}  {} on {} via {} ({})",
        if preview && r.is_success() {
            "PREVIEW OK".to_owned()
        } else {
            r.outcome.as_str().to_uppercase()
        },
        rec.action.as_deref().unwrap_or("?"),
        rec.target.as_deref().unwrap_or("?"),
        rec.executor,
        r.reason_code
    );
    out!("  {}", r.message);
    if !rec.prechecks.is_empty() {
        let list: Vec<String> = rec
            .prechecks
            .iter()
            .map(|c| {
                let adv = if c.advisory { ", advisory" } else { "" };
                let result = match c.result {
                    PrecheckStatus::Passed => "passed",
                    PrecheckStatus::Failed => "failed",
                    PrecheckStatus::Unsupported => "unsupported",
                };
                format!("{} {result}{adv}", c.name)
            })
            .collect();
        out!("  prechecks: {}", list.join("; "));
    }
    if let Some(diff) = rec.diff.as_ref().filter(|d| !d.is_empty()) {
        let list: Vec<String> = diff
            .iter()
            .map(|(k, v)| format!("{k} {} → {}", v.before, v.after))
            .collect();
        out!("  state diff: {}", list.join(", "));
    }
    if preview && let Some(would) = rec.output.as_ref().filter(|o| !o.is_null()) {
        out!("  the backend's dry run: {would}");
    } else if let Some(output) = r.output.as_ref().filter(|o| !o.is_null()) {
        // The unredacted output (a value read), for the caller only; the record holds its HMAC.
        out!("  output: {output}");
    }
    if let Some(seq) = r.audit_seq {
        out!("  audit: recorded as entry {seq}");
    }
    for w in &r.warnings {
        out!("  warning: {w}");
    }
}

/// The exit code of a run: 0 when the action ran, succeeded and was recorded, else 1.
pub fn report_code(r: &RunReport) -> ExitCode {
    ExitCode::from(if r.is_success() {
        exit::ALLOW
    } else {
        exit::ERROR
    })
}

/// `agentsafe run`.
pub fn run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let token = crate::cmd::token::read_token(&args.ticket)?;
    let executor = args
        .executor
        .unwrap_or_else(|| ctx.config.runner.executor.clone());
    if !ctx.executors.contains(&executor) {
        // Refuse before loading anything, so the message is the first thing said.
        anyhow::bail!(ctx.executors.unavailable(&executor));
    }
    let kind = if args.dry_run {
        RunKind::Preview
    } else {
        RunKind::Execution
    };
    let report = run_ticket(ctx, &token, &executor, &kind)?;
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report_code(&report))
}
