//! The 20 actions against a real API server (`cargo xtask k8s-up`: kube-apiserver 1.20
//! and kube-controller-manager, no scheduler, no kubelet). Every test creates its own
//! uniquely named namespaces and nodes and removes them at the end.
//!
//! Run: `KUBECONFIG=/root/.cache/agentsafe/k8s/run/kubeconfig cargo test -p
//! agentsafe-executor-k8s -- --include-ignored`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agentsafe_core::{
    ActionContext, Cancel, CoreError, Credentials, ExecutionReport, Executor, PrecheckResult,
    Secret, Timestamp,
};
use agentsafe_executor_k8s::{K8sConfig, K8sExecutor, VALUES_KEY};
use agentsafe_testkit::conformance::{ConformanceCase, check as conformance};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const HINT: &str = "needs a Kubernetes API server: cargo xtask k8s-up";

fn kubeconfig() -> PathBuf {
    match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "KUBECONFIG is not set: this test {HINT}, then KUBECONFIG=/root/.cache/agentsafe/k8s/run/kubeconfig"
        ),
    }
}

/// The inventory cluster name the tests' tickets carry.
const CLUSTER: &str = "live";

/// The kubeconfig's current context (`agentsafe` for `cargo xtask k8s-up`, `kind-kind` on
/// Kind).
fn current_context() -> String {
    kube::config::Kubeconfig::read_from(kubeconfig())
        .unwrap()
        .current_context
        .expect("the kubeconfig names a current context")
}

/// An executor mapping the clusters `(inventory name, context)`.
fn executor_for(clusters: &[(&str, &str)]) -> K8sExecutor {
    K8sExecutor::new(K8sConfig {
        kubeconfig: Some(kubeconfig()),
        clusters: clusters
            .iter()
            .map(|(c, x)| ((*c).to_owned(), (*x).to_owned()))
            .collect(),
        request_timeout_seconds: 20,
        ..K8sConfig::default()
    })
    .unwrap()
}

/// An executor mapping [`CLUSTER`] to `context` (default: the current one).
fn executor(context: Option<&str>) -> K8sExecutor {
    let context = context.map_or_else(current_context, str::to_owned);
    executor_for(&[(CLUSTER, &context)])
}

async fn client() -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// A name unique across parallel tests and runs.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id() % 10_000,
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

fn none() -> Credentials {
    Credentials::none(Timestamp::now())
}

/// A context for `action` in [`CLUSTER`] (unless `params` name another cluster).
fn ctx(action: &str, params: Value) -> ActionContext {
    let mut params = params.as_object().cloned().unwrap();
    params
        .entry("cluster")
        .or_insert_with(|| Value::from(CLUSTER));
    ActionContext {
        action: action.into(),
        target: "t".into(),
        target_type: None,
        attributes: BTreeMap::new(),
        params,
        decision_id: "0".repeat(32),
        ticket_nonce: "0".repeat(32),
    }
}

fn deployment_target(mut c: ActionContext, ns: &str, name: &str) -> ActionContext {
    c.target = format!("{ns}-{name}");
    c.target_type = Some("k8s-deployment".into());
    c.attributes = BTreeMap::from([
        ("cluster".into(), CLUSTER.into()),
        ("namespace".into(), ns.into()),
        ("name".into(), name.into()),
    ]);
    c
}

async fn check(ex: &K8sExecutor, c: &ActionContext, name: &str) -> PrecheckResult {
    ex.precheck(c, name, &none()).await.unwrap()
}

fn assert_passed(r: &PrecheckResult) {
    assert!(r.passed(), "{r:?}");
}

fn assert_failed(r: &PrecheckResult, needle: &str) {
    match r {
        PrecheckResult::Failed(d) => assert!(d.contains(needle), "`{needle}` in {d}"),
        other => panic!("expected a failure mentioning `{needle}`, got {other:?}"),
    }
}

async fn run(ex: &K8sExecutor, c: &ActionContext) -> ExecutionReport {
    ex.execute(c, &none(), &Cancel::new()).await.unwrap()
}

/// A namespace for one test; pods are force-deleted and the namespace deleted on drop.
struct Ns {
    name: String,
    nodes: Vec<String>,
}

impl Ns {
    async fn new(prefix: &str) -> Ns {
        let name = unique(prefix);
        let api: Api<Namespace> = Api::all(client().await);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
        Ns {
            name,
            nodes: Vec::new(),
        }
    }

    async fn node(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        let api: Api<Node> = Api::all(client().await);
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"agentsafe-test": "true"}}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &node).await.unwrap();
        self.nodes.push(name.clone());
        name
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let name = self.name.clone();
        let nodes = std::mem::take(&mut self.nodes);
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let c = client().await;
                let pods: Api<Pod> = Api::namespaced(c.clone(), &name);
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
                    .delete(&name, &DeleteParams::default())
                    .await;
                for n in nodes {
                    let _ = Api::<Node>::all(c.clone())
                        .delete(&n, &DeleteParams::default())
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn create_deployment(ns: &str, name: &str, replicas: i32, containers: Value) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client().await, ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}
        }
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    if replicas == 0 {
        settle(ns, name).await;
    }
    created
}

/// Waits until the deployment controller is done with a new Deployment of 0 replicas
/// (revision annotated, status observed, `NewReplicaSetAvailable`), so later state
/// captures compare equal.
async fn settle(ns: &str, name: &str) {
    eventually("the deployment controller to settle", || async {
        let d = get_deployment(ns, name).await;
        let status = d.status.clone().unwrap_or_default();
        let done = status.observed_generation == d.metadata.generation
            && status.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
            && status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Available");
        done.then_some(())
    })
    .await;
}

async fn get_deployment(ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client().await, ns)
        .get(name)
        .await
        .unwrap()
}

/// Polls `f` until it returns Some, for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn revisions(ns: &str, name: &str) -> Vec<i64> {
    let d = get_deployment(ns, name).await;
    let uid = d.metadata.uid.unwrap();
    let list = Api::<ReplicaSet>::namespaced(client().await, ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut revs: Vec<i64> = list
        .items
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .filter_map(|rs| {
            rs.metadata
                .annotations
                .as_ref()?
                .get("deployment.kubernetes.io/revision")?
                .parse()
                .ok()
        })
        .collect();
    revs.sort_unstable();
    revs
}

fn app(image: &str) -> Value {
    json!([{"name": "app", "image": image}])
}

/// The inventory's `staging/api-server` and `prod/api-server` share namespace and name: a
/// ticket acts only in the cluster it names, through the context that cluster is mapped
/// to, and a ticket for a cluster that is not mapped changes nothing.
#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn a_mapped_cluster_acts_and_an_unmapped_one_is_refused() {
    let ns = Ns::new("where").await;
    let n = &ns.name;
    create_deployment(n, "api-server", 0, app("busybox:1.36")).await;
    let ex = executor_for(&[("staging-live", &current_context())]);
    let scale = |cluster: &str, replicas: i64| {
        let mut c = deployment_target(
            ctx(
                "scale-deployment",
                json!({"cluster": cluster, "namespace": n, "name": "api-server", "replicas": replicas}),
            ),
            n,
            "api-server",
        );
        c.attributes.insert("cluster".into(), cluster.into());
        c
    };
    let api: Api<Deployment> = Api::namespaced(client().await, n);
    let replicas = || async {
        api.get("api-server")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
            .unwrap()
    };

    let staging = scale("staging-live", 2);
    assert_passed(&check(&ex, &staging, "deployment_exists").await);
    assert!(ex.dry_run(&staging, &none()).await.unwrap().is_some());
    run(&ex, &staging).await;
    assert_eq!(replicas().await, 2);
    assert_eq!(
        ex.capture_state(&staging, &none()).await.unwrap()["spec"]["replicas"],
        2
    );

    let prod = scale("prod-live", 0);
    let errors = [
        ex.precheck(&prod, "deployment_exists", &none())
            .await
            .unwrap_err(),
        ex.capture_state(&prod, &none()).await.unwrap_err(),
        ex.dry_run(&prod, &none()).await.unwrap_err(),
        ex.execute(&prod, &none(), &Cancel::new())
            .await
            .unwrap_err(),
    ];
    for e in errors {
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string().contains("cluster `prod-live`")
                && e.to_string().contains("maps `staging-live`"),
            "{e:?}"
        );
    }
    assert_eq!(replicas().await, 2, "the refused ticket changed nothing");
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn scale_deployment_end_to_end() {
    let ns = Ns::new("scale").await;
    let n = &ns.name;
    create_deployment(n, "web", 0, app("busybox:1.36")).await;
    let ex = executor(None);
    let c = deployment_target(
        ctx(
            "scale-deployment",
            json!({"namespace": n, "name": "web", "replicas": 3}),
        ),
        n,
        "web",
    );

    let before = ex.capture_state(&c, &none()).await.unwrap();
    assert_eq!(before["apiVersion"], "apps/v1");
    assert_eq!(before["kind"], "Deployment");
    assert_eq!(before["spec"]["replicas"], 0);
    assert_passed(&check(&ex, &c, "deployment_exists").await);
    assert_passed(&check(&ex, &c, "replicas_within_hpa_bounds").await);
    assert_passed(&check(&ex, &c, "resource_quota_allows_replicas").await);
    assert_eq!(
        check(&ex, &c, "no_such_check").await,
        PrecheckResult::Unsupported
    );

    // An HPA targeting the Deployment bounds the count.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minReplicas": 2, "maxReplicas": 5, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    }))
    .unwrap();
    Api::<HorizontalPodAutoscaler>::namespaced(client().await, n)
        .create(&PostParams::default(), &hpa)
        .await
        .unwrap();
    assert_passed(&check(&ex, &c, "replicas_within_hpa_bounds").await);
    let six = deployment_target(
        ctx(
            "scale-deployment",
            json!({"namespace": n, "name": "web", "replicas": 6}),
        ),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &six, "replicas_within_hpa_bounds").await,
        "within 2..=5",
    );

    // A quota of two pods leaves no room for three.
    let quota: k8s_openapi::api::core::v1::ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}}))
            .unwrap();
    Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(client().await, n)
        .create(&PostParams::default(), &quota)
        .await
        .unwrap();
    assert_failed(
        &check(&ex, &c, "resource_quota_allows_replicas").await,
        "q: pods",
    );

    // Dry run: the server's answer, nothing changed.
    let dry = ex.dry_run(&c, &none()).await.unwrap().unwrap();
    assert_eq!(dry["spec"]["replicas"], 3);
    assert_eq!(
        get_deployment(n, "web").await.spec.unwrap().replicas,
        Some(0)
    );
    assert_eq!(
        ex.capture_state(&c, &none()).await.unwrap(),
        before,
        "dry run and prechecks change nothing"
    );

    let r = run(&ex, &c).await;
    assert!(
        r.summary
            .contains(&format!("scaled deployment {n}/web to 3")),
        "{}",
        r.summary
    );
    let after = ex.capture_state(&c, &none()).await.unwrap();
    assert_eq!(after["spec"]["replicas"], 3);

    // Missing objects.
    let gone = deployment_target(
        ctx(
            "scale-deployment",
            json!({"namespace": n, "name": "nope", "replicas": 1}),
        ),
        n,
        "nope",
    );
    match ex.capture_state(&gone, &none()).await {
        Err(CoreError::ExecutorNotFound(what)) => assert_eq!(what, format!("deployment {n}/nope")),
        other => panic!("{other:?}"),
    }
    assert_failed(&check(&ex, &gone, "deployment_exists").await, "not found");
    let e = ex
        .execute(&gone, &none(), &Cancel::new())
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::ExecutorNotFound(_)), "{e}");
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn scale_deployment_conforms() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = rt.block_on(async {
        let ns = Ns::new("conf-scale").await;
        create_deployment(&ns.name, "web", 0, app("busybox:1.36")).await;
        ns
    });
    drop(rt);
    let case = ConformanceCase::new("scale-deployment", "web")
        .params(json!({"cluster": CLUSTER, "namespace": ns.name, "name": "web", "replicas": 2}))
        .target(
            "k8s-deployment",
            &[
                ("cluster", CLUSTER),
                ("namespace", &ns.name),
                ("name", "web"),
            ],
        )
        .prechecks(&[
            "deployment_exists",
            "replicas_within_hpa_bounds",
            "resource_quota_allows_replicas",
        ]);
    assert_conforms(&case);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(get_deployment(&ns.name, "web"))
            .spec
            .unwrap()
            .replicas,
        Some(2)
    );
}

#[test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
fn update_configmap_conforms() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = rt.block_on(async {
        let ns = Ns::new("conf-cm").await;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"mode": "a"}}))
                .unwrap();
        Api::<ConfigMap>::namespaced(client().await, &ns.name)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        ns
    });
    drop(rt);
    let case = ConformanceCase::new("update-configmap", "ns")
        .params(json!({"cluster": CLUSTER, "namespace": ns.name, "configmap": "cfg", "key": "mode", "value": "b"}))
        .target(
            "k8s-namespace",
            &[("cluster", CLUSTER), ("namespace", &ns.name)],
        )
        .prechecks(&["configmap_exists", "configmap_not_immutable", "key_exists"]);
    assert_conforms(&case);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cm = rt.block_on(async {
        Api::<ConfigMap>::namespaced(client().await, &ns.name)
            .get("cfg")
            .await
            .unwrap()
    });
    assert_eq!(cm.data.unwrap()["mode"], "b");
}

/// The conformance suite of agentsafe-testkit, on a runtime with I/O (the runner's kind:
/// `assert_conformance` starts one with timers only, which a network client cannot use).
fn assert_conforms(case: &ConformanceCase) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ex = executor(None);
    let problems = rt.block_on(conformance(&ex, case));
    assert!(
        problems.is_empty(),
        "the k8s executor breaks the contract:\n- {}",
        problems.join("\n- ")
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn restart_deployment_sets_restarted_at() {
    let ns = Ns::new("restart").await;
    let n = &ns.name;
    create_deployment(n, "web", 0, app("busybox:1.36")).await;
    let ex = executor(None);
    let c = deployment_target(
        ctx("restart-deployment", json!({"namespace": n, "name": "web"})),
        n,
        "web",
    );
    assert_passed(&check(&ex, &c, "deployment_exists").await);
    assert_passed(&check(&ex, &c, "deployment_not_paused").await);
    eventually("the rollout to be observed", || async {
        check(&ex, &c, "rollout_not_in_progress")
            .await
            .passed()
            .then_some(())
    })
    .await;
    let dry = ex.dry_run(&c, &none()).await.unwrap().unwrap();
    assert!(
        dry["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let before = get_deployment(n, "web").await;
    assert!(
        before
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .is_none(),
        "dry run changed nothing"
    );

    let r = run(&ex, &c).await;
    let after = get_deployment(n, "web").await;
    let at = after
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()["kubectl.kubernetes.io/restartedAt"]
        .clone();
    assert_eq!(r.output["restartedAt"], at);
    assert!(
        at.parse::<Timestamp>().is_ok() && at.ends_with('Z') && !at.contains('.'),
        "RFC 3339, whole seconds: {at}"
    );
    assert_eq!(
        after.metadata.generation,
        Some(before.metadata.generation.unwrap() + 1)
    );

    // A paused Deployment is refused, by the precheck and by execute.
    Api::<Deployment>::namespaced(client().await, n)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    assert_failed(&check(&ex, &c, "deployment_not_paused").await, "is paused");
    let e = ex.execute(&c, &none(), &Cancel::new()).await.unwrap_err();
    assert!(e.to_string().contains("is paused"), "{e}");
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn rollout_status_waits_and_reports() {
    let ns = Ns::new("status").await;
    let n = &ns.name;
    create_deployment(n, "idle", 0, app("busybox:1.36")).await;
    create_deployment(n, "busy", 1, app("busybox:1.36")).await;
    let ex = executor(None);
    let idle = deployment_target(
        ctx(
            "rollout-status",
            json!({"namespace": n, "name": "idle", "timeout_seconds": 20}),
        ),
        n,
        "idle",
    );
    assert_passed(&check(&ex, &idle, "deployment_exists").await);
    assert_eq!(ex.dry_run(&idle, &none()).await.unwrap(), None, "read-only");
    let r = run(&ex, &idle).await;
    assert_eq!(r.output["done"], true, "{r:?}");
    assert!(
        r.output["message"]
            .as_str()
            .unwrap()
            .contains("successfully rolled out")
    );
    // No kubelet: the pod of `busy` never becomes available.
    let busy = deployment_target(
        ctx(
            "rollout-status",
            json!({"namespace": n, "name": "busy", "timeout_seconds": 2}),
        ),
        n,
        "busy",
    );
    let started = Instant::now();
    let e = ex
        .execute(&busy, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        e.contains(&format!(
            "rollout of deployment {n}/busy is not complete after 2 s"
        )),
        "{e}"
    );
    // Cancellation stops the wait.
    let long = deployment_target(
        ctx(
            "rollout-status",
            json!({"namespace": n, "name": "busy", "timeout_seconds": 600}),
        ),
        n,
        "busy",
    );
    let cancel = Cancel::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    assert_eq!(
        ex.execute(&long, &none(), &cancel).await.unwrap_err(),
        CoreError::ExecutorCancelled
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn update_image_and_rollout_undo_across_revisions() {
    let ns = Ns::new("undo").await;
    let n = &ns.name;
    create_deployment(
        n,
        "web",
        0,
        json!([{"name": "app", "image": "busybox:1.35"}, {"name": "side", "image": "nginx:1.25"}]),
    )
    .await;
    eventually("revision 1", || async {
        (revisions(n, "web").await == [1]).then_some(())
    })
    .await;
    let ex = executor(None);
    let undo = deployment_target(
        ctx("rollout-undo", json!({"namespace": n, "name": "web"})),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &undo, "revision_exists").await,
        "no rollout history",
    );

    let upd = deployment_target(
        ctx(
            "update-image",
            json!({"namespace": n, "name": "web", "container": "app", "image": "busybox:1.36"}),
        ),
        n,
        "web",
    );
    assert_passed(&check(&ex, &upd, "deployment_exists").await);
    assert_passed(&check(&ex, &upd, "container_exists").await);
    assert_eq!(
        check(&ex, &upd, "image_pullable").await,
        PrecheckResult::Unsupported
    );
    let absent = deployment_target(
        ctx(
            "update-image",
            json!({"namespace": n, "name": "web", "container": "nope", "image": "busybox:1.36"}),
        ),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &absent, "container_exists").await,
        "no container `nope` (containers: app, side)",
    );
    assert!(
        ex.execute(&absent, &none(), &Cancel::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("no container `nope`")
    );
    let dry = ex.dry_run(&upd, &none()).await.unwrap().unwrap();
    assert_eq!(
        dry["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    let before = ex.capture_state(&upd, &none()).await.unwrap();
    assert_eq!(
        before["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.35",
        "dry run changed nothing"
    );
    let r = run(&ex, &upd).await;
    assert_eq!(r.output["previous_image"], "busybox:1.35");
    let after = ex.capture_state(&upd, &none()).await.unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][1]["image"], "nginx:1.25",
        "the other container is untouched"
    );
    eventually("revision 2", || async {
        (revisions(n, "web").await == [1, 2]).then_some(())
    })
    .await;

    // Roll back: the previous revision by default; the current one and unknown ones are refused.
    assert_passed(&check(&ex, &undo, "deployment_exists").await);
    assert_passed(&check(&ex, &undo, "deployment_not_paused").await);
    assert_passed(&check(&ex, &undo, "revision_exists").await);
    let current = deployment_target(
        ctx(
            "rollout-undo",
            json!({"namespace": n, "name": "web", "to_revision": 2}),
        ),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &current, "revision_exists").await,
        "is the current template",
    );
    assert!(
        ex.execute(&current, &none(), &Cancel::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("is the current template")
    );
    let unknown = deployment_target(
        ctx(
            "rollout-undo",
            json!({"namespace": n, "name": "web", "to_revision": 9}),
        ),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &unknown, "revision_exists").await,
        "unable to find revision 9",
    );
    let dry = ex.dry_run(&undo, &none()).await.unwrap().unwrap();
    assert_eq!(
        dry["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.35"
    );
    assert_eq!(
        get_deployment(n, "web")
            .await
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some("busybox:1.36"),
        "dry run changed nothing"
    );
    let r = run(&ex, &undo).await;
    assert_eq!(r.output["to_revision"], 1);
    let d = get_deployment(n, "web").await;
    let t = d.spec.unwrap().template;
    assert_eq!(
        t.spec.unwrap().containers[0].image.as_deref(),
        Some("busybox:1.35")
    );
    assert!(
        !t.metadata
            .unwrap()
            .labels
            .unwrap()
            .contains_key("pod-template-hash")
    );
    // The controller moves revision 1's ReplicaSet to revision 3, as after kubectl rollout undo.
    eventually("revision 3", || async {
        (revisions(n, "web").await == [2, 3]).then_some(())
    })
    .await;
}

async fn bind(ns: &str, pod: &str, node: &str) {
    let c = client().await;
    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{pod}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    c.request_text(req).await.unwrap();
}

async fn bare_pod(ns: &str, name: &str, node: Option<&str>, extra: Value) -> Pod {
    let mut v = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}});
    if let Some(node) = node {
        v["spec"]["nodeName"] = json!(node);
    }
    merge_json(&mut v, extra);
    let p: Pod = serde_json::from_value(v).unwrap();
    Api::<Pod>::namespaced(client().await, ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap()
}

fn merge_json(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge_json(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

async fn node_unschedulable(node: &str) -> bool {
    Api::<Node>::all(client().await)
        .get(node)
        .await
        .unwrap()
        .spec
        .unwrap()
        .unschedulable
        .unwrap_or(false)
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn cordon_and_uncordon() {
    let mut ns = Ns::new("cordon").await;
    let node = ns.node("n").await;
    let other = ns.node("other").await;
    let ex = executor(None);
    let cordon = ctx("cordon-node", json!({"node": node}));
    let uncordon = ctx("uncordon-node", json!({"node": node}));
    let before = ex.capture_state(&cordon, &none()).await.unwrap();
    assert_eq!(before["kind"], "Node");
    assert!(before["spec"].get("unschedulable").is_none());
    assert_passed(&check(&ex, &cordon, "node_exists").await);
    assert_passed(&check(&ex, &cordon, "node_not_cordoned").await);
    assert_passed(&check(&ex, &cordon, "schedulable_capacity_remains").await);
    assert_failed(
        &check(&ex, &uncordon, "node_is_cordoned").await,
        "is not cordoned",
    );
    let dry = ex.dry_run(&cordon, &none()).await.unwrap().unwrap();
    assert_eq!(dry["spec"]["unschedulable"], true);
    assert!(!node_unschedulable(&node).await, "dry run changed nothing");
    run(&ex, &cordon).await;
    assert!(node_unschedulable(&node).await);
    assert_eq!(
        ex.capture_state(&cordon, &none()).await.unwrap()["spec"]["unschedulable"],
        true
    );
    assert_failed(
        &check(&ex, &cordon, "node_not_cordoned").await,
        "already cordoned",
    );
    assert_passed(&check(&ex, &uncordon, "node_is_cordoned").await);
    assert_failed(
        &check(&ex, &uncordon, "node_ready").await,
        "no Ready condition",
    );
    assert!(
        ex.dry_run(&uncordon, &none()).await.unwrap().unwrap()["spec"]
            .get("unschedulable")
            .is_none()
    );
    assert!(node_unschedulable(&node).await, "dry run changed nothing");
    run(&ex, &uncordon).await;
    assert!(!node_unschedulable(&node).await);
    // With the other node cordoned too, no schedulable capacity would remain... unless
    // other nodes of other tests exist: only check the message names a count.
    let _ = other;
    let missing = ctx("cordon-node", json!({"node": unique("absent")}));
    assert_failed(&check(&ex, &missing, "node_exists").await, "not found");
    assert!(matches!(
        ex.capture_state(&missing, &none()).await,
        Err(CoreError::ExecutorNotFound(_))
    ));
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn drain_node_evicts_managed_pods_only() {
    let mut ns = Ns::new("drain").await;
    let n = ns.name.clone();
    let node = ns.node("drain").await;
    create_deployment(&n, "web", 1, app("busybox:1.36")).await;
    let pod = eventually("the deployment's pod", || async {
        let pods = Api::<Pod>::namespaced(client().await, &n)
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        pods.items.first().and_then(|p| p.metadata.name.clone())
    })
    .await;
    bind(&n, &pod, &node).await;
    // A DaemonSet pod on the node (the DaemonSet controller does not run here).
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"nodeSelector": {"none": "none"}, "containers": [{"name": "a", "image": "busybox:1.36"}]}}}
    }))
    .unwrap();
    let ds = Api::<DaemonSet>::namespaced(client().await, &n)
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    bare_pod(&n, "agent-x", Some(&node), json!({"metadata": {"labels": {"app": "agent"}, "ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": ds.metadata.uid.unwrap(), "controller": true}]}}))
    .await;
    // An unmanaged pod blocks the drain before anything changes.
    bare_pod(&n, "loner", Some(&node), json!({})).await;
    let ex = executor(None);
    let drain = ctx(
        "drain-node",
        json!({"node": node, "grace_period_seconds": 0, "timeout_seconds": 30}),
    );
    assert_passed(&check(&ex, &drain, "node_exists").await);
    assert_passed(&check(&ex, &drain, "node_not_cordoned").await);
    assert_failed(
        &check(&ex, &drain, "no_unmanaged_pods").await,
        &format!("{n}/loner: declares no controller"),
    );
    assert!(
        ex.dry_run(&drain, &none())
            .await
            .unwrap_err()
            .to_string()
            .contains("loner")
    );
    let e = ex
        .execute(&drain, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused, nothing changed") && e.contains("loner"),
        "{e}"
    );
    assert!(
        !node_unschedulable(&node).await,
        "a refused drain does not cordon"
    );
    Api::<Pod>::namespaced(client().await, &n)
        .delete(
            "loner",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    eventually("the loner to go", || async {
        Api::<Pod>::namespaced(client().await, &n)
            .get_opt("loner")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    assert_passed(&check(&ex, &drain, "no_unmanaged_pods").await);
    assert_passed(&check(&ex, &drain, "disruption_budgets_allow_eviction").await);
    // The test nodes report no allocatable resources: no room elsewhere.
    assert!(
        !check(&ex, &drain, "cluster_capacity_for_evicted_pods")
            .await
            .passed()
    );
    let dry = ex.dry_run(&drain, &none()).await.unwrap().unwrap();
    assert_eq!(dry["evict"], json!([format!("{n}/{pod}")]));
    assert!(!node_unschedulable(&node).await, "dry run changed nothing");
    assert!(
        Api::<Pod>::namespaced(client().await, &n)
            .get_opt(&pod)
            .await
            .unwrap()
            .is_some()
    );

    let r = run(&ex, &drain).await;
    assert_eq!(r.output["evicted"], json!([format!("{n}/{pod}")]), "{r:?}");
    assert_eq!(
        r.output["eviction_api"], "policy/v1beta1",
        "a 1.20 server serves only v1beta1"
    );
    assert!(
        r.output["skipped"][0]
            .as_str()
            .unwrap()
            .contains("DaemonSet-managed")
    );
    assert!(node_unschedulable(&node).await);
    assert!(
        Api::<Pod>::namespaced(client().await, &n)
            .get_opt(&pod)
            .await
            .unwrap()
            .is_none(),
        "evicted and gone"
    );
    assert!(
        Api::<Pod>::namespaced(client().await, &n)
            .get_opt("agent-x")
            .await
            .unwrap()
            .is_some(),
        "DaemonSet pod stays"
    );
    assert_eq!(
        ex.capture_state(&drain, &none()).await.unwrap()["spec"]["unschedulable"],
        true
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn drain_node_retries_a_blocking_budget_until_the_timeout() {
    let mut ns = Ns::new("pdb").await;
    let n = ns.name.clone();
    let node = ns.node("pdb").await;
    create_deployment(&n, "web", 1, app("busybox:1.36")).await;
    let pod = eventually("the deployment's pod", || async {
        let pods = Api::<Pod>::namespaced(client().await, &n)
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        pods.items.first().and_then(|p| p.metadata.name.clone())
    })
    .await;
    bind(&n, &pod, &node).await;
    // A Pending pod may be evicted whatever its budgets say: make it Running.
    Api::<Pod>::namespaced(client().await, &n)
        .patch_status(
            &pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    // No disruption controller runs here, so the budget never allows a disruption.
    let body = json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    let req = http::Request::post(format!(
        "/apis/policy/v1beta1/namespaces/{n}/poddisruptionbudgets"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    client().await.request_text(req).await.unwrap();
    let ex = executor(None);
    let drain = ctx(
        "drain-node",
        json!({"node": node, "grace_period_seconds": 0, "timeout_seconds": 3}),
    );
    assert_failed(
        &check(&ex, &drain, "disruption_budgets_allow_eviction").await,
        &format!("{n}/keep allows 0"),
    );
    let started = Instant::now();
    let e = ex
        .execute(&drain, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() >= Duration::from_secs(3) && started.elapsed() < Duration::from_secs(20)
    );
    assert!(
        e.contains("still blocked by a disruption budget after 3 s") && e.contains("(429)"),
        "{e}"
    );
    assert!(
        Api::<Pod>::namespaced(client().await, &n)
            .get_opt(&pod)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn create_and_delete_namespace() {
    let ex = executor(None);
    let name = unique("made");
    let create = ctx("create-namespace", json!({"namespace": name}));
    assert_passed(&check(&ex, &create, "namespace_does_not_exist").await);
    assert_passed(&check(&ex, &create, "namespace_not_system").await);
    assert!(
        matches!(ex.capture_state(&create, &none()).await, Err(CoreError::ExecutorNotFound(w)) if w == format!("namespace {name}"))
    );
    let dry = ex.dry_run(&create, &none()).await.unwrap().unwrap();
    assert_eq!(dry["metadata"]["name"], json!(name));
    assert!(
        matches!(
            ex.capture_state(&create, &none()).await,
            Err(CoreError::ExecutorNotFound(_))
        ),
        "dry run created nothing"
    );
    run(&ex, &create).await;
    let after = ex.capture_state(&create, &none()).await.unwrap();
    assert_eq!(after["status"]["phase"], "Active");
    assert_failed(
        &check(&ex, &create, "namespace_does_not_exist").await,
        "exists already",
    );

    let delete = ctx("delete-namespace", json!({"namespace": name}));
    assert_passed(&check(&ex, &delete, "namespace_exists").await);
    assert_passed(&check(&ex, &delete, "namespace_not_system").await);
    assert_passed(&check(&ex, &delete, "no_retained_volumes").await);
    let dry = ex.dry_run(&delete, &none()).await.unwrap().unwrap();
    assert_eq!(dry["metadata"]["name"], json!(name));
    assert_eq!(
        ex.capture_state(&delete, &none()).await.unwrap()["status"]["phase"],
        "Active",
        "dry run deleted nothing"
    );
    run(&ex, &delete).await;
    match ex.capture_state(&delete, &none()).await {
        Ok(v) => assert_eq!(v["status"]["phase"], "Terminating"),
        Err(e) => assert!(matches!(e, CoreError::ExecutorNotFound(_)), "{e}"),
    }

    // System namespaces: refused by the prechecks and by execute and dry run, nothing sent.
    for sys in ["kube-system", "kube-public", "kube-node-lease", "default"] {
        for action in ["create-namespace", "delete-namespace"] {
            let c = ctx(action, json!({"namespace": sys}));
            assert_failed(
                &check(&ex, &c, "namespace_not_system").await,
                "system namespace",
            );
            let e = ex
                .execute(&c, &none(), &Cancel::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{sys}` is a system namespace")), "{e}");
            assert!(ex.dry_run(&c, &none()).await.is_err());
        }
    }
    assert!(
        Api::<Namespace>::all(client().await)
            .get("kube-public")
            .await
            .is_ok()
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn delete_pod_honours_the_grace_period() {
    let mut ns = Ns::new("delpod").await;
    let n = ns.name.clone();
    let node = ns.node("dp").await;
    create_deployment(&n, "web", 1, app("busybox:1.36")).await;
    let owned = eventually("the deployment's pod", || async {
        let pods = Api::<Pod>::namespaced(client().await, &n)
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        pods.items.first().and_then(|p| p.metadata.name.clone())
    })
    .await;
    bare_pod(&n, "loner", Some(&node), json!({})).await;
    let ex = executor(None);
    let c = deployment_target(
        ctx(
            "delete-pod",
            json!({"namespace": n, "pod": "loner", "grace_period_seconds": 45}),
        ),
        &n,
        "web",
    );
    assert_passed(&check(&ex, &c, "pod_exists").await);
    assert_failed(
        &check(&ex, &c, "pod_belongs_to_target").await,
        "has no controller",
    );
    assert_failed(
        &check(&ex, &c, "pod_has_controller").await,
        "nothing recreates it",
    );
    let mine = deployment_target(
        ctx("delete-pod", json!({"namespace": n, "pod": owned})),
        &n,
        "web",
    );
    assert_passed(&check(&ex, &mine, "pod_belongs_to_target").await);
    assert_passed(&check(&ex, &mine, "pod_has_controller").await);
    let other = deployment_target(
        ctx("delete-pod", json!({"namespace": n, "pod": owned})),
        &n,
        "api",
    );
    assert_failed(
        &check(&ex, &other, "pod_belongs_to_target").await,
        "not found",
    );

    let before = ex.capture_state(&c, &none()).await.unwrap();
    assert_eq!(before["spec"]["nodeName"], json!(node));
    ex.dry_run(&c, &none()).await.unwrap().unwrap();
    assert!(
        Api::<Pod>::namespaced(client().await, &n)
            .get("loner")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    run(&ex, &c).await;
    // No kubelet confirms the deletion: the pod waits out its grace period, as asked.
    let p = Api::<Pod>::namespaced(client().await, &n)
        .get("loner")
        .await
        .unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(45));
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn configmaps_read_and_update() {
    let ns = Ns::new("cm").await;
    let n = &ns.name;
    let api = Api::<ConfigMap>::namespaced(client().await, n);
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "cfg"}, "data": {"mode": "blue", "level": "3"}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let frozen: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "frozen"}, "data": {"mode": "x"}, "immutable": true}),
    )
    .unwrap();
    api.create(&PostParams::default(), &frozen).await.unwrap();
    let ex = executor(None);

    let get = ctx(
        "get-configmap",
        json!({"namespace": n, "configmap": "cfg", "key": "mode"}),
    );
    assert_passed(&check(&ex, &get, "configmap_exists").await);
    assert_passed(&check(&ex, &get, "key_exists").await);
    assert_eq!(ex.dry_run(&get, &none()).await.unwrap(), None);
    assert_eq!(
        run(&ex, &get).await.output,
        json!({"key": "mode", "value": "blue"})
    );
    let all = ctx("get-configmap", json!({"namespace": n, "configmap": "cfg"}));
    assert_eq!(
        run(&ex, &all).await.output["data"],
        json!({"mode": "blue", "level": "3"})
    );
    let nokey = ctx(
        "get-configmap",
        json!({"namespace": n, "configmap": "cfg", "key": "nope"}),
    );
    assert_failed(&check(&ex, &nokey, "key_exists").await, "has no key `nope`");

    let upd = ctx(
        "update-configmap",
        json!({"namespace": n, "configmap": "cfg", "key": "mode", "value": "green"}),
    );
    assert_passed(&check(&ex, &upd, "configmap_not_immutable").await);
    assert_passed(&check(&ex, &upd, "key_exists").await);
    let dry = ex.dry_run(&upd, &none()).await.unwrap().unwrap();
    assert_eq!(dry["data"]["mode"], "green");
    assert_eq!(
        api.get("cfg").await.unwrap().data.unwrap()["mode"],
        "blue",
        "dry run changed nothing"
    );
    let r = run(&ex, &upd).await;
    assert_eq!(r.output["previous_value"], "blue");
    let after = ex.capture_state(&upd, &none()).await.unwrap();
    assert_eq!(
        after["data"],
        json!({"mode": "green", "level": "3"}),
        "only the key changed"
    );

    let frozen = ctx(
        "update-configmap",
        json!({"namespace": n, "configmap": "frozen", "key": "mode", "value": "y"}),
    );
    assert_failed(
        &check(&ex, &frozen, "configmap_not_immutable").await,
        "is immutable",
    );
    assert!(
        ex.execute(&frozen, &none(), &Cancel::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("immutable")
    );
    let missing = ctx(
        "update-configmap",
        json!({"namespace": n, "configmap": "absent", "key": "mode", "value": "y"}),
    );
    assert_failed(
        &check(&ex, &missing, "configmap_exists").await,
        &format!("configmap {n}/absent not found"),
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn secrets_show_values_only_when_asked_and_never_in_state() {
    let ns = Ns::new("sec").await;
    let n = &ns.name;
    let api = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client().await, n);
    let s: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"password": "pa55-live-canary", "user": "app"}})).unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
    let sa: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "sa-token", "annotations": {"kubernetes.io/service-account.name": "default"}},
        "type": "kubernetes.io/service-account-token"}))
    .unwrap();
    api.create(&PostParams::default(), &sa).await.unwrap();
    let ex = executor(None);

    let names = ctx("get-secret", json!({"namespace": n, "secret": "db"}));
    assert_passed(&check(&ex, &names, "secret_exists").await);
    assert_passed(&check(&ex, &names, "key_exists").await);
    assert_passed(&check(&ex, &names, "secret_not_service_account_token").await);
    let state = ex.capture_state(&names, &none()).await.unwrap();
    assert!(
        state.get("data").is_none() && state.get("stringData").is_none(),
        "{state}"
    );
    assert!(!state.to_string().contains("pa55-live-canary"));
    assert_eq!(state["type"], "Opaque");
    let r = run(&ex, &names).await;
    assert!(!format!("{r:?}").contains("pa55-live-canary"), "{r:?}");
    assert_eq!(
        r.output["keys"],
        json!([{"name": "password", "size": 16}, {"name": "user", "size": 3}])
    );

    let reveal = ctx(
        "get-secret",
        json!({"namespace": n, "secret": "db", "key": "password", "reveal_values": true}),
    );
    let r = run(&ex, &reveal).await;
    assert_eq!(
        r.output[VALUES_KEY],
        json!({"password": "pa55-live-canary"})
    );
    assert!(!r.summary.contains("pa55-live-canary"));
    let bad = ctx(
        "get-secret",
        json!({"namespace": n, "secret": "db", "key": "nope"}),
    );
    assert_failed(&check(&ex, &bad, "key_exists").await, "has no key `nope`");
    let tok = ctx("get-secret", json!({"namespace": n, "secret": "sa-token"}));
    assert_failed(
        &check(&ex, &tok, "secret_not_service_account_token").await,
        "service-account token",
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn hpa_min_and_limits() {
    let ns = Ns::new("hpa").await;
    let n = &ns.name;
    create_deployment(n, "web", 0, app("busybox:1.36")).await;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minReplicas": 2, "maxReplicas": 5, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    }))
    .unwrap();
    let api = Api::<HorizontalPodAutoscaler>::namespaced(client().await, n);
    api.create(&PostParams::default(), &hpa).await.unwrap();
    let ex = executor(None);

    let scale = deployment_target(
        ctx(
            "scale-hpa",
            json!({"namespace": n, "name": "web", "min_replicas": 4}),
        ),
        n,
        "web",
    );
    assert_passed(&check(&ex, &scale, "hpa_exists").await);
    assert_passed(&check(&ex, &scale, "min_replicas_not_above_max").await);
    assert_passed(&check(&ex, &scale, "scale_target_is_deployment").await);
    let high = deployment_target(
        ctx(
            "scale-hpa",
            json!({"namespace": n, "name": "web", "min_replicas": 6}),
        ),
        n,
        "web",
    );
    assert_failed(
        &check(&ex, &high, "min_replicas_not_above_max").await,
        "exceeds maxReplicas 5",
    );
    let e = ex.dry_run(&high, &none()).await.unwrap_err().to_string();
    assert!(
        e.contains("invalid (422)"),
        "the server refuses min > max: {e}"
    );
    let before = ex.capture_state(&scale, &none()).await.unwrap();
    assert_eq!(before["spec"]["minReplicas"], 2);
    assert_eq!(
        ex.dry_run(&scale, &none()).await.unwrap().unwrap()["spec"]["minReplicas"],
        4
    );
    assert_eq!(
        ex.capture_state(&scale, &none()).await.unwrap(),
        before,
        "dry run changed nothing"
    );
    run(&ex, &scale).await;
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().min_replicas,
        Some(4)
    );

    let limits = deployment_target(
        ctx(
            "update-hpa-limits",
            json!({"namespace": n, "name": "web", "min_replicas": 1, "max_replicas": 8}),
        ),
        n,
        "web",
    );
    assert_passed(&check(&ex, &limits, "min_not_above_max").await);
    assert_passed(&check(&ex, &limits, "scale_target_is_deployment").await);
    // No metrics pipeline: status.currentReplicas is 0, outside 1..=8.
    assert_failed(
        &check(&ex, &limits, "current_replicas_within_new_limits").await,
        "outside 1..=8",
    );
    let inverted = ctx(
        "update-hpa-limits",
        json!({"namespace": n, "name": "web", "min_replicas": 9, "max_replicas": 8}),
    );
    assert_failed(
        &check(&ex, &inverted, "min_not_above_max").await,
        "exceeds max_replicas 8",
    );
    assert!(
        ex.execute(&inverted, &none(), &Cancel::new())
            .await
            .is_err()
    );
    ex.dry_run(&limits, &none()).await.unwrap().unwrap();
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().max_replicas,
        5,
        "dry run changed nothing"
    );
    run(&ex, &limits).await;
    let after = ex.capture_state(&limits, &none()).await.unwrap();
    assert_eq!(
        (
            after["spec"]["minReplicas"].clone(),
            after["spec"]["maxReplicas"].clone()
        ),
        (json!(1), json!(8))
    );

    // An HPA of another Deployment is not the target's.
    let wrong = deployment_target(
        ctx(
            "scale-hpa",
            json!({"namespace": n, "name": "web", "min_replicas": 2}),
        ),
        n,
        "web",
    );
    let mut wrong = wrong;
    wrong.attributes.insert("name".into(), "web".into());
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"scaleTargetRef": {"name": "api"}}})),
    )
    .await
    .unwrap();
    assert_failed(
        &check(&ex, &wrong, "scale_target_is_deployment").await,
        "not the target deployment `web`",
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn network_policy_create_then_replace() {
    let ns = Ns::new("np").await;
    let n = &ns.name;
    let ex = executor(None);
    let params = json!({"namespace": n, "name": "web-in", "pod_selector": {"app": "web"}, "policy_types": ["Ingress"],
        "allow_from_namespaces": ["monitoring"], "allow_from_pod_labels": {"role": "frontend"}, "ports": [8080]});
    let c = ctx("apply-network-policy", params);
    assert_passed(&check(&ex, &c, "namespace_exists").await);
    assert_passed(&check(&ex, &c, "labels_valid").await);
    assert_passed(&check(&ex, &c, "namespace_not_system").await);
    assert_passed(&check(&ex, &c, "existing_policy_replaced").await);
    assert!(matches!(
        ex.capture_state(&c, &none()).await,
        Err(CoreError::ExecutorNotFound(_))
    ));
    let dry = ex.dry_run(&c, &none()).await.unwrap().unwrap();
    assert_eq!(
        dry["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": 8080}])
    );
    assert!(
        matches!(
            ex.capture_state(&c, &none()).await,
            Err(CoreError::ExecutorNotFound(_))
        ),
        "dry run created nothing"
    );
    let r = run(&ex, &c).await;
    assert_eq!(r.output["created"], true);
    let np = Api::<NetworkPolicy>::namespaced(client().await, n)
        .get("web-in")
        .await
        .unwrap();
    let spec = serde_json::to_value(np.spec.unwrap()).unwrap();
    assert_eq!(spec["podSelector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(
        spec["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        spec["ingress"][0]["from"][1]["podSelector"]["matchLabels"]["role"],
        "frontend"
    );

    // Again with other params: replaced.
    let deny = ctx(
        "apply-network-policy",
        json!({"namespace": n, "name": "web-in", "pod_selector": {}, "policy_types": ["Ingress", "Egress"]}),
    );
    assert_failed(
        &check(&ex, &deny, "existing_policy_replaced").await,
        "will be replaced",
    );
    let r = run(&ex, &deny).await;
    assert_eq!(r.output["created"], false);
    let state = ex.capture_state(&deny, &none()).await.unwrap();
    assert_eq!(state["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(
        state["spec"].get("ingress").is_none_or(|i| i == &json!([])),
        "{state}"
    );

    let bad = ctx(
        "apply-network-policy",
        json!({"namespace": n, "name": "x", "pod_selector": {"bad key!": "v"}, "policy_types": ["Ingress"]}),
    );
    assert_failed(
        &check(&ex, &bad, "labels_valid").await,
        "not a valid label key",
    );
    let sys = ctx(
        "apply-network-policy",
        json!({"namespace": "kube-system", "name": "x", "pod_selector": {}, "policy_types": ["Ingress"]}),
    );
    assert_failed(
        &check(&ex, &sys, "namespace_not_system").await,
        "system namespace",
    );
    assert!(
        ex.execute(&sys, &none(), &Cancel::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("system namespace")
    );
    assert!(
        Api::<NetworkPolicy>::namespaced(client().await, "kube-system")
            .get_opt("x")
            .await
            .unwrap()
            .is_none()
    );
}

/// The token of a kubeconfig user, read from the file.
fn token_of(user: &str) -> String {
    let text = std::fs::read_to_string(kubeconfig()).unwrap();
    let mut in_user = false;
    for line in text.lines() {
        if line.trim_start().starts_with("- name:") {
            in_user = line.trim_end().ends_with(user);
        } else if in_user && line.trim_start().starts_with("token:") {
            return line.trim_start()["token:".len()..].trim().to_owned();
        }
    }
    panic!("no token for `{user}` in the kubeconfig");
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn forbidden_maps_to_a_clear_error() {
    let ns = Ns::new("rbac").await;
    let n = &ns.name;
    create_deployment(n, "web", 0, app("busybox:1.36")).await;
    let c = deployment_target(
        ctx(
            "scale-deployment",
            json!({"namespace": n, "name": "web", "replicas": 2}),
        ),
        n,
        "web",
    );
    let limited = executor(Some("agentsafe-limited"));
    for e in [
        limited.capture_state(&c, &none()).await.unwrap_err(),
        limited
            .execute(&c, &none(), &Cancel::new())
            .await
            .unwrap_err(),
        limited.dry_run(&c, &none()).await.unwrap_err(),
        limited
            .precheck(&c, "deployment_exists", &none())
            .await
            .unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(
            text.contains(&format!("deployment {n}/web: forbidden (403)")),
            "{text}"
        );
    }
    // The limited user's token handed as the run's credential overrides the admin kubeconfig.
    let admin = executor(None);
    let creds = |token: String| Credentials {
        kind: "kubernetes".into(),
        scope: BTreeMap::new(),
        expires_at: Timestamp::now(),
        lease_id: "l".into(),
        secret: Secret::new(token),
    };
    let limited_token = token_of("agentsafe-limited");
    let e = admin
        .capture_state(&c, &creds(limited_token.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("forbidden (403)") && !e.contains(&limited_token),
        "{e}"
    );
    assert!(
        admin
            .capture_state(&c, &creds(token_of("agentsafe-admin")))
            .await
            .is_ok()
    );
    let e = admin
        .capture_state(&c, &creds("not-a-token".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unauthorized") && e.contains("(401)") && !e.contains("not-a-token"),
        "{e}"
    );
    assert_eq!(
        get_deployment(n, "web").await.spec.unwrap().replicas,
        Some(0)
    );
}

#[tokio::test]
#[ignore = "needs a Kubernetes API server: cargo xtask k8s-up"]
async fn logs_exec_port_forward_fail_clearly_without_a_kubelet() {
    let mut ns = Ns::new("stream").await;
    let n = ns.name.clone();
    let node = ns.node("kl").await;
    bare_pod(&n, "pending", None, json!({"spec": {"containers": [{"name": "app", "image": "busybox:1.36", "ports": [{"containerPort": 8080}]}]}})).await;
    bare_pod(&n, "bound", Some(&node), json!({})).await;
    // Pretend the bound pod runs (no kubelet will contradict it); its node's kubelet port is closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nodes = Api::<Node>::all(client().await);
    nodes
        .patch_status(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": closed}}}})),
        )
        .await
        .unwrap();
    Api::<Pod>::namespaced(client().await, &n)
        .patch_status("bound", &PatchParams::default(), &Patch::Merge(json!({"status": {
            "phase": "Running", "podIP": "10.0.0.9",
            "containerStatuses": [{"name": "app", "image": "busybox:1.36", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}})))
        .await
        .unwrap();
    let ex = executor(None);

    // Prechecks and state.
    let logs = ctx(
        "get-pod-logs",
        json!({"namespace": n, "pod": "pending", "tail_lines": 10}),
    );
    assert_passed(&check(&ex, &logs, "pod_exists").await);
    assert_passed(&check(&ex, &logs, "pod_belongs_to_target").await);
    assert_eq!(
        ex.capture_state(&logs, &none()).await.unwrap()["status"]["phase"],
        "Pending"
    );
    assert_eq!(ex.dry_run(&logs, &none()).await.unwrap(), None);
    let exec_pending = ctx(
        "exec-pod",
        json!({"namespace": n, "pod": "pending", "command": ["ls", "/"], "timeout_seconds": 10}),
    );
    assert_failed(
        &check(&ex, &exec_pending, "pod_running").await,
        "is Pending, not Running",
    );
    assert_failed(
        &check(&ex, &exec_pending, "container_exists").await,
        "is not running",
    );
    let exec_bound = ctx(
        "exec-pod",
        json!({"namespace": n, "pod": "bound", "container": "app", "command": ["ls", "/"], "timeout_seconds": 10}),
    );
    assert_passed(&check(&ex, &exec_bound, "pod_running").await);
    assert_passed(&check(&ex, &exec_bound, "container_exists").await);
    let pf_pending = ctx(
        "port-forward",
        json!({"namespace": n, "pod": "pending", "remote_port": 8080, "duration_seconds": 1}),
    );
    assert_passed(&check(&ex, &pf_pending, "port_declared_by_container").await);
    assert_failed(&check(&ex, &pf_pending, "pod_running").await, "not Running");
    assert_eq!(ex.dry_run(&exec_bound, &none()).await.unwrap(), None);

    // Every error is clear and quick: never a hang, never a panic.
    let started = Instant::now();
    // A 1.20 server answers the logs of a pod with no node with an empty body.
    let r = ex.execute(&logs, &none(), &Cancel::new()).await.unwrap();
    assert_eq!(
        (r.output["lines"].clone(), r.output["log"].clone()),
        (json!(0), json!(""))
    );
    let e = ex
        .execute(&exec_pending, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("exec in pod {n}/pending")), "{e}");
    let e = ex
        .execute(&exec_bound, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("pod {n}/bound")), "{e}");
    let logs_bound = ctx("get-pod-logs", json!({"namespace": n, "pod": "bound"}));
    let e = ex
        .execute(&logs_bound, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("read the logs of pod {n}/bound")),
        "{e}"
    );
    let e = ex
        .execute(&pf_pending, &none(), &Cancel::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is Pending, not Running"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // Port-forward to the "running" pod: the listener is on 127.0.0.1; a connection through
    // it fails at the kubelet, and the run reports that.
    let local = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pf = ctx(
        "port-forward",
        json!({"namespace": n, "pod": "bound", "remote_port": 8080, "local_port": local, "duration_seconds": 3}),
    );
    let ex2 = executor(None);
    let run = tokio::spawn(async move { ex2.execute(&pf, &none(), &Cancel::new()).await });
    let mut conn = eventually("the local listener", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .ok()
    })
    .await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
    let e = run.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "forwarding 127.0.0.1:{local} to port 8080 of pod {n}/bound failed"
        )),
        "{e}"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .is_err(),
        "the listener is closed after the run"
    );
}
