//! Dev automation, the single entry point: `cargo xtask ci`, `cargo xtask bench`,
//! `cargo xtask fuzz`.
//!
//! `ci` runs everything CI runs, in order, and stops at the first failure:
//! formatting, clippy with `-D warnings`, the library crates built with no features,
//! `cargo doc` with warnings denied, then every test of the workspace (unit, integration,
//! end-to-end against real SQLite files and real processes), then the real-server tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

mod fuzz;
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
        Some("docs") => docs(),
        Some("test") => test(),
        Some("bench") => bench(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz::fuzz(args.get(1..).unwrap_or_default()),
        Some("k8s-build") => k8s::ensure_packages().and_then(|()| k8s::ensure_binaries()),
        Some("k8s-up") => k8s::up().map(|_| ()),
        Some("k8s-test") => live_k8s(),
        Some("moto-test") => live_aws(),
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
         ci         everything CI runs: fmt, clippy -D warnings, all tests, real-server tests\n  \
         fmt        cargo fmt --check\n  \
         lint       cargo clippy --workspace --all-targets -D warnings\n  \
         docs       cargo doc of every library, warnings denied\n  \
         test       all tests of the workspace\n  \
         bench      benchmarks (release build); prints the figures the issues ask for\n  \
         fuzz [S]   every fuzz target in fuzz/ for S seconds each (default 10; stable, via cargo-fuzz)\n  \
         k8s-build  build kube-apiserver 1.20 from Debian's source (once; cached)\n  \
         k8s-up     build (once, cached) and start etcd + kube-apiserver 1.20 on loopback\n  \
         k8s-test   k8s-up, the Kubernetes real-server tests, k8s-down\n  \
         k8s-down   stop them\n  \
         moto-up    install (once, cached) and start moto's AWS emulator on loopback, seeded\n  \
         moto-down  stop it\n  \
         moto-test  moto-up, the AWS and S3 real-server tests, moto-down"
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

/// The library crates an integrator takes alone, built with no features: the gate and
/// the runner must compile (and stay free of the AWS SDK and kube) without the binary.
fn lean() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args([
        "check",
        "--locked",
        "--lib",
        "--no-default-features",
        "-p",
        "agentsafe-gate",
        "-p",
        "agentsafe-runner",
        "-p",
        "agentsafe",
    ]);
    run(
        "cargo check of the gate, the runner and the facade with no features",
        c,
    )
}

/// `cargo doc` of every library with warnings denied: a broken link or a doc example that
/// names something that moved fails CI.
fn docs() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args([
        "doc",
        "--locked",
        "--no-deps",
        "--workspace",
        "--exclude",
        "agentsafe-bench",
        "--exclude",
        "agentsafe-bench-cedar",
        "--exclude",
        "xtask",
        "--exclude",
        "agentsafe-e2e",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc -D warnings", c)
}

/// `cargo test` over [`TEST_SELECTION`]; the end-to-end tests use the `agentsafe` binary
/// this same invocation builds (the CLI crate's own integration test makes cargo build it,
/// with the `k8s` and `aws` features the e2e crate asks for).
fn cargo_test() -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut c = cargo();
    c.args(["test", "--locked"])
        .args(TEST_SELECTION)
        .env("AGENTSAFE_E2E_BIN", target.join("debug").join("agentsafe"));
    c
}

fn test() -> anyhow::Result<()> {
    let c = cargo_test();
    run("cargo test (unit, integration, end to end)", c)
}

/// Whether `tool` is an executable on `PATH`. An absolute `tool` is a path that must exist.
fn on_path(tool: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// Installs, from Debian's packages, each `(tool, package)` whose tool is not on `PATH`,
/// in one apt-get run, so a fresh machine passes without anything installed by hand.
///
/// # Errors
/// When apt-get fails or a tool is still missing afterwards.
pub(crate) fn apt_install(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str)> = tools.iter().filter(|(tool, _)| !on_path(tool)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    run("apt-get update", update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&packages);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(&format!("apt-get install {}", packages.join(" ")), install)?;
    if let Some((tool, package)) = missing.iter().find(|(tool, _)| !on_path(tool)) {
        bail!("`{tool}` is still missing after apt-get install {package}");
    }
    Ok(())
}

/// Tools the tests run besides cargo: openssl (the ticket interoperability test verifies
/// our tokens with it) and what the Kubernetes API server build and start need.
fn ensure_tools() -> anyhow::Result<()> {
    k8s::ensure_packages()
}

fn ci() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_tools()?;
    // The API server build is long the first time (cached afterwards): it runs while
    // cargo builds and tests, and the real-server stage waits for it.
    let k8s_build = std::thread::spawn(k8s::ensure_binaries);
    fmt_check()?;
    clippy()?;
    lean()?;
    docs()?;
    test()?;
    k8s_build
        .join()
        .map_err(|_| anyhow::anyhow!("the kube-apiserver build thread panicked"))??;
    live_all()?;
    // A short coverage-guided pass of every parser target (the property tests of the same
    // parsers ran in the test stage); its findings fail CI like any test.
    fuzz::fuzz(&[CI_FUZZ_SECONDS.to_string()])?;
    eprintln!("ci: all green in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Seconds each fuzz target runs in `cargo xtask ci`.
const CI_FUZZ_SECONDS: u64 = 5;

/// Stops a server on every path out of a stage, failures included.
struct Stop(fn() -> anyhow::Result<()>, &'static str);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Err(e) = (self.0)() {
            eprintln!("xtask: stopping {} failed: {e:#}", self.1);
        }
    }
}

/// Reads `KEY=VALUE` lines.
fn env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// The packages `cargo test` builds in CI: the same selection in every stage, so cargo
/// resolves the same features and never rebuilds a dependency (the AWS SDK) between them.
const TEST_SELECTION: &[&str] = &[
    "--workspace",
    "--exclude",
    "agentsafe-bench",
    "--exclude",
    "agentsafe-bench-cedar",
];

/// The real-server test targets: `#[ignore]`d, so the plain test stage skips them.
const LIVE_TARGETS: &[&str] = &["live", "k8s", "aws", "s3", "audit_s3"];

/// Every real-server test at once, against kube-apiserver and moto side by side, in one
/// cargo invocation over [`TEST_SELECTION`]; both servers stop on every path.
fn live_all() -> anyhow::Result<()> {
    let kubeconfig = k8s::up()?;
    let _stop_k8s = Stop(k8s::down, "the Kubernetes API server");
    let env_path = moto::up()?;
    let _stop_moto = Stop(moto::down, "moto");
    let mut env = env_file(&env_path)?;
    env.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    let mut c = cargo_test();
    for target in LIVE_TARGETS {
        c.args(["--test", target]);
    }
    c.args(["--", "--ignored"]);
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    run(
        "real-server tests (kube-apiserver 1.20, moto): executors, agentsafe run, S3 shipping",
        c,
    )
}

/// Runs the ignored (real-server) tests of each `(package, test target)` with `env`.
fn live_tests(
    what: &str,
    env: &[(String, String)],
    targets: &[(&str, &str)],
) -> anyhow::Result<()> {
    for (package, target) in targets {
        let mut c = cargo();
        c.args([
            "test",
            "--locked",
            "-p",
            package,
            "--test",
            target,
            "--",
            "--ignored",
        ]);
        c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run(&format!("{what}: {package} --test {target}"), c)?;
    }
    Ok(())
}

/// The Kubernetes executor against a real kube-apiserver: started, tested, stopped.
fn live_k8s() -> anyhow::Result<()> {
    let kubeconfig = k8s::up()?;
    let _stop = Stop(k8s::down, "the Kubernetes API server");
    let env = [("KUBECONFIG".to_owned(), kubeconfig.display().to_string())];
    live_tests(
        "real kube-apiserver",
        &env,
        &[("agentsafe-executor-k8s", "live"), ("agentsafe-e2e", "k8s")],
    )
}

/// The AWS executor and S3 audit shipping against moto: started, seeded, tested, stopped.
fn live_aws() -> anyhow::Result<()> {
    let env_path = moto::up()?;
    let _stop = Stop(moto::down, "moto");
    let env = env_file(&env_path)?;
    live_tests(
        "moto",
        &env,
        &[
            ("agentsafe-executor-aws", "live"),
            ("agentsafe-e2e", "aws"),
            ("agentsafe-audit", "s3"),
            ("agentsafe-e2e", "audit_s3"),
        ],
    )
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
        "agentsafe-cli",
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
