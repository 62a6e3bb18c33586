//! `agentsafe.toml`: where the actions, policies, inventory, state and keys live, and the
//! settings of every part. Parsed once, strictly: a typo is an error naming file, line and key.

use std::path::{Path, PathBuf};

use agentsafe_gate::{ApprovalsConfig, GateConfig, LimitsConfig, NotificationsConfig};
use agentsafe_runner::{ExecutorsConfig, RunnerConfig};
use serde::Deserialize;

use crate::Error;

/// The whole configuration file. Every section is optional; unknown keys are errors.
#[derive(Debug, Default, Clone, Deserialize)]
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
    pub limits: LimitsConfig,
    /// Approval requests (`[approvals]`).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Webhooks notified about approval requests (`[notifications]`).
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// How the built-in executors reach their backends (`[executors.k8s]`, `[executors.aws]`).
    #[serde(default)]
    pub executors: ExecutorsConfig,
}

impl ConfigFile {
    /// The sections the gate owns.
    pub fn gate(&self) -> GateConfig {
        GateConfig {
            identity: self.identity.clone(),
            tickets: self.tickets.clone(),
            audit: self.audit.clone(),
            limits: self.limits.clone(),
            approvals: self.approvals.clone(),
            notifications: self.notifications.clone(),
        }
    }
}

/// The `[paths]` section. Relative paths are resolved against the config file's folder.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Folder of `*.toml` action definitions (default `actions`).
    pub actions: Option<PathBuf>,
    /// Folder of `*.toml` policy files (default `policies`).
    pub policies: Option<PathBuf>,
    /// The inventory file (default `inventory.toml`).
    pub inventory: Option<PathBuf>,
    /// Folder for the SQLite databases and the audit log (default `.agentsafe`).
    pub state_dir: Option<PathBuf>,
    /// Folder holding signing keys (default `$AGENTSAFE_KEY_DIR`, else `$XDG_CONFIG_HOME/agentsafe/keys`,
    /// else `~/.config/agentsafe/keys`): kept away from the audit log on purpose.
    pub key_dir: Option<PathBuf>,
}

/// Reads and parses a config file; the error names the file, line and key. Returns the
/// parsed file and the bytes read.
///
/// # Errors
/// When the file cannot be read or is invalid.
pub fn load(path: &Path) -> Result<(ConfigFile, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::Config {
        location: format!("{}", path.display()),
        message: format!("not UTF-8 text (byte {})", e.valid_up_to()),
    })?;
    Ok((parse(path, text)?, bytes))
}

/// Parses config text that came from `path`.
///
/// # Errors
/// When the text is not a valid configuration: `FILE:LINE:COL: message`.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, Error> {
    toml::from_str(text).map_err(|e| toml_error(path, text, &e))
}

/// A TOML error as `FILE:LINE:COL: message`.
pub fn toml_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let (line, col) = err
        .span()
        .map(|s| agentsafe_core::text::line_col(text, s.start))
        .unwrap_or((1, 1));
    Error::Config {
        location: format!("{}:{line}:{col}", path.display()),
        message: err.message().trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn unknown_keys_are_located_errors() {
        let e = parse(Path::new("a.toml"), "[limits]\n\nrates = 1\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("a.toml:3:1: "), "{text}");
        assert!(text.contains("rates"), "{text}");
    }

    #[test]
    fn every_section_is_optional() {
        let c = parse(Path::new("a.toml"), "").unwrap();
        assert!(c.limits.rate.is_none());
        assert_eq!(c.runner.executor, "dry-run");
    }
}
