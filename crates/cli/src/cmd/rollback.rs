//! `agentsafe rollback plan|check|run DECISION_ID`: undo an execution through the same
//! decision point, audit log and pipeline as any other action.

use std::process::ExitCode;

use agentsafe_core::Verdict;
use agentsafe_runner::RunKind;
use agentsafe_runner::rollback::{self, RollbackPlan};

use crate::cmd::decide::{CallerArgs, caller_from, claimed, print_outcome, verdict_code};
use crate::cmd::run::{print_report, report_code, run_ticket};
use crate::context::Context;
use crate::exit;
use agentsafe_gate::Outcome;

/// `agentsafe rollback ...`
#[derive(Debug, clap::Subcommand)]
pub enum RollbackCommand {
    /// Print the compensating request for an execution, from its audit record
    Plan(PlanArgs),
    /// Ask the decision point whether the compensating request is allowed (audited, ticketed)
    Check(CheckArgs),
    /// Decide the compensating request and, when allowed, run it with the ticket it gets
    Run(RunArgs),
}

/// Arguments of `agentsafe rollback plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The decision id of the execution to undo.
    pub decision_id: String,
}

/// Arguments of `agentsafe rollback check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The decision id of the execution to undo.
    pub decision_id: String,
    #[command(flatten)]
    pub who: CallerArgs,
}

/// Arguments of `agentsafe rollback run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The decision id of the execution to undo.
    pub decision_id: String,
    #[command(flatten)]
    pub who: CallerArgs,
    /// The executor (default: `[runner] executor`, else `dry-run`).
    #[arg(long)]
    pub executor: Option<String>,
}

/// Runs `agentsafe rollback ...`.
///
/// # Errors
/// When there is no execution record for the decision, the action is not reversible, or
/// the configuration cannot be loaded.
pub fn run(cmd: RollbackCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        RollbackCommand::Plan(a) => {
            let plan = build_plan(ctx, &a.decision_id)?;
            if ctx.json() {
                out!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print_plan(&plan);
            }
            Ok(ExitCode::from(exit::ALLOW))
        }
        RollbackCommand::Check(a) => {
            let plan = build_plan(ctx, &a.decision_id)?;
            let outcome = decide(ctx, &plan, &a.who)?;
            if ctx.json() {
                out!("{}", serde_json::to_string_pretty(&outcome.to_json()?)?);
            } else {
                print_plan(&plan);
                print_outcome(&outcome);
            }
            Ok(verdict_code(outcome.decision.decision))
        }
        RollbackCommand::Run(a) => {
            let executor = a
                .executor
                .unwrap_or_else(|| ctx.config.runner.executor.clone());
            if !ctx.executors.contains(&executor) {
                anyhow::bail!(ctx.executors.unavailable(&executor));
            }
            let plan = build_plan(ctx, &a.decision_id)?;
            let outcome = decide(ctx, &plan, &a.who)?;
            let (Verdict::Allow, Some(ticket)) = (outcome.decision.decision, &outcome.ticket)
            else {
                if ctx.json() {
                    out!("{}", serde_json::to_string_pretty(&outcome.to_json()?)?);
                } else {
                    print_plan(&plan);
                    print_outcome(&outcome);
                    out!("the rollback was not allowed, so nothing ran");
                }
                return Ok(verdict_code(outcome.decision.decision));
            };
            let report = run_ticket(
                ctx,
                ticket,
                &executor,
                &RunKind::Rollback {
                    of_decision: plan.rolls_back.clone(),
                },
            )?;
            if ctx.json() {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "plan": plan,
                        "decision": outcome.to_json()?,
                        "run": report,
                    }))?
                );
            } else {
                print_plan(&plan);
                print_outcome(&outcome);
                print_report(&report);
            }
            Ok(report_code(&report))
        }
    }
}

/// The compensating request for `decision_id`, from the audit log.
///
/// # Errors
/// As [`rollback::find_record`], [`rollback::plan`] and [`rollback::retarget`].
pub fn build_plan(ctx: &Context, decision_id: &str) -> anyhow::Result<RollbackPlan> {
    let registry =
        agentsafe_registry::Registry::load(&ctx.actions_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let log = ctx.config.audit.log_path(&ctx.state_dir);
    let entry = rollback::find_record(&log, decision_id)?;
    let plan = rollback::plan(&registry, &entry)?;
    let inventory =
        agentsafe_pdp::Inventory::load(&ctx.inventory_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(rollback::retarget(plan, &registry, &inventory)?)
}

fn decide(ctx: &Context, plan: &RollbackPlan, who: &CallerArgs) -> anyhow::Result<Outcome> {
    let gate = ctx.gate()?;
    let claimed = claimed(who, caller_from(who))?;
    let mut request = plan.request();
    request.correlation_id = Some(format!("rollback-of-{}", plan.rolls_back));
    Ok(gate.check(&claimed, request))
}

/// Prints a plan as text.
pub fn print_plan(plan: &RollbackPlan) {
    out!(
        "rollback of decision {} ({} on {}, audit entry {}):",
        plan.rolls_back,
        plan.original_action,
        plan.target,
        plan.from_audit_seq
    );
    out!(
        "  {} on {} with {}",
        plan.action,
        plan.target,
        serde_json::Value::Object(plan.params.clone())
    );
}
