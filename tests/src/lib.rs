//! Helpers shared by the end-to-end tests: find (or build) the real `agentsafe` binary,
//! run it, and read its output.

#![allow(
    clippy::indexing_slicing,
    reason = "test support: indexing a serde_json::Value by key yields Null, it never panics"
)]

pub mod moto;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `agentsafe` binary of this build, (re)built once per test process so a test never
/// runs a stale binary (`cargo test -p agentsafe-e2e` alone does not build other packages),
/// or the one `AGENTSAFE_E2E_BIN` names.
///
/// # Panics
/// When the binary cannot be built: the test cannot run without it.
#[expect(
    clippy::panic,
    reason = "test helper: a missing binary fails the test loudly"
)]
pub fn agentsafe_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // `cargo xtask` names the binary the same `cargo test` invocation just built (with
        // the workspace's features); building it again here with `-p` would resolve other
        // features and compile the AWS SDK a second time.
        if let Some(bin) = std::env::var_os("AGENTSAFE_E2E_BIN") {
            let bin = PathBuf::from(bin);
            if !bin.is_file() {
                panic!("AGENTSAFE_E2E_BIN={} is not a file", bin.display());
            }
            return bin;
        }
        // Test executables live in <target>/<profile>/deps/.
        let exe = std::env::current_exe().unwrap_or_default();
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let target_dir = profile_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "agentsafe-cli",
            "--features",
            "k8s,aws",
            "--bin",
            "agentsafe",
            "--target-dir",
        ])
        .arg(&target_dir)
        .current_dir(root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status();
        let bin = profile_dir.join("agentsafe");
        if !status.is_ok_and(|s| s.success()) || !bin.is_file() {
            panic!("cannot build the agentsafe binary at {}", bin.display());
        }
        bin
    })
}

/// The result of one run.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    ///
    /// # Panics
    /// When stdout is not JSON.
    #[expect(clippy::panic, reason = "test helper")]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `agentsafe ARGS` in `dir` with a private state and key folder inside `dir`,
/// so tests never touch the user's files.
///
/// # Panics
/// When the process cannot start.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    run_in_with(dir, args, Some(&dir.join(".agentsafe-test-state")))
}

/// Like [`run_in`], but the project's own `state_dir` setting applies (no
/// `AGENTSAFE_STATE_DIR`): for tests of where state goes and what happens when it cannot.
///
/// # Panics
/// When the process cannot start.
pub fn run_in_project_state(dir: &Path, args: &[&str]) -> Run {
    run_in_with(dir, args, None)
}

#[expect(clippy::panic, reason = "test helper")]
fn run_in_with(dir: &Path, args: &[&str], state_dir: Option<&Path>) -> Run {
    let mut cmd = Command::new(agentsafe_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("AGENTSAFE_CONFIG")
        .env_remove("AGENTSAFE_TOKEN")
        .env_remove("AGENTSAFE_STATE_DIR")
        .env("AGENTSAFE_KEY_DIR", dir.join(".agentsafe-test-keys"));
    if let Some(state) = state_dir {
        cmd.env("AGENTSAFE_STATE_DIR", state);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run agentsafe: {e}"));
    Run::from(out)
}

/// A private state and key folder for runs at the workspace root, with keys generated once.
fn root_env() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("agentsafe-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = Command::new(agentsafe_bin())
            .args(["keys", "generate", "--out"])
            .arg(dir.join("keys"))
            .output();
        dir
    })
}

/// Runs `agentsafe ARGS` at the workspace root, on the shipped example (and its
/// `agentsafe.toml`), with a private state and key folder.
pub fn run(args: &[&str]) -> Run {
    let dir = root_env();
    let out = Command::new(agentsafe_bin())
        .args(args)
        .current_dir(root())
        .env_remove("AGENTSAFE_CONFIG")
        .env_remove("AGENTSAFE_TOKEN")
        .env("AGENTSAFE_STATE_DIR", dir.join("state"))
        .env("AGENTSAFE_KEY_DIR", dir.join("keys"))
        .output();
    match out {
        Ok(o) => Run::from(o),
        Err(e) => Run {
            code: -1,
            stdout: String::new(),
            stderr: format!("cannot run agentsafe: {e}"),
        },
    }
}

/// Standard output as JSON, or `null` when it is not JSON (the assertion that follows
/// shows the whole run).
pub fn json_of(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null)
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<n>-<nanos>`, lowercase and
/// DNS-1123 safe.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id() % 10_000,
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

/// The caller flags of the real-backend suites: a caller with role `sre`, which
/// [`backend_project`]'s policy allows everything in environment `e2e`.
pub const SRE: &[&str] = &["--caller", "agent-1", "--role", "sre"];

/// A project for a real-backend suite: `agentsafe init`, one policy allowing [`SRE`]
/// everything in environment `e2e`, `inventory` as the inventory, `executor` as the default
/// executor and `extra_config` appended to `agentsafe.toml`; `agentsafe validate` must pass.
///
/// # Panics
/// When a step fails.
#[expect(clippy::panic, reason = "test helper")]
pub fn backend_project(executor: &str, inventory: &str, extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary folder: {e}"));
    let p = dir.path();
    let r = run_in(p, &["init", "."]);
    assert_eq!(r.code, 0, "{r:?}");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    };
    let policies = p.join("policies");
    let _ = std::fs::remove_dir_all(&policies);
    std::fs::create_dir_all(&policies).unwrap_or_else(|e| panic!("{e}"));
    write(
        &policies.join("e2e.toml"),
        r#"[[rules]]
id = "e2e-sre"
description = "The test backend is open to SREs"
priority = 50
decision = "allow"
reason = "e2e"
match.targets.environments = ["e2e"]
match.callers.roles = ["sre"]
"#,
    );
    write(&p.join("inventory.toml"), inventory);
    let cfg = std::fs::read_to_string(p.join("agentsafe.toml")).unwrap_or_default();
    let cfg = cfg.replace(
        "executor = \"dry-run\"",
        &format!("executor = \"{executor}\""),
    );
    write(
        &p.join("agentsafe.toml"),
        &format!("{cfg}\n{extra_config}\n"),
    );
    let r = run_in(p, &["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    dir
}

/// One inventory target of environment `e2e`; `attributes` is the inside of the TOML
/// inline table (`namespace = "web", name = "api"`).
pub fn e2e_target(id: &str, target_type: &str, attributes: &str) -> String {
    format!(
        "[[targets]]\nid = \"{id}\"\ntype = \"{target_type}\"\nenvironment = \"e2e\"\n\
         sensitivity = \"internal\"\nowner = \"e2e\"\nattributes = {{ {attributes} }}\n\n"
    )
}

/// `agentsafe check` as [`SRE`]; it must ALLOW. Returns (ticket, decision id).
///
/// # Panics
/// When the decision is not an ALLOW with a ticket.
#[expect(clippy::panic, reason = "test helper")]
pub fn allow(
    dir: &Path,
    action: &str,
    target: &str,
    params: &serde_json::Value,
) -> (String, String) {
    let params = params.to_string();
    let mut args = vec![
        "check", action, "--target", target, "--params", &params, "--output", "json",
    ];
    args.extend_from_slice(SRE);
    let r = run_in(dir, &args);
    let d = json_of(&r);
    assert_eq!(d["decision"], "allow", "{r:?}");
    let text = |k: &str| {
        d[k].as_str()
            .unwrap_or_else(|| panic!("no `{k}` in {d}"))
            .to_owned()
    };
    (text("ticket"), text("decision_id"))
}

/// `agentsafe run TICKET --executor EXECUTOR --output json`: the run and its report.
pub fn run_ticket(dir: &Path, ticket: &str, executor: &str) -> (Run, serde_json::Value) {
    let r = run_in(
        dir,
        &["run", ticket, "--executor", executor, "--output", "json"],
    );
    let v = json_of(&r);
    (r, v)
}

/// [`allow`] then [`run_ticket`]; the run must succeed through `executor`. Returns
/// (decision id, run report).
pub fn act(
    dir: &Path,
    executor: &str,
    action: &str,
    target: &str,
    params: &serde_json::Value,
) -> (String, serde_json::Value) {
    let (ticket, decision) = allow(dir, action, target, params);
    let (r, report) = run_ticket(dir, &ticket, executor);
    assert_eq!(r.code, 0, "{action}: {r:?}");
    assert_eq!(report["outcome"], "succeeded", "{report}");
    assert_eq!(report["record"]["executor"], executor, "{report}");
    (decision, report)
}

/// `agentsafe rollback run DECISION` as [`SRE`]; it must succeed. Returns its output
/// (plan, decision, run).
pub fn rollback(dir: &Path, decision: &str) -> serde_json::Value {
    let mut args = vec!["rollback", "run", decision, "--output", "json"];
    args.extend_from_slice(SRE);
    let r = run_in(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["run"]["record"]["kind"], "rollback", "{v}");
    assert_eq!(v["run"]["outcome"], "succeeded", "{v}");
    v
}

/// `agentsafe audit verify` must pass.
pub fn verify_audit(dir: &Path) {
    let r = run_in(dir, &["audit", "verify"]);
    assert_eq!(r.code, 0, "{r:?}");
}
