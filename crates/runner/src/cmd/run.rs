//! `agentsafe run TICKET`: execute what a ticket allows, through the execution pipeline.

use std::process::ExitCode;
use std::sync::Arc;

use agentsafe_audit::AuditLog;
use agentsafe_core::Executor;
use agentsafe_pdp::Pdp;
use agentsafe_runner::executors::{self, dry_run};
use agentsafe_runner::{
    AmbientProvider, CredentialProvider, DryRunExecutor, EnvFileProvider, RunKind, RunReport,
    Runner, SimulatedProvider,
};
use agentsafe_tickets::{KeySet, SqliteTicketStore, TicketVerifier};

use crate::config::CredentialSource;
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

/// The executor called `name`, or a clear error when this binary does not have it.
///
/// # Errors
/// For names this build does not have, and for a backend configuration that cannot be
/// read (a missing kubeconfig, an invalid endpoint): nothing is redeemed then.
pub fn open_executor(name: &str, ctx: &Context, pdp: &Pdp) -> anyhow::Result<Arc<dyn Executor>> {
    if name == dry_run::NAME {
        return Ok(Arc::new(DryRunExecutor::new(
            &ctx.state_dir,
            Arc::new(pdp.registry().clone()),
        )));
    }
    #[cfg(feature = "k8s")]
    if name == agentsafe_executor_k8s::NAME {
        let mut config = ctx.config.executors.k8s.clone();
        config.kubeconfig = config.kubeconfig.map(|p| ctx.config_base().join(p));
        let exec = agentsafe_executor_k8s::K8sExecutor::new(config)
            .map_err(|e| anyhow::anyhow!("[executors.k8s]: {e}"))?;
        return Ok(Arc::new(exec));
    }
    #[cfg(feature = "aws")]
    if name == agentsafe_executor_aws::NAME {
        let exec = agentsafe_executor_aws::AwsExecutor::new(ctx.config.executors.aws.clone())
            .map_err(|e| anyhow::anyhow!("[executors.aws]: {e}"))?;
        return Ok(Arc::new(exec));
    }
    anyhow::bail!(executors::unavailable(name))
}

fn provider(ctx: &Context, executor: &str) -> Box<dyn CredentialProvider> {
    let cfg = &ctx.config.runner;
    let dir = cfg
        .credentials_dir
        .as_ref()
        .map(|d| ctx.config_base().join(d));
    match cfg.credentials {
        CredentialSource::Simulated => Box::new(SimulatedProvider::new()),
        CredentialSource::Env => Box::new(EnvFileProvider::new(dir)),
        CredentialSource::Ambient => Box::new(AmbientProvider::new()),
        CredentialSource::Auto if executor == dry_run::NAME => Box::new(SimulatedProvider::new()),
        CredentialSource::Auto => Box::new(EnvFileProvider::new(dir).or_ambient()),
    }
}

/// Runs `token` through the pipeline with the executor called `executor`.
///
/// # Errors
/// When the executor is not available or the keys, ticket database or audit log cannot be
/// opened; nothing is redeemed then. Every later problem is in the report.
pub fn run_ticket(
    ctx: &Context,
    pdp: &Pdp,
    token: &str,
    executor: &str,
    kind: &RunKind,
) -> anyhow::Result<RunReport> {
    let exec = open_executor(executor, ctx, pdp)?;
    let tickets = &ctx.config.tickets;
    let verifier = TicketVerifier::new(
        KeySet::load(&tickets.trusted_key_paths(&ctx.config_base(), &ctx.key_dir))?,
        tickets,
    );
    let store = SqliteTicketStore::open_with(
        &tickets.database_path(&ctx.config_base(), &ctx.state_dir),
        &tickets.store_options(),
    )?;
    let audit = AuditLog::open_configured(&ctx.config.audit, &ctx.state_dir, &ctx.key_dir)?;
    let credentials = provider(ctx, executor);
    let runner = Runner::new(
        pdp.registry(),
        &verifier,
        &store,
        &audit,
        credentials.as_ref(),
    )
    .with_inventory(pdp.inventory())
    .with_timeouts(ctx.config.runner.timeouts());
    let mut report = runner.run_blocking(token, exec, kind)?;
    if let Err(e) = audit.close() {
        report
            .warnings
            .push(format!("the audit log did not close cleanly: {e}"));
    }
    Ok(report)
}

/// Prints a run report as text.
pub fn print_report(r: &RunReport) {
    let rec = &r.record;
    let s = |k: &str| {
        rec.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
    };
    let preview = rec.get("kind").and_then(serde_json::Value::as_str) == Some("preview");
    out!(
        "{}  {} on {} via {} ({})",
        if preview && r.is_success() {
            "PREVIEW OK".to_owned()
        } else {
            r.outcome.as_str().to_uppercase()
        },
        s("action"),
        s("target"),
        s("executor"),
        r.reason_code
    );
    out!("  {}", r.message);
    if let Some(checks) = rec.get("prechecks").and_then(serde_json::Value::as_array)
        && !checks.is_empty()
    {
        let list: Vec<String> = checks
            .iter()
            .map(|c| {
                let adv = if c["advisory"] == true {
                    ", advisory"
                } else {
                    ""
                };
                format!(
                    "{} {}{adv}",
                    c["name"].as_str().unwrap_or("?"),
                    c["result"].as_str().unwrap_or("?")
                )
            })
            .collect();
        out!("  prechecks: {}", list.join("; "));
    }
    if let Some(diff) = rec.get("diff").and_then(serde_json::Value::as_object)
        && !diff.is_empty()
    {
        let list: Vec<String> = diff
            .iter()
            .map(|(k, v)| format!("{k} {} → {}", v["before"], v["after"]))
            .collect();
        out!("  state diff: {}", list.join(", "));
    }
    if preview && let Some(would) = rec.get("output").filter(|o| !o.is_null()) {
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
    if !executors::is_built_in(&executor) {
        // Refuse before loading anything, so the message is the first thing said.
        anyhow::bail!(executors::unavailable(&executor));
    }
    let pdp = ctx.load_pdp()?;
    let kind = if args.dry_run {
        RunKind::Preview
    } else {
        RunKind::Execution
    };
    let report = run_ticket(ctx, &pdp, &token, &executor, &kind)?;
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report_code(&report))
}
