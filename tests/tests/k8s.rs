//! The Kubernetes executor through the real binary against a real API server
//! (`cargo xtask k8s-up`): check → ticket → `run --executor k8s` → state read back with
//! kube → `rollback run`, for every action but logs/exec/port-forward; and the security
//! properties: injected params refused before any request, a ticket for namespace A never
//! acts in namespace B, a ticket for a cluster the runner does not map is refused,
//! get-secret values never in the audit log or state files.
//!
//! Run: `KUBECONFIG=/root/.cache/agentsafe/k8s/run/kubeconfig cargo test -p agentsafe-e2e
//! --test k8s -- --ignored`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentsafe_e2e::{
    Run, SRE, allow, backend_project, e2e_target, json_of, rollback, run_in, unique,
    verify_audit as verify,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

fn kubeconfig() -> PathBuf {
    match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "KUBECONFIG is not set: this test needs a Kubernetes API server (cargo xtask k8s-up), \
             then KUBECONFIG=/root/.cache/agentsafe/k8s/run/kubeconfig"
        ),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client() -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// The cluster objects of one test: two namespaces (A, where the targets live, and B), a
/// node, and what `setup` puts in them; removed on drop.
struct World {
    a: String,
    b: String,
    node: String,
    extra_namespaces: Vec<String>,
}

impl World {
    fn new() -> World {
        let w = World {
            a: unique("e2e-a"),
            b: unique("e2e-b"),
            node: unique("e2e-node"),
            extra_namespaces: Vec::new(),
        };
        rt().block_on(async {
            let c = client().await;
            for ns in [&w.a, &w.b] {
                let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
                Api::<Namespace>::all(c.clone()).create(&PostParams::default(), &n).await.unwrap();
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]}}}
                }))
                .unwrap();
                Api::<Deployment>::namespaced(c.clone(), ns).create(&PostParams::default(), &d).await.unwrap();
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"mode": "blue"}})).unwrap();
                Api::<ConfigMap>::namespaced(c.clone(), ns).create(&PostParams::default(), &cm).await.unwrap();
                let s: Secret = serde_json::from_value(
                    json!({"metadata": {"name": "db"}, "stringData": {"password": "e2e-secret-canary-77"}}),
                )
                .unwrap();
                Api::<Secret>::namespaced(c.clone(), ns).create(&PostParams::default(), &s).await.unwrap();
                // The HPA scales `api`, not `web`: `web` must be free to go to 0 replicas
                // (the only count whose rollouts complete without a kubelet), and the
                // scale-deployment precheck rightly refuses counts outside an HPA's bounds.
                // No HPA controller runs here, so `api` need not exist.
                let h: HorizontalPodAutoscaler = serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {"minReplicas": 1, "maxReplicas": 4,
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}}
                }))
                .unwrap();
                Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), ns)
                    .create(&PostParams::default(), &h)
                    .await
                    .unwrap();
            }
            let n: Node = serde_json::from_value(json!({"metadata": {"name": w.node}})).unwrap();
            Api::<Node>::all(c).create(&PostParams::default(), &n).await.unwrap();
        });
        w
    }

    fn deployment(&self, ns: &str) -> Deployment {
        rt().block_on(async {
            Api::<Deployment>::namespaced(client().await, ns)
                .get("web")
                .await
                .unwrap()
        })
    }

    /// Waits until the deployment controller has caught up with `web` at 0 replicas (the
    /// only count whose rollouts complete without a kubelet); until then the
    /// `rollout_not_in_progress` precheck rightly refuses the next change.
    fn settle(&self, ns: &str) {
        eventually("the deployment controller", || {
            let d = self.deployment(ns);
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            let status = d.status.unwrap_or_default();
            observed == d.metadata.generation
                && status.replicas.unwrap_or(0) == 0
                && status.updated_replicas.unwrap_or(0) == 0
        });
    }

    fn replicas(&self, ns: &str) -> i32 {
        self.deployment(ns).spec.unwrap().replicas.unwrap()
    }

    fn image(&self, ns: &str) -> String {
        self.deployment(ns)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone()
            .unwrap()
    }

    fn configmap(&self, ns: &str) -> String {
        rt().block_on(async {
            Api::<ConfigMap>::namespaced(client().await, ns)
                .get("cfg")
                .await
                .unwrap()
                .data
                .unwrap()["mode"]
                .clone()
        })
    }

    fn hpa(&self, ns: &str) -> (i32, i32) {
        rt().block_on(async {
            let s = Api::<HorizontalPodAutoscaler>::namespaced(client().await, ns)
                .get("web")
                .await
                .unwrap()
                .spec
                .unwrap();
            (s.min_replicas.unwrap(), s.max_replicas)
        })
    }

    fn unschedulable(&self) -> bool {
        rt().block_on(async {
            Api::<Node>::all(client().await)
                .get(&self.node)
                .await
                .unwrap()
                .spec
                .unwrap()
                .unschedulable
                .unwrap_or(false)
        })
    }

    fn namespace_phase(&self, ns: &str) -> Option<String> {
        rt().block_on(async {
            Api::<Namespace>::all(client().await)
                .get_opt(ns)
                .await
                .unwrap()
                .map(|n| n.status.unwrap().phase.unwrap())
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let (a, b, node, extra) = (
            self.a.clone(),
            self.b.clone(),
            self.node.clone(),
            self.extra_namespaces.clone(),
        );
        let _ = std::thread::spawn(move || {
            rt().block_on(async move {
                let c = client().await;
                for ns in [a, b].into_iter().chain(extra) {
                    let pods = Api::<Pod>::namespaced(c.clone(), &ns);
                    let force = DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    };
                    if let Ok(list) = pods.list(&ListParams::default()).await {
                        for p in list.items {
                            let _ = pods
                                .delete(p.metadata.name.as_deref().unwrap_or_default(), &force)
                                .await;
                        }
                    }
                    let _ = Api::<Namespace>::all(c.clone())
                        .delete(&ns, &DeleteParams::default())
                        .await;
                }
                let _ = Api::<Node>::all(c)
                    .delete(&node, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}

/// A project whose inventory holds the world's objects (environment `e2e`), one policy
/// allowing callers with role `sre` everything there, and the k8s executor as default.
fn project(w: &World, made_ns: &str) -> tempfile::TempDir {
    let attrs = |more: &str| format!("cluster = \"e2e\", {more}");
    let inventory = [
        e2e_target(
            "e2e/web",
            "k8s-deployment",
            &attrs(&format!("namespace = \"{}\", name = \"web\"", w.a)),
        ),
        e2e_target(
            "e2e/web-hpa",
            "k8s-hpa",
            &attrs(&format!("namespace = \"{}\", name = \"web\"", w.a)),
        ),
        e2e_target(
            "e2e/ns",
            "k8s-namespace",
            &attrs(&format!("namespace = \"{}\"", w.a)),
        ),
        e2e_target(
            "e2e/made",
            "k8s-namespace",
            &attrs(&format!("namespace = \"{made_ns}\"")),
        ),
        e2e_target(
            "e2e/node",
            "k8s-node",
            &attrs(&format!("node = \"{}\"", w.node)),
        ),
        e2e_target("e2e/cluster", "k8s-cluster", "cluster = \"e2e\""),
        // The same Deployment's namespace and name in a cluster this runner does not map,
        // as `staging/api-server` and `prod/api-server` share theirs in the shipped inventory.
        e2e_target(
            "e2e-other/web",
            "k8s-deployment",
            &format!(
                "cluster = \"e2e-other\", namespace = \"{}\", name = \"web\"",
                w.a
            ),
        ),
    ]
    .concat();
    backend_project(
        "k8s",
        &inventory,
        &format!(
            "[executors.k8s]\nkubeconfig = \"{}\"\nclusters = {{ e2e = \"{}\" }}",
            kubeconfig().display(),
            current_context()
        ),
    )
}

/// The kubeconfig's current context, which the projects map the inventory cluster `e2e`
/// to (`agentsafe` for `cargo xtask k8s-up`).
fn current_context() -> String {
    kube::config::Kubeconfig::read_from(kubeconfig())
        .unwrap()
        .current_context
        .expect("the kubeconfig names a current context")
}

fn act(dir: &Path, action: &str, target: &str, params: Value) -> (String, Value) {
    agentsafe_e2e::act(dir, "k8s", action, target, &params)
}

fn run_ticket(dir: &Path, ticket: &str) -> (Run, Value) {
    agentsafe_e2e::run_ticket(dir, ticket, "k8s")
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn deployment_actions_run_and_roll_back() {
    let w = World::new();
    let p = project(&w, "unused-ns");
    let dir = p.path();
    let a = w.a.clone();

    // A preview: prechecks, state and the server's own dry run (dryRun=All); nothing
    // changes and the ticket is not redeemed.
    let (ticket, _) = allow(dir, "scale-deployment", "e2e/web", &json!({"replicas": 2}));
    let r = run_in(
        dir,
        &[
            "run",
            &ticket,
            "--executor",
            "k8s",
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = json_of(&r);
    assert_eq!(v["reason_code"], "previewed", "{v}");
    assert!(
        v["record"]["prechecks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "server_dry_run" && c["result"] == "passed"),
        "{v}"
    );
    assert_eq!(
        v["record"]["output"]["spec"]["replicas"], 2,
        "the server's answer"
    );
    assert_eq!(w.replicas(&a), 0, "a preview changes nothing");

    let (d, report) = act(dir, "scale-deployment", "e2e/web", json!({"replicas": 3}));
    assert_eq!(report["record"]["before"]["replicas"], 0);
    assert_eq!(report["record"]["after"]["replicas"], 3);
    assert_eq!(w.replicas(&a), 3);
    assert_eq!(w.replicas(&w.b), 0, "namespace B untouched");
    rollback(dir, &d);
    assert_eq!(w.replicas(&a), 0, "scaled back to the recorded count");
    w.settle(&a);

    let (d, report) = act(
        dir,
        "update-image",
        "e2e/web",
        json!({"container": "app", "image": "busybox:1.36"}),
    );
    assert_eq!(report["record"]["before"]["image"], "busybox:1.35");
    assert_eq!(report["record"]["after"]["image"], "busybox:1.36");
    assert_eq!(w.image(&a), "busybox:1.36");
    w.settle(&a);
    rollback(dir, &d);
    assert_eq!(w.image(&a), "busybox:1.35");

    // rollout-undo back to busybox:1.36 (the previous revision now).
    eventually("revision 3", || {
        w.deployment(&a)
            .metadata
            .annotations
            .unwrap_or_default()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("3")
    });
    let (_, report) = act(dir, "rollout-undo", "e2e/web", json!({}));
    assert_eq!(
        report["record"]["after"]["containers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(w.image(&a), "busybox:1.36");

    w.settle(&a);
    let before = w.deployment(&a).metadata.generation.unwrap();
    let (_, report) = act(dir, "restart-deployment", "e2e/web", json!({}));
    assert_eq!(report["record"]["after"]["generation"], before + 1);
    let restarted = w
        .deployment(&a)
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert!(restarted.contains_key("kubectl.kubernetes.io/restartedAt"));

    let (_, report) = act(
        dir,
        "rollout-status",
        "e2e/web",
        json!({"timeout_seconds": 30}),
    );
    assert!(
        report["summary"].as_str().unwrap().contains("complete"),
        "{report}"
    );

    let (d, report) = act(dir, "scale-hpa", "e2e/web-hpa", json!({"min_replicas": 3}));
    assert_eq!(report["record"]["before"]["min_replicas"], 1);
    assert_eq!(w.hpa(&a), (3, 4));
    rollback(dir, &d);
    assert_eq!(w.hpa(&a), (1, 4));

    let (d, _) = act(
        dir,
        "update-hpa-limits",
        "e2e/web-hpa",
        json!({"min_replicas": 2, "max_replicas": 9}),
    );
    assert_eq!(w.hpa(&a), (2, 9));
    rollback(dir, &d);
    assert_eq!(w.hpa(&a), (1, 4));
    verify(dir);
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn namespace_node_and_config_actions_run_and_roll_back() {
    let mut w = World::new();
    let made = unique("e2e-made");
    w.extra_namespaces.push(made.clone());
    let p = project(&w, &made);
    let dir = p.path();
    let a = w.a.clone();

    let (d, report) = act(
        dir,
        "update-configmap",
        "e2e/ns",
        json!({"configmap": "cfg", "key": "mode", "value": "green"}),
    );
    assert_eq!(report["record"]["before"]["value"], "blue");
    assert_eq!(w.configmap(&a), "green");
    assert_eq!(w.configmap(&w.b), "blue");
    rollback(dir, &d);
    assert_eq!(w.configmap(&a), "blue");

    let (_, report) = act(
        dir,
        "get-configmap",
        "e2e/ns",
        json!({"configmap": "cfg", "key": "mode"}),
    );
    assert_eq!(report["record"]["output"]["value"], "blue", "{report}");

    let (d, _) = act(dir, "cordon-node", "e2e/node", json!({}));
    assert!(w.unschedulable());
    rollback(dir, &d);
    assert!(!w.unschedulable());
    let (d, _) = act(
        dir,
        "drain-node",
        "e2e/node",
        json!({"grace_period_seconds": 0, "timeout_seconds": 30}),
    );
    assert!(w.unschedulable());
    rollback(dir, &d);
    assert!(!w.unschedulable());
    let (_, _) = act(dir, "cordon-node", "e2e/node", json!({}));
    let (d, _) = act(dir, "uncordon-node", "e2e/node", json!({}));
    assert!(!w.unschedulable());
    rollback(dir, &d);
    assert!(w.unschedulable());

    let (_, report) = act(
        dir,
        "apply-network-policy",
        "e2e/ns",
        json!({"name": "web-in", "pod_selector": {"app": "web"}, "policy_types": ["Ingress"], "ports": [8080]}),
    );
    assert_eq!(report["outcome"], "succeeded");
    let np = rt().block_on(async {
        Api::<NetworkPolicy>::namespaced(client().await, &a)
            .get("web-in")
            .await
            .unwrap()
    });
    assert_eq!(np.spec.unwrap().policy_types.unwrap(), ["Ingress"]);

    // delete-pod: a pod of namespace A.
    rt().block_on(async {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "loner"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}))
        .unwrap();
        Api::<Pod>::namespaced(client().await, &a)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    });
    act(
        dir,
        "delete-pod",
        "e2e/ns",
        json!({"pod": "loner", "grace_period_seconds": 0}),
    );
    eventually("the pod to go", || {
        rt().block_on(async {
            Api::<Pod>::namespaced(client().await, &a)
                .get_opt("loner")
                .await
                .unwrap()
                .is_none()
        })
    });

    let (d, report) = act(
        dir,
        "create-namespace",
        "e2e/cluster",
        json!({"namespace": made}),
    );
    assert_eq!(report["record"]["after"]["phase"], "Active");
    assert_eq!(w.namespace_phase(&made).as_deref(), Some("Active"));
    rollback(dir, &d);
    assert_ne!(
        w.namespace_phase(&made).as_deref(),
        Some("Active"),
        "the rollback deleted it"
    );

    let (_, _) = act(dir, "delete-namespace", "e2e/ns", json!({}));
    assert_ne!(w.namespace_phase(&a).as_deref(), Some("Active"));
    verify(dir);
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn injected_params_are_refused_before_any_request() {
    let w = World::new();
    let p = project(&w, "unused-ns");
    let dir = p.path();
    for (action, target, params) in [
        (
            "scale-deployment",
            "e2e/web",
            json!({"name": "../x", "replicas": 1}),
        ),
        (
            "scale-deployment",
            "e2e/web",
            json!({"namespace": "kube-system", "replicas": 1}),
        ),
        (
            "scale-deployment",
            "e2e/web",
            json!({"namespace": "--all", "replicas": 1}),
        ),
        ("get-configmap", "e2e/ns", json!({"configmap": "a/b"})),
        (
            "get-configmap",
            "e2e/ns",
            json!({"configmap": "cfg", "key": "../../x"}),
        ),
        ("delete-pod", "e2e/ns", json!({"pod": "web app"})),
        (
            "update-image",
            "e2e/web",
            json!({"container": "app", "image": "--privileged"}),
        ),
    ] {
        let params = params.to_string();
        let mut args = vec![
            "check", action, "--target", target, "--params", &params, "--output", "json",
        ];
        args.extend_from_slice(SRE);
        let r = run_in(dir, &args);
        let d = json_of(&r);
        assert_ne!(d["decision"], "allow", "{action} {params}: {r:?}");
        assert!(d["ticket"].is_null(), "no ticket for {params}");
    }
    assert_eq!(w.replicas(&w.a), 0);

    // A system namespace is a valid name, so the decision can allow it; the executor
    // refuses it in its prechecks and would in execute, and nothing is created or changed.
    let (ticket, _) = allow(
        dir,
        "create-namespace",
        "e2e/cluster",
        &json!({"namespace": "kube-system"}),
    );
    let (r, report) = run_ticket(dir, &ticket);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["reason_code"], "precheck_failed", "{report}");
    assert_eq!(report["record"]["executed"], false);
    assert!(w.namespace_phase("kube-system").is_some());
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn a_ticket_for_namespace_a_never_acts_in_namespace_b() {
    let w = World::new();
    let p = project(&w, "unused-ns");
    let dir = p.path();
    // Naming B in the params of a request for the target in A is denied.
    let params = json!({"namespace": w.b, "replicas": 2}).to_string();
    let mut args = vec![
        "check",
        "scale-deployment",
        "--target",
        "e2e/web",
        "--params",
        &params,
        "--output",
        "json",
    ];
    args.extend_from_slice(SRE);
    let r = run_in(dir, &args);
    assert_ne!(json_of(&r)["decision"], "allow", "{r:?}");
    // A ticket for A, altered to name B, fails verification; nothing runs anywhere.
    let (ticket, _) = allow(dir, "scale-deployment", "e2e/web", &json!({"replicas": 2}));
    let parts: Vec<&str> = ticket.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    assert!(payload.contains(&w.a));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.replace(&w.a, &w.b)),
        parts[2]
    );
    let (r, report) = run_ticket(dir, &forged);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["reason_code"], "invalid_ticket");
    // Another inventory (a second project whose target points at B) cannot redeem it either.
    let (r, report) = run_ticket(dir, &ticket);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(report["record"]["params"]["namespace"], w.a.as_str());
    assert_eq!(w.replicas(&w.a), 2);
    assert_eq!(w.replicas(&w.b), 0, "namespace B untouched");
}

/// The audit's finding: a ticket decided for one cluster must not run against whatever
/// cluster the runner's kubeconfig points at. `e2e-other/web` has the namespace and name of
/// `e2e/web`, but its cluster is not in `[executors.k8s] clusters`.
#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn a_ticket_for_another_cluster_is_refused_and_changes_nothing() {
    let w = World::new();
    let p = project(&w, "unused-ns");
    let dir = p.path();
    let (ticket, _) = allow(
        dir,
        "scale-deployment",
        "e2e-other/web",
        &json!({"replicas": 2}),
    );
    let (r, report) = run_ticket(dir, &ticket);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["reason_code"], "wrong_location", "{report}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("cluster `e2e-other`")
            && message.contains("`[executors.k8s] clusters`")
            && message.contains("nothing was executed"),
        "{message}"
    );
    let rec = &report["record"];
    assert_eq!(rec["executed"], false, "{rec}");
    assert_eq!(rec["params"]["cluster"], "e2e-other", "{rec}");
    assert_eq!(
        w.replicas(&w.a),
        0,
        "the deployment in the mapped cluster is untouched"
    );
    // The same change for the target in the mapped cluster runs.
    let (_, report) = act(dir, "scale-deployment", "e2e/web", json!({"replicas": 2}));
    assert_eq!(report["record"]["params"]["cluster"], "e2e");
    assert_eq!(w.replicas(&w.a), 2);
    verify(dir);
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn get_secret_values_never_reach_the_audit_log() {
    let w = World::new();
    let p = project(&w, "unused-ns");
    let dir = p.path();
    for reveal in [false, true] {
        let (_, report) = act(
            dir,
            "get-secret",
            "e2e/ns",
            json!({"secret": "db", "reveal_values": reveal}),
        );
        // The record (what the audit log holds) never has the value; the caller gets it in
        // `output` only when the signed params asked for it.
        assert!(
            !report["record"]
                .to_string()
                .contains("e2e-secret-canary-77"),
            "{report}"
        );
        assert_eq!(report["output"]["keys"][0]["name"], "password", "{report}");
        if reveal {
            assert_eq!(
                report["output"]["secret_values"]["password"], "e2e-secret-canary-77",
                "{report}"
            );
        } else {
            assert!(
                !report.to_string().contains("e2e-secret-canary-77"),
                "{report}"
            );
        }
    }
    let r = run_in(dir, &["audit", "show", "--output", "json"]);
    assert!(
        !r.stdout.contains("e2e-secret-canary-77") && !r.stderr.contains("e2e-secret-canary-77")
    );
    verify(dir);
    // No file of the state folder holds the value (audit log, checkpoints, ticket store).
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(20).any(|w| w == b"e2e-secret-canary-77"),
                    "the secret value is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 5);
}
