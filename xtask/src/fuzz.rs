//! `cargo xtask fuzz [SECONDS]`: every coverage-guided fuzz target in `fuzz/`, each for a
//! bounded time, on the stable toolchain.
//!
//! cargo-fuzz passes nightly-only flags (`-Zsanitizer`, `-Cpasses=sancov-module` and
//! friends); `RUSTC_BOOTSTRAP=1` makes the stable compiler accept them. No sanitizer is
//! used: the workspace forbids `unsafe`, so what the fuzzer looks for is panics, aborts
//! (stack overflow, out of memory) and slow inputs, which libFuzzer reports by itself.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, run, workspace_root};

/// Every target in `fuzz/fuzz_targets/`, with its seed corpus in `fuzz/corpus/<target>/`.
const TARGETS: &[&str] = &[
    "registry",
    "policies",
    "inventory",
    "tokens",
    "audit_entry",
    "checkpoint",
];

/// Seconds per target when none are given.
const DEFAULT_SECONDS: u64 = 10;

/// An input slower than this is reported as a hang.
const HANG_SECONDS: u64 = 10;

/// Builds every target once, then runs each for `args[0]` seconds (default 10).
///
/// # Errors
/// When cargo-fuzz cannot be installed, a target does not build, or the fuzzer finds a
/// crash or a hang (its input is kept under `fuzz/artifacts/<target>/`).
pub(crate) fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let seconds = match args.first() {
        None => DEFAULT_SECONDS,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .with_context(|| format!("`{s}` is not a number of seconds"))?,
    };
    ensure_cargo_fuzz()?;
    let target_dir = target_dir();
    let mut build = cargo_fuzz(&target_dir);
    build.args(["build", "--sanitizer", "none", "--target-dir"]);
    build.arg(&target_dir);
    run("cargo fuzz build (every target)", build)?;
    for target in TARGETS {
        // libFuzzer adds what it finds to the first folder: a scratch one, so the seeds in
        // the repository stay as committed.
        let scratch = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let seeds = workspace_root().join("fuzz").join("corpus").join(target);
        if !seeds.is_dir() {
            bail!("no seed corpus at {}", seeds.display());
        }
        let mut c = cargo_fuzz(&target_dir);
        c.args(["run", "--sanitizer", "none", "--target-dir"])
            .arg(&target_dir)
            .arg(target)
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={HANG_SECONDS}"))
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1");
        run(&format!("fuzz `{target}` for {seconds}s"), c)?;
    }
    Ok(())
}

/// Where the fuzz build goes: `fuzz/` under the workspace's target folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("fuzz")
}

/// `cargo fuzz` run from `fuzz/`, allowed nightly flags on the stable toolchain.
fn cargo_fuzz(target_dir: &std::path::Path) -> Command {
    let mut c = cargo();
    c.arg("fuzz")
        .current_dir(workspace_root().join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir);
    c
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is missing.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let found = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    let mut c = cargo();
    c.args(["install", "--locked", "cargo-fuzz"]);
    run("cargo install cargo-fuzz", c)
}
