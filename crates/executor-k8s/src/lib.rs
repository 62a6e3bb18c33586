//! The Kubernetes executor: the 20 Kubernetes actions of the catalogue on kube-rs and
//! k8s-openapi, against any API server from 1.20 on.
//!
//! [`K8sExecutor::new`] reads the kubeconfig (a file, `$KUBECONFIG`, `~/.kube/config`, or
//! the in-cluster service account) without connecting; the client is built in the first
//! call. Every call parses the params into a typed [`params::Op`] first and validates the
//! names again (DNS-1123), so a value can never put a path, a flag or another namespace in
//! a request: nothing is sent before that.
//!
//! * `capture_state` returns the object as `kubectl get -o json` prints it (a Secret
//!   without its `data`).
//! * `precheck` answers every check the action files declare; unknown names are
//!   [`PrecheckResult::Unsupported`].
//! * `dry_run` asks the server (`dryRun=All`) for the object a mutating action would
//!   produce; read-only and streaming actions return `Ok(None)`.
//! * `execute` watches its [`Cancel`] handle.
//!
//! # Security
//! With credentials of kind `kubernetes` and a non-empty secret, the secret is the bearer
//! token of that one call (same cluster and CA as the kubeconfig), dropped afterwards.
//! get-secret returns values only with `reveal_values`, under the output key
//! `secret_values` that the runner always redacts; its captured state has no `data`.
//! Messages name objects (`deployment prod/web`), never credentials.

mod actions;
mod client;
mod drain;
mod error;
pub mod logic;
pub mod params;
mod secret;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

use agentsafe_core::{
    ActionContext, ActionSupport, Cancel, CoreError, Credentials, ExecutionReport, Executor,
    PrecheckResult,
};
use async_trait::async_trait;
use serde_json::Value;

pub use client::Source;
pub use error::K8sError;
pub use params::{ACTIONS, Op, SYSTEM_NAMESPACES};
pub use secret::VALUES_KEY;

/// The executor's name, as given to `agentsafe run --executor k8s`.
pub const NAME: &str = "k8s";

/// The `[executors.k8s]` settings.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sConfig {
    /// kubeconfig file; None: $KUBECONFIG, then ~/.kube/config, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context; None: the current context.
    pub context: Option<String>,
    /// Use the in-cluster service account and ignore kubeconfig.
    pub in_cluster: bool,
    /// Per-request timeout in seconds (default when 0/absent: 30).
    pub request_timeout_seconds: u64,
}

/// The Kubernetes executor. One value serves many runs, on one tokio runtime.
pub struct K8sExecutor {
    config: kube::Config,
    source: Source,
    timeout: Duration,
    client: tokio::sync::OnceCell<kube::Client>,
}

impl std::fmt::Debug for K8sExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sExecutor")
            .field("server", &self.config.cluster_url.to_string())
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl K8sExecutor {
    /// Synchronous: reads and validates the kubeconfig (clear error naming the file/context) but does not connect.
    /// The kube `Client` is created lazily inside the first async call (tokio OnceCell), because the runner creates
    /// its tokio runtime later (current_thread, io+time enabled).
    ///
    /// # Errors
    /// A kubeconfig that cannot be read, a missing context, cluster or user, or no
    /// configuration at all.
    pub fn new(config: K8sConfig) -> Result<K8sExecutor, K8sError> {
        let (kube_config, source) = client::load(&config)?;
        Ok(K8sExecutor {
            config: kube_config,
            source,
            timeout: client::timeout_of(&config),
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// Where the connection settings came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// The client for one call: a fresh one authenticated with the credentials' token
    /// (kind `kubernetes`, non-empty secret), else the shared kubeconfig client.
    async fn kx(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<actions::Kx, K8sError> {
        let client = if credentials.kind == "kubernetes" && !credentials.secret.is_empty() {
            client::build(&self.config, Some(credentials.secret.expose()))?
        } else {
            self.client
                .get_or_try_init(|| async { client::build(&self.config, None) })
                .await?
                .clone()
        };
        Ok(actions::Kx {
            client,
            timeout: self.timeout,
            target: ctx.target.clone(),
            target_type: ctx.target_type.clone(),
            attributes: ctx.attributes.clone(),
        })
    }
}

#[async_trait]
impl Executor for K8sExecutor {
    fn name(&self) -> &str {
        NAME
    }

    fn supported_actions(&self) -> ActionSupport {
        ActionSupport::Only(ACTIONS.iter().map(|a| (*a).to_owned()).collect())
    }

    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        let op = match Op::parse(ctx) {
            Ok(op) => op,
            Err(e @ K8sError::InvalidParam { .. }) if check == "labels_valid" => {
                return Ok(PrecheckResult::Failed(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let k = self.kx(ctx, credentials).await?;
        Ok(actions::precheck(&k, &op, check).await?)
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        let op = Op::parse(ctx)?;
        let k = self.kx(ctx, credentials).await?;
        Ok(actions::capture(&k, &op).await?)
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        if cancel.is_cancelled() {
            return Err(CoreError::ExecutorCancelled);
        }
        let op = Op::parse(ctx)?;
        let k = self.kx(ctx, credentials).await?;
        tokio::select! {
            r = actions::execute(&k, &op, cancel) => Ok(r?),
            () = cancel.cancelled() => Err(CoreError::ExecutorCancelled),
        }
    }

    async fn dry_run(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        let op = Op::parse(ctx)?;
        let k = self.kx(ctx, credentials).await?;
        Ok(actions::dry_run(&k, &op).await?)
    }
}
