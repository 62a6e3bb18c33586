//! Dev automation, the single entry point: `cargo xtask ci`, `cargo xtask bench`.
//!
//! `ci` runs everything CI runs, in order, and stops at the first failure:
//! formatting, clippy with `-D warnings`, then every test of the workspace
//! (unit, integration, end-to-end against real SQLite files and real processes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

mod k8s;
mod moto;

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("fmt") => fmt_check(),
        Some("lint") => clippy(),
        Some("test") => test(),
        Some("bench") => bench(args.get(1..).unwrap_or_default()),
        Some("k8s-up") => k8s::up().map(|_| ()),
        Some("k8s-down") => k8s::down(),
        Some("moto-up") => moto::up().map(|_| ()),
        Some("moto-down") => moto::down(),
        Some("help") | None => {
            help();
            Ok(())
        }
        Some(other) => {
            help();
            bail!("unknown task `{other}`")
        }
    }
}

fn help() {
    eprintln!(
        "usage: cargo xtask <task>\n\n\
         tasks:\n  \
         ci      everything CI runs: fmt, clippy -D warnings, all tests\n  \
         fmt     cargo fmt --check\n  \
         lint    cargo clippy --workspace --all-targets -D warnings\n  \
         test    all tests of the workspace\n  \
         bench   benchmarks (release build); prints the figures the issues ask for\n  \
         k8s-up     build (once, cached) and start etcd + kube-apiserver 1.20 on loopback\n  \
         k8s-down   stop them\n  \
         moto-up    install (once, cached) and start moto's AWS emulator on loopback, seeded\n  \
         moto-down  stop it"
    );
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo")))
}

fn run(what: &str, mut cmd: Command) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start: {what}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{what} failed ({status}) after {secs:.1}s");
    }
    eprintln!("<== {what}: ok in {secs:.1}s");
    Ok(())
}

fn fmt_check() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", c)
}

fn clippy() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", c)
}

fn test() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args([
        "test",
        "--workspace",
        "--locked",
        "--exclude",
        "agentsafe-bench",
        "--exclude",
        "agentsafe-bench-cedar",
    ]);
    run("cargo test (unit, integration, end to end)", c)
}

/// Tools the tests run besides cargo: installed from Debian's packages when missing, so a
/// fresh machine passes without anything installed by hand.
fn ensure_tools() -> anyhow::Result<()> {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have("openssl") {
        return Ok(());
    }
    eprintln!(
        "==> installing openssl (the ticket interoperability test verifies our tokens with it)"
    );
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    run("apt-get update", update)?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-q", "--no-install-recommends", "openssl"]);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run("apt-get install openssl", install)?;
    if !have("openssl") {
        bail!("`openssl` is still missing after apt-get install");
    }
    Ok(())
}

fn ci() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_tools()?;
    fmt_check()?;
    clippy()?;
    test()?;
    eprintln!("ci: all green in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn bench(extra: &[String]) -> anyhow::Result<()> {
    // One build of both binaries, with the features they get together; `cargo run -p
    // agentsafe-bench` afterwards would resolve features again and rebuild.
    let mut b = cargo();
    b.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "agentsafe-runner",
        "-p",
        "agentsafe-bench",
    ]);
    run("build release binaries", b)?;
    // Built on its own so cedar-policy's dependency features stay out of agentsafe's build.
    let mut cedar = cargo();
    cedar.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "agentsafe-bench-cedar",
    ]);
    run("build the Cedar comparison", cedar)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut c = Command::new(target.join("release").join("agentsafe-bench"));
    c.args(extra);
    run("benchmarks (release)", c)
}
