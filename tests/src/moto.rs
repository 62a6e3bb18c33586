//! The boto3 oracle of the AWS suites (`crates/executor-aws/tests/live.rs`,
//! `tests/tests/aws.rs`): resources made and read through `xtask/moto/aws.py` with the
//! venv's Python, a client independent of the code under test.
//!
//! Every function panics with a hint when the environment of `cargo xtask moto-up` is
//! missing (`AWS_ENDPOINT_URL`, `AGENTSAFE_MOTO_PYTHON`).

#![expect(
    clippy::panic,
    reason = "test support: a failed call fails the test loudly"
)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

/// What to run when the environment is missing.
pub const HINT: &str = "this test needs an AWS endpoint: run `cargo xtask moto-up`, then \
                        `set -a; . ~/.cache/agentsafe/moto/run/env; set +a`";

/// The region of the fixtures (`AWS_DEFAULT_REGION`, else `us-east-1`).
pub fn region() -> String {
    std::env::var("AWS_DEFAULT_REGION").unwrap_or_else(|_| "us-east-1".into())
}

/// The account the suites' credentials belong to, as STS tells boto3 (moto's default
/// `123456789012`, LocalStack's `000000000000`): the `account` of their targets and
/// tickets, which the executor checks the same way.
pub fn account() -> String {
    static ACCOUNT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACCOUNT
        .get_or_init(|| text(&call("sts", "get_caller_identity", json!({}))["Account"]))
        .clone()
}

/// An account that is not [`account`], for tickets that must be refused.
pub fn other_account() -> String {
    if account() == "210987654321" {
        "123456789012".into()
    } else {
        "210987654321".into()
    }
}

/// `AWS_ENDPOINT_URL`: the emulator the suites run against.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!("AWS_ENDPOINT_URL is not set: {HINT}"),
    }
}

/// The venv's Python, once the endpoint is known to be set.
pub fn python() -> String {
    endpoint();
    match std::env::var("AGENTSAFE_MOTO_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("AGENTSAFE_MOTO_PYTHON is not set: {HINT}"),
    }
}

fn script() -> PathBuf {
    crate::root().join("xtask/moto/aws.py")
}

/// The boto3 helper; its JSON answer, or `Err(stderr)`.
pub fn try_py(args: &[&str]) -> Result<Value, String> {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the boto3 helper: {e}"));
    if out.status.success() {
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("aws.py {args:?} printed no JSON: {e}"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The boto3 helper; its JSON answer. Panics when it fails.
pub fn py(args: &[&str]) -> Value {
    try_py(args).unwrap_or_else(|e| panic!("aws.py {args:?} failed: {e}"))
}

/// One boto3 call: the oracle.
pub fn call(service: &str, op: &str, kwargs: Value) -> Value {
    py(&["call", service, op, &kwargs.to_string()])
}

/// Whether a boto3 call fails with `code` in its error.
pub fn call_fails_with(service: &str, op: &str, kwargs: Value, code: &str) -> bool {
    try_py(&["call", service, op, &kwargs.to_string()]).is_err_and(|e| e.contains(code))
}

/// A new running EC2 instance; its id.
pub fn new_instance() -> String {
    text(&py(&["create-instance"])["InstanceId"])
}

/// A new ECS service with its cluster and two task definitions.
#[derive(Debug)]
pub struct Svc {
    /// The cluster.
    pub cluster: String,
    /// The service.
    pub service: String,
    /// The task definition it runs.
    pub td1: String,
    /// A second revision of the family, for updates.
    pub td2: String,
}

/// A new ECS service running `count` tasks.
pub fn new_service(count: u32) -> Svc {
    let cluster = crate::unique("cl");
    let service = crate::unique("svc");
    let v = py(&["create-service", &cluster, &service, &count.to_string()]);
    Svc {
        cluster,
        service,
        td1: text(&v["task_definition"]),
        td2: text(&v["task_definition_2"]),
    }
}

/// The service as ECS describes it.
pub fn oracle_service(s: &Svc) -> Value {
    call(
        "ecs",
        "describe_services",
        json!({"cluster": s.cluster, "services": [s.service]}),
    )["services"][0]
        .clone()
}

/// A new Lambda function; its name.
pub fn new_function() -> String {
    let name = crate::unique("fn");
    py(&["create-function", &name]);
    name
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}
