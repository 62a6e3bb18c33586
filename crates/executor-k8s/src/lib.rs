//! The Kubernetes executor: the 20 Kubernetes actions of the catalogue on kube-rs and
//! k8s-openapi, against any API server from 1.20 on.
//!
//! Where it acts: every Kubernetes action binds the target's `cluster` attribute into the
//! params the ticket signs, and `[executors.k8s] clusters` ([`K8sConfig::clusters`]) maps
//! each inventory cluster this runner may act in to a kubeconfig context (or to
//! [`IN_CLUSTER`]). Every call resolves the ticket's cluster first and talks only to that
//! context's API server; a ticket for a cluster that is not mapped, or naming no cluster, is
//! refused ([`CoreError::ExecutorWrongLocation`]) before any request. With no cluster
//! mapped, every ticket is refused: an operator upgrading from a single-context
//! configuration adds `clusters = { "<inventory cluster>" = "<context>" }`.
//!
//! [`K8sExecutor::new`] reads the kubeconfig (a file, `$KUBECONFIG` or `~/.kube/config`)
//! for every mapped context, or the in-cluster service account, without connecting; each
//! context's client is built in the first call that needs it. Every call parses the params
//! into a typed [`params::Op`] first and validates the names again (DNS-1123), so a value
//! can never put a path, a flag or another namespace in a request: nothing is sent before
//! that.
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
//! token of that one call (same cluster and CA as the ticket's context), dropped
//! afterwards. get-secret returns values only with `reveal_values`, under the output key
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

use std::collections::BTreeMap;
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

/// The value of `[executors.k8s] clusters` that means "the in-cluster service account"
/// instead of a kubeconfig context: the cluster the runner's own pod runs in.
pub const IN_CLUSTER: &str = "in-cluster";

/// The `[executors.k8s]` settings.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sConfig {
    /// kubeconfig file; None: $KUBECONFIG, then ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// Retired: the ticket's cluster chooses the context through [`K8sConfig::clusters`].
    /// Kept so that an old configuration gets an error saying what to write instead.
    pub context: Option<String>,
    /// Use the in-cluster service account and never read a kubeconfig: every value of
    /// [`K8sConfig::clusters`] must then be [`IN_CLUSTER`].
    pub in_cluster: bool,
    /// Inventory cluster name (the targets' `cluster` attribute, which every Kubernetes
    /// action binds into its params) → kubeconfig context, or [`IN_CLUSTER`]. A ticket
    /// for a cluster that is not here is refused before any request; empty: every ticket
    /// is refused.
    pub clusters: BTreeMap<String, String>,
    /// Per-request timeout in seconds (default when 0/absent: 30).
    pub request_timeout_seconds: u64,
}

/// The connection of one kubeconfig context (or the in-cluster account).
struct Connection {
    config: kube::Config,
    source: Source,
    /// The client of the kubeconfig's own user, built on first use.
    client: tokio::sync::OnceCell<kube::Client>,
}

/// The Kubernetes executor. One value serves many runs, on one tokio runtime, and acts
/// only in the clusters `[executors.k8s] clusters` maps.
pub struct K8sExecutor {
    /// Inventory cluster → context (a key of `connections`).
    clusters: BTreeMap<String, String>,
    /// Context → its connection; one client per context, however many clusters name it.
    connections: BTreeMap<String, Connection>,
    timeout: Duration,
}

impl std::fmt::Debug for K8sExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: BTreeMap<&str, String> = self
            .clusters
            .iter()
            .filter_map(|(cluster, context)| {
                let c = self.connections.get(context)?;
                Some((cluster.as_str(), c.config.cluster_url.to_string()))
            })
            .collect();
        f.debug_struct("K8sExecutor")
            .field("clusters", &self.clusters)
            .field("servers", &servers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl K8sExecutor {
    /// Synchronous: reads and validates the kubeconfig context of every mapped cluster
    /// (clear errors naming the cluster, the file and the context) but does not connect.
    /// Each kube `Client` is created lazily inside the first async call that needs its
    /// context (tokio OnceCell), because the runner creates its tokio runtime later
    /// (current_thread, io+time enabled).
    ///
    /// # Errors
    /// The retired `context` key; a `kubeconfig` that cannot be read; a cluster name that is not a DNS-1123 subdomain; with
    /// `in_cluster = true`, a cluster mapped to anything but [`IN_CLUSTER`]; for a mapped
    /// cluster, a kubeconfig that cannot be read, a missing context, cluster or user, or an
    /// in-cluster configuration that is not available.
    pub fn new(config: K8sConfig) -> Result<K8sExecutor, K8sError> {
        if let Some(context) = &config.context {
            return Err(K8sError::Config(format!(
                "`context` is no longer used: the ticket's cluster chooses the context; map each inventory cluster to its kubeconfig context in `clusters` instead (`clusters = {{ \"<cluster>\" = \"{context}\" }}`)"
            )));
        }
        // A kubeconfig named explicitly must be readable, even before any cluster is
        // mapped to one of its contexts: a wrong path is reported when the runner starts.
        if let Some(path) = config.kubeconfig.as_deref().filter(|_| !config.in_cluster) {
            client::read(path)?;
        }
        let mut connections = BTreeMap::new();
        for (cluster, context) in &config.clusters {
            if !params::is_dns1123_subdomain(cluster) {
                return Err(K8sError::Config(format!(
                    "`clusters`: `{cluster}` is not a valid inventory cluster name (a DNS-1123 subdomain, as the actions' `cluster` param)"
                )));
            }
            if context.is_empty() {
                return Err(K8sError::Config(format!(
                    "`clusters`: cluster `{cluster}` maps to an empty context"
                )));
            }
            if config.in_cluster && context != IN_CLUSTER {
                return Err(K8sError::Config(format!(
                    "`in_cluster = true` reads no kubeconfig, but `clusters` maps cluster `{cluster}` to context `{context}`: map the cluster the runner runs in to \"{IN_CLUSTER}\""
                )));
            }
            if connections.contains_key(context) {
                continue;
            }
            let (kube_config, source) =
                client::load(&config, context).map_err(|e| K8sError::Cluster {
                    cluster: cluster.clone(),
                    source: Box::new(e),
                })?;
            connections.insert(
                context.clone(),
                Connection {
                    config: kube_config,
                    source,
                    client: tokio::sync::OnceCell::new(),
                },
            );
        }
        Ok(K8sExecutor {
            clusters: config.clusters.clone(),
            connections,
            timeout: client::timeout_of(&config),
        })
    }

    /// The mapped clusters and their contexts.
    pub fn clusters(&self) -> &BTreeMap<String, String> {
        &self.clusters
    }

    /// Where the connection settings of `cluster` came from, when it is mapped.
    pub fn source(&self, cluster: &str) -> Option<&Source> {
        self.connection_of(cluster).map(|c| &c.source)
    }

    /// The API server URL of `cluster`, when it is mapped.
    pub fn server(&self, cluster: &str) -> Option<String> {
        self.connection_of(cluster)
            .map(|c| c.config.cluster_url.to_string())
    }

    fn connection_of(&self, cluster: &str) -> Option<&Connection> {
        self.connections.get(self.clusters.get(cluster)?)
    }

    /// The connection of the ticket's cluster. Called first by every trait method, so a
    /// ticket for a cluster this runner does not map sends nothing anywhere.
    ///
    /// # Errors
    /// [`K8sError::NoCluster`], [`K8sError::UnmappedCluster`] (both become
    /// [`CoreError::ExecutorWrongLocation`]), or an invalid `cluster` param.
    fn connection(&self, ctx: &ActionContext) -> Result<&Connection, K8sError> {
        let cluster = params::cluster(ctx)?;
        self.connection_of(&cluster)
            .ok_or_else(|| K8sError::UnmappedCluster {
                cluster,
                mapped: self.clusters.keys().cloned().collect(),
            })
    }

    /// The client for one call in the ticket's cluster: a fresh one authenticated with the
    /// credentials' token (kind `kubernetes`, non-empty secret), else the context's shared
    /// client.
    async fn kx(
        &self,
        conn: &Connection,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<actions::Kx, K8sError> {
        let client = if credentials.kind == "kubernetes" && !credentials.secret.is_empty() {
            client::build(&conn.config, Some(credentials.secret.expose()))?
        } else {
            conn.client
                .get_or_try_init(|| async { client::build(&conn.config, None) })
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
        let conn = self.connection(ctx)?;
        let op = match Op::parse(ctx) {
            Ok(op) => op,
            Err(e @ K8sError::InvalidParam { .. }) if check == "labels_valid" => {
                return Ok(PrecheckResult::Failed(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let k = self.kx(conn, ctx, credentials).await?;
        Ok(actions::precheck(&k, &op, check).await?)
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        let conn = self.connection(ctx)?;
        let op = Op::parse(ctx)?;
        let k = self.kx(conn, ctx, credentials).await?;
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
        let conn = self.connection(ctx)?;
        let op = Op::parse(ctx)?;
        let k = self.kx(conn, ctx, credentials).await?;
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
        let conn = self.connection(ctx)?;
        let op = Op::parse(ctx)?;
        let k = self.kx(conn, ctx, credentials).await?;
        Ok(actions::dry_run(&k, &op).await?)
    }
}
