//! The streaming actions: get-pod-logs, exec-pod (an argv array over the WebSocket
//! exec subresource, never a shell string) and port-forward (a listener on 127.0.0.1 for
//! a limited time, one forwarded stream per accepted connection).

use std::time::Duration;

use agentsafe_core::{Cancel, ExecutionReport};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::K8sError;
use crate::actions::Kx;
use crate::error::map_kube;
use crate::params::Op;

/// At most this many bytes of logs, stdout or stderr are returned.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The annotation naming a pod's default container.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The container an action acts on: the named one (it must exist), else the pod's
/// default-container annotation, else its only container.
///
/// # Errors
/// A named container the pod lacks, or several containers and no default.
pub fn pick_container(p: &Pod, named: Option<&str>) -> Result<String, String> {
    let id = crate::logic::pod_id(p);
    let names: Vec<String> = p
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone())
        .collect();
    if let Some(c) = named {
        return if names.iter().any(|n| n == c) {
            Ok(c.to_owned())
        } else {
            Err(format!(
                "pod {id} has no container `{c}` (containers: {})",
                names.join(", ")
            ))
        };
    }
    if let Some(d) = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        && names.contains(d)
    {
        return Ok(d.clone());
    }
    match names.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(format!("pod {id} has no containers")),
        _ => Err(format!(
            "pod {id} has several containers ({}): name one with `container`",
            names.join(", ")
        )),
    }
}

/// Reads at most [`MAX_OUTPUT_BYTES`] and discards the rest (so the remote side never
/// blocks on a full pipe); returns the text and whether it was cut.
async fn read_limited(r: Option<impl AsyncRead + Unpin>) -> (String, bool) {
    let Some(mut r) = r else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
                let take = n.min(room);
                kept.extend_from_slice(buf.get(..take).unwrap_or_default());
                cut |= take < n;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), cut)
}

/// The log request of get-pod-logs.
pub fn log_params(
    container: Option<&str>,
    tail_lines: i64,
    since_seconds: Option<i64>,
    previous: bool,
) -> LogParams {
    LogParams {
        container: container.map(str::to_owned),
        tail_lines: Some(tail_lines),
        since_seconds,
        previous,
        limit_bytes: Some(i64::try_from(MAX_OUTPUT_BYTES).unwrap_or(i64::MAX)),
        ..LogParams::default()
    }
}

/// The attach params of exec-pod: stdout and stderr, no stdin, no TTY.
pub fn exec_params(container: Option<&str>) -> AttachParams {
    let ap = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .tty(false);
    match container {
        Some(c) => ap.container(c),
        None => ap,
    }
}

pub(crate) async fn execute(k: &Kx, op: &Op, cancel: &Cancel) -> Result<ExecutionReport, K8sError> {
    match op {
        Op::GetPodLogs {
            ns,
            pod,
            container,
            tail_lines,
            since_seconds,
            previous,
        } => {
            let api: Api<Pod> = Api::namespaced(k.client.clone(), ns);
            let what = format!("pod {ns}/{pod}");
            let lp = log_params(container.as_deref(), *tail_lines, *since_seconds, *previous);
            let text = tokio::select! {
                r = k.call("read the logs of", &what, api.logs(pod, &lp)) => r?,
                () = cancel.cancelled() => return Err(K8sError::Cancelled),
            };
            let lines = text.lines().count();
            Ok(ExecutionReport {
                summary: format!("read {lines} log line(s) of pod {ns}/{pod}"),
                output: json!({"pod": pod, "container": container, "lines": lines, "log": text}),
            })
        }
        Op::ExecPod {
            ns,
            pod,
            container,
            command,
            timeout,
        } => {
            let what = format!("pod {ns}/{pod}");
            let work = exec(k, ns, pod, container.as_deref(), command);
            let (stdout, stderr, code) = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(*timeout), work) => match r {
                    Ok(r) => r?,
                    Err(_) => return Err(K8sError::Failed(format!(
                        "the command in {what} did not finish within {timeout} s"
                    ))),
                },
                () = cancel.cancelled() => return Err(K8sError::Cancelled),
            };
            if code != 0 {
                let tail: String = stderr
                    .0
                    .chars()
                    .rev()
                    .take(500)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(K8sError::Failed(format!(
                    "the command `{}` in {what} exited with code {code}: {}",
                    command.first().map(String::as_str).unwrap_or_default(),
                    tail.trim()
                )));
            }
            Ok(ExecutionReport {
                summary: format!(
                    "ran `{}` in {what}: exit code 0",
                    command.first().map(String::as_str).unwrap_or_default()
                ),
                output: json!({
                    "exit_code": code,
                    "stdout": stdout.0,
                    "stdout_truncated": stdout.1,
                    "stderr": stderr.0,
                    "stderr_truncated": stderr.1,
                }),
            })
        }
        Op::PortForward {
            ns,
            pod,
            remote_port,
            local_port,
            duration,
        } => forward(k, ns, pod, *remote_port, *local_port, *duration, cancel).await,
        _ => Err(K8sError::Failed("not a streaming action".into())),
    }
}

type Output = (String, bool);

async fn exec(
    k: &Kx,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    command: &[String],
) -> Result<(Output, Output, i64), K8sError> {
    let api: Api<Pod> = Api::namespaced(k.client.clone(), ns);
    let what = format!("pod {ns}/{pod}");
    let ap = exec_params(container);
    let mut proc = k
        .call("exec in", &what, api.exec(pod, command.to_vec(), &ap))
        .await?;
    let out = proc.stdout();
    let err = proc.stderr();
    let status = proc.take_status();
    let (stdout, stderr) = tokio::join!(read_limited(out), read_limited(err));
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    proc.join()
        .await
        .map_err(|e| K8sError::Failed(format!("exec in {what}: {e}")))?;
    let code = match status {
        None => {
            return Err(K8sError::Failed(format!(
                "the exec stream of {what} ended without an exit status"
            )));
        }
        Some(s) if s.status.as_deref() == Some("Success") => 0,
        Some(s) => s
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref().and_then(|m| m.parse::<i64>().ok()))
            .ok_or_else(|| {
                K8sError::Failed(format!(
                    "exec in {what} failed: {}",
                    s.message.as_deref().unwrap_or("no message")
                ))
            })?,
    };
    Ok((stdout, stderr, code))
}

async fn forward(
    k: &Kx,
    ns: &str,
    pod: &str,
    remote_port: u16,
    local_port: Option<u16>,
    duration: u64,
    cancel: &Cancel,
) -> Result<ExecutionReport, K8sError> {
    let api: Api<Pod> = Api::namespaced(k.client.clone(), ns);
    let what = format!("pod {ns}/{pod}");
    let p = k.call("get", &what, api.get(pod)).await?;
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    if phase != "Running" {
        return Err(K8sError::Refused(format!(
            "{what} is {phase}, not Running: there is nothing to forward to"
        )));
    }
    let listener = TcpListener::bind(("127.0.0.1", local_port.unwrap_or(0)))
        .await
        .map_err(|e| {
            K8sError::Failed(format!(
                "cannot listen on 127.0.0.1:{}: {e}",
                local_port.unwrap_or(0)
            ))
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1".into());
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    let (mut connections, mut errors) = (0_u64, Vec::<String>::new());
    let deadline = tokio::time::sleep(Duration::from_secs(duration));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = cancel.cancelled() => {
                tasks.abort_all();
                return Err(K8sError::Cancelled);
            }
            accepted = listener.accept() => {
                if let Ok((conn, _)) = accepted {
                    connections += 1;
                    tasks.spawn(one_connection(api.clone(), pod.to_owned(), remote_port, conn, what.clone()));
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Err(e)) = done {
                    errors.push(e);
                }
            }
        }
    }
    drop(listener);
    tasks.abort_all();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            errors.push(e);
        }
    }
    if connections > 0 && errors.len() as u64 >= connections {
        return Err(K8sError::Failed(format!(
            "forwarding {local} to port {remote_port} of {what} failed for every connection: {}",
            errors.first().cloned().unwrap_or_default()
        )));
    }
    Ok(ExecutionReport {
        summary: format!(
            "forwarded {local} to port {remote_port} of {what} for {duration} s ({connections} connection(s))"
        ),
        output: json!({
            "local_address": local,
            "remote_port": remote_port,
            "connections": connections,
            "errors": errors,
        }),
    })
}

async fn one_connection(
    api: Api<Pod>,
    pod: String,
    port: u16,
    mut conn: TcpStream,
    what: String,
) -> Result<(), String> {
    let mut pf = api
        .portforward(&pod, &[port])
        .await
        .map_err(|e| map_kube("port-forward to", &what, &e).to_string())?;
    let mut upstream = pf
        .take_stream(port)
        .ok_or_else(|| format!("port-forward to {what}: no stream for port {port}"))?;
    let remote_error = pf.take_error(port);
    let copied = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    drop(upstream);
    let remote = match remote_error {
        Some(f) => f.await,
        None => None,
    };
    pf.join()
        .await
        .map_err(|e| format!("port-forward to {what}: {e}"))?;
    if let Some(e) = remote {
        return Err(format!("port-forward to {what}: {e}"));
    }
    copied
        .map(|_| ())
        .map_err(|e| format!("port-forward to {what}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_choice() {
        let one = pod(
            json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "app"}]}}),
        );
        assert_eq!(pick_container(&one, None).unwrap(), "app");
        assert!(
            pick_container(&one, Some("side"))
                .unwrap_err()
                .contains("no container `side`")
        );
        let two = pod(json!({"metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}]}}));
        assert!(
            pick_container(&two, None)
                .unwrap_err()
                .contains("several containers")
        );
        assert_eq!(pick_container(&two, Some("side")).unwrap(), "side");
        let dflt = pod(
            json!({"metadata": {"name": "p", "namespace": "n", "annotations": {DEFAULT_CONTAINER: "side"}},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}]}}),
        );
        assert_eq!(pick_container(&dflt, None).unwrap(), "side");
    }
}
