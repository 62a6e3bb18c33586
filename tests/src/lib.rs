//! Helpers shared by the end-to-end tests: find (or build) the real `agentsafe` binary,
//! run it, and read its output.

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
            "agentsafe-runner",
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
