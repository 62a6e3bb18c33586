//! The `agentsafe` command-line tool: decisions, validation and policy tests from the terminal.

mod cmd;
mod config;
mod context;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

/// Governance for AI agents acting on real infrastructure.
#[derive(Debug, Parser)]
#[command(name = "agentsafe", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // helpers: add subcommand variants below this line
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::ALLOW };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::resolve(&cli.global)?;
    match cli.command {
        // helpers: add dispatch arms below this line
    }
}
