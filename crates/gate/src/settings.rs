//! What a gate is built from: the configuration sections it owns and where its files live.

use std::path::PathBuf;

use serde::Deserialize;

use crate::approvals::ApprovalsConfig;
use crate::limits::LimitsConfig;
use crate::notify::NotificationsConfig;

/// The sections of `agentsafe.toml` that the gate reads. The composition root (the
/// `agentsafe` facade crate) parses the whole file once and hands these over.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Agent identity tokens and delegation (`[identity]`).
    #[serde(default)]
    pub identity: agentsafe_tickets::IdentityConfig,
    /// Execution tickets (`[tickets]`).
    #[serde(default)]
    pub tickets: agentsafe_tickets::TicketConfig,
    /// The tamper-evident audit log (`[audit]`).
    #[serde(default)]
    pub audit: agentsafe_audit::AuditConfig,
    /// Rate limit, circuit breaker and cumulative risk (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Approval requests (`[approvals]`).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Webhooks notified about approval requests (`[notifications]`).
    #[serde(default)]
    pub notifications: NotificationsConfig,
}

/// Where the gate's files are, already resolved (flags, then the config file, then defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatePaths {
    /// Folder of `*.toml` action definitions.
    pub actions: PathBuf,
    /// Folder of `*.toml` policy files.
    pub policies: PathBuf,
    /// The inventory file.
    pub inventory: PathBuf,
    /// Folder of the audit log, the state database and the ticket store.
    pub state_dir: PathBuf,
    /// Folder of the signing keys, kept away from the audit log.
    pub key_dir: PathBuf,
    /// The folder relative paths in the configuration are resolved against.
    pub base: PathBuf,
}

impl GatePaths {
    /// The usual layout under one project folder: `actions/`, `policies/`,
    /// `inventory.toml`, `.agentsafe/`, with keys in `key_dir`.
    pub fn project(dir: impl Into<PathBuf>, key_dir: impl Into<PathBuf>) -> GatePaths {
        let dir = dir.into();
        GatePaths {
            actions: dir.join("actions"),
            policies: dir.join("policies"),
            inventory: dir.join("inventory.toml"),
            state_dir: dir.join(".agentsafe"),
            key_dir: key_dir.into(),
            base: dir,
        }
    }

    /// The state database: `[limits] database`, else `<state_dir>/state.db`.
    pub fn state_db(&self, limits: &LimitsConfig) -> PathBuf {
        limits.database_path(&self.base, &self.state_dir)
    }
}

/// Everything [`crate::Gate::open`] needs.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// The gate's configuration sections.
    pub config: GateConfig,
    /// Where its files are.
    pub paths: GatePaths,
    /// The configuration file as it was read (path and bytes), recorded in `config_loaded`
    /// beside the actions, policies and inventory.
    pub config_file: Option<(PathBuf, Vec<u8>)>,
}

impl GateSettings {
    /// Settings with default configuration for the files at `paths`.
    pub fn new(paths: GatePaths) -> GateSettings {
        GateSettings {
            config: GateConfig::default(),
            paths,
            config_file: None,
        }
    }
}
