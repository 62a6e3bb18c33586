//! Connection settings: kubeconfig (file, context), in-cluster configuration, and the kube
//! clients built from them.
//!
//! The kubeconfig is read and checked synchronously by [`load`]; the client itself is built
//! inside the first async call (its connection pool belongs to the caller's runtime).
//!
//! # Security
//! A bearer token handed in [`agentsafe_core::Credentials`] replaces the kubeconfig user's
//! authentication for one call only: the client built with it is dropped at the end of the
//! call and the token is never stored.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};

use crate::{IN_CLUSTER, K8sConfig, K8sError};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the configuration came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig file (or `$KUBECONFIG`) and a context.
    Kubeconfig {
        /// The file (the first of `$KUBECONFIG` when it lists several).
        path: PathBuf,
        /// The context used.
        context: String,
    },
    /// The in-cluster service account (a cluster mapped to [`IN_CLUSTER`]).
    InCluster,
}

/// Polls a future that completes without waiting (kube's kubeconfig loader is `async`
/// but does no I/O).
fn ready<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn home_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Loads and checks the connection settings of one kubeconfig context (or, for
/// [`IN_CLUSTER`], of the in-cluster service account) without connecting.
///
/// The kubeconfig is `[executors.k8s] kubeconfig`, else `$KUBECONFIG`, else
/// `~/.kube/config`; the context is always named, never the file's current one.
///
/// # Errors
/// A kubeconfig that cannot be read or parsed, a context (or its cluster or user) that
/// does not exist, a server URL that does not parse, an unreadable CA file, no kubeconfig
/// at all, or an in-cluster configuration that is not available; every message names the
/// file and context.
pub fn load(config: &K8sConfig, context: &str) -> Result<(kube::Config, Source), K8sError> {
    let timeout = timeout_of(config);
    let with_timeouts = |mut cfg: kube::Config| {
        cfg.connect_timeout = Some(timeout.min(Duration::from_secs(10)));
        cfg.read_timeout = Some(timeout);
        cfg.write_timeout = Some(timeout);
        cfg
    };
    if context == IN_CLUSTER {
        return in_cluster().map(|c| (with_timeouts(c), Source::InCluster));
    }
    let env = std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty());
    let (kubeconfig, path) = if let Some(path) = &config.kubeconfig {
        (read(path)?, path.clone())
    } else if let Some(list) = env {
        let first = std::env::split_paths(&list).next().unwrap_or_default();
        let kc = Kubeconfig::read().map_err(|e| K8sError::Kubeconfig {
            path: PathBuf::from(&list),
            message: e.to_string(),
        })?;
        (kc, first)
    } else if let Some(path) = home_kubeconfig().filter(|p| p.exists()) {
        (read(&path)?, path)
    } else {
        return Err(K8sError::NoConfig(format!(
            "no kubeconfig (`[executors.k8s] kubeconfig`, $KUBECONFIG, ~/.kube/config) to read context `{context}` from"
        )));
    };
    let cx_err = |message: String| K8sError::Context {
        path: path.clone(),
        context: context.to_owned(),
        message,
    };
    let named = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .ok_or_else(|| {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            cx_err(format!("no such context (contexts: {})", known.join(", ")))
        })?;
    let cluster = named
        .context
        .as_ref()
        .map(|c| c.cluster.clone())
        .ok_or_else(|| cx_err("the context names no cluster".into()))?;
    if !kubeconfig.clusters.iter().any(|c| c.name == cluster) {
        return Err(cx_err(format!("cluster `{cluster}` is not defined")));
    }
    if let Some(user) = named.context.as_ref().and_then(|c| c.user.as_ref())
        && !kubeconfig.auth_infos.iter().any(|u| &u.name == user)
    {
        return Err(cx_err(format!("user `{user}` is not defined")));
    }
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        cluster: None,
        user: None,
    };
    let cfg = ready(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
        .ok_or_else(|| cx_err("the kubeconfig loader did not complete".into()))?
        .map_err(|e| cx_err(e.to_string()))?;
    Ok((
        with_timeouts(cfg),
        Source::Kubeconfig {
            path,
            context: context.to_owned(),
        },
    ))
}

/// Reads and parses a kubeconfig file.
///
/// # Errors
/// When the file cannot be read or is not a kubeconfig.
pub fn read(path: &Path) -> Result<Kubeconfig, K8sError> {
    Kubeconfig::read_from(path).map_err(|e| K8sError::Kubeconfig {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn in_cluster() -> Result<kube::Config, K8sError> {
    kube::Config::incluster().map_err(|e| {
        K8sError::NoConfig(format!(
            "the in-cluster configuration is not available: {e}"
        ))
    })
}

/// The per-request timeout of a configuration.
pub fn timeout_of(config: &K8sConfig) -> Duration {
    if config.request_timeout_seconds == 0 {
        DEFAULT_TIMEOUT
    } else {
        Duration::from_secs(config.request_timeout_seconds)
    }
}

/// Makes ring the process's rustls provider when none is installed yet (kube asks rustls
/// for the process default; with two providers compiled in there would be none).
fn install_crypto() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race; either provider installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Builds a client from `config`; with `token`, the token replaces the user's
/// authentication (same cluster, same CA). Must run inside a tokio runtime.
///
/// # Errors
/// When the TLS configuration cannot be built.
pub fn build(config: &kube::Config, token: Option<&str>) -> Result<kube::Client, K8sError> {
    install_crypto();
    let mut cfg = config.clone();
    if let Some(token) = token {
        cfg.auth_info = AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        };
    }
    kube::Client::try_from(cfg).map_err(|e| K8sError::Client(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: http://127.0.0.1:1
users:
- name: u1
  user:
    token: not-a-real-token
contexts:
- name: one
  context: {cluster: c1, user: u1}
- name: broken
  context: {cluster: nowhere, user: u1}
current-context: one
";

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn cfg(path: &Path) -> K8sConfig {
        K8sConfig {
            kubeconfig: Some(path.to_owned()),
            ..K8sConfig::default()
        }
    }

    #[test]
    fn loads_a_named_context() {
        let f = file(KUBECONFIG);
        let (c, src) = load(&cfg(f.path()), "one").unwrap();
        assert_eq!(c.cluster_url.to_string(), "http://127.0.0.1:1/");
        assert_eq!(
            src,
            Source::Kubeconfig {
                path: f.path().to_owned(),
                context: "one".into()
            }
        );
        assert_eq!(c.read_timeout, Some(DEFAULT_TIMEOUT));
    }

    #[test]
    fn errors_name_the_file_and_context() {
        let f = file(KUBECONFIG);
        let e = load(&cfg(f.path()), "two").unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(
            e.contains("context `two`") && e.contains("contexts: one, broken"),
            "{e}"
        );
        let e = load(&cfg(f.path()), "broken").unwrap_err().to_string();
        assert!(e.contains("cluster `nowhere` is not defined"), "{e}");
        let e = load(&cfg(Path::new("/nonexistent/kubeconfig")), "one")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot load kubeconfig `/nonexistent/kubeconfig`"),
            "{e}"
        );
        let g = file("{not yaml");
        let e = load(&cfg(g.path()), "one").unwrap_err().to_string();
        assert!(e.contains("cannot load kubeconfig"), "{e}");
        assert!(!e.contains("not-a-real-token"), "{e}");
    }
}
