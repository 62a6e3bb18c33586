//! The requests the executor builds, observed on a fake API server (a local HTTP listener
//! that records each request line and answers 403): right namespace, pod, container and
//! argv for logs, exec and port-forward; nothing sent for params that try to inject or for
//! a ticket whose cluster is not mapped; each cluster's requests reach its own server; and
//! clear errors for an unreachable server. No Kubernetes needed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentsafe_core::{ActionContext, Cancel, CoreError, Credentials, Executor, Secret, Timestamp};
use agentsafe_executor_k8s::{K8sConfig, K8sExecutor};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake API server: records `METHOD PATH?QUERY` and the Authorization header of every
/// request, answers 403 with a Kubernetes Status.
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn fake() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let auth = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l["authorization:".len()..].trim().to_owned())
                    .unwrap_or_default();
                log.lock().unwrap().push((line, auth));
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "fake server says no", "reason": "Forbidden", "code": 403})
                .to_string();
                let resp = format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Fake { port, seen }
}

/// A kubeconfig in `dir` with one context per `(name, server)`, each with its own cluster
/// entry and the user `u` (token `kubeconfig-token`).
fn kubeconfig(dir: &tempfile::TempDir, contexts: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    let clusters: Vec<String> = contexts
        .iter()
        .map(|(name, server)| format!("{{name: {name}, cluster: {{server: \"{server}\"}}}}"))
        .collect();
    let named: Vec<String> = contexts
        .iter()
        .map(|(name, _)| format!("{{name: {name}, context: {{cluster: {name}, user: u}}}}"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{}]
users: [{{name: u, user: {{token: kubeconfig-token}}}}]
contexts: [{}]
current-context: {}
",
            clusters.join(", "),
            named.join(", "),
            contexts[0].0
        ),
    )
    .unwrap();
    path
}

/// An executor mapping `clusters` (inventory cluster → context) of the kubeconfig `path`.
fn mapped(path: std::path::PathBuf, clusters: &[(&str, &str)]) -> K8sExecutor {
    K8sExecutor::new(K8sConfig {
        kubeconfig: Some(path),
        clusters: clusters
            .iter()
            .map(|(c, x)| ((*c).to_owned(), (*x).to_owned()))
            .collect(),
        request_timeout_seconds: 5,
        ..K8sConfig::default()
    })
    .unwrap()
}

/// An executor whose one cluster, `fake`, is the context `fake` at `server`.
fn executor(server: &str, dir: &tempfile::TempDir) -> K8sExecutor {
    mapped(kubeconfig(dir, &[("fake", server)]), &[("fake", "fake")])
}

/// A context for `action` in cluster `fake` (unless `params` name another one).
fn ctx(action: &str, params: Value) -> ActionContext {
    let mut params = params.as_object().cloned().unwrap();
    params
        .entry("cluster")
        .or_insert_with(|| Value::from("fake"));
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

fn none() -> Credentials {
    Credentials::none(Timestamp::now())
}

fn lines(f: &Fake) -> Vec<String> {
    f.seen
        .lock()
        .unwrap()
        .iter()
        .map(|(l, _)| l.clone())
        .collect()
}

#[tokio::test]
async fn logs_exec_and_port_forward_requests_name_the_right_objects() {
    let f = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(&format!("http://127.0.0.1:{}", f.port), &dir);

    let logs = ctx(
        "get-pod-logs",
        json!({"namespace": "team-a", "pod": "web-1", "container": "app", "tail_lines": 50, "since_seconds": 60, "previous": true}),
    );
    let e = ex
        .execute(&logs, &none(), &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("pod team-a/web-1") && e.to_string().contains("forbidden (403)"),
        "{e}"
    );

    let exec = ctx(
        "exec-pod",
        json!({"namespace": "team-a", "pod": "web-1", "container": "app", "command": ["ls", "-l", "/etc/x=y"]}),
    );
    let e = ex
        .execute(&exec, &none(), &Cancel::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pod team-a/web-1"), "{e}");

    let seen = lines(&f);
    let log_line = seen
        .iter()
        .find(|l| l.contains("/log"))
        .expect("a log request");
    assert!(
        log_line.starts_with("GET /api/v1/namespaces/team-a/pods/web-1/log?"),
        "{log_line}"
    );
    for q in [
        "container=app",
        "tailLines=50",
        "sinceSeconds=60",
        "previous=true",
    ] {
        assert!(log_line.contains(q), "{q} in {log_line}");
    }
    let exec_line = seen
        .iter()
        .find(|l| l.contains("/exec"))
        .expect("an exec request");
    assert!(
        exec_line.starts_with("GET /api/v1/namespaces/team-a/pods/web-1/exec?"),
        "{exec_line}"
    );
    // One `command` query param per argv item, in order, URL-encoded: never a shell string.
    let query = exec_line
        .split('?')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let commands: Vec<&str> = query
        .split('&')
        .filter(|p| p.starts_with("command="))
        .collect();
    assert_eq!(
        commands,
        ["command=ls", "command=-l", "command=%2Fetc%2Fx%3Dy"],
        "{exec_line}"
    );
    assert!(
        query.contains("container=app")
            && query.contains("stdout=true")
            && query.contains("stderr=true")
    );
    assert!(
        !query.contains("stdin=true") && !query.contains("tty=true"),
        "{query}"
    );
}

#[tokio::test]
async fn port_forward_requests_the_pod_it_names() {
    let f = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(&format!("http://127.0.0.1:{}", f.port), &dir);
    let pf = ctx(
        "port-forward",
        json!({"namespace": "team-a", "pod": "web-1", "remote_port": 8080, "duration_seconds": 1}),
    );
    let e = ex.execute(&pf, &none(), &Cancel::new()).await.unwrap_err();
    // The executor reads the pod first (to refuse a pod that is not Running): refused here.
    assert!(
        e.to_string()
            .contains("get pod team-a/web-1: forbidden (403)"),
        "{e}"
    );
    assert_eq!(
        lines(&f),
        ["GET /api/v1/namespaces/team-a/pods/web-1 HTTP/1.1"]
    );
}

#[tokio::test]
async fn injected_params_send_nothing() {
    let f = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(&format!("http://127.0.0.1:{}", f.port), &dir);
    let cases = [
        (
            "scale-deployment",
            json!({"namespace": "--all", "name": "web", "replicas": 1}),
        ),
        (
            "scale-deployment",
            json!({"namespace": "prod", "name": "../x", "replicas": 1}),
        ),
        (
            "scale-deployment",
            json!({"namespace": "prod", "name": "a/b", "replicas": 1}),
        ),
        (
            "scale-deployment",
            json!({"namespace": "prod", "name": "web app", "replicas": 1}),
        ),
        (
            "delete-pod",
            json!({"namespace": "prod", "pod": "x?dryRun=All"}),
        ),
        ("cordon-node", json!({"node": "n1/proxy"})),
        (
            "get-secret",
            json!({"namespace": "prod", "secret": "s", "key": "../../token"}),
        ),
        (
            "exec-pod",
            json!({"namespace": "prod", "pod": "p", "command": ["sh", "-c", "id; rm -rf /"]}),
        ),
        (
            "delete-namespace",
            json!({"namespace": "kube-system/../default"}),
        ),
    ];
    for (action, params) in cases {
        let c = ctx(action, params.clone());
        for e in [
            ex.capture_state(&c, &none()).await.unwrap_err(),
            ex.execute(&c, &none(), &Cancel::new()).await.unwrap_err(),
            ex.dry_run(&c, &none()).await.unwrap_err(),
            ex.precheck(&c, "pod_exists", &none()).await.unwrap_err(),
        ] {
            let text = e.to_string();
            assert!(
                text.contains(&format!("{action}: param `")),
                "{action} {params}: {text}"
            );
        }
    }
    // A param bound to a target attribute cannot point elsewhere.
    let mut c = ctx(
        "scale-deployment",
        json!({"namespace": "kube-system", "name": "web", "replicas": 1}),
    );
    c.attributes.insert("namespace".into(), "team-a".into());
    let e = ex.execute(&c, &none(), &Cancel::new()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("differs from the target's namespace `team-a`"),
        "{e}"
    );
    assert!(
        lines(&f).is_empty(),
        "no request may be sent: {:?}",
        lines(&f)
    );
}

#[tokio::test]
async fn a_kubernetes_credential_replaces_the_kubeconfig_user() {
    let f = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(&format!("http://127.0.0.1:{}", f.port), &dir);
    let c = ctx("get-configmap", json!({"namespace": "a", "configmap": "c"}));
    let _ = ex.capture_state(&c, &none()).await;
    let token = Credentials {
        kind: "kubernetes".into(),
        scope: BTreeMap::new(),
        expires_at: Timestamp::now(),
        lease_id: "l".into(),
        secret: Secret::new("issued-token-123"),
    };
    let e = ex.capture_state(&c, &token).await.unwrap_err();
    assert!(!e.to_string().contains("issued-token-123"), "{e}");
    let other = Credentials {
        kind: "aws".into(),
        ..token.clone()
    };
    let _ = ex.capture_state(&c, &other).await;
    let auth: Vec<String> = f
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer kubeconfig-token",
            "Bearer issued-token-123",
            "Bearer kubeconfig-token"
        ],
        "kind `kubernetes` with a secret uses it; anything else keeps the kubeconfig user"
    );
    assert!(!format!("{ex:?}").contains("token"), "{ex:?}");
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    // Nothing listens on this port (bound, then dropped).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(&format!("http://127.0.0.1:{port}"), &dir);
    let c = ctx(
        "scale-deployment",
        json!({"namespace": "prod", "name": "web", "replicas": 1}),
    );
    let started = std::time::Instant::now();
    let e = ex.capture_state(&c, &none()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = e.to_string();
    assert!(
        matches!(e, CoreError::ExecutorBackend { .. })
            && text.contains("get deployment prod/web")
            && text.contains("connection refused"),
        "{text}"
    );
}

/// Calls every executor method that talks to the API server (precheck, capture, dry run,
/// execute) and returns their errors.
async fn every_call(ex: &K8sExecutor, c: &ActionContext) -> Vec<CoreError> {
    vec![
        ex.precheck(c, "deployment_exists", &none())
            .await
            .unwrap_err(),
        ex.capture_state(c, &none()).await.unwrap_err(),
        ex.dry_run(c, &none()).await.unwrap_err(),
        ex.execute(c, &none(), &Cancel::new()).await.unwrap_err(),
    ]
}

/// The defect this guards against: `staging/api-server` and `prod/api-server` share
/// namespace and name, so a ticket decided for one cluster must never run in another.
#[tokio::test]
async fn a_ticket_for_an_unmapped_cluster_sends_nothing_anywhere() {
    let (a, b) = (fake().await, fake().await);
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(
        &dir,
        &[
            ("ctx-a", &format!("http://127.0.0.1:{}", a.port)),
            ("ctx-b", &format!("http://127.0.0.1:{}", b.port)),
        ],
    );
    // Only B is mapped, although the kubeconfig (and its current context) knows A.
    let ex = mapped(path.clone(), &[("cluster-b", "ctx-b")]);
    let params =
        json!({"cluster": "cluster-a", "namespace": "web", "name": "api-server", "replicas": 3});
    let for_a = ctx("scale-deployment", params.clone());
    for e in every_call(&ex, &for_a).await {
        let text = e.to_string();
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. }),
            "{e:?}"
        );
        assert!(
            text.contains("cluster `cluster-a`")
                && text.contains("`[executors.k8s] clusters`")
                && text.contains("maps `cluster-b`")
                && text.contains("nothing was sent"),
            "{text}"
        );
    }
    assert!(lines(&a).is_empty(), "A saw {:?}", lines(&a));
    assert!(lines(&b).is_empty(), "B saw {:?}", lines(&b));

    // The same ticket for B reaches B, and only B.
    let mut for_b = for_a.clone();
    for_b.params.insert("cluster".into(), json!("cluster-b"));
    let e = ex.capture_state(&for_b, &none()).await.unwrap_err();
    assert!(e.to_string().contains("forbidden (403)"), "{e}");
    assert!(lines(&a).is_empty(), "A saw {:?}", lines(&a));
    assert_eq!(
        lines(&b),
        ["GET /apis/apps/v1/namespaces/web/deployments/api-server HTTP/1.1"]
    );

    // A ticket whose cluster is not its target's, and one naming no cluster: refused too.
    let mut moved = for_b.clone();
    moved
        .attributes
        .insert("cluster".into(), "cluster-a".into());
    let e = ex.capture_state(&moved, &none()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("differs from the target's cluster `cluster-a`"),
        "{e}"
    );
    let mut nowhere = for_b.clone();
    nowhere.params.remove("cluster");
    for e in every_call(&ex, &nowhere).await {
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string().contains("names no cluster"),
            "{e:?}"
        );
    }
    assert_eq!(lines(&b).len(), 1, "B saw {:?}", lines(&b));

    // Nothing mapped (a configuration from before clusters were bound): every ticket is
    // refused, and the message says what to add.
    let ex = mapped(path, &[]);
    for e in every_call(&ex, &for_b).await {
        let text = e.to_string();
        assert!(
            text.contains("maps no cluster")
                && text.contains("clusters = { \"cluster-b\" = \"<kubeconfig context>\" }"),
            "{text}"
        );
    }
    assert!(lines(&a).is_empty() && lines(&b).len() == 1);
}

#[tokio::test]
async fn two_clusters_two_servers() {
    let (a, b) = (fake().await, fake().await);
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(
        &dir,
        &[
            ("ctx-a", &format!("http://127.0.0.1:{}", a.port)),
            ("ctx-b", &format!("http://127.0.0.1:{}", b.port)),
        ],
    );
    let ex = mapped(
        path,
        &[
            ("staging-eu-1", "ctx-a"),
            ("prod-eu-1", "ctx-b"),
            ("prod-alias", "ctx-b"),
        ],
    );
    assert_eq!(
        ex.server("staging-eu-1").as_deref(),
        Some(format!("http://127.0.0.1:{}/", a.port).as_str())
    );
    assert_eq!(ex.server("dev-1"), None);
    for cluster in ["staging-eu-1", "prod-eu-1", "prod-alias"] {
        let c = ctx(
            "get-configmap",
            json!({"cluster": cluster, "namespace": "web", "configmap": "cfg"}),
        );
        let _ = ex.capture_state(&c, &none()).await.unwrap_err();
    }
    assert_eq!(lines(&a).len(), 1, "{:?}", lines(&a));
    assert_eq!(lines(&b).len(), 2, "{:?}", lines(&b));
}

#[test]
fn the_cluster_map_is_checked_at_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(&dir, &[("ctx-a", "http://127.0.0.1:1")]);
    let new = |clusters: &[(&str, &str)], context: Option<&str>, in_cluster: bool| {
        K8sExecutor::new(K8sConfig {
            kubeconfig: Some(path.clone()),
            context: context.map(str::to_owned),
            in_cluster,
            clusters: clusters
                .iter()
                .map(|(c, x)| ((*c).to_owned(), (*x).to_owned()))
                .collect(),
            ..K8sConfig::default()
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(new(&[("a", "ctx-a")], None, false), Ok(()));
    let e = new(&[("a", "ctx-x")], None, false).unwrap_err();
    assert!(
        e.starts_with("`[executors.k8s] clusters`: cluster `a`: kubeconfig `")
            && e.contains("context `ctx-x`: no such context (contexts: ctx-a)"),
        "{e}"
    );
    let e = new(&[], Some("ctx-a"), false).unwrap_err();
    assert!(
        e.contains("`context` is no longer used")
            && e.contains("clusters = { \"<cluster>\" = \"ctx-a\" }"),
        "{e}"
    );
    let e = new(&[("Prod EU", "ctx-a")], None, false).unwrap_err();
    assert!(
        e.contains("`Prod EU` is not a valid inventory cluster name"),
        "{e}"
    );
    let e = new(&[("a", "")], None, false).unwrap_err();
    assert!(e.contains("cluster `a` maps to an empty context"), "{e}");
    let e = new(&[("a", "ctx-a")], None, true).unwrap_err();
    assert!(
        e.contains("map the cluster the runner runs in to \"in-cluster\""),
        "{e}"
    );
    // Outside a pod there is no in-cluster account: the error says so at once.
    let e = new(&[("a", "in-cluster")], None, true).unwrap_err();
    assert!(
        e.contains("cluster `a`") && e.contains("in-cluster configuration is not available"),
        "{e}"
    );
    // Nothing mapped: the executor is built (and refuses every ticket, see above).
    assert_eq!(new(&[], None, false), Ok(()));
}
