//! `agentsafe.toml`: where the actions, policies, inventory, state and keys live, and per-feature settings.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The whole configuration file. Every section is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where things are.
    #[serde(default)]
    pub paths: PathsConfig,
    /// Agent identity tokens and delegation (`[identity]`).
    #[serde(default)]
    pub identity: agentsafe_tickets::IdentityConfig,
    /// Execution tickets and their redemption store (`[tickets]`).
    #[serde(default)]
    pub tickets: agentsafe_tickets::TicketConfig,
    /// The tamper-evident audit log (`[audit]`).
    #[serde(default)]
    pub audit: agentsafe_audit::AuditConfig,
    /// The execution pipeline (`[runner]`).
    #[serde(default)]
    pub runner: RunnerConfig,
    /// Rate limit, circuit breaker and cumulative risk (`[limits]`).
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// Approval requests (`[approvals]`).
    #[serde(default)]
    pub approvals: crate::approvals::ApprovalsConfig,
    /// Webhooks notified about approval requests (`[notifications]`).
    #[serde(default)]
    pub notifications: crate::notify::NotificationsConfig,
    /// How the built-in executors reach their backends (`[executors.k8s]`, `[executors.aws]`).
    #[serde(default)]
    #[cfg_attr(
        not(any(feature = "k8s", feature = "aws")),
        expect(dead_code, reason = "read only by the k8s and aws executors")
    )]
    pub executors: ExecutorsConfig,
}

/// The `[executors]` section: one table per built-in backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// The Kubernetes executor (`--executor k8s`): kubeconfig, context, in-cluster.
    #[cfg(feature = "k8s")]
    pub k8s: agentsafe_executor_k8s::K8sConfig,
    /// The AWS executor (`--executor aws`): endpoint override, profile, waits.
    #[cfg(feature = "aws")]
    pub aws: agentsafe_executor_aws::AwsConfig,
}

/// Where `agentsafe run` gets credentials from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// Simulated credentials for the dry-run executor; for any other, the environment/file
    /// provider when it has a credential of the kind, else the executor's own
    /// configuration (`ambient`).
    #[default]
    Auto,
    /// No secret from agentsafe: the executor authenticates with its own configuration
    /// (the kubeconfig's user, the AWS default credential chain).
    Ambient,
    /// Random in-memory credentials that no backend accepts.
    Simulated,
    /// `AGENTSAFE_CREDENTIALS_<KIND>`, else `credentials_dir/<kind>`.
    Env,
}

/// The `[runner]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerConfig {
    /// The executor used when `--executor` is not given (default `dry-run`).
    pub executor: String,
    /// Time limit of each precheck (default 30s).
    pub precheck_timeout: agentsafe_tickets::HumanDuration,
    /// Time limit of each state capture (default 30s).
    pub capture_timeout: agentsafe_tickets::HumanDuration,
    /// Time limit of the execution (default 5m); the executor is cancelled when it fires.
    pub execute_timeout: agentsafe_tickets::HumanDuration,
    /// Where credentials come from (default `auto`).
    pub credentials: CredentialSource,
    /// Folder of base credentials, one file per kind, for `credentials = "env"`.
    pub credentials_dir: Option<PathBuf>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            executor: agentsafe_runner::executors::dry_run::NAME.to_owned(),
            precheck_timeout: agentsafe_tickets::HumanDuration::from_secs(30),
            capture_timeout: agentsafe_tickets::HumanDuration::from_secs(30),
            execute_timeout: agentsafe_tickets::HumanDuration::from_secs(300),
            credentials: CredentialSource::Auto,
            credentials_dir: None,
        }
    }
}

impl RunnerConfig {
    /// The time limits.
    pub fn timeouts(&self) -> agentsafe_runner::Timeouts {
        agentsafe_runner::Timeouts {
            precheck: self.precheck_timeout.as_std(),
            capture: self.capture_timeout.as_std(),
            execute: self.execute_timeout.as_std(),
        }
    }
}

/// The `[paths]` section. Relative paths are resolved against the config file's folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Folder of `*.toml` action definitions (default `actions`).
    pub actions: Option<PathBuf>,
    /// Folder of `*.toml` policy files (default `policies`).
    pub policies: Option<PathBuf>,
    /// The inventory file (default `inventory.toml`).
    pub inventory: Option<PathBuf>,
    /// Folder for the SQLite database and the audit log (default `.agentsafe`).
    pub state_dir: Option<PathBuf>,
    /// Folder holding signing keys (default `$AGENTSAFE_KEY_DIR`, else `$XDG_CONFIG_HOME/agentsafe/keys`,
    /// else `~/.config/agentsafe/keys`): kept away from the audit log on purpose.
    pub key_dir: Option<PathBuf>,
}

/// Reads and parses a config file; the error names the file, line and key.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file `{}`", path.display()))?;
    parse(path, &text)
}

/// Parses config text that came from `path`.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!(toml_error(path, text, &e)))
}

/// Formats a TOML error as `FILE:LINE:COL: message`.
pub fn toml_error(path: &Path, text: &str, err: &toml::de::Error) -> String {
    let (line, col) = err
        .span()
        .map(|s| line_col(text, s.start))
        .unwrap_or((1, 1));
    format!(
        "{}:{line}:{col}: {}",
        path.display(),
        err.message().trim_end()
    )
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
