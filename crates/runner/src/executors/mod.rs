//! The executors a build knows, and how `--executor NAME` finds one.
//!
//! `dry-run` is always there. `k8s` (`agentsafe_executor_k8s`) and `aws`
//! (`agentsafe_executor_aws`) are there with the `k8s` and `aws` cargo features.
//! Integrators add their own with [`Executors::with`]; the `agentsafe` command line then
//! runs it like a built-in one (`agentsafe_cli::main_with`).

pub mod dry_run;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use agentsafe_core::Executor;
use agentsafe_registry::Registry;

use crate::RunnerError;
use crate::config::ExecutorsConfig;

/// What an executor factory may read: the `[executors]` configuration, the folder relative
/// paths are resolved against, the state folder and the action registry.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorEnv<'a> {
    /// The `[executors]` section.
    pub config: &'a ExecutorsConfig,
    /// The configuration file's folder.
    pub base: &'a Path,
    /// The state folder.
    pub state_dir: &'a Path,
    /// The registry in force.
    pub registry: &'a Arc<Registry>,
}

/// Builds an executor from its environment; called once per run, synchronously (no I/O
/// expected: clients connect on first use).
pub type ExecutorFactory =
    Arc<dyn Fn(&ExecutorEnv<'_>) -> Result<Arc<dyn Executor>, RunnerError> + Send + Sync>;

/// Executors by name.
#[derive(Clone)]
pub struct Executors {
    factories: BTreeMap<String, ExecutorFactory>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

/// Executors that exist but were left out of this build, with the feature that adds them.
const OPTIONAL: &[(&str, &str)] = &[("k8s", "k8s"), ("aws", "aws")];

impl Executors {
    /// The executors built into this build: `dry-run`, and `k8s` / `aws` with their features.
    pub fn built_in() -> Executors {
        let mut e = Executors {
            factories: BTreeMap::new(),
        };
        e = e.with(
            dry_run::NAME,
            Arc::new(|env: &ExecutorEnv<'_>| {
                Ok(Arc::new(dry_run::DryRunExecutor::new(
                    env.state_dir,
                    Arc::clone(env.registry),
                )) as Arc<dyn Executor>)
            }),
        );
        #[cfg(feature = "k8s")]
        {
            e = e.with(
                agentsafe_executor_k8s::NAME,
                Arc::new(|env: &ExecutorEnv<'_>| {
                    let mut config = env.config.k8s.clone();
                    config.kubeconfig = config.kubeconfig.map(|p| env.base.join(p));
                    let exec = agentsafe_executor_k8s::K8sExecutor::new(config)
                        .map_err(|e| RunnerError::Executor(format!("[executors.k8s]: {e}")))?;
                    Ok(Arc::new(exec) as Arc<dyn Executor>)
                }),
            );
        }
        #[cfg(feature = "aws")]
        {
            e = e.with(
                agentsafe_executor_aws::NAME,
                Arc::new(|env: &ExecutorEnv<'_>| {
                    let exec = agentsafe_executor_aws::AwsExecutor::new(env.config.aws.clone())
                        .map_err(|e| RunnerError::Executor(format!("[executors.aws]: {e}")))?;
                    Ok(Arc::new(exec) as Arc<dyn Executor>)
                }),
            );
        }
        e
    }

    /// Adds (or replaces) the executor called `name`.
    #[must_use]
    pub fn with(mut self, name: &str, factory: ExecutorFactory) -> Executors {
        self.factories.insert(name.to_owned(), factory);
        self
    }

    /// The names this set has, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Whether `name` is in this set.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Builds the executor called `name`.
    ///
    /// # Errors
    /// For a name this set does not have, and for a backend configuration that cannot be
    /// used (a missing kubeconfig, an invalid endpoint).
    pub fn open(
        &self,
        name: &str,
        env: &ExecutorEnv<'_>,
    ) -> Result<Arc<dyn Executor>, RunnerError> {
        match self.factories.get(name) {
            Some(f) => f(env),
            None => Err(RunnerError::Executor(self.unavailable(name))),
        }
    }

    /// Why `name` cannot be used with this set.
    pub fn unavailable(&self, name: &str) -> String {
        match OPTIONAL.iter().find(|(n, _)| *n == name) {
            Some((_, feature)) => format!(
                "executor `{name}` is not built into this binary: rebuild with `--features {feature}` (for example `cargo install --path crates/cli --features k8s,aws`)"
            ),
            None => format!(
                "unknown executor `{name}`: this binary has {}; a custom executor joins the command line through `agentsafe_cli::main_with`",
                self.names()
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
