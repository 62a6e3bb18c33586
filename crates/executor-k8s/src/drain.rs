//! drain-node as `kubectl drain` does it: cordon, evict every pod the filters allow
//! through the Eviction API the server serves (policy/v1 or policy/v1beta1), retry
//! evictions a PodDisruptionBudget blocks (429) until the timeout, then wait for the
//! evicted pods to be gone.

use std::time::{Duration, Instant};

use agentsafe_core::{Cancel, ExecutionReport};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch};
use serde_json::json;

use crate::K8sError;
use crate::actions::Kx;
use crate::logic::{self, PodDisposition};
use crate::params::DrainOptions;

/// Pause between evictions retried after a 429, as kubectl.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Pause between checks that evicted pods are gone.
const POLL_PAUSE: Duration = Duration::from_secs(1);

async fn pause(d: Duration, cancel: &Cancel) -> Result<(), K8sError> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = cancel.cancelled() => Err(K8sError::Cancelled),
    }
}

/// Lists the node's pods and applies kubectl's filters.
async fn plan(
    k: &Kx,
    node: &str,
    opts: &DrainOptions,
) -> Result<(Vec<Pod>, Vec<String>, Vec<String>), K8sError> {
    let api: Api<Pod> = Api::all(k.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = k
        .call("list", &format!("pods on node {node}"), api.list(&lp))
        .await?
        .items;
    let mut evict = Vec::new();
    let mut skipped = Vec::new();
    let mut blocked = Vec::new();
    for p in pods {
        let ds = match logic::controller_of(&p) {
            Some((kind, name)) if kind == "DaemonSet" => {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let dsapi: Api<k8s_openapi::api::apps::v1::DaemonSet> =
                    Api::namespaced(k.client.clone(), &ns);
                Some(
                    k.call(
                        "get",
                        &format!("daemonset {ns}/{name}"),
                        dsapi.get_opt(&name),
                    )
                    .await?
                    .is_some(),
                )
            }
            _ => None,
        };
        match logic::classify_pod(&p, opts, ds) {
            PodDisposition::Evict => evict.push(p),
            PodDisposition::Skip(why) => skipped.push(why),
            PodDisposition::Block(why) => blocked.push(why),
        }
    }
    Ok((evict, skipped, blocked))
}

/// Drains `node`.
pub(crate) async fn drain(
    k: &Kx,
    node: &str,
    opts: &DrainOptions,
    cancel: &Cancel,
) -> Result<ExecutionReport, K8sError> {
    let started = Instant::now();
    let limit = Duration::from_secs(opts.timeout_seconds);
    // Refuse before changing anything when kubectl would refuse.
    let (_, _, blocked) = plan(k, node, opts).await?;
    if !blocked.is_empty() {
        return Err(K8sError::Refused(format!(
            "drain of node {node} refused, nothing changed: {}",
            blocked.join("; ")
        )));
    }
    let what = format!("node {node}");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(k.client.clone());
    let pp = kube::api::PatchParams {
        field_manager: Some("agentsafe".into()),
        ..kube::api::PatchParams::default()
    };
    k.call(
        "cordon",
        &what,
        nodes.patch(
            node,
            &pp,
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        ),
    )
    .await?;
    // Pods may have changed in between: plan again on the cordoned node.
    let (evict, skipped, blocked) = plan(k, node, opts).await?;
    if !blocked.is_empty() {
        return Err(K8sError::Refused(format!(
            "node {node} is cordoned, but its drain was refused: {}",
            blocked.join("; ")
        )));
    }
    let version = if evict.is_empty() {
        "v1"
    } else {
        k.policy_version().await?
    };
    let mut evicted = Vec::new();
    for p in &evict {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let pod_what = format!("pod {ns}/{name}");
        let body = logic::eviction_body(version, &ns, &name, opts.grace_period_seconds);
        loop {
            let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
                .map_err(|e| {
                    K8sError::Failed(format!("cannot build the eviction of {pod_what}: {e}"))
                })?;
            match k.call("evict", &pod_what, k.client.request_text(req)).await {
                Ok(_) => {
                    evicted.push((ns.clone(), name.clone(), p.metadata.uid.clone()));
                    break;
                }
                Err(e) if e.is_not_found() => break,
                Err(e) if e.status_code() == Some(429) => {
                    if started.elapsed() >= limit {
                        return Err(K8sError::Failed(format!(
                            "node {node} is cordoned, but evicting {pod_what} was still blocked by a disruption budget after {} s: {e}",
                            opts.timeout_seconds
                        )));
                    }
                    pause(
                        RETRY_PAUSE.min(limit.saturating_sub(started.elapsed())),
                        cancel,
                    )
                    .await?;
                }
                Err(e) => {
                    return Err(K8sError::Failed(format!(
                        "node {node} is cordoned, {} pod(s) evicted, then: {e}",
                        evicted.len()
                    )));
                }
            }
        }
    }
    // Wait for the evicted pods to be gone (deleted, or replaced by a pod of another uid).
    let mut remaining = evicted.clone();
    loop {
        let mut still = Vec::new();
        for (ns, name, uid) in remaining {
            let api: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
            match k
                .call("get", &format!("pod {ns}/{name}"), api.get_opt(&name))
                .await?
            {
                Some(p) if p.metadata.uid == uid => still.push((ns, name, uid)),
                _ => {}
            }
        }
        if still.is_empty() {
            break;
        }
        if started.elapsed() >= limit {
            let names: Vec<String> = still.iter().map(|(n, p, _)| format!("{n}/{p}")).collect();
            return Err(K8sError::Failed(format!(
                "node {node} is cordoned and its pods were evicted, but {} were not gone after {} s",
                names.join(", "),
                opts.timeout_seconds
            )));
        }
        remaining = still;
        pause(POLL_PAUSE, cancel).await?;
    }
    let names: Vec<String> = evicted.iter().map(|(n, p, _)| format!("{n}/{p}")).collect();
    Ok(ExecutionReport {
        summary: format!(
            "drained node {node}: cordoned, {} pod(s) evicted, {} left in place",
            names.len(),
            skipped.len()
        ),
        output: json!({
            "evicted": names,
            "skipped": skipped,
            "eviction_api": format!("policy/{version}"),
        }),
    })
}
