//! The `agentsafe` command line: decisions, tickets, runs, approvals and the audit log
//! from the terminal, over the library's gate and runner.

#![allow(
    clippy::print_stderr,
    reason = "a command-line tool reports errors on stderr"
)]

/// `println!` that stops quietly when stdout is closed (`agentsafe ... | head`)
/// instead of panicking on a broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` without a newline, with the same broken-pipe behaviour as `out!`.
macro_rules! out_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod cmd;
pub mod context;
mod embedded;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use agentsafe_runner::Executors;

use crate::context::{Context, GlobalArgs};

/// Exit codes, documented in the README.
pub mod exit {
    /// The decision (or the most restrictive decision of a plan) was ALLOW, or the command succeeded.
    pub const ALLOW: u8 = 0;
    /// An error: bad config, unreadable file, failed check.
    pub const ERROR: u8 = 1;
    /// Usage error: unknown flag or missing argument.
    pub const USAGE: u8 = 2;
    /// The decision was DENY.
    pub const DENY: u8 = 3;
    /// The decision was REQUIRE_APPROVAL.
    pub const REQUIRE_APPROVAL: u8 = 4;
}

/// Governance for AI agents acting on real infrastructure: decisions, signed single-use
/// tickets and a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "agentsafe", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the product in one screen: decisions, a ticket redeemed once, a verified audit log
    Demo(cmd::demo::DemoArgs),
    /// Scaffold a working project: actions, policies, policy tests, inventory, config
    Init(cmd::project::InitArgs),
    /// Check actions, policies, inventory and config; warn about rules that never fire
    Validate(cmd::project::ValidateArgs),
    /// List the actions in the registry
    ListActions(cmd::project::ListArgs),
    /// Show one action: params, constraints, rollback, prechecks
    ShowAction(cmd::project::ShowArgs),
    /// Ask for a decision: may CALLER run ACTION on TARGET with PARAMS?
    Check(cmd::decide::CheckArgs),
    /// Decide the steps of a plan file together
    Plan(cmd::decide::PlanArgs),
    /// Run policy test cases
    Test(cmd::project::TestArgs),
    /// Execute what a ticket allows: verify, redeem once, prechecks, state, execute, record
    Run(cmd::run::RunArgs),
    /// Plan, check and run the compensating action of an execution
    #[command(subcommand)]
    Rollback(cmd::rollback::RollbackCommand),
    /// Generate and list signing keys
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Issue, verify and delegate agent identity tokens
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Verify, inspect and reconcile execution tickets
    #[command(subcommand)]
    Ticket(cmd::ticket::TicketCommand),
    /// Inspect, verify and ship the audit log
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// List, show, approve, deny and wait for approval requests
    #[command(subcommand)]
    Approval(cmd::approval::ApprovalCommand),
    /// Pause, resume and inspect a caller's limits (charged to the root of its delegation chain)
    #[command(subcommand)]
    Caller(cmd::caller::CallerCommand),
}

/// The whole `agentsafe` command line with the built-in executors.
pub fn main() -> ExitCode {
    main_with(Executors::built_in())
}

/// The whole `agentsafe` command line with `executors`: an executor crate's ten-line
/// binary gives its users every command, with `--executor <theirs>`:
///
/// ```no_run
/// use std::sync::Arc;
/// use agentsafe_runner::{Executors, DryRunExecutor};
///
/// fn main() -> std::process::ExitCode {
///     agentsafe_cli::main_with(Executors::built_in().with(
///         "my-backend",
///         Arc::new(|env: &agentsafe_runner::ExecutorEnv<'_>| {
///             // Build your executor from env.config, env.base, env.state_dir.
///             Ok(Arc::new(DryRunExecutor::new(env.state_dir, Arc::clone(env.registry))) as _)
///         }),
///     ))
/// }
/// ```
pub fn main_with(executors: Executors) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::ALLOW
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = run(cli, executors);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The error and its causes, skipping a cause the message already quotes (error types
/// that embed their source in their own message would otherwise print it twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

fn run(cli: Cli, executors: Executors) -> anyhow::Result<ExitCode> {
    let ctx = Context::resolve(&cli.global, executors)?;
    let code = dispatch(cli.command, &ctx);
    if let Some(e) = ctx.shutdown() {
        eprintln!("warning: the audit log did not close cleanly: {e}");
    }
    code
}

fn dispatch(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => cmd::demo::demo(a, ctx),
        Command::Init(a) => cmd::project::init(a, ctx),
        Command::Validate(a) => cmd::project::validate(a, ctx),
        Command::ListActions(a) => cmd::project::list_actions(a, ctx),
        Command::ShowAction(a) => cmd::project::show_action(a, ctx),
        Command::Check(a) => cmd::decide::check(a, ctx),
        Command::Plan(a) => cmd::decide::plan(a, ctx),
        Command::Test(a) => cmd::project::test(a, ctx),
        Command::Run(a) => cmd::run::run(a, ctx),
        Command::Rollback(c) => cmd::rollback::run(c, ctx),
        Command::Keys(c) => cmd::keys::run(c, ctx),
        Command::Token(c) => cmd::token::run(c, ctx),
        Command::Ticket(c) => cmd::ticket::run(c, ctx),
        Command::Audit(c) => cmd::audit::run(c, ctx),
        Command::Approval(c) => cmd::approval::run(c, ctx),
        Command::Caller(c) => cmd::caller::run(c, ctx),
    }
}
