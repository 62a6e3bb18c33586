//! The decisions of the actions that need no API server: rollout status evaluation,
//! rollout-undo revision selection, drain pod filtering, the NetworkPolicy body, label
//! selectors and resource quantities. Each mirrors what `kubectl` does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::params::{DrainOptions, NetpolSpec};

/// The annotation holding a ReplicaSet's (and Deployment's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label the deployment controller adds to pod templates of ReplicaSets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation of mirror (static) pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The label holding a namespace's name (set by the API server from 1.21 on).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where a rollout stands, as `kubectl rollout status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Complete.
    Done(String),
    /// Still rolling; the message says what it waits for.
    InProgress(String),
    /// The progress deadline was exceeded: it will not complete by itself.
    Failed(String),
}

/// Evaluates a Deployment's rollout exactly as `kubectl rollout status` does
/// (`DeploymentStatusViewer`).
pub fn rollout_status(d: &Deployment) -> Rollout {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Rollout::InProgress("waiting for the deployment spec update to be observed".into());
    }
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return Rollout::Failed(format!(
            "deployment `{name}` exceeded its progress deadline"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if let Some(want) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < want
    {
        return Rollout::InProgress(format!(
            "waiting for rollout to finish: {updated} out of {want} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Rollout::InProgress(format!(
            "waiting for rollout to finish: {} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::InProgress(format!(
            "waiting for rollout to finish: {available} of {updated} updated replicas are available"
        ));
    }
    Rollout::Done(format!("deployment `{name}` successfully rolled out"))
}

/// The revision recorded on an object (0 when absent or unparsable, as kubectl treats it).
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether `owner_uid` is the controller owner of an object.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == owner_uid)
}

/// A pod template without the `pod-template-hash` label, as JSON (for comparison and for
/// the rollback).
pub fn template_without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    serde_json::to_value(template_without_hash(a)).ok()
        == serde_json::to_value(template_without_hash(b)).ok()
}

/// Picks the ReplicaSet to roll back to, as `kubectl rollout undo` does: `to_revision`,
/// or the highest revision below the latest one. `replicasets` must already be limited to
/// those the Deployment controls.
///
/// # Errors
/// No history, a revision that does not exist, or a revision whose template is the
/// Deployment's current one.
pub fn select_revision<'a>(
    d: &Deployment,
    replicasets: &'a [ReplicaSet],
    to_revision: Option<i64>,
) -> Result<&'a ReplicaSet, String> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let wanted = match to_revision {
        Some(r) => r,
        None => {
            if replicasets.len() <= 1 {
                return Err(format!("no rollout history found for deployment `{name}`"));
            }
            let (mut latest, mut previous) = (0_i64, 0_i64);
            for rs in replicasets {
                let r = revision_of(&rs.metadata);
                if r > latest {
                    previous = latest;
                    latest = r;
                } else if r > previous && r < latest {
                    previous = r;
                }
            }
            if previous == 0 {
                return Err(format!(
                    "no previous revision of deployment `{name}` to roll back to"
                ));
            }
            previous
        }
    };
    let Some(rs) = replicasets
        .iter()
        .find(|rs| revision_of(&rs.metadata) == wanted)
    else {
        let mut known: Vec<i64> = replicasets
            .iter()
            .map(|rs| revision_of(&rs.metadata))
            .collect();
        known.sort_unstable();
        return Err(format!(
            "unable to find revision {wanted} in the history of deployment `{name}` (revisions: {known:?})"
        ));
    };
    let current = d.spec.as_ref().map(|s| &s.template);
    let target = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    if let (Some(cur), Some(tgt)) = (current, target)
        && same_template(cur, tgt)
    {
        return Err(format!(
            "revision {wanted} is the current template of deployment `{name}`: nothing to roll back"
        ));
    }
    if target.is_none() {
        return Err(format!(
            "revision {wanted} of deployment `{name}` has no pod template"
        ));
    }
    Ok(rs)
}

/// Annotations the rollback keeps from the Deployment instead of copying them from the
/// ReplicaSet (kubectl's `annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The Deployment's annotations after rolling back to `rs`, as kubectl computes them.
pub fn rollback_annotations(d: &Deployment, rs: &ReplicaSet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let current = d.metadata.annotations.clone().unwrap_or_default();
    for k in ANNOTATIONS_TO_SKIP {
        if let Some(v) = current.get(k) {
            out.insert(k.to_owned(), v.clone());
        }
    }
    for (k, v) in rs.metadata.annotations.iter().flatten() {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// What drain-node does with one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodDisposition {
    /// Evict it.
    Evict,
    /// Leave it (a mirror pod, a DaemonSet pod with `ignore_daemonsets`): why.
    Skip(String),
    /// Refuse the whole drain (as kubectl does without `--force`): why.
    Block(String),
}

/// The controller owner reference of a pod: (kind, name).
pub fn controller_of(pod: &Pod) -> Option<(String, String)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// `namespace/name` of a pod.
pub fn pod_id(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Classifies one pod of the node being drained, with kubectl's filters in kubectl's
/// order: mirror pods are skipped; finished pods are evicted; DaemonSet pods are skipped
/// with `ignore_daemonsets`, refused otherwise (and refused when their DaemonSet is gone:
/// `daemonset_exists` says whether it exists); emptyDir pods need `delete_emptydir_data`;
/// pods without a controller are refused.
pub fn classify_pod(
    pod: &Pod,
    opts: &DrainOptions,
    daemonset_exists: Option<bool>,
) -> PodDisposition {
    let id = pod_id(pod);
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.contains_key(MIRROR_ANNOTATION) {
        return PodDisposition::Skip(format!("{id}: mirror pod"));
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let finished = phase == "Succeeded" || phase == "Failed";
    let controller = controller_of(pod);
    if let Some((kind, owner)) = &controller
        && kind == "DaemonSet"
    {
        if daemonset_exists == Some(false) {
            return PodDisposition::Block(format!("{id}: its DaemonSet `{owner}` does not exist"));
        }
        return if opts.ignore_daemonsets {
            PodDisposition::Skip(format!("{id}: DaemonSet-managed pod"))
        } else {
            PodDisposition::Block(format!(
                "{id}: DaemonSet-managed pod (ignore_daemonsets is false)"
            ))
        };
    }
    if finished {
        return PodDisposition::Evict;
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.empty_dir.is_some()));
    if empty_dir && !opts.delete_emptydir_data {
        return PodDisposition::Block(format!(
            "{id}: uses emptyDir volumes whose data would be lost (delete_emptydir_data is false)"
        ));
    }
    if controller.is_none() {
        return PodDisposition::Block(format!(
            "{id}: declares no controller (not managed by a ReplicationController, ReplicaSet, Job, DaemonSet or StatefulSet)"
        ));
    }
    PodDisposition::Evict
}

/// Splits the pods of a node into (to evict, skipped, blocking problems).
pub fn plan_drain<'a>(
    pods: &'a [Pod],
    opts: &DrainOptions,
    daemonset_exists: impl Fn(&Pod) -> Option<bool>,
) -> (Vec<&'a Pod>, Vec<String>, Vec<String>) {
    let (mut evict, mut skipped, mut blocked) = (Vec::new(), Vec::new(), Vec::new());
    for pod in pods {
        match classify_pod(pod, opts, daemonset_exists(pod)) {
            PodDisposition::Evict => evict.push(pod),
            PodDisposition::Skip(why) => skipped.push(why),
            PodDisposition::Block(why) => blocked.push(why),
        }
    }
    (evict, skipped, blocked)
}

/// The eviction body for `policy/<version>` with the grace period.
pub fn eviction_body(version: &str, ns: &str, name: &str, grace: i64) -> Value {
    serde_json::json!({
        "apiVersion": format!("policy/{version}"),
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
        "deleteOptions": {"gracePeriodSeconds": grace},
    })
}

/// The NetworkPolicy built from apply-network-policy's params.
///
/// Ingress: with none of `allow_from_namespaces`, `allow_from_pod_labels`, `ports`, no
/// rule (all ingress to the selected pods is denied); otherwise one rule whose peers are
/// the listed namespaces (by their `kubernetes.io/metadata.name` label) and the pods with
/// the listed labels (no peer: any source), and whose ports are the listed TCP ports
/// (none: every port). Egress, when listed, has no rule: all egress is denied.
///
/// # Errors
/// Allow rules given while `policy_types` does not list Ingress (they would be ignored).
pub fn network_policy(ns: &str, name: &str, spec: &NetpolSpec) -> Result<NetworkPolicy, String> {
    let ingress_listed = spec.policy_types.iter().any(|t| t == "Ingress");
    let has_rules = spec
        .allow_from_namespaces
        .as_ref()
        .is_some_and(|v| !v.is_empty())
        || spec.allow_from_pod_labels.is_some()
        || spec.ports.as_ref().is_some_and(|v| !v.is_empty());
    if has_rules && !ingress_listed {
        return Err(
            "allow_from_namespaces, allow_from_pod_labels and ports describe ingress, but policy_types does not list Ingress"
                .into(),
        );
    }
    let selector = |labels: &BTreeMap<String, String>| LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    };
    let ingress = if ingress_listed {
        let rules = if has_rules {
            let mut from: Vec<NetworkPolicyPeer> = spec
                .allow_from_namespaces
                .iter()
                .flatten()
                .map(|n| NetworkPolicyPeer {
                    namespace_selector: Some(selector(&BTreeMap::from([(
                        NAMESPACE_NAME_LABEL.to_owned(),
                        n.clone(),
                    )]))),
                    ..NetworkPolicyPeer::default()
                })
                .collect();
            if let Some(labels) = &spec.allow_from_pod_labels {
                from.push(NetworkPolicyPeer {
                    pod_selector: Some(selector(labels)),
                    ..NetworkPolicyPeer::default()
                });
            }
            let ports: Vec<NetworkPolicyPort> = spec
                .ports
                .iter()
                .flatten()
                .map(|p| NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    port: Some(IntOrString::Int(*p)),
                    end_port: None,
                })
                .collect();
            vec![NetworkPolicyIngressRule {
                from: (!from.is_empty()).then_some(from),
                ports: (!ports.is_empty()).then_some(ports),
            }]
        } else {
            Vec::new()
        };
        Some(rules)
    } else {
        None
    };
    let egress = spec
        .policy_types
        .iter()
        .any(|t| t == "Egress")
        .then(Vec::new);
    Ok(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "agentsafe".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&spec.pod_selector)),
            policy_types: Some(spec.policy_types.clone()),
            ingress,
            egress,
        }),
    })
}

/// Whether a label selector (as JSON: `matchLabels`, `matchExpressions`) selects `labels`.
/// An empty selector selects everything; an unknown operator selects nothing.
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let have = labels.get(key).map(String::as_str);
        let ok = match expr.get("operator").and_then(Value::as_str) {
            Some("In") => have.is_some_and(|h| values.contains(&h)),
            Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A resource quantity (`500m`, `1Gi`, `2`, `1e3`) as a number of base units.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s.get(1..)?.parse().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

/// The summed resource requests of a pod's containers (`cpu`, `memory`, ...), in base units.
pub fn pod_requests(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for (k, v) in c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(n) = quantity(&v.0) {
                *out.entry(k.clone()).or_insert(0.0) += n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "test code"
    )]

    use super::*;
    use serde_json::json;

    fn deployment(v: Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    fn check_status(status: Value, spec_replicas: i64, generation: i64, expect: &Rollout) {
        let d = deployment(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": spec_replicas, "selector": {}, "template": {}},
            "status": status,
        }));
        assert_eq!(&rollout_status(&d), expect, "{status}");
    }

    #[test]
    fn rollout_status_follows_kubectl() {
        check_status(
            json!({"observedGeneration": 1}),
            1,
            2,
            &Rollout::InProgress("waiting for the deployment spec update to be observed".into()),
        );
        check_status(
            json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}),
            3,
            2,
            &Rollout::InProgress(
                "waiting for rollout to finish: 1 out of 3 new replicas have been updated".into(),
            ),
        );
        check_status(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3}),
            3,
            2,
            &Rollout::InProgress(
                "waiting for rollout to finish: 1 old replicas are pending termination".into(),
            ),
        );
        check_status(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1}),
            3,
            2,
            &Rollout::InProgress(
                "waiting for rollout to finish: 1 of 3 updated replicas are available".into(),
            ),
        );
        check_status(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
            3,
            2,
            &Rollout::Done("deployment `web` successfully rolled out".into()),
        );
        check_status(
            json!({"observedGeneration": 2, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
            3,
            2,
            &Rollout::Failed("deployment `web` exceeded its progress deadline".into()),
        );
        check_status(
            json!({"observedGeneration": 3}),
            0,
            3,
            &Rollout::Done("deployment `web` successfully rolled out".into()),
        );
    }

    fn rs(revision: &str, image: &str, hash: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "annotations": {REVISION_ANNOTATION: revision, "note": image}},
            "spec": {"selector": {}, "template": {
                "metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH: hash}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }}
        }))
        .unwrap()
    }

    fn web(image: &str) -> Deployment {
        deployment(json!({
            "metadata": {"name": "web", "annotations": {REVISION_ANNOTATION: "3", "keep": "x"}},
            "spec": {"selector": {}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }}
        }))
    }

    #[test]
    fn revision_selection_follows_kubectl() {
        let history = [
            rs("1", "a:1", "h1"),
            rs("3", "c:3", "h3"),
            rs("2", "b:2", "h2"),
        ];
        let d = web("c:3");
        let picked = select_revision(&d, &history, None).unwrap();
        assert_eq!(revision_of(&picked.metadata), 2, "the previous revision");
        let picked = select_revision(&d, &history, Some(1)).unwrap();
        assert_eq!(revision_of(&picked.metadata), 1);
        let e = select_revision(&d, &history, Some(7)).unwrap_err();
        assert!(
            e.contains("unable to find revision 7") && e.contains("[1, 2, 3]"),
            "{e}"
        );
        let e = select_revision(&d, &history, Some(3)).unwrap_err();
        assert!(e.contains("is the current template"), "{e}");
        let e = select_revision(&d, &history[..1], None).unwrap_err();
        assert!(e.contains("no rollout history"), "{e}");
        // The hash label alone never makes templates differ.
        let t = template_without_hash(history[0].spec.as_ref().unwrap().template.as_ref().unwrap());
        assert!(
            !t.metadata
                .unwrap()
                .labels
                .unwrap()
                .contains_key(POD_TEMPLATE_HASH)
        );
    }

    #[test]
    fn rollback_annotations_follow_kubectl() {
        let d = web("c:3");
        let a = rollback_annotations(&d, &rs("1", "a:1", "h1"));
        assert_eq!(
            a.get(REVISION_ANNOTATION).unwrap(),
            "3",
            "kept from the deployment"
        );
        assert_eq!(a.get("note").unwrap(), "a:1", "copied from the replica set");
        assert!(
            !a.contains_key("keep"),
            "replaced by the replica set's annotations"
        );
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owned(kind: &str) -> Value {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u", "controller": true}])
    }

    #[test]
    fn drain_filters_follow_kubectl() {
        let opts = DrainOptions {
            grace_period_seconds: 0,
            timeout_seconds: 10,
            ignore_daemonsets: true,
            delete_emptydir_data: false,
        };
        let managed = pod(
            json!({"metadata": {"name": "a", "namespace": "n", "ownerReferences": owned("ReplicaSet")}}),
        );
        assert_eq!(classify_pod(&managed, &opts, None), PodDisposition::Evict);
        let ds = pod(
            json!({"metadata": {"name": "d", "namespace": "n", "ownerReferences": owned("DaemonSet")}}),
        );
        assert!(matches!(
            classify_pod(&ds, &opts, Some(true)),
            PodDisposition::Skip(_)
        ));
        assert!(matches!(
            classify_pod(&ds, &opts, Some(false)),
            PodDisposition::Block(_)
        ));
        let strict = DrainOptions {
            ignore_daemonsets: false,
            ..opts
        };
        assert!(matches!(
            classify_pod(&ds, &strict, Some(true)),
            PodDisposition::Block(_)
        ));
        let mirror = pod(
            json!({"metadata": {"name": "m", "namespace": "n", "annotations": {MIRROR_ANNOTATION: "x"}}}),
        );
        assert!(matches!(
            classify_pod(&mirror, &opts, None),
            PodDisposition::Skip(_)
        ));
        let bare = pod(json!({"metadata": {"name": "b", "namespace": "n"}}));
        match classify_pod(&bare, &opts, None) {
            PodDisposition::Block(why) => {
                assert!(why.contains("n/b: declares no controller"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let done = pod(
            json!({"metadata": {"name": "f", "namespace": "n"}, "status": {"phase": "Succeeded"}}),
        );
        assert_eq!(classify_pod(&done, &opts, None), PodDisposition::Evict);
        let scratch = pod(
            json!({"metadata": {"name": "e", "namespace": "n", "ownerReferences": owned("ReplicaSet")},
            "spec": {"containers": [], "volumes": [{"name": "tmp", "emptyDir": {}}]}}),
        );
        assert!(matches!(
            classify_pod(&scratch, &opts, None),
            PodDisposition::Block(_)
        ));
        let lossy = DrainOptions {
            delete_emptydir_data: true,
            ..opts
        };
        assert_eq!(classify_pod(&scratch, &lossy, None), PodDisposition::Evict);
        let pods = [managed, ds, mirror, bare];
        let (evict, skipped, blocked) = plan_drain(&pods, &opts, |_| Some(true));
        assert_eq!(evict.len(), 1);
        assert_eq!(skipped.len(), 2);
        assert_eq!(blocked.len(), 1);
    }

    #[test]
    fn eviction_body_names_the_version() {
        let b = eviction_body("v1beta1", "n", "p", 0);
        assert_eq!(b["apiVersion"], "policy/v1beta1");
        assert_eq!(b["deleteOptions"]["gracePeriodSeconds"], 0);
        assert_eq!(b["metadata"], json!({"name": "p", "namespace": "n"}));
    }

    fn netpol(spec: &NetpolSpec) -> Value {
        serde_json::to_value(network_policy("prod", "np", spec).unwrap()).unwrap()
    }

    #[test]
    fn network_policy_body() {
        let base = NetpolSpec {
            pod_selector: BTreeMap::from([("app".into(), "web".into())]),
            policy_types: vec!["Ingress".into()],
            allow_from_namespaces: None,
            allow_from_pod_labels: None,
            ports: None,
        };
        let v = netpol(&base);
        assert_eq!(v["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(v["kind"], "NetworkPolicy");
        assert_eq!(v["metadata"]["namespace"], "prod");
        assert_eq!(
            v["spec"]["podSelector"],
            json!({"matchLabels": {"app": "web"}})
        );
        assert_eq!(v["spec"]["ingress"], json!([]), "deny all ingress");
        assert!(v["spec"].get("egress").is_none());
        let full = NetpolSpec {
            policy_types: vec!["Ingress".into(), "Egress".into()],
            allow_from_namespaces: Some(vec!["mon".into()]),
            allow_from_pod_labels: Some(BTreeMap::from([("role".into(), "fe".into())])),
            ports: Some(vec![8080, 9090]),
            ..base.clone()
        };
        let v = netpol(&full);
        assert_eq!(
            v["spec"]["ingress"],
            json!([{
                "from": [
                    {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "mon"}}},
                    {"podSelector": {"matchLabels": {"role": "fe"}}}
                ],
                "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9090}]
            }])
        );
        assert_eq!(v["spec"]["egress"], json!([]), "deny all egress");
        assert_eq!(v["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let ports_only = NetpolSpec {
            ports: Some(vec![443]),
            ..base.clone()
        };
        assert_eq!(
            netpol(&ports_only)["spec"]["ingress"],
            json!([{"ports": [{"protocol": "TCP", "port": 443}]}])
        );
        let egress_only = NetpolSpec {
            policy_types: vec!["Egress".into()],
            ports: Some(vec![1]),
            ..base
        };
        assert!(network_policy("p", "n", &egress_only).is_err());
    }

    #[test]
    fn selectors_and_quantities() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "fe".to_owned()),
        ]);
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "web"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "db"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                          {"key": "x", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
            &labels
        ));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1Gi"), Some(1073741824.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("1.5k"), Some(1500.0));
        assert_eq!(quantity("x"), None);
        assert_eq!(quantity("1Qi"), None);
    }
}
