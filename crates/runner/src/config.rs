//! The `[runner]` and `[executors]` sections of `agentsafe.toml`: how runs are timed,
//! where credentials come from, and how the built-in executors reach their backends.

use std::path::PathBuf;

use serde::Deserialize;

/// The `[executors]` section: one table per built-in backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// The Kubernetes executor (`--executor k8s`): kubeconfig, context, in-cluster.
    #[cfg(feature = "k8s")]
    pub k8s: agentsafe_executor_k8s::K8sConfig,
    /// Kept, unread, in a build without the Kubernetes executor, so one configuration
    /// file serves every build (`--executor k8s` then says how to get it).
    #[cfg(not(feature = "k8s"))]
    pub k8s: Option<serde_json::Value>,
    /// The AWS executor (`--executor aws`): endpoint override, profile, waits.
    #[cfg(feature = "aws")]
    pub aws: agentsafe_executor_aws::AwsConfig,
    /// Kept, unread, in a build without the AWS executor.
    #[cfg(not(feature = "aws"))]
    pub aws: Option<serde_json::Value>,
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
            executor: crate::executors::dry_run::NAME.to_owned(),
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
    pub fn timeouts(&self) -> crate::Timeouts {
        crate::Timeouts {
            precheck: self.precheck_timeout.as_std(),
            capture: self.capture_timeout.as_std(),
            execute: self.execute_timeout.as_std(),
        }
    }
}

impl RunnerConfig {
    /// The credential provider for a run through `executor`, with `base` the folder
    /// relative paths are resolved against.
    pub fn credential_provider(
        &self,
        base: &std::path::Path,
        executor: &str,
    ) -> Box<dyn crate::CredentialProvider> {
        use crate::{AmbientProvider, EnvFileProvider, SimulatedProvider};
        let dir = self.credentials_dir.as_ref().map(|d| base.join(d));
        match self.credentials {
            CredentialSource::Simulated => Box::new(SimulatedProvider::new()),
            CredentialSource::Env => Box::new(EnvFileProvider::new(dir)),
            CredentialSource::Ambient => Box::new(AmbientProvider::new()),
            CredentialSource::Auto if executor == crate::executors::dry_run::NAME => {
                Box::new(SimulatedProvider::new())
            }
            CredentialSource::Auto => Box::new(EnvFileProvider::new(dir).or_ambient()),
        }
    }
}
