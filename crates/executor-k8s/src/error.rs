//! The error type of the Kubernetes executor and the mapping of API failures to
//! [`agentsafe_core::CoreError`] values whose messages name the object.
//!
//! # Security
//! No message carries a credential: API status messages name users and objects, never
//! tokens, and transport errors are reduced to their cause (`connection refused`,
//! `timed out`, a TLS failure).

use std::path::PathBuf;

use agentsafe_core::CoreError;

use crate::NAME;

/// Everything that can go wrong in the Kubernetes executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// The kubeconfig file cannot be read or parsed.
    #[error("cannot load kubeconfig `{path}`: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The kubeconfig has no usable context of this name (or its cluster/user is missing).
    #[error("kubeconfig `{path}`: context `{context}`: {message}")]
    Context {
        /// The file.
        path: PathBuf,
        /// The context name (`<current>` when none was named).
        context: String,
        /// Why.
        message: String,
    },
    /// No kubeconfig was found and the in-cluster configuration is not available.
    #[error("no Kubernetes configuration: {0}")]
    NoConfig(String),
    /// `[executors.k8s]` is not usable as written (the key is named).
    #[error("invalid `[executors.k8s]` config: {0}")]
    Config(String),
    /// A cluster of `[executors.k8s] clusters` cannot be connected to as configured.
    #[error("`[executors.k8s] clusters`: cluster `{cluster}`: {source}")]
    Cluster {
        /// The inventory cluster name.
        cluster: String,
        /// Why its context cannot be used.
        source: Box<K8sError>,
    },
    /// The ticket's params name no cluster, so the executor cannot tell where it may act.
    /// Nothing was sent to any API server.
    #[error(
        "{action}: the ticket names no cluster: the action must bind a `cluster` param to the target (`target_attr = \"cluster\"`), as the shipped actions do; nothing was sent"
    )]
    NoCluster {
        /// The action.
        action: String,
    },
    /// The ticket's cluster is not mapped to a kubeconfig context. Nothing was sent to any
    /// API server.
    #[error("{}", unmapped(cluster, mapped))]
    UnmappedCluster {
        /// The cluster the ticket is for.
        cluster: String,
        /// The clusters `[executors.k8s] clusters` maps, sorted.
        mapped: Vec<String>,
    },
    /// The HTTP client could not be built (TLS, certificates).
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
    /// A param is missing, of the wrong type or not a valid Kubernetes name. Nothing was
    /// sent to the API server.
    #[error("{action}: param `{param}`: {message}")]
    InvalidParam {
        /// The action.
        action: String,
        /// The param.
        param: String,
        /// Why it was refused.
        message: String,
    },
    /// The action is refused before any request (a system namespace, a revision that does
    /// not exist, ...).
    #[error("{0}")]
    Refused(String),
    /// The object does not exist (`deployment prod/web`).
    #[error("{0}")]
    NotFound(String),
    /// The API server answered with an error status.
    #[error("{what}: {kind} ({code}): {message}")]
    Api {
        /// The object and verb (`patch deployment prod/web`).
        what: String,
        /// `forbidden`, `conflict`, `invalid`, ...
        kind: &'static str,
        /// The HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached or did not answer in time.
    #[error("{what}: {message}")]
    Transport {
        /// The object and verb.
        what: String,
        /// The cause (`connection refused`, `timed out after 30 s`, ...).
        message: String,
    },
    /// Any other failure of an operation, with what it was about.
    #[error("{0}")]
    Failed(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl K8sError {
    /// Whether the API server answered 404 for the object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::NotFound(_))
    }

    /// The HTTP status code when the API server answered with an error.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            K8sError::Api { code, .. } => Some(*code),
            K8sError::NotFound(_) => Some(404),
            _ => None,
        }
    }
}

/// The message of [`K8sError::UnmappedCluster`].
fn unmapped(cluster: &str, mapped: &[String]) -> String {
    let fix = format!(
        "add it to `[executors.k8s] clusters` (`clusters = {{ \"{cluster}\" = \"<kubeconfig context>\" }}`) to let this runner act there"
    );
    if mapped.is_empty() {
        format!(
            "the ticket is for cluster `{cluster}`, but `[executors.k8s] clusters` maps no cluster to a kubeconfig context: {fix}; nothing was sent"
        )
    } else {
        format!(
            "the ticket is for cluster `{cluster}`, which `[executors.k8s] clusters` does not map (it maps {}): {fix}; nothing was sent",
            mapped
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl From<K8sError> for CoreError {
    fn from(e: K8sError) -> CoreError {
        match e {
            K8sError::NotFound(what) => CoreError::ExecutorNotFound(what),
            K8sError::Cancelled => CoreError::ExecutorCancelled,
            e @ (K8sError::NoCluster { .. } | K8sError::UnmappedCluster { .. }) => {
                CoreError::ExecutorWrongLocation {
                    executor: NAME.to_owned(),
                    message: e.to_string(),
                }
            }
            other => CoreError::ExecutorBackend {
                executor: NAME.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// The name of an HTTP error status as the API server uses it.
pub(crate) fn status_kind(code: u16) -> &'static str {
    match code {
        400 => "bad request",
        401 => "unauthorized: the API server rejected the credentials",
        403 => "forbidden",
        404 => "not found",
        405 => "method not allowed",
        409 => "conflict",
        410 => "gone",
        422 => "invalid",
        429 => "too many requests",
        500 => "internal server error",
        503 => "service unavailable",
        504 => "server timeout",
        _ => "error",
    }
}

/// Maps a kube error for the operation `verb` on `what` (`deployment prod/web`).
pub(crate) fn map_kube(verb: &str, what: &str, e: &kube::Error) -> K8sError {
    match e {
        kube::Error::Api(resp) if resp.code == 404 => K8sError::NotFound(what.to_owned()),
        kube::Error::Api(resp) => api_error(verb, what, resp.code, &resp.message),
        kube::Error::Auth(_) => K8sError::Transport {
            what: format!("{verb} {what}"),
            message: "cannot obtain credentials from the kubeconfig user".into(),
        },
        kube::Error::SerdeError(err) => K8sError::Failed(format!(
            "{verb} {what}: unexpected response from the API server: {err}"
        )),
        kube::Error::UpgradeConnection(err) => K8sError::Transport {
            what: format!("{verb} {what}"),
            message: format!("the connection upgrade (WebSocket) failed: {}", chain(err)),
        },
        other => K8sError::Transport {
            what: format!("{verb} {what}"),
            message: transport_cause(other),
        },
    }
}

/// An API status error for `verb` on `what`.
pub(crate) fn api_error(verb: &str, what: &str, code: u16, message: &str) -> K8sError {
    K8sError::Api {
        what: format!("{verb} {what}"),
        kind: status_kind(code),
        code,
        message: message.trim().to_owned(),
    }
}

/// The error and its sources, joined, without duplicates.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// A short cause for a transport failure.
fn transport_cause(e: &kube::Error) -> String {
    let full = chain(e).to_ascii_lowercase();
    let cause = if full.contains("connection refused") {
        "connection refused: is the API server running?"
    } else if full.contains("timed out") || full.contains("timeout") || full.contains("elapsed") {
        "timed out waiting for the API server"
    } else if full.contains("certificate") || full.contains("tls") || full.contains("handshake") {
        "TLS failure talking to the API server"
    } else if full.contains("dns") || full.contains("resolve") || full.contains("lookup") {
        "cannot resolve the API server's host name"
    } else {
        ""
    };
    let detail = chain(e);
    if cause.is_empty() {
        format!("cannot reach the API server: {detail}")
    } else {
        format!("{cause} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ErrorResponse;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(ErrorResponse {
            status: "Failure".into(),
            message: message.into(),
            reason: String::new(),
            code,
        })
    }

    #[test]
    fn not_found_names_the_object() {
        let e = map_kube("get", "deployment prod/web", &api(404, "x"));
        assert_eq!(e, K8sError::NotFound("deployment prod/web".into()));
        let core: CoreError = e.into();
        assert_eq!(core.to_string(), "deployment prod/web not found");
        assert!(matches!(core, CoreError::ExecutorNotFound(_)));
    }

    #[test]
    fn statuses_are_named() {
        for (code, word) in [
            (401, "unauthorized"),
            (403, "forbidden"),
            (409, "conflict"),
            (422, "invalid"),
            (429, "too many requests"),
            (500, "internal server error"),
        ] {
            let e = map_kube("patch", "deployment prod/web", &api(code, "because"));
            let text = CoreError::from(e.clone()).to_string();
            assert!(
                text.starts_with("k8s: patch deployment prod/web: "),
                "{text}"
            );
            assert!(text.contains(word), "{code}: {text}");
            assert!(text.contains(&format!("({code})")), "{text}");
            assert!(text.contains("because"), "{text}");
            assert_eq!(e.status_code(), Some(code));
        }
    }

    #[test]
    fn an_unmapped_cluster_is_a_wrong_location_naming_the_cluster_and_the_key() {
        let e = CoreError::from(K8sError::UnmappedCluster {
            cluster: "staging-eu-1".into(),
            mapped: vec!["prod-eu-1".into()],
        });
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. }),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains("cluster `staging-eu-1`")
                && message.contains("maps `prod-eu-1`")
                && message.contains("`[executors.k8s] clusters`")
                && message.contains("nothing was sent"),
            "{message}"
        );
        let e = K8sError::UnmappedCluster {
            cluster: "dev-1".into(),
            mapped: Vec::new(),
        }
        .to_string();
        assert!(
            e.contains("maps no cluster") && e.contains("clusters = { \"dev-1\""),
            "{e}"
        );
        let e = CoreError::from(K8sError::NoCluster {
            action: "scale-deployment".into(),
        });
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn cancellation_maps_to_core() {
        assert_eq!(
            CoreError::from(K8sError::Cancelled),
            CoreError::ExecutorCancelled
        );
    }
}
