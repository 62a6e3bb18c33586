//! Params of the 20 actions, parsed into one typed [`Op`] and validated again here
//! (DNS-1123 names, keys, images, argv items), so no value can put a path, a flag or
//! another namespace into a request URL, whoever calls the library.
//!
//! The registry validated the params before the ticket was signed; this is defence in
//! depth. A param bound to a target attribute (`cluster`, `namespace`, `node`, `name`)
//! must also equal that attribute of the context: a ticket for namespace A never acts in B.
//! [`cluster`] reads the cluster the executor connects to before anything else.

use std::collections::BTreeMap;

use agentsafe_core::ActionContext;
use serde_json::Value;

use crate::K8sError;

/// The actions this executor runs.
pub const ACTIONS: [&str; 20] = [
    "apply-network-policy",
    "cordon-node",
    "create-namespace",
    "delete-namespace",
    "delete-pod",
    "drain-node",
    "exec-pod",
    "get-configmap",
    "get-pod-logs",
    "get-secret",
    "port-forward",
    "restart-deployment",
    "rollout-status",
    "rollout-undo",
    "scale-deployment",
    "scale-hpa",
    "uncordon-node",
    "update-configmap",
    "update-hpa-limits",
    "update-image",
];

/// Namespaces that no action creates, deletes or writes a NetworkPolicy into.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Whether `ns` is a system namespace: one of [`SYSTEM_NAMESPACES`] or any `kube-` name.
pub fn is_system_namespace(ns: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&ns) || ns.starts_with("kube-")
}

/// Whether `s` is a DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `s` is a DNS-1123 subdomain: at most 253 characters, dot-separated labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is a valid ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253, not
/// `.` or `..`.
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Whether `s` looks like an image reference: `[registry[:port]/]repository(:tag|@digest)`
/// in the characters references use, no leading `-`, no `..`.
pub fn is_image_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && !s.starts_with(['-', '/', '.', ':', '@'])
        && !s.contains("..")
        && !s.contains("//")
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/' | b':' | b'@')
        })
}

/// Whether `s` is an allowed argv item of exec-pod (the action's pattern
/// `[A-Za-z0-9_./=:,@%+-]{1,1024}`).
pub fn is_argv_item(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'@' | b'%' | b'+' | b'-'
                )
        })
}

/// Whether `s` is a label key: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name
/// at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_label_name(name)
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `s` is a label value: empty, or a label name.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

/// The parameters of a NetworkPolicy built from apply-network-policy's params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetpolSpec {
    /// matchLabels of the selected pods.
    pub pod_selector: BTreeMap<String, String>,
    /// `Ingress` and/or `Egress`.
    pub policy_types: Vec<String>,
    /// Namespaces whose pods may connect.
    pub allow_from_namespaces: Option<Vec<String>>,
    /// matchLabels of pods of the policy's namespace that may connect.
    pub allow_from_pod_labels: Option<BTreeMap<String, String>>,
    /// TCP ports the allowed traffic may reach.
    pub ports: Option<Vec<i32>>,
}

/// Options of drain-node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOptions {
    /// Grace period of each eviction.
    pub grace_period_seconds: i64,
    /// How long to retry blocked evictions and wait for pods to go.
    pub timeout_seconds: u64,
    /// Leave DaemonSet pods in place.
    pub ignore_daemonsets: bool,
    /// Evict pods with emptyDir volumes.
    pub delete_emptydir_data: bool,
}

/// One action with its validated params.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "the fields are the action's params, documented in actions/*.toml"
)]
pub enum Op {
    ApplyNetworkPolicy {
        ns: String,
        name: String,
        spec: NetpolSpec,
    },
    CordonNode {
        node: String,
    },
    CreateNamespace {
        ns: String,
    },
    DeleteNamespace {
        ns: String,
    },
    DeletePod {
        ns: String,
        pod: String,
        grace: i64,
    },
    DrainNode {
        node: String,
        opts: DrainOptions,
    },
    ExecPod {
        ns: String,
        pod: String,
        container: Option<String>,
        command: Vec<String>,
        timeout: u64,
    },
    GetConfigmap {
        ns: String,
        name: String,
        key: Option<String>,
    },
    GetPodLogs {
        ns: String,
        pod: String,
        container: Option<String>,
        tail_lines: i64,
        since_seconds: Option<i64>,
        previous: bool,
    },
    GetSecret {
        ns: String,
        name: String,
        key: Option<String>,
        reveal: bool,
    },
    PortForward {
        ns: String,
        pod: String,
        remote_port: u16,
        local_port: Option<u16>,
        duration: u64,
    },
    RestartDeployment {
        ns: String,
        name: String,
    },
    RolloutStatus {
        ns: String,
        name: String,
        timeout: u64,
    },
    RolloutUndo {
        ns: String,
        name: String,
        to_revision: Option<i64>,
    },
    ScaleDeployment {
        ns: String,
        name: String,
        replicas: i32,
    },
    ScaleHpa {
        ns: String,
        name: String,
        min: i32,
    },
    UncordonNode {
        node: String,
    },
    UpdateConfigmap {
        ns: String,
        name: String,
        key: String,
        value: String,
    },
    UpdateHpaLimits {
        ns: String,
        name: String,
        min: i32,
        max: i32,
    },
    UpdateImage {
        ns: String,
        name: String,
        container: String,
        image: String,
    },
}

/// Reads params of one action with the action's name in every error.
struct P<'a> {
    ctx: &'a ActionContext,
}

impl P<'_> {
    fn err(&self, param: &str, message: impl Into<String>) -> K8sError {
        K8sError::InvalidParam {
            action: self.ctx.action.clone(),
            param: param.to_owned(),
            message: message.into(),
        }
    }

    fn raw(&self, name: &str) -> Option<&Value> {
        self.ctx.params.get(name).filter(|v| !v.is_null())
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, K8sError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(name, "must be a string")),
        }
    }

    fn str(&self, name: &str) -> Result<String, K8sError> {
        self.opt_str(name)?
            .ok_or_else(|| self.err(name, "is required"))
    }

    fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, K8sError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                Some(n) => Err(self.err(name, format!("{n} is outside {min}..={max}"))),
                None => Err(self.err(name, "must be an integer")),
            },
        }
    }

    fn int(&self, name: &str, min: i64, max: i64, default: Option<i64>) -> Result<i64, K8sError> {
        self.opt_int(name, min, max)?
            .or(default)
            .ok_or_else(|| self.err(name, "is required"))
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, K8sError> {
        match self.raw(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(name, "must be a boolean")),
        }
    }

    /// A namespace param: a DNS-1123 label equal to the target's `namespace` attribute.
    fn namespace(&self, name: &str) -> Result<String, K8sError> {
        let ns = self.str(name)?;
        if !is_dns1123_label(&ns) {
            return Err(self.err(name, format!("`{}` is not a DNS-1123 label", shown(&ns))));
        }
        self.bound(name, "namespace", &ns)?;
        Ok(ns)
    }

    /// An object name param: a DNS-1123 subdomain.
    fn object(&self, name: &str) -> Result<String, K8sError> {
        let v = self.str(name)?;
        if !is_dns1123_subdomain(&v) {
            return Err(self.err(name, format!("`{}` is not a DNS-1123 subdomain", shown(&v))));
        }
        Ok(v)
    }

    /// A container name param (DNS-1123 label), optional.
    fn container(&self, name: &str) -> Result<Option<String>, K8sError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(c) if is_dns1123_label(&c) => Ok(Some(c)),
            Some(c) => Err(self.err(name, format!("`{}` is not a DNS-1123 label", shown(&c)))),
        }
    }

    fn key(&self, name: &str) -> Result<Option<String>, K8sError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(k) if is_config_key(&k) => Ok(Some(k)),
            Some(k) => Err(self.err(name, format!("`{}` is not a valid key", shown(&k)))),
        }
    }

    /// A param bound to the target attribute `attr`: when the context carries the
    /// attribute, the param must equal it.
    fn bound(&self, param: &str, attr: &str, value: &str) -> Result<(), K8sError> {
        match self.ctx.attributes.get(attr) {
            Some(expected) if expected != value => Err(self.err(
                param,
                format!(
                    "`{}` differs from the target's {attr} `{}`",
                    shown(value),
                    shown(expected)
                ),
            )),
            _ => Ok(()),
        }
    }

    fn labels(
        &self,
        name: &str,
        required: bool,
    ) -> Result<Option<BTreeMap<String, String>>, K8sError> {
        let Some(v) = self.raw(name) else {
            return if required {
                Err(self.err(name, "is required"))
            } else {
                Ok(None)
            };
        };
        let Value::Object(map) = v else {
            return Err(self.err(name, "must be an object of label keys to string values"));
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let Value::String(s) = v else {
                return Err(self.err(
                    name,
                    format!("label `{}` must have a string value", shown(k)),
                ));
            };
            if !is_label_key(k) {
                return Err(self.err(name, format!("`{}` is not a valid label key", shown(k))));
            }
            if !is_label_value(s) {
                return Err(self.err(
                    name,
                    format!("`{}` is not a valid value of label `{k}`", shown(s)),
                ));
            }
            out.insert(k.clone(), s.clone());
        }
        Ok(Some(out))
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<String>>, K8sError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.err(name, "items must be strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.err(name, "must be an array of strings")),
        }
    }
}

/// The cluster a ticket is for: its `cluster` param, a DNS-1123 subdomain equal to the
/// target's `cluster` attribute when the context carries one.
///
/// # Errors
/// [`K8sError::NoCluster`] when the params name no cluster (an action that does not bind
/// `cluster`), [`K8sError::InvalidParam`] for a value that is not a string, not a valid
/// name or not the target's cluster. Nothing has been sent to any API server then.
pub fn cluster(ctx: &ActionContext) -> Result<String, K8sError> {
    let p = P { ctx };
    if p.raw("cluster").is_none() {
        return Err(K8sError::NoCluster {
            action: ctx.action.clone(),
        });
    }
    let cluster = p.object("cluster")?;
    p.bound("cluster", "cluster", &cluster)?;
    Ok(cluster)
}

/// A value as shown in an error: at most 80 characters, control characters escaped.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

impl Op {
    /// Parses and validates the params of `ctx.action`.
    ///
    /// # Errors
    /// An unknown action, or a param that is missing, mistyped or not a valid name;
    /// nothing has been sent to the API server then.
    pub fn parse(ctx: &ActionContext) -> Result<Op, K8sError> {
        let p = P { ctx };
        let ns = || p.namespace("namespace");
        let name = || -> Result<String, K8sError> {
            let n = p.object("name")?;
            p.bound("name", "name", &n)?;
            Ok(n)
        };
        let node = || -> Result<String, K8sError> {
            let n = p.object("node")?;
            p.bound("node", "node", &n)?;
            Ok(n)
        };
        let i32_of = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        let u64_of = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(match ctx.action.as_str() {
            "apply-network-policy" => {
                let policy_types = p
                    .strings("policy_types")?
                    .ok_or_else(|| p.err("policy_types", "is required"))?;
                if policy_types.is_empty() || policy_types.len() > 2 {
                    return Err(p.err("policy_types", "must list Ingress, Egress or both"));
                }
                for t in &policy_types {
                    if t != "Ingress" && t != "Egress" {
                        return Err(p.err(
                            "policy_types",
                            format!("`{}` is neither Ingress nor Egress", shown(t)),
                        ));
                    }
                }
                let allow_from_namespaces = p.strings("allow_from_namespaces")?;
                for n in allow_from_namespaces.iter().flatten() {
                    if !is_dns1123_label(n) {
                        return Err(p.err(
                            "allow_from_namespaces",
                            format!("`{}` is not a DNS-1123 label", shown(n)),
                        ));
                    }
                }
                let ports = match p.raw("ports") {
                    None => None,
                    Some(Value::Array(items)) => Some(
                        items
                            .iter()
                            .map(|i| match i.as_i64() {
                                Some(n) if (1..=65535).contains(&n) => Ok(i32_of(n)),
                                _ => Err(p.err("ports", "items must be integers in 1..=65535")),
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    Some(_) => return Err(p.err("ports", "must be an array of integers")),
                };
                Op::ApplyNetworkPolicy {
                    ns: ns()?,
                    name: p.object("name")?,
                    spec: NetpolSpec {
                        pod_selector: p.labels("pod_selector", true)?.unwrap_or_default(),
                        policy_types,
                        allow_from_namespaces,
                        allow_from_pod_labels: p.labels("allow_from_pod_labels", false)?,
                        ports,
                    },
                }
            }
            "cordon-node" => Op::CordonNode { node: node()? },
            "uncordon-node" => Op::UncordonNode { node: node()? },
            "create-namespace" => Op::CreateNamespace { ns: ns()? },
            "delete-namespace" => Op::DeleteNamespace { ns: ns()? },
            "delete-pod" => Op::DeletePod {
                ns: ns()?,
                pod: p.object("pod")?,
                grace: p.int("grace_period_seconds", 0, 3600, Some(30))?,
            },
            "drain-node" => Op::DrainNode {
                node: node()?,
                opts: DrainOptions {
                    grace_period_seconds: p.int("grace_period_seconds", 0, 3600, Some(30))?,
                    timeout_seconds: u64_of(p.int("timeout_seconds", 1, 3600, Some(600))?),
                    ignore_daemonsets: p.bool("ignore_daemonsets", true)?,
                    delete_emptydir_data: p.bool("delete_emptydir_data", false)?,
                },
            },
            "exec-pod" => {
                let command = p
                    .strings("command")?
                    .ok_or_else(|| p.err("command", "is required"))?;
                if command.is_empty() || command.len() > 64 {
                    return Err(p.err("command", "must hold 1 to 64 items"));
                }
                if let Some(bad) = command.iter().find(|c| !is_argv_item(c)) {
                    return Err(p.err(
                        "command",
                        format!(
                            "`{}` holds whitespace, a wildcard or a shell metacharacter",
                            shown(bad)
                        ),
                    ));
                }
                Op::ExecPod {
                    ns: ns()?,
                    pod: p.object("pod")?,
                    container: p.container("container")?,
                    command,
                    timeout: u64_of(p.int("timeout_seconds", 1, 900, Some(60))?),
                }
            }
            "get-configmap" => Op::GetConfigmap {
                ns: ns()?,
                name: p.object("configmap")?,
                key: p.key("key")?,
            },
            "update-configmap" => {
                let value = p.str("value")?;
                if value.len() > 1_048_576 {
                    return Err(p.err("value", "is longer than 1 MiB"));
                }
                Op::UpdateConfigmap {
                    ns: ns()?,
                    name: p.object("configmap")?,
                    key: p.key("key")?.ok_or_else(|| p.err("key", "is required"))?,
                    value,
                }
            }
            "get-secret" => Op::GetSecret {
                ns: ns()?,
                name: p.object("secret")?,
                key: p.key("key")?,
                reveal: p.bool("reveal_values", false)?,
            },
            "get-pod-logs" => Op::GetPodLogs {
                ns: ns()?,
                pod: p.object("pod")?,
                container: p.container("container")?,
                tail_lines: p.int("tail_lines", 1, 10_000, Some(100))?,
                since_seconds: p.opt_int("since_seconds", 1, 86_400)?,
                previous: p.bool("previous", false)?,
            },
            "port-forward" => Op::PortForward {
                ns: ns()?,
                pod: p.object("pod")?,
                remote_port: u16::try_from(p.int("remote_port", 1, 65_535, None)?).unwrap_or(0),
                local_port: p
                    .opt_int("local_port", 1024, 65_535)?
                    .map(|v| u16::try_from(v).unwrap_or(0)),
                duration: u64_of(p.int("duration_seconds", 1, 3600, Some(300))?),
            },
            "restart-deployment" => Op::RestartDeployment {
                ns: ns()?,
                name: name()?,
            },
            "rollout-status" => Op::RolloutStatus {
                ns: ns()?,
                name: name()?,
                timeout: u64_of(p.int("timeout_seconds", 1, 900, Some(60))?),
            },
            "rollout-undo" => Op::RolloutUndo {
                ns: ns()?,
                name: name()?,
                to_revision: p.opt_int("to_revision", 1, i64::from(i32::MAX))?,
            },
            "scale-deployment" => Op::ScaleDeployment {
                ns: ns()?,
                name: name()?,
                replicas: i32_of(p.int("replicas", 0, 500, None)?),
            },
            "scale-hpa" => Op::ScaleHpa {
                ns: ns()?,
                name: name()?,
                min: i32_of(p.int("min_replicas", 1, 500, None)?),
            },
            "update-hpa-limits" => Op::UpdateHpaLimits {
                ns: ns()?,
                name: name()?,
                min: i32_of(p.int("min_replicas", 1, 500, None)?),
                max: i32_of(p.int("max_replicas", 1, 500, None)?),
            },
            "update-image" => {
                let image = p.str("image")?;
                if !is_image_reference(&image) {
                    return Err(p.err(
                        "image",
                        format!("`{}` is not an image reference", shown(&image)),
                    ));
                }
                Op::UpdateImage {
                    ns: ns()?,
                    name: name()?,
                    container: p
                        .container("container")?
                        .ok_or_else(|| p.err("container", "is required"))?,
                    image,
                }
            }
            other => {
                return Err(K8sError::Refused(format!(
                    "executor `{}` does not support action `{}`",
                    crate::NAME,
                    shown(other)
                )));
            }
        })
    }

    /// The namespace the op acts in (None for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Op::ApplyNetworkPolicy { ns, .. }
            | Op::DeletePod { ns, .. }
            | Op::ExecPod { ns, .. }
            | Op::GetConfigmap { ns, .. }
            | Op::GetPodLogs { ns, .. }
            | Op::GetSecret { ns, .. }
            | Op::PortForward { ns, .. }
            | Op::RestartDeployment { ns, .. }
            | Op::RolloutStatus { ns, .. }
            | Op::RolloutUndo { ns, .. }
            | Op::ScaleDeployment { ns, .. }
            | Op::ScaleHpa { ns, .. }
            | Op::UpdateConfigmap { ns, .. }
            | Op::UpdateHpaLimits { ns, .. }
            | Op::UpdateImage { ns, .. } => Some(ns),
            Op::CreateNamespace { .. }
            | Op::DeleteNamespace { .. }
            | Op::CordonNode { .. }
            | Op::UncordonNode { .. }
            | Op::DrainNode { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test code"
    )]

    use super::*;
    use serde_json::json;

    fn ctx(action: &str, params: Value) -> ActionContext {
        ActionContext {
            action: action.into(),
            target: "t".into(),
            target_type: None,
            attributes: BTreeMap::new(),
            params: params.as_object().cloned().unwrap(),
            decision_id: "0".repeat(32),
            ticket_nonce: "0".repeat(32),
        }
    }

    fn refused(action: &str, params: Value, param: &str) {
        match Op::parse(&ctx(action, params.clone())) {
            Err(K8sError::InvalidParam { param: p, .. }) => assert_eq!(p, param, "{params}"),
            other => panic!("{action} {params}: expected a refusal of `{param}`, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_dns1123() {
        for ok in ["a", "web", "a-b", "a1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            "--all",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        for ok in ["a.b", "web-1.prod", "x"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "a..b",
            ".a",
            "a.",
            "a/b",
            "..",
            "a%2fb",
            "a\u{0}b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn keys_labels_images_argv() {
        assert!(is_config_key("app.conf") && is_config_key("A_B-c") && is_config_key(".hidden"));
        assert!(
            !is_config_key("..")
                && !is_config_key("a/b")
                && !is_config_key("a b")
                && !is_config_key("")
        );
        assert!(is_label_key("app") && is_label_key("example.com/tier") && is_label_key("a_b.c-d"));
        assert!(
            !is_label_key("-a")
                && !is_label_key("a/b/c")
                && !is_label_key("Ex ample")
                && !is_label_key("/a")
        );
        assert!(
            is_label_value("")
                && is_label_value("v1.2")
                && !is_label_value("a b")
                && !is_label_value("-x")
        );
        for ok in [
            "nginx:1.27",
            "registry.example.com:5000/team/app:v1",
            "busybox@sha256:abc",
            "a/b:c",
        ] {
            assert!(is_image_reference(ok), "{ok}");
        }
        for bad in ["--help", "a b", "../x", "a;rm", "", "a//b", "$(x)"] {
            assert!(!is_image_reference(bad), "{bad}");
        }
        for ok in ["ls", "-l", "/etc/hosts", "a=b", "--all"] {
            assert!(is_argv_item(ok), "{ok}");
        }
        for bad in ["", "a b", "$(id)", "a;b", "a|b", "*", "`x`", "a\nb"] {
            assert!(!is_argv_item(bad), "{bad}");
        }
    }

    #[test]
    fn system_namespaces() {
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "kube-anything",
        ] {
            assert!(is_system_namespace(ns), "{ns}");
        }
        assert!(!is_system_namespace("prod") && !is_system_namespace("kubeflow"));
    }

    #[test]
    fn injection_attempts_are_refused_before_any_request() {
        refused(
            "scale-deployment",
            json!({"namespace": "--all", "name": "web", "replicas": 1}),
            "namespace",
        );
        refused(
            "scale-deployment",
            json!({"namespace": "prod", "name": "../x", "replicas": 1}),
            "name",
        );
        refused(
            "scale-deployment",
            json!({"namespace": "prod", "name": "a/b", "replicas": 1}),
            "name",
        );
        refused(
            "scale-deployment",
            json!({"namespace": "prod", "name": "we b", "replicas": 1}),
            "name",
        );
        refused(
            "scale-deployment",
            json!({"namespace": "prod", "name": "web", "replicas": 501}),
            "replicas",
        );
        refused(
            "scale-deployment",
            json!({"namespace": "prod", "name": "web", "replicas": "3"}),
            "replicas",
        );
        refused(
            "delete-pod",
            json!({"namespace": "prod", "pod": "x?watch=1"}),
            "pod",
        );
        refused(
            "get-configmap",
            json!({"namespace": "prod", "configmap": "c", "key": "../etc"}),
            "key",
        );
        refused("cordon-node", json!({"node": "node-1/proxy"}), "node");
        refused(
            "update-image",
            json!({"namespace": "p", "name": "w", "container": "c", "image": "--privileged"}),
            "image",
        );
        refused(
            "exec-pod",
            json!({"namespace": "p", "pod": "x", "command": ["sh", "-c", "rm -rf /"]}),
            "command",
        );
        refused(
            "exec-pod",
            json!({"namespace": "p", "pod": "x", "command": []}),
            "command",
        );
        refused(
            "apply-network-policy",
            json!({"namespace": "p", "name": "n", "pod_selector": {"a b": "c"}, "policy_types": ["Ingress"]}),
            "pod_selector",
        );
        refused(
            "apply-network-policy",
            json!({"namespace": "p", "name": "n", "pod_selector": {}, "policy_types": ["Sideways"]}),
            "policy_types",
        );
    }

    #[test]
    fn bound_params_must_match_the_target() {
        let mut c = ctx(
            "scale-deployment",
            json!({"namespace": "kube-system", "name": "web", "replicas": 1}),
        );
        c.attributes.insert("namespace".into(), "prod".into());
        c.attributes.insert("name".into(), "web".into());
        let e = Op::parse(&c).unwrap_err();
        assert!(
            e.to_string()
                .contains("differs from the target's namespace `prod`"),
            "{e}"
        );
        c.params.insert("namespace".into(), json!("prod"));
        c.params.insert("name".into(), json!("api"));
        assert!(
            Op::parse(&c)
                .unwrap_err()
                .to_string()
                .contains("target's name")
        );
        c.params.insert("name".into(), json!("web"));
        assert_eq!(
            Op::parse(&c).unwrap(),
            Op::ScaleDeployment {
                ns: "prod".into(),
                name: "web".into(),
                replicas: 1
            }
        );
        let mut n = ctx("drain-node", json!({"node": "n2"}));
        n.attributes.insert("node".into(), "n1".into());
        assert!(Op::parse(&n).is_err());
    }

    #[test]
    fn the_cluster_is_required_valid_and_the_targets() {
        let mut c = ctx("scale-deployment", json!({"namespace": "p", "name": "w"}));
        assert_eq!(
            cluster(&c).unwrap_err(),
            K8sError::NoCluster {
                action: "scale-deployment".into()
            }
        );
        for bad in [json!("a b"), json!("--context=prod"), json!("A"), json!(3)] {
            c.params.insert("cluster".into(), bad.clone());
            assert!(
                matches!(cluster(&c), Err(K8sError::InvalidParam { ref param, .. }) if param == "cluster"),
                "{bad}"
            );
        }
        c.params.insert("cluster".into(), json!("staging-eu-1"));
        assert_eq!(cluster(&c).unwrap(), "staging-eu-1");
        c.attributes.insert("cluster".into(), "prod-eu-1".into());
        let e = cluster(&c).unwrap_err().to_string();
        assert!(
            e.contains("differs from the target's cluster `prod-eu-1`"),
            "{e}"
        );
    }

    #[test]
    fn defaults_apply() {
        let op = Op::parse(&ctx("drain-node", json!({"node": "n1"}))).unwrap();
        assert_eq!(
            op,
            Op::DrainNode {
                node: "n1".into(),
                opts: DrainOptions {
                    grace_period_seconds: 30,
                    timeout_seconds: 600,
                    ignore_daemonsets: true,
                    delete_emptydir_data: false
                }
            }
        );
        let op = Op::parse(&ctx("get-secret", json!({"namespace": "p", "secret": "s"}))).unwrap();
        assert_eq!(
            op,
            Op::GetSecret {
                ns: "p".into(),
                name: "s".into(),
                key: None,
                reveal: false
            }
        );
        assert!(Op::parse(&ctx("reboot-cluster", json!({}))).is_err());
    }
}
