//! The API calls of the actions: state capture, prechecks, execution and server-side dry
//! run, on a [`Kx`] (a client plus the call's context).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use agentsafe_core::{Cancel, ExecutionReport, PrecheckResult};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v1::{HorizontalPodAutoscaler, Scale};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Secret,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::K8sError;
use crate::error::map_kube;
use crate::logic::{self, Rollout};
use crate::params::{DrainOptions, Op, is_system_namespace};

/// One call's client and context.
#[derive(Clone)]
pub(crate) struct Kx {
    pub client: kube::Client,
    pub timeout: Duration,
    pub target: String,
    pub target_type: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// The field manager named in every write.
const MANAGER: &str = "agentsafe";

fn pp(dry_run: bool) -> PatchParams {
    PatchParams {
        dry_run,
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

fn post(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(MANAGER.into()),
    }
}

/// The object as `kubectl get -o json` prints it.
pub(crate) fn to_json<T: Serialize>(what: &str, obj: &T) -> Result<Value, K8sError> {
    serde_json::to_value(obj).map_err(|e| K8sError::Failed(format!("cannot serialise {what}: {e}")))
}

fn passed(detail: impl Display) -> PrecheckResult {
    PrecheckResult::Passed(detail.to_string())
}

fn failed(detail: impl Display) -> PrecheckResult {
    PrecheckResult::Failed(detail.to_string())
}

impl Kx {
    /// Awaits one API call with the request timeout and maps its error.
    pub(crate) async fn call<T>(
        &self,
        verb: &str,
        what: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, K8sError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_kube(verb, what, &e)),
            Err(_) => Err(K8sError::Transport {
                what: format!("{verb} {what}"),
                message: format!("timed out after {} s", self.timeout.as_secs()),
            }),
        }
    }

    fn deployments(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn hpas(&self, ns: &str) -> Api<HorizontalPodAutoscaler> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    fn configmaps(&self, ns: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn netpols(&self, ns: &str) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn deployment(&self, ns: &str, name: &str) -> Result<Deployment, K8sError> {
        let what = format!("deployment {ns}/{name}");
        self.call("get", &what, self.deployments(ns).get(name))
            .await
    }

    async fn hpa(&self, ns: &str, name: &str) -> Result<HorizontalPodAutoscaler, K8sError> {
        let what = format!("horizontalpodautoscaler {ns}/{name}");
        self.call("get", &what, self.hpas(ns).get(name)).await
    }

    async fn pod(&self, ns: &str, name: &str) -> Result<Pod, K8sError> {
        let what = format!("pod {ns}/{name}");
        self.call("get", &what, self.pods(ns).get(name)).await
    }

    async fn node(&self, name: &str) -> Result<Node, K8sError> {
        self.call("get", &format!("node {name}"), self.nodes().get(name))
            .await
    }

    async fn namespace(&self, name: &str) -> Result<Namespace, K8sError> {
        self.call(
            "get",
            &format!("namespace {name}"),
            self.namespaces().get(name),
        )
        .await
    }

    async fn configmap(&self, ns: &str, name: &str) -> Result<ConfigMap, K8sError> {
        let what = format!("configmap {ns}/{name}");
        self.call("get", &what, self.configmaps(ns).get(name)).await
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Secret, K8sError> {
        let what = format!("secret {ns}/{name}");
        self.call("get", &what, self.secrets(ns).get(name)).await
    }

    async fn netpol(&self, ns: &str, name: &str) -> Result<NetworkPolicy, K8sError> {
        let what = format!("networkpolicy {ns}/{name}");
        self.call("get", &what, self.netpols(ns).get(name)).await
    }

    /// The ReplicaSets the Deployment controls.
    async fn owned_replicasets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, K8sError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let what = format!("replicasets of deployment {ns}/{name}");
        let list = self
            .call("list", &what, api.list(&ListParams::default()))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|rs| logic::controlled_by(&rs.metadata, &uid))
            .collect())
    }

    /// The API version of the `policy` group the server serves for evictions and
    /// PodDisruptionBudgets: `v1` when served, else `v1beta1` (Kubernetes before 1.21).
    pub(crate) async fn policy_version(&self) -> Result<&'static str, K8sError> {
        let req = http::Request::get("/apis/policy")
            .body(Vec::new())
            .map_err(|e| K8sError::Failed(format!("cannot build the discovery request: {e}")))?;
        let group: Value = self
            .call("discover", "API group policy", self.client.request(req))
            .await?;
        let served = |v: &str| {
            group
                .get("versions")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter()
                        .any(|x| x.get("version").and_then(Value::as_str) == Some(v))
                })
        };
        if served("v1") {
            Ok("v1")
        } else if served("v1beta1") {
            Ok("v1beta1")
        } else {
            Err(K8sError::Failed(
                "the API server serves neither policy/v1 nor policy/v1beta1: cannot evict pods"
                    .into(),
            ))
        }
    }
}

/// The object whose state an op's action declares, as the API server returns it.
pub(crate) async fn capture(k: &Kx, op: &Op) -> Result<Value, K8sError> {
    match op {
        Op::RestartDeployment { ns, name }
        | Op::RolloutStatus { ns, name, .. }
        | Op::RolloutUndo { ns, name, .. }
        | Op::ScaleDeployment { ns, name, .. }
        | Op::UpdateImage { ns, name, .. } => to_json("deployment", &k.deployment(ns, name).await?),
        Op::ScaleHpa { ns, name, .. } | Op::UpdateHpaLimits { ns, name, .. } => {
            to_json("horizontalpodautoscaler", &k.hpa(ns, name).await?)
        }
        Op::CordonNode { node } | Op::UncordonNode { node } | Op::DrainNode { node, .. } => {
            to_json("node", &k.node(node).await?)
        }
        Op::CreateNamespace { ns } | Op::DeleteNamespace { ns } => {
            to_json("namespace", &k.namespace(ns).await?)
        }
        Op::DeletePod { ns, pod, .. }
        | Op::ExecPod { ns, pod, .. }
        | Op::GetPodLogs { ns, pod, .. }
        | Op::PortForward { ns, pod, .. } => to_json("pod", &k.pod(ns, pod).await?),
        Op::GetConfigmap { ns, name, .. } | Op::UpdateConfigmap { ns, name, .. } => {
            to_json("configmap", &k.configmap(ns, name).await?)
        }
        Op::GetSecret { ns, name, .. } => {
            let mut s = k.secret(ns, name).await?;
            // State goes to the audit log: never the values.
            s.data = None;
            s.string_data = None;
            if let Some(a) = s.metadata.annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
            s.metadata.managed_fields = None;
            to_json("secret", &s)
        }
        Op::ApplyNetworkPolicy { ns, name, .. } => {
            to_json("networkpolicy", &k.netpol(ns, name).await?)
        }
    }
}

/// Runs the precheck `check` of the op. A missing object fails the check (it is not an error).
pub(crate) async fn precheck(k: &Kx, op: &Op, check: &str) -> Result<PrecheckResult, K8sError> {
    match precheck_inner(k, op, check).await {
        Err(K8sError::NotFound(what)) => Ok(failed(format!("{what} not found"))),
        other => other,
    }
}

async fn precheck_inner(k: &Kx, op: &Op, check: &str) -> Result<PrecheckResult, K8sError> {
    Ok(match (check, op) {
        (
            "deployment_exists",
            Op::RestartDeployment { ns, name }
            | Op::RolloutStatus { ns, name, .. }
            | Op::RolloutUndo { ns, name, .. }
            | Op::ScaleDeployment { ns, name, .. }
            | Op::UpdateImage { ns, name, .. },
        ) => {
            let d = k.deployment(ns, name).await?;
            passed(format!(
                "deployment {ns}/{name} exists (uid {})",
                d.metadata.uid.unwrap_or_default()
            ))
        }
        (
            "deployment_not_paused",
            Op::RestartDeployment { ns, name } | Op::RolloutUndo { ns, name, .. },
        ) => {
            let d = k.deployment(ns, name).await?;
            if d.spec.and_then(|s| s.paused).unwrap_or(false) {
                failed(format!("deployment {ns}/{name} is paused"))
            } else {
                passed(format!("deployment {ns}/{name} is not paused"))
            }
        }
        (
            "rollout_not_in_progress",
            Op::RestartDeployment { ns, name } | Op::UpdateImage { ns, name, .. },
        ) => match logic::rollout_status(&k.deployment(ns, name).await?) {
            Rollout::Done(m) => passed(m),
            Rollout::InProgress(m) => failed(format!(
                "a rollout of deployment {ns}/{name} is in progress: {m}"
            )),
            Rollout::Failed(m) => failed(m),
        },
        ("replicas_within_hpa_bounds", Op::ScaleDeployment { ns, name, replicas }) => {
            let what = format!("horizontalpodautoscalers in namespace {ns}");
            let list = k
                .call("list", &what, k.hpas(ns).list(&ListParams::default()))
                .await?;
            let mut notes = Vec::new();
            for h in &list.items {
                let Some(spec) = &h.spec else { continue };
                let r = &spec.scale_target_ref;
                if r.kind != "Deployment" || &r.name != name {
                    continue;
                }
                let min = spec.min_replicas.unwrap_or(1);
                let max = spec.max_replicas;
                let hname = h.metadata.name.as_deref().unwrap_or_default();
                if *replicas < min || *replicas > max {
                    return Ok(failed(format!(
                        "horizontalpodautoscaler {ns}/{hname} keeps deployment {ns}/{name} within {min}..={max} replicas; {replicas} is outside"
                    )));
                }
                notes.push(format!("{hname} ({min}..={max})"));
            }
            if notes.is_empty() {
                passed(format!(
                    "no horizontalpodautoscaler targets deployment {ns}/{name}"
                ))
            } else {
                passed(format!(
                    "{replicas} lies within the bounds of {}",
                    notes.join(", ")
                ))
            }
        }
        ("resource_quota_allows_replicas", Op::ScaleDeployment { ns, name, replicas }) => {
            quota_check(k, ns, name, *replicas).await?
        }
        (
            "revision_exists",
            Op::RolloutUndo {
                ns,
                name,
                to_revision,
            },
        ) => {
            let d = k.deployment(ns, name).await?;
            let history = k.owned_replicasets(&d).await?;
            match logic::select_revision(&d, &history, *to_revision) {
                Ok(rs) => passed(format!(
                    "revision {} (replicaset {}) is in the history",
                    logic::revision_of(&rs.metadata),
                    rs.metadata.name.as_deref().unwrap_or_default()
                )),
                Err(e) => failed(e),
            }
        }
        (
            "container_exists",
            Op::UpdateImage {
                ns,
                name,
                container,
                ..
            },
        ) => {
            let d = k.deployment(ns, name).await?;
            let names = template_containers(&d);
            if names.contains(container) {
                passed(format!(
                    "the pod template of deployment {ns}/{name} has container `{container}`"
                ))
            } else {
                failed(format!(
                    "deployment {ns}/{name} has no container `{container}` (containers: {})",
                    names.join(", ")
                ))
            }
        }
        ("hpa_exists", Op::ScaleHpa { ns, name, .. } | Op::UpdateHpaLimits { ns, name, .. }) => {
            k.hpa(ns, name).await?;
            passed(format!("horizontalpodautoscaler {ns}/{name} exists"))
        }
        ("min_replicas_not_above_max", Op::ScaleHpa { ns, name, min }) => {
            let max = k.hpa(ns, name).await?.spec.map_or(0, |s| s.max_replicas);
            if *min <= max {
                passed(format!("{min} <= maxReplicas {max}"))
            } else {
                failed(format!(
                    "{min} exceeds maxReplicas {max} of horizontalpodautoscaler {ns}/{name}"
                ))
            }
        }
        ("min_not_above_max", Op::UpdateHpaLimits { min, max, .. }) => {
            if min <= max {
                passed(format!("min_replicas {min} <= max_replicas {max}"))
            } else {
                failed(format!("min_replicas {min} exceeds max_replicas {max}"))
            }
        }
        (
            "scale_target_is_deployment",
            Op::ScaleHpa { ns, name, .. } | Op::UpdateHpaLimits { ns, name, .. },
        ) => {
            let h = k.hpa(ns, name).await?;
            let Some(r) = h.spec.map(|s| s.scale_target_ref) else {
                return Ok(failed(format!(
                    "horizontalpodautoscaler {ns}/{name} has no spec"
                )));
            };
            let want = (k.target_type.as_deref() == Some("k8s-deployment")).then(|| {
                k.attributes
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| k.target.clone())
            });
            if r.kind != "Deployment" {
                failed(format!(
                    "horizontalpodautoscaler {ns}/{name} scales a {} `{}`, not a Deployment",
                    r.kind, r.name
                ))
            } else if let Some(want) = want.filter(|w| *w != r.name) {
                failed(format!(
                    "horizontalpodautoscaler {ns}/{name} scales deployment `{}`, not the target deployment `{want}`",
                    r.name
                ))
            } else {
                passed(format!(
                    "horizontalpodautoscaler {ns}/{name} scales deployment `{}`",
                    r.name
                ))
            }
        }
        ("current_replicas_within_new_limits", Op::UpdateHpaLimits { ns, name, min, max }) => {
            let h = k.hpa(ns, name).await?;
            let Some(current) = h.status.map(|s| s.current_replicas) else {
                return Ok(failed(format!(
                    "horizontalpodautoscaler {ns}/{name} reports no current replica count yet \
                     (no controller has observed it), so the new limits cannot be compared"
                )));
            };
            if (*min..=*max).contains(&current) {
                passed(format!(
                    "{current} current replicas lie within {min}..={max}"
                ))
            } else {
                failed(format!(
                    "{current} current replicas lie outside {min}..={max}: the HPA will scale at once"
                ))
            }
        }
        (
            "node_exists",
            Op::CordonNode { node } | Op::UncordonNode { node } | Op::DrainNode { node, .. },
        ) => {
            k.node(node).await?;
            passed(format!("node {node} exists"))
        }
        ("node_not_cordoned", Op::CordonNode { node } | Op::DrainNode { node, .. }) => {
            if unschedulable(&k.node(node).await?) {
                failed(format!("node {node} is already cordoned"))
            } else {
                passed(format!("node {node} is schedulable"))
            }
        }
        ("node_is_cordoned", Op::UncordonNode { node }) => {
            if unschedulable(&k.node(node).await?) {
                passed(format!("node {node} is cordoned"))
            } else {
                failed(format!("node {node} is not cordoned"))
            }
        }
        ("node_ready", Op::UncordonNode { node }) => {
            let n = k.node(node).await?;
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status);
            match ready.as_deref() {
                Some("True") => passed(format!("node {node} is Ready")),
                Some(s) => failed(format!("node {node} reports Ready={s}")),
                None => failed(format!("node {node} reports no Ready condition")),
            }
        }
        ("schedulable_capacity_remains", Op::CordonNode { node }) => {
            let list = k
                .call("list", "nodes", k.nodes().list(&ListParams::default()))
                .await?;
            let others: Vec<String> = list
                .items
                .iter()
                .filter(|n| n.metadata.name.as_deref() != Some(node) && !unschedulable(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            if others.is_empty() {
                failed(format!(
                    "no schedulable node remains once {node} is cordoned"
                ))
            } else {
                passed(format!("{} other schedulable node(s) remain", others.len()))
            }
        }
        ("no_unmanaged_pods", Op::DrainNode { node, opts }) => {
            let pods = node_pods(k, node).await?;
            let ds = daemonsets_present(k, &pods).await?;
            let (evict, skipped, blocked) =
                logic::plan_drain(&pods, opts, |p| daemonset_known(&ds, p));
            if blocked.is_empty() {
                passed(format!(
                    "{} pod(s) to evict, {} left in place",
                    evict.len(),
                    skipped.len()
                ))
            } else {
                failed(format!(
                    "the drain would be refused: {}",
                    blocked.join("; ")
                ))
            }
        }
        ("disruption_budgets_allow_eviction", Op::DrainNode { node, opts }) => {
            pdb_check(k, node, opts).await?
        }
        ("cluster_capacity_for_evicted_pods", Op::DrainNode { node, opts }) => {
            capacity_check(k, node, opts).await?
        }
        ("namespace_exists", Op::ApplyNetworkPolicy { ns, .. } | Op::DeleteNamespace { ns }) => {
            let n = k.namespace(ns).await?;
            let phase = n.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Terminating" {
                failed(format!("namespace {ns} is terminating"))
            } else {
                passed(format!("namespace {ns} exists ({phase})"))
            }
        }
        (
            "namespace_not_system",
            Op::ApplyNetworkPolicy { ns, .. }
            | Op::DeleteNamespace { ns }
            | Op::CreateNamespace { ns },
        ) => {
            if is_system_namespace(ns) {
                failed(format!("`{ns}` is a system namespace"))
            } else {
                passed(format!("`{ns}` is not a system namespace"))
            }
        }
        ("namespace_does_not_exist", Op::CreateNamespace { ns }) => {
            let what = format!("namespace {ns}");
            match k.call("get", &what, k.namespaces().get_opt(ns)).await? {
                Some(_) => failed(format!("namespace {ns} exists already")),
                None => passed(format!("no namespace {ns} exists")),
            }
        }
        ("no_retained_volumes", Op::DeleteNamespace { ns }) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), ns);
            let what = format!("persistentvolumeclaims in namespace {ns}");
            let claims = k
                .call("list", &what, api.list(&ListParams::default()))
                .await?;
            let pvs: Api<PersistentVolume> = Api::all(k.client.clone());
            let mut deleted = Vec::new();
            for c in &claims.items {
                let Some(vol) = c.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
                    continue;
                };
                let what = format!("persistentvolume {vol}");
                if let Some(pv) = k.call("get", &what, pvs.get_opt(&vol)).await?
                    && pv
                        .spec
                        .and_then(|s| s.persistent_volume_reclaim_policy)
                        .as_deref()
                        == Some("Delete")
                {
                    deleted.push(format!(
                        "{} (volume {vol})",
                        c.metadata.name.as_deref().unwrap_or_default()
                    ));
                }
            }
            if deleted.is_empty() {
                passed(format!(
                    "{} claim(s), none bound to a volume with reclaim policy Delete",
                    claims.items.len()
                ))
            } else {
                failed(format!(
                    "deleting namespace {ns} deletes the volumes of {}",
                    deleted.join(", ")
                ))
            }
        }
        (
            "pod_exists",
            Op::DeletePod { ns, pod, .. }
            | Op::ExecPod { ns, pod, .. }
            | Op::GetPodLogs { ns, pod, .. }
            | Op::PortForward { ns, pod, .. },
        ) => {
            k.pod(ns, pod).await?;
            passed(format!("pod {ns}/{pod} exists"))
        }
        (
            "pod_belongs_to_target",
            Op::DeletePod { ns, pod, .. }
            | Op::ExecPod { ns, pod, .. }
            | Op::GetPodLogs { ns, pod, .. }
            | Op::PortForward { ns, pod, .. },
        ) => pod_belongs(k, ns, pod).await?,
        ("pod_has_controller", Op::DeletePod { ns, pod, .. }) => {
            match logic::controller_of(&k.pod(ns, pod).await?) {
                Some((kind, name)) => {
                    passed(format!("pod {ns}/{pod} is controlled by {kind} `{name}`"))
                }
                None => failed(format!(
                    "pod {ns}/{pod} has no controller: nothing recreates it"
                )),
            }
        }
        ("pod_running", Op::ExecPod { ns, pod, .. } | Op::PortForward { ns, pod, .. }) => {
            let phase = pod_phase(&k.pod(ns, pod).await?);
            if phase == "Running" {
                passed(format!("pod {ns}/{pod} is Running"))
            } else {
                failed(format!("pod {ns}/{pod} is {phase}, not Running"))
            }
        }
        (
            "container_exists",
            Op::ExecPod {
                ns, pod, container, ..
            },
        ) => {
            let p = k.pod(ns, pod).await?;
            match crate::stream::pick_container(&p, container.as_deref()) {
                Err(e) => failed(e),
                Ok(c) => {
                    let running = p
                        .status
                        .and_then(|s| s.container_statuses)
                        .into_iter()
                        .flatten()
                        .any(|s| s.name == c && s.state.is_some_and(|st| st.running.is_some()));
                    if running {
                        passed(format!("container `{c}` of pod {ns}/{pod} is running"))
                    } else {
                        failed(format!("container `{c}` of pod {ns}/{pod} is not running"))
                    }
                }
            }
        }
        (
            "port_declared_by_container",
            Op::PortForward {
                ns,
                pod,
                remote_port,
                ..
            },
        ) => {
            let p = k.pod(ns, pod).await?;
            let declared = p.spec.iter().flat_map(|s| s.containers.iter()).any(|c| {
                c.ports
                    .iter()
                    .flatten()
                    .any(|port| port.container_port == i32::from(*remote_port))
            });
            if declared {
                passed(format!(
                    "a container of pod {ns}/{pod} declares port {remote_port}"
                ))
            } else {
                failed(format!(
                    "no container of pod {ns}/{pod} declares port {remote_port}"
                ))
            }
        }
        (
            "configmap_exists",
            Op::GetConfigmap { ns, name, .. } | Op::UpdateConfigmap { ns, name, .. },
        ) => {
            k.configmap(ns, name).await?;
            passed(format!("configmap {ns}/{name} exists"))
        }
        ("configmap_not_immutable", Op::UpdateConfigmap { ns, name, .. }) => {
            if k.configmap(ns, name).await?.immutable == Some(true) {
                failed(format!("configmap {ns}/{name} is immutable"))
            } else {
                passed(format!("configmap {ns}/{name} is mutable"))
            }
        }
        ("key_exists", Op::GetConfigmap { ns, name, key }) => match key {
            None => passed("no key asked: every key is read"),
            Some(key) => configmap_key(k, ns, name, key).await?,
        },
        ("key_exists", Op::UpdateConfigmap { ns, name, key, .. }) => {
            configmap_key(k, ns, name, key).await?
        }
        ("secret_exists", Op::GetSecret { ns, name, .. }) => {
            k.secret(ns, name).await?;
            passed(format!("secret {ns}/{name} exists"))
        }
        ("key_exists", Op::GetSecret { ns, name, key, .. }) => match key {
            None => passed("no key asked: every key is listed"),
            Some(key) => {
                let s = k.secret(ns, name).await?;
                if s.data.as_ref().is_some_and(|d| d.contains_key(key)) {
                    passed(format!("secret {ns}/{name} has key `{key}`"))
                } else {
                    failed(format!("secret {ns}/{name} has no key `{key}`"))
                }
            }
        },
        ("secret_not_service_account_token", Op::GetSecret { ns, name, .. }) => {
            let t = k.secret(ns, name).await?.type_.unwrap_or_default();
            if t == "kubernetes.io/service-account-token" {
                failed(format!("secret {ns}/{name} is a service-account token"))
            } else {
                passed(format!("secret {ns}/{name} is of type `{t}`"))
            }
        }
        ("labels_valid", Op::ApplyNetworkPolicy { ns, name, spec }) => {
            match logic::network_policy(ns, name, spec) {
                Ok(_) => passed("pod_selector and allow_from_pod_labels are valid label maps"),
                Err(e) => failed(e),
            }
        }
        ("existing_policy_replaced", Op::ApplyNetworkPolicy { ns, name, .. }) => {
            let what = format!("networkpolicy {ns}/{name}");
            match k.call("get", &what, k.netpols(ns).get_opt(name)).await? {
                Some(_) => failed(format!(
                    "networkpolicy {ns}/{name} exists and will be replaced"
                )),
                None => passed(format!("no networkpolicy {ns}/{name} exists yet")),
            }
        }
        // image_pullable needs the cluster's registry credentials and network: not
        // answerable from the API server (the action file says so).
        _ => PrecheckResult::Unsupported,
    })
}

fn template_containers(d: &Deployment) -> Vec<String> {
    d.spec
        .iter()
        .flat_map(|s| s.template.spec.iter())
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

fn unschedulable(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

fn pod_phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into())
}

async fn configmap_key(
    k: &Kx,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<PrecheckResult, K8sError> {
    let c = k.configmap(ns, name).await?;
    let has = c.data.as_ref().is_some_and(|d| d.contains_key(key))
        || c.binary_data.as_ref().is_some_and(|d| d.contains_key(key));
    Ok(if has {
        passed(format!("configmap {ns}/{name} has key `{key}`"))
    } else {
        failed(format!("configmap {ns}/{name} has no key `{key}`"))
    })
}

/// For a Deployment target: the pod's controller is a ReplicaSet that the Deployment
/// controls. For a namespace target: the pod is in the namespace the param names, which
/// the target binds.
async fn pod_belongs(k: &Kx, ns: &str, pod: &str) -> Result<PrecheckResult, K8sError> {
    let p = k.pod(ns, pod).await?;
    if k.target_type.as_deref() != Some("k8s-deployment") {
        return Ok(passed(format!(
            "target `{}` is not a Deployment: pod {ns}/{pod} is in the target's namespace",
            k.target
        )));
    }
    let dep = k
        .attributes
        .get("name")
        .cloned()
        .unwrap_or_else(|| k.target.clone());
    let Some((kind, rs_name)) = logic::controller_of(&p) else {
        return Ok(failed(format!(
            "pod {ns}/{pod} has no controller, so it is not part of deployment {ns}/{dep}"
        )));
    };
    if kind != "ReplicaSet" {
        return Ok(failed(format!(
            "pod {ns}/{pod} is controlled by {kind} `{rs_name}`, not by deployment {ns}/{dep}"
        )));
    }
    let api: Api<ReplicaSet> = Api::namespaced(k.client.clone(), ns);
    let rs = k
        .call(
            "get",
            &format!("replicaset {ns}/{rs_name}"),
            api.get(&rs_name),
        )
        .await?;
    let d = k.deployment(ns, &dep).await?;
    if logic::controlled_by(&rs.metadata, d.metadata.uid.as_deref().unwrap_or_default()) {
        Ok(passed(format!(
            "pod {ns}/{pod} belongs to deployment {ns}/{dep} through replicaset {rs_name}"
        )))
    } else {
        Ok(failed(format!(
            "pod {ns}/{pod} belongs to replicaset {rs_name}, which deployment {ns}/{dep} does not control"
        )))
    }
}

/// Resource sums of a pod template: requests and limits, per resource.
fn template_resources(d: &Deployment) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let requests = logic::pod_requests(spec);
    let mut limits = BTreeMap::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for (k, v) in c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(n) = logic::quantity(&v.0) {
                *limits.entry(k.clone()).or_insert(0.0) += n;
            }
        }
    }
    (requests, limits)
}

async fn quota_check(
    k: &Kx,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Result<PrecheckResult, K8sError> {
    let d = k.deployment(ns, name).await?;
    let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let added = f64::from(replicas - current);
    if added <= 0.0 {
        return Ok(passed(format!(
            "no pods are added ({current} -> {replicas})"
        )));
    }
    let api: Api<ResourceQuota> = Api::namespaced(k.client.clone(), ns);
    let quotas = k
        .call(
            "list",
            &format!("resourcequotas in namespace {ns}"),
            api.list(&ListParams::default()),
        )
        .await?;
    if quotas.items.is_empty() {
        return Ok(passed(format!("namespace {ns} has no ResourceQuota")));
    }
    let (requests, limits) = template_resources(&d);
    let mut problems = Vec::new();
    for q in &quotas.items {
        let qname = q.metadata.name.as_deref().unwrap_or_default();
        let hard = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let used = q
            .status
            .as_ref()
            .and_then(|s| s.used.clone())
            .unwrap_or_default();
        for (res, h) in &hard {
            let per_pod = match res.as_str() {
                "pods" | "count/pods" => 1.0,
                "cpu" | "requests.cpu" => requests.get("cpu").copied().unwrap_or(0.0),
                "memory" | "requests.memory" => requests.get("memory").copied().unwrap_or(0.0),
                "limits.cpu" => limits.get("cpu").copied().unwrap_or(0.0),
                "limits.memory" => limits.get("memory").copied().unwrap_or(0.0),
                _ => continue,
            };
            let (Some(hv), uv) = (
                logic::quantity(&h.0),
                used.get(res)
                    .and_then(|u| logic::quantity(&u.0))
                    .unwrap_or(0.0),
            ) else {
                continue;
            };
            let need = per_pod * added;
            if uv + need > hv {
                problems.push(format!(
                    "{qname}: {res} would reach {} of {}",
                    uv + need,
                    hv
                ));
            }
        }
    }
    Ok(if problems.is_empty() {
        passed(format!(
            "the ResourceQuotas of namespace {ns} leave room for {added} more pod(s)"
        ))
    } else {
        failed(problems.join("; "))
    })
}

/// Every pod bound to the node.
async fn node_pods(k: &Kx, node: &str) -> Result<Vec<Pod>, K8sError> {
    let api: Api<Pod> = Api::all(k.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(
        k.call("list", &format!("pods on node {node}"), api.list(&lp))
            .await?
            .items,
    )
}

/// For each DaemonSet owning a pod, whether it exists (`namespace/name` → exists).
async fn daemonsets_present(k: &Kx, pods: &[Pod]) -> Result<BTreeMap<String, bool>, K8sError> {
    let mut out = BTreeMap::new();
    for p in pods {
        if let Some((kind, name)) = logic::controller_of(p)
            && kind == "DaemonSet"
        {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let key = format!("{ns}/{name}");
            if out.contains_key(&key) {
                continue;
            }
            let api: Api<DaemonSet> = Api::namespaced(k.client.clone(), &ns);
            let found = k
                .call("get", &format!("daemonset {key}"), api.get_opt(&name))
                .await?;
            out.insert(key, found.is_some());
        }
    }
    Ok(out)
}

fn daemonset_known(ds: &BTreeMap<String, bool>, p: &Pod) -> Option<bool> {
    let (kind, name) = logic::controller_of(p)?;
    (kind == "DaemonSet")
        .then(|| {
            ds.get(&format!(
                "{}/{name}",
                p.metadata.namespace.as_deref().unwrap_or_default()
            ))
            .copied()
        })
        .flatten()
}

async fn pdb_check(k: &Kx, node: &str, opts: &DrainOptions) -> Result<PrecheckResult, K8sError> {
    let pods = node_pods(k, node).await?;
    let ds = daemonsets_present(k, &pods).await?;
    let (evict, _, _) = logic::plan_drain(&pods, opts, |p| daemonset_known(&ds, p));
    if evict.is_empty() {
        return Ok(passed(format!("no pod on node {node} is evicted")));
    }
    let version = k.policy_version().await?;
    let namespaces: std::collections::BTreeSet<String> = evict
        .iter()
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    let mut problems = Vec::new();
    let mut budgets = 0;
    for ns in namespaces {
        let req = http::Request::get(format!(
            "/apis/policy/{version}/namespaces/{ns}/poddisruptionbudgets"
        ))
        .body(Vec::new())
        .map_err(|e| K8sError::Failed(format!("cannot build the request: {e}")))?;
        let what = format!("poddisruptionbudgets in namespace {ns}");
        let list: Value = k.call("list", &what, k.client.request(req)).await?;
        for pdb in list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            budgets += 1;
            let selector = pdb
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or(Value::Null);
            if selector.is_null() {
                continue;
            }
            let matching = evict
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| {
                    logic::selector_matches(
                        &selector,
                        &p.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .count();
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if matching > 0 && i64::try_from(matching).unwrap_or(i64::MAX) > allowed {
                problems.push(format!(
                    "poddisruptionbudget {ns}/{} allows {allowed} disruption(s), the drain evicts {matching} of its pods",
                    pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
                ));
            }
        }
    }
    Ok(if problems.is_empty() {
        passed(format!(
            "{budgets} budget(s) checked: they allow evicting {} pod(s)",
            evict.len()
        ))
    } else {
        failed(problems.join("; "))
    })
}

async fn capacity_check(
    k: &Kx,
    node: &str,
    opts: &DrainOptions,
) -> Result<PrecheckResult, K8sError> {
    let pods = node_pods(k, node).await?;
    let ds = daemonsets_present(k, &pods).await?;
    let (evict, _, _) = logic::plan_drain(&pods, opts, |p| daemonset_known(&ds, p));
    if evict.is_empty() {
        return Ok(passed(format!("no pod on node {node} is evicted")));
    }
    let mut need: BTreeMap<String, f64> = BTreeMap::new();
    for p in &evict {
        for (r, v) in logic::pod_requests(p.spec.as_ref()) {
            *need.entry(r).or_insert(0.0) += v;
        }
    }
    need.insert(
        "pods".into(),
        f64::from(u32::try_from(evict.len()).unwrap_or(u32::MAX)),
    );
    let nodes = k
        .call("list", "nodes", k.nodes().list(&ListParams::default()))
        .await?;
    let all: Api<Pod> = Api::all(k.client.clone());
    let lp = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let running = k.call("list", "pods of every node", all.list(&lp)).await?;
    let mut free: BTreeMap<String, f64> = BTreeMap::new();
    let mut targets = 0;
    for n in nodes
        .items
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(node) && !unschedulable(n))
    {
        targets += 1;
        let name = n.metadata.name.clone().unwrap_or_default();
        let mut left: BTreeMap<String, f64> = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|(r, q)| logic::quantity(&q.0).map(|v| (r.clone(), v)))
            .collect();
        for p in running
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        {
            for (r, v) in logic::pod_requests(p.spec.as_ref()) {
                *left.entry(r).or_insert(0.0) -= v;
            }
            *left.entry("pods".into()).or_insert(0.0) -= 1.0;
        }
        for (r, v) in left {
            *free.entry(r).or_insert(0.0) += v.max(0.0);
        }
    }
    let short: Vec<String> = need
        .iter()
        .filter(|(r, v)| free.get(*r).copied().unwrap_or(0.0) < **v)
        .map(|(r, v)| {
            format!(
                "{r}: need {v}, free {}",
                free.get(r).copied().unwrap_or(0.0)
            )
        })
        .collect();
    Ok(if short.is_empty() {
        passed(format!(
            "{targets} schedulable node(s) have room for the {} evicted pod(s)",
            evict.len()
        ))
    } else {
        failed(format!(
            "the other {targets} schedulable node(s) lack room: {}",
            short.join(", ")
        ))
    })
}

/// A merge patch body.
fn merge(v: Value) -> Patch<Value> {
    Patch::Merge(v)
}

/// The verb a request is recorded under: `patch`, or `patch (dry run)`.
fn verb(verb: &'static str, dry_run: bool) -> String {
    if dry_run {
        format!("{verb} (dry run)")
    } else {
        verb.to_owned()
    }
}

// The requests behind the simple changes, shared by `execute` and `dry_run` so the server
// validates exactly what would be sent.

async fn patch_deployment(
    k: &Kx,
    ns: &str,
    name: &str,
    patch: &Patch<Value>,
    dry_run: bool,
) -> Result<Deployment, K8sError> {
    let what = format!("deployment {ns}/{name}");
    k.call(
        &verb("patch", dry_run),
        &what,
        k.deployments(ns).patch(name, &pp(dry_run), patch),
    )
    .await
}

async fn scale_deployment(
    k: &Kx,
    ns: &str,
    name: &str,
    replicas: i32,
    dry_run: bool,
) -> Result<Scale, K8sError> {
    let what = format!("deployment {ns}/{name}");
    k.call(
        &verb("scale", dry_run),
        &what,
        k.deployments(ns).patch_scale(
            name,
            &pp(dry_run),
            &merge(json!({"spec": {"replicas": replicas}})),
        ),
    )
    .await
}

async fn patch_hpa_spec(
    k: &Kx,
    ns: &str,
    name: &str,
    spec: Value,
    dry_run: bool,
) -> Result<HorizontalPodAutoscaler, K8sError> {
    let what = format!("horizontalpodautoscaler {ns}/{name}");
    k.call(
        &verb("patch", dry_run),
        &what,
        k.hpas(ns)
            .patch(name, &pp(dry_run), &merge(json!({ "spec": spec }))),
    )
    .await
}

async fn set_unschedulable(
    k: &Kx,
    node: &str,
    unschedulable: bool,
    dry_run: bool,
) -> Result<Node, K8sError> {
    k.call(
        &verb("patch", dry_run),
        &format!("node {node}"),
        k.nodes().patch(
            node,
            &pp(dry_run),
            &merge(json!({"spec": {"unschedulable": unschedulable}})),
        ),
    )
    .await
}

/// The time as kubectl writes `restartedAt` (RFC 3339, whole seconds, UTC).
fn now_rfc3339() -> String {
    let now = agentsafe_core::Timestamp::now();
    agentsafe_core::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

fn report(summary: String, output: Value) -> ExecutionReport {
    ExecutionReport { summary, output }
}

/// Performs the op. Long operations watch `cancel`; the caller also drops the future when
/// it fires.
pub(crate) async fn execute(k: &Kx, op: &Op, cancel: &Cancel) -> Result<ExecutionReport, K8sError> {
    match op {
        Op::RestartDeployment { ns, name } => {
            let d = k.deployment(ns, name).await?;
            if d.spec.and_then(|s| s.paused).unwrap_or(false) {
                return Err(K8sError::Refused(format!(
                    "deployment {ns}/{name} is paused: resume it before restarting"
                )));
            }
            let at = now_rfc3339();
            let d = patch_deployment(k, ns, name, &merge(restart_patch(&at)), false).await?;
            Ok(report(
                format!("restarted deployment {ns}/{name} (restartedAt {at})"),
                json!({"restartedAt": at, "generation": d.metadata.generation}),
            ))
        }
        Op::ScaleDeployment { ns, name, replicas } => {
            let s = scale_deployment(k, ns, name, *replicas, false).await?;
            Ok(report(
                format!("scaled deployment {ns}/{name} to {replicas} replicas"),
                to_json("scale", &s)?,
            ))
        }
        Op::ScaleHpa { ns, name, min } => {
            let h = patch_hpa_spec(k, ns, name, json!({"minReplicas": min}), false).await?;
            Ok(report(
                format!("set minReplicas of horizontalpodautoscaler {ns}/{name} to {min}"),
                json!({"minReplicas": min, "maxReplicas": h.spec.map(|s| s.max_replicas)}),
            ))
        }
        Op::UpdateHpaLimits { ns, name, min, max } => {
            if min > max {
                return Err(K8sError::Refused(format!(
                    "min_replicas {min} exceeds max_replicas {max}"
                )));
            }
            let limits = json!({"minReplicas": min, "maxReplicas": max});
            patch_hpa_spec(k, ns, name, limits, false).await?;
            Ok(report(
                format!("set the limits of horizontalpodautoscaler {ns}/{name} to {min}..={max}"),
                json!({"minReplicas": min, "maxReplicas": max}),
            ))
        }
        Op::RolloutStatus { ns, name, timeout } => {
            rollout_wait(k, ns, name, *timeout, cancel).await
        }
        Op::RolloutUndo {
            ns,
            name,
            to_revision,
        } => {
            let (d, from, to) = rollback(k, ns, name, *to_revision, false).await?;
            Ok(report(
                format!("rolled deployment {ns}/{name} back to revision {to}"),
                json!({"from_revision": from, "to_revision": to, "generation": d.metadata.generation}),
            ))
        }
        Op::UpdateImage {
            ns,
            name,
            container,
            image,
        } => {
            let d = k.deployment(ns, name).await?;
            let previous = container_image(&d, container).ok_or_else(|| {
                K8sError::Refused(format!(
                    "deployment {ns}/{name} has no container `{container}` (containers: {})",
                    template_containers(&d).join(", ")
                ))
            })?;
            patch_deployment(k, ns, name, &image_patch(container, image), false).await?;
            Ok(report(
                format!(
                    "set the image of container `{container}` of deployment {ns}/{name} to {image}"
                ),
                json!({"container": container, "previous_image": previous, "image": image}),
            ))
        }
        Op::CordonNode { node } => {
            set_unschedulable(k, node, true, false).await?;
            Ok(report(
                format!("cordoned node {node}"),
                json!({"unschedulable": true}),
            ))
        }
        Op::UncordonNode { node } => {
            set_unschedulable(k, node, false, false).await?;
            Ok(report(
                format!("uncordoned node {node}"),
                json!({"unschedulable": false}),
            ))
        }
        Op::DrainNode { node, opts } => crate::drain::drain(k, node, opts, cancel).await,
        Op::CreateNamespace { ns } => {
            refuse_system(ns)?;
            let n = k
                .call(
                    "create",
                    &format!("namespace {ns}"),
                    k.namespaces().create(&post(false), &new_namespace(ns)),
                )
                .await?;
            Ok(report(
                format!("created namespace {ns}"),
                json!({"uid": n.metadata.uid}),
            ))
        }
        Op::DeleteNamespace { ns } => {
            refuse_system(ns)?;
            k.call(
                "delete",
                &format!("namespace {ns}"),
                k.namespaces().delete(ns, &DeleteParams::default()),
            )
            .await?;
            Ok(report(
                format!("deleted namespace {ns} (its objects are being removed)"),
                json!({"namespace": ns}),
            ))
        }
        Op::DeletePod { ns, pod, grace } => {
            let dp = DeleteParams {
                grace_period_seconds: Some(u32::try_from(*grace).unwrap_or(0)),
                ..DeleteParams::default()
            };
            k.call(
                "delete",
                &format!("pod {ns}/{pod}"),
                k.pods(ns).delete(pod, &dp),
            )
            .await?;
            Ok(report(
                format!("deleted pod {ns}/{pod} (grace period {grace} s)"),
                json!({"grace_period_seconds": grace}),
            ))
        }
        Op::GetConfigmap { ns, name, key } => {
            let c = k.configmap(ns, name).await?;
            let data = c.data.unwrap_or_default();
            match key {
                Some(key) => {
                    let value = data.get(key).cloned().ok_or_else(|| {
                        K8sError::NotFound(format!("key `{key}` of configmap {ns}/{name}"))
                    })?;
                    Ok(report(
                        format!("read key `{key}` of configmap {ns}/{name}"),
                        json!({"key": key, "value": value}),
                    ))
                }
                None => Ok(report(
                    format!("read {} key(s) of configmap {ns}/{name}", data.len()),
                    json!({"data": data, "binary_keys": c.binary_data.unwrap_or_default().keys().collect::<Vec<_>>()}),
                )),
            }
        }
        Op::UpdateConfigmap {
            ns,
            name,
            key,
            value,
        } => {
            let c = k.configmap(ns, name).await?;
            if c.immutable == Some(true) {
                return Err(K8sError::Refused(format!(
                    "configmap {ns}/{name} is immutable"
                )));
            }
            let previous = c.data.as_ref().and_then(|d| d.get(key)).cloned();
            let what = format!("configmap {ns}/{name}");
            k.call(
                "patch",
                &what,
                k.configmaps(ns)
                    .patch(name, &pp(false), &configmap_patch(&c.metadata, key, value)),
            )
            .await?;
            Ok(report(
                format!("set key `{key}` of configmap {ns}/{name}"),
                json!({"key": key, "previous_value": previous, "value": value}),
            ))
        }
        Op::GetSecret {
            ns,
            name,
            key,
            reveal,
        } => {
            let s = k.secret(ns, name).await?;
            crate::secret::read(ns, name, &s, key.as_deref(), *reveal)
        }
        Op::ApplyNetworkPolicy { ns, name, spec } => {
            refuse_system(ns)?;
            let (np, created) = apply_netpol(k, ns, name, spec, false).await?;
            Ok(report(
                format!(
                    "{} networkpolicy {ns}/{name}",
                    if created { "created" } else { "replaced" }
                ),
                json!({"created": created, "resourceVersion": np.metadata.resource_version, "spec": np.spec}),
            ))
        }
        Op::GetPodLogs { .. } | Op::ExecPod { .. } | Op::PortForward { .. } => {
            crate::stream::execute(k, op, cancel).await
        }
    }
}

fn refuse_system(ns: &str) -> Result<(), K8sError> {
    if is_system_namespace(ns) {
        Err(K8sError::Refused(format!(
            "`{ns}` is a system namespace: refused"
        )))
    } else {
        Ok(())
    }
}

fn new_namespace(ns: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The patch `kubectl rollout restart` sends.
fn restart_patch(at: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
}

/// A strategic merge patch of one container's image: the `containers` list merges by
/// `name`, so no other container changes.
fn image_patch(container: &str, image: &str) -> Patch<Value> {
    Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}),
    )
}

/// A merge patch of one key, conditional on the resourceVersion that was read (a
/// concurrent change makes it fail with 409 instead of being overwritten).
fn configmap_patch(meta: &ObjectMeta, key: &str, value: &str) -> Patch<Value> {
    merge(json!({"metadata": {"resourceVersion": meta.resource_version}, "data": {key: value}}))
}

fn container_image(d: &Deployment, container: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.image.clone().unwrap_or_default())
}

async fn rollout_wait(
    k: &Kx,
    ns: &str,
    name: &str,
    timeout: u64,
    cancel: &Cancel,
) -> Result<ExecutionReport, K8sError> {
    let started = Instant::now();
    let limit = Duration::from_secs(timeout);
    loop {
        let d = k.deployment(ns, name).await?;
        match logic::rollout_status(&d) {
            Rollout::Done(m) => {
                return Ok(report(
                    format!("rollout of deployment {ns}/{name} is complete"),
                    json!({"done": true, "message": m, "waited_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)}),
                ));
            }
            Rollout::Failed(m) => {
                return Err(K8sError::Failed(format!(
                    "rollout of deployment {ns}/{name} failed: {m}"
                )));
            }
            Rollout::InProgress(m) => {
                if started.elapsed() >= limit {
                    return Err(K8sError::Failed(format!(
                        "rollout of deployment {ns}/{name} is not complete after {timeout} s: {m}"
                    )));
                }
            }
        }
        let pause = Duration::from_secs(1).min(limit.saturating_sub(started.elapsed()));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return Err(K8sError::Cancelled),
        }
    }
}

/// Rolls the Deployment back to a revision (dry run or not): returns the Deployment the
/// server produced, and the revisions from and to.
async fn rollback(
    k: &Kx,
    ns: &str,
    name: &str,
    to_revision: Option<i64>,
    dry_run: bool,
) -> Result<(Deployment, i64, i64), K8sError> {
    let d = k.deployment(ns, name).await?;
    if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
        return Err(K8sError::Refused(format!(
            "deployment {ns}/{name} is paused: resume it before rolling back"
        )));
    }
    let history = k.owned_replicasets(&d).await?;
    let rs = logic::select_revision(&d, &history, to_revision).map_err(K8sError::Refused)?;
    let to = logic::revision_of(&rs.metadata);
    let from = logic::revision_of(&d.metadata);
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(logic::template_without_hash)
        .ok_or_else(|| K8sError::Refused(format!("revision {to} has no pod template")))?;
    // What `kubectl rollout undo` sends: a JSON patch replacing the pod template and the
    // annotations, with no resourceVersion (the controller's status updates do not make it
    // a conflict). A `test` of the revision we read guards against a concurrent rollout: if
    // another one moved the Deployment meanwhile, the server refuses the whole patch.
    let mut ops = Vec::new();
    if let Some(rev) = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(logic::REVISION_ANNOTATION))
    {
        ops.push(json!({
            "op": "test",
            "path": "/metadata/annotations/deployment.kubernetes.io~1revision",
            "value": rev,
        }));
    }
    let template = serde_json::to_value(&template)
        .map_err(|e| K8sError::Refused(format!("revision {to}: {e}")))?;
    ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
    ops.push(json!({
        "op": "add",
        "path": "/metadata/annotations",
        "value": logic::rollback_annotations(&d, rs),
    }));
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| K8sError::Refused(format!("rollback patch: {e}")))?;
    let what = format!("deployment {ns}/{name}");
    let out = k
        .call(
            "patch",
            &what,
            k.deployments(ns)
                .patch(name, &pp(dry_run), &Patch::<()>::Json(patch)),
        )
        .await?;
    Ok((out, from, to))
}

async fn apply_netpol(
    k: &Kx,
    ns: &str,
    name: &str,
    spec: &crate::params::NetpolSpec,
    dry_run: bool,
) -> Result<(NetworkPolicy, bool), K8sError> {
    let mut np = logic::network_policy(ns, name, spec).map_err(K8sError::Refused)?;
    let what = format!("networkpolicy {ns}/{name}");
    let api = k.netpols(ns);
    match k.call("get", &what, api.get_opt(name)).await? {
        Some(existing) => {
            np.metadata.resource_version = existing.metadata.resource_version;
            let out = k
                .call("replace", &what, api.replace(name, &post(dry_run), &np))
                .await?;
            Ok((out, false))
        }
        None => Ok((
            k.call("create", &what, api.create(&post(dry_run), &np))
                .await?,
            true,
        )),
    }
}

/// Server-side dry run (`dryRun=All`) of a mutating op: the object the server would
/// produce. `None` for read-only and streaming ops.
pub(crate) async fn dry_run(k: &Kx, op: &Op) -> Result<Option<Value>, K8sError> {
    let v = match op {
        Op::RestartDeployment { ns, name } => {
            let patch = merge(restart_patch(&now_rfc3339()));
            to_json(
                "deployment",
                &patch_deployment(k, ns, name, &patch, true).await?,
            )?
        }
        Op::ScaleDeployment { ns, name, replicas } => to_json(
            "scale",
            &scale_deployment(k, ns, name, *replicas, true).await?,
        )?,
        Op::ScaleHpa { ns, name, min } => {
            let h = patch_hpa_spec(k, ns, name, json!({"minReplicas": min}), true).await?;
            to_json("horizontalpodautoscaler", &h)?
        }
        Op::UpdateHpaLimits { ns, name, min, max } => {
            let limits = json!({"minReplicas": min, "maxReplicas": max});
            let h = patch_hpa_spec(k, ns, name, limits, true).await?;
            to_json("horizontalpodautoscaler", &h)?
        }
        Op::RolloutUndo {
            ns,
            name,
            to_revision,
        } => to_json(
            "deployment",
            &rollback(k, ns, name, *to_revision, true).await?.0,
        )?,
        Op::UpdateImage {
            ns,
            name,
            container,
            image,
        } => {
            let d = k.deployment(ns, name).await?;
            if container_image(&d, container).is_none() {
                return Err(K8sError::Refused(format!(
                    "deployment {ns}/{name} has no container `{container}`"
                )));
            }
            let d = patch_deployment(k, ns, name, &image_patch(container, image), true).await?;
            to_json("deployment", &d)?
        }
        Op::CordonNode { node } | Op::UncordonNode { node } => {
            let cordon = matches!(op, Op::CordonNode { .. });
            to_json("node", &set_unschedulable(k, node, cordon, true).await?)?
        }
        Op::DrainNode { node, opts } => {
            let n = set_unschedulable(k, node, true, true).await?;
            let pods = node_pods(k, node).await?;
            let ds = daemonsets_present(k, &pods).await?;
            let (evict, skipped, blocked) =
                logic::plan_drain(&pods, opts, |p| daemonset_known(&ds, p));
            if !blocked.is_empty() {
                return Err(K8sError::Refused(format!(
                    "drain of node {node} refused: {}",
                    blocked.join("; ")
                )));
            }
            json!({
                "node": to_json("node", &n)?,
                "evict": evict.iter().map(|p| logic::pod_id(p)).collect::<Vec<_>>(),
                "skip": skipped,
            })
        }
        Op::CreateNamespace { ns } => {
            refuse_system(ns)?;
            let n = k
                .call(
                    "create (dry run)",
                    &format!("namespace {ns}"),
                    k.namespaces().create(&post(true), &new_namespace(ns)),
                )
                .await?;
            to_json("namespace", &n)?
        }
        Op::DeleteNamespace { ns } => {
            refuse_system(ns)?;
            let dp = DeleteParams {
                dry_run: true,
                ..DeleteParams::default()
            };
            let out = k
                .call(
                    "delete (dry run)",
                    &format!("namespace {ns}"),
                    k.namespaces().delete(ns, &dp),
                )
                .await?;
            either_json(out)?
        }
        Op::DeletePod { ns, pod, grace } => {
            let dp = DeleteParams {
                dry_run: true,
                grace_period_seconds: Some(u32::try_from(*grace).unwrap_or(0)),
                ..DeleteParams::default()
            };
            let out = k
                .call(
                    "delete (dry run)",
                    &format!("pod {ns}/{pod}"),
                    k.pods(ns).delete(pod, &dp),
                )
                .await?;
            either_json(out)?
        }
        Op::UpdateConfigmap {
            ns,
            name,
            key,
            value,
        } => {
            let c = k.configmap(ns, name).await?;
            let what = format!("configmap {ns}/{name}");
            let c = k
                .call(
                    "patch (dry run)",
                    &what,
                    k.configmaps(ns).patch(
                        name,
                        &pp(true),
                        &configmap_patch(&c.metadata, key, value),
                    ),
                )
                .await?;
            to_json("configmap", &c)?
        }
        Op::ApplyNetworkPolicy { ns, name, spec } => {
            refuse_system(ns)?;
            to_json(
                "networkpolicy",
                &apply_netpol(k, ns, name, spec, true).await?.0,
            )?
        }
        Op::RolloutStatus { .. }
        | Op::GetConfigmap { .. }
        | Op::GetSecret { .. }
        | Op::GetPodLogs { .. }
        | Op::ExecPod { .. }
        | Op::PortForward { .. } => return Ok(None),
    };
    Ok(Some(v))
}

fn either_json<T: Serialize>(v: either::Either<T, kube::core::Status>) -> Result<Value, K8sError> {
    match v {
        either::Either::Left(obj) => to_json("object", &obj),
        either::Either::Right(status) => to_json("status", &status),
    }
}
