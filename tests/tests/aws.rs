//! The AWS executor through the real binary against moto (`cargo xtask moto-up`): for each
//! of the 13 AWS actions, `check --output json` → `run TICKET --executor aws` → the state
//! read back with boto3 (an independent client) and compared with the recorded
//! before/after state → `rollback run` for the reversible ones, asserted the same way →
//! `audit verify`. Every test seeds its own resources and its own project.
//!
//! Run: `cargo xtask moto-up && set -a && . ~/.cache/agentsafe/moto/run/env && set +a &&
//! cargo test -p agentsafe-e2e --test aws -- --ignored`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use agentsafe_e2e::moto::{
    Svc, account, call, new_function, new_instance, new_service, oracle_service, other_account, py,
    python, region, try_py,
};
use agentsafe_e2e::{
    SRE, backend_project, e2e_target, json_of, rollback, run_in, unique, verify_audit as verify,
};
use serde_json::{Value, json};

/// A project whose inventory holds `targets` (id, type, attributes without account and
/// region; environment `e2e`) in the account of the suite's credentials, one policy
/// allowing callers with role `sre` everything there, and the aws executor as default.
fn project(targets: &[(&str, &str, Value)]) -> tempfile::TempDir {
    project_in(&account(), targets)
}

/// [`project`], its targets in `account`.
fn project_in(account: &str, targets: &[(&str, &str, Value)]) -> tempfile::TempDir {
    python();
    let inventory: String = targets
        .iter()
        .map(|(id, ty, attrs)| {
            let mut a = format!("account = \"{account}\", region = \"{}\"", region());
            for (k, v) in attrs.as_object().unwrap() {
                a += &format!(", {k} = {v}");
            }
            e2e_target(id, ty, &a)
        })
        .collect();
    backend_project(
        "aws",
        &inventory,
        "[executors.aws]\nwait_timeout_seconds = 60",
    )
}

/// Checks, runs the ticket with `--executor aws`; the run must succeed. Returns (decision
/// id, run report).
fn act(dir: &Path, action: &str, target: &str, params: Value) -> (String, Value) {
    agentsafe_e2e::act(dir, "aws", action, target, &params)
}

/// `rollback plan` must refuse: the action is not reversible.
fn not_reversible(dir: &Path, decision: &str) {
    let r = run_in(dir, &["rollback", "plan", decision]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("not reversible"), "{r:?}");
}

fn prechecks_passed(report: &Value) {
    for p in report["record"]["prechecks"].as_array().unwrap() {
        if p["advisory"] == false {
            assert_eq!(p["result"], "passed", "{p}");
        }
    }
}

/// Whether the run recorded the backend's own dry run as passed (EC2 `DryRun`, Lambda's
/// `DryRun` invocation).
fn server_dry_run_passed(report: &Value) -> bool {
    report["record"]["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "server_dry_run" && p["result"] == "passed")
}

// ---------------------------------------------------------------- EC2

fn instance_state(id: &str) -> String {
    call("ec2", "describe_instances", json!({"InstanceIds": [id]}))["Reservations"][0]["Instances"]
        [0]["State"]["Name"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn ec2_target(id: &str) -> (&'static str, &'static str, Value) {
    ("e2e/vm", "aws-ec2-instance", json!({"instance_id": id}))
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_stop_and_its_rollback_start() {
    let id = new_instance();
    let p = project(&[ec2_target(&id)]);
    let dir = p.path();
    let (d, report) = act(dir, "ec2-stop-instance", "e2e/vm", json!({}));
    prechecks_passed(&report);
    assert!(server_dry_run_passed(&report), "{report}");
    assert_eq!(report["record"]["before"]["state"], "running");
    assert_eq!(report["record"]["after"]["state"], instance_state(&id));
    assert_eq!(instance_state(&id), "stopped");
    let itype = call("ec2", "describe_instances", json!({"InstanceIds": [id]}))["Reservations"][0]
        ["Instances"][0]["InstanceType"]
        .clone();
    assert_eq!(report["record"]["before"]["instance_type"], itype);

    let rb = rollback(dir, &d);
    assert_eq!(rb["plan"]["action"], "ec2-start-instance");
    assert_eq!(rb["run"]["record"]["before"]["state"], "stopped");
    assert_eq!(instance_state(&id), "running");
    assert_eq!(rb["run"]["record"]["after"]["state"], "running");
    verify(dir);
}

/// The audit's finding, for AWS: a ticket for a target in another account than the one the
/// runner's credentials belong to is refused before anything is read or changed.
#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn a_ticket_for_another_account_is_refused_and_changes_nothing() {
    let id = new_instance();
    let p = project_in(&other_account(), &[ec2_target(&id)]);
    let dir = p.path();
    let (ticket, _) = agentsafe_e2e::allow(dir, "ec2-stop-instance", "e2e/vm", &json!({}));
    let (r, report) = agentsafe_e2e::run_ticket(dir, &ticket, "aws");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(report["reason_code"], "wrong_location", "{report}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("account `{}`", other_account()))
            && message.contains(&format!("account `{}`", account())),
        "{message}"
    );
    assert_eq!(report["record"]["executed"], false);
    assert_eq!(
        report["record"]["params"]["account"],
        other_account().as_str()
    );
    assert_eq!(instance_state(&id), "running");
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_start_and_its_rollback_stop() {
    let id = new_instance();
    call("ec2", "stop_instances", json!({"InstanceIds": [id]}));
    let p = project(&[ec2_target(&id)]);
    let dir = p.path();
    let (d, report) = act(dir, "ec2-start-instance", "e2e/vm", json!({}));
    prechecks_passed(&report);
    assert_eq!(report["record"]["before"]["state"], "stopped");
    assert_eq!(instance_state(&id), "running");
    assert_eq!(report["record"]["after"]["state"], "running");
    rollback(dir, &d);
    assert_eq!(instance_state(&id), "stopped");
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_reboot() {
    let id = new_instance();
    let p = project(&[ec2_target(&id)]);
    let dir = p.path();
    let (d, report) = act(dir, "ec2-reboot-instance", "e2e/vm", json!({}));
    let rec = &report["record"];
    assert_eq!(rec["before"]["state"], "running");
    assert_eq!(rec["after"]["state"], "running");
    assert_eq!(rec["before"]["launch_time"], rec["after"]["launch_time"]);
    assert_eq!(instance_state(&id), "running");
    not_reversible(dir, &d);

    // A stopped instance: the blocking precheck refuses, and nothing is executed.
    call("ec2", "stop_instances", json!({"InstanceIds": [id]}));
    let mut args = vec![
        "check",
        "ec2-reboot-instance",
        "--target",
        "e2e/vm",
        "--output",
        "json",
    ];
    args.extend_from_slice(SRE);
    let t = json_of(&run_in(dir, &args))["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = run_in(dir, &["run", &t, "--executor", "aws", "--output", "json"]);
    let v = json_of(&r);
    assert_eq!(v["reason_code"], "precheck_failed", "{r:?}");
    assert_eq!(v["record"]["executed"], false);
    assert_eq!(instance_state(&id), "stopped");
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_terminate() {
    let id = new_instance();
    let pre = call("ec2", "describe_instances", json!({"InstanceIds": [id]}))["Reservations"][0]
        ["Instances"][0]
        .clone();
    let p = project(&[ec2_target(&id)]);
    let dir = p.path();
    let (d, report) = act(dir, "ec2-terminate-instance", "e2e/vm", json!({}));
    let rec = &report["record"];
    assert_eq!(rec["before"]["state"], "running");
    let volumes = |mappings: &Value| -> Vec<Value> {
        mappings
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Ebs"]["VolumeId"].clone())
            .collect()
    };
    assert_eq!(
        volumes(&rec["before"]["block_device_mappings"]),
        volumes(&pre["BlockDeviceMappings"])
    );
    assert_eq!(instance_state(&id), "terminated");
    assert_eq!(rec["after"]["state"], "terminated");
    not_reversible(dir, &d);
    verify(dir);
}

// ---------------------------------------------------------------- ECS

fn svc_target(s: &Svc) -> (&'static str, &'static str, Value) {
    (
        "e2e/web",
        "aws-ecs-service",
        json!({"cluster": s.cluster, "service": s.service}),
    )
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_scale_and_its_rollback() {
    let s = new_service(2);
    let p = project(&[svc_target(&s)]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "ecs-scale-service",
        "e2e/web",
        json!({"desired_count": 5}),
    );
    prechecks_passed(&report);
    assert!(!server_dry_run_passed(&report), "ECS has no dry run");
    assert_eq!(report["record"]["before"]["desired_count"], 2);
    assert_eq!(oracle_service(&s)["desiredCount"], 5);
    assert_eq!(report["record"]["after"]["desired_count"], 5);
    assert_eq!(
        report["record"]["after"]["running_count"],
        oracle_service(&s)["runningCount"]
    );
    let rb = rollback(dir, &d);
    assert_eq!(rb["plan"]["params"]["desired_count"], 2);
    assert_eq!(oracle_service(&s)["desiredCount"], 2);
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_update_service_and_its_rollback() {
    let s = new_service(2);
    let p = project(&[svc_target(&s)]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "ecs-update-service",
        "e2e/web",
        json!({"task_definition": s.td2, "desired_count": 3}),
    );
    let rec = &report["record"];
    assert_eq!(rec["before"]["task_definition"], s.td1.as_str());
    assert_eq!(rec["before"]["desired_count"], 2);
    let oracle = oracle_service(&s);
    assert_eq!(oracle["taskDefinition"], s.td2.as_str());
    assert_eq!(oracle["desiredCount"], 3);
    assert_eq!(rec["after"]["task_definition"], oracle["taskDefinition"]);
    assert!(rec["after"]["deployments"].is_array(), "{rec}");
    let rb = rollback(dir, &d);
    assert_eq!(rb["plan"]["params"]["task_definition"], s.td1.as_str());
    let oracle = oracle_service(&s);
    assert_eq!(oracle["taskDefinition"], s.td1.as_str());
    assert_eq!(oracle["desiredCount"], 2);
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_stop_task_of_the_target_service() {
    let s = new_service(1);
    let task = py(&[
        "run-task",
        &s.cluster,
        &s.td1,
        &format!("service:{}", s.service),
    ]);
    let arn = task["taskArn"].as_str().unwrap().to_owned();
    let task_id = arn.rsplit('/').next().unwrap().to_owned();
    let p = project(&[svc_target(&s)]);
    let dir = p.path();
    let (d, report) = act(dir, "ecs-stop-task", "e2e/web", json!({"task_id": task_id}));
    prechecks_passed(&report);
    let rec = &report["record"];
    assert_eq!(rec["before"]["group"], format!("service:{}", s.service));
    assert_eq!(rec["before"]["desired_status"], "RUNNING");
    let oracle = call(
        "ecs",
        "describe_tasks",
        json!({"cluster": s.cluster, "tasks": [arn]}),
    )["tasks"][0]
        .clone();
    assert_eq!(oracle["desiredStatus"], "STOPPED");
    assert_eq!(rec["after"]["desired_status"], "STOPPED");
    assert_eq!(rec["after"]["last_status"], oracle["lastStatus"]);
    not_reversible(dir, &d);
    verify(dir);
}

// ---------------------------------------------------------------- Lambda

fn function_config(name: &str) -> Value {
    call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    )
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn lambda_update_config_and_its_rollback() {
    let name = new_function();
    let p = project(&[(
        "e2e/fn",
        "aws-lambda-function",
        json!({"function_name": name}),
    )]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "lambda-update-function-config",
        "e2e/fn",
        json!({"memory_size": 512, "timeout": 30}),
    );
    prechecks_passed(&report);
    let rec = &report["record"];
    assert_eq!(
        (
            rec["before"]["memory_size"].clone(),
            rec["before"]["timeout"].clone()
        ),
        (json!(128), json!(3))
    );
    let c = function_config(&name);
    assert_eq!(
        (c["MemorySize"].clone(), c["Timeout"].clone()),
        (json!(512), json!(30))
    );
    assert_eq!(rec["after"]["memory_size"], 512);
    assert_eq!(rec["after"]["last_update_status"], c["LastUpdateStatus"]);
    rollback(dir, &d);
    let c = function_config(&name);
    assert_eq!(
        (c["MemorySize"].clone(), c["Timeout"].clone()),
        (json!(128), json!(3))
    );
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn lambda_invoke_keeps_the_payload_out_of_the_record() {
    // Without Docker, moto echoes the request payload instead of running the function
    // (`aws.py moto-config`); the test checks the invocation, not the function's result.
    py(&["moto-config"]);
    let name = new_function();
    let p = project(&[(
        "e2e/fn",
        "aws-lambda-function",
        json!({"function_name": name}),
    )]);
    let dir = p.path();
    let canary = "e2e-payload-canary-31";
    let payload = json!({"card": canary});
    let (d, report) = act(
        dir,
        "lambda-invoke-function",
        "e2e/fn",
        json!({"payload": payload}),
    );
    prechecks_passed(&report);
    assert!(server_dry_run_passed(&report), "{report}");
    let sent = payload.to_string();
    let echoed = call(
        "lambda",
        "invoke",
        json!({"FunctionName": name, "Payload": sent}),
    );
    assert_eq!(
        report["record"]["output"]["StatusCode"],
        echoed["StatusCode"]
    );
    assert_eq!(report["record"]["output"]["PayloadLength"], sent.len());
    assert_eq!(report["record"]["before"], report["record"]["after"]);
    assert_eq!(
        report["record"]["before"]["state"],
        function_config(&name)["State"]
    );
    let log = std::fs::read_to_string(dir.join(".agentsafe-test-state/audit.jsonl")).unwrap();
    assert!(!log.contains(canary), "the payload reached the audit log");
    assert!(!serde_json::to_string(&report).unwrap().contains(canary));
    not_reversible(dir, &d);
    verify(dir);
}

// ---------------------------------------------------------------- S3

fn bucket_target(bucket: &str) -> (&'static str, &'static str, Value) {
    ("e2e/bucket", "aws-s3-bucket", json!({"bucket": bucket}))
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn s3_delete_object() {
    let bucket = unique("bkt");
    call("s3", "create_bucket", json!({"Bucket": bucket}));
    call(
        "s3",
        "put_object",
        json!({"Bucket": bucket, "Key": "logs/2024/app.log", "Body": "seven b"}),
    );
    let head = call(
        "s3",
        "head_object",
        json!({"Bucket": bucket, "Key": "logs/2024/app.log"}),
    );
    let p = project(&[bucket_target(&bucket)]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "s3-delete-object",
        "e2e/bucket",
        json!({"key": "logs/2024/app.log"}),
    );
    prechecks_passed(&report);
    let rec = &report["record"];
    assert_eq!(rec["before"]["content_length"], head["ContentLength"]);
    assert_eq!(rec["before"]["etag"], head["ETag"]);
    assert_eq!(
        call("s3", "list_objects_v2", json!({"Bucket": bucket}))["KeyCount"],
        0
    );
    // The object is gone: the after-state holds no object.
    assert!(rec["after"]["content_length"].is_null(), "{rec}");
    assert!(rec["after"]["etag"].is_null(), "{rec}");
    assert_eq!(rec["diff"]["etag"]["before"], head["ETag"]);
    not_reversible(dir, &d);
    verify(dir);
}

fn bucket_policy(bucket: &str) -> Option<Value> {
    try_py(&[
        "call",
        "s3",
        "get_bucket_policy",
        &json!({"Bucket": bucket}).to_string(),
    ])
    .map(|v| serde_json::from_str(v["Policy"].as_str().unwrap()).unwrap())
    .map_err(|e| assert!(e.contains("NoSuchBucketPolicy"), "{e}"))
    .ok()
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn s3_bucket_policy_and_its_rollbacks() {
    let bucket = unique("pol");
    call("s3", "create_bucket", json!({"Bucket": bucket}));
    let p = project(&[bucket_target(&bucket)]);
    let dir = p.path();
    let policy = |action: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Sid": "e2e", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{}:root", account())}, "Action": action,
            "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    };
    let first = policy("s3:GetObject");
    let second = policy("s3:PutObject");

    // A first policy: the bucket had none, recorded as `{}`; its rollback deletes it.
    let (d1, report) = act(
        dir,
        "s3-put-bucket-policy",
        "e2e/bucket",
        json!({"policy": first.to_string()}),
    );
    prechecks_passed(&report);
    assert_eq!(report["record"]["before"]["policy"], "{}");
    assert_eq!(bucket_policy(&bucket), Some(first.clone()));
    let after: Value =
        serde_json::from_str(report["record"]["after"]["policy"].as_str().unwrap()).unwrap();
    assert_eq!(after, first);

    // A second policy; its rollback restores the first.
    let (d2, report) = act(
        dir,
        "s3-put-bucket-policy",
        "e2e/bucket",
        json!({"policy": second.to_string()}),
    );
    let before: Value =
        serde_json::from_str(report["record"]["before"]["policy"].as_str().unwrap()).unwrap();
    assert_eq!(before, first);
    assert_eq!(bucket_policy(&bucket), Some(second));
    rollback(dir, &d2);
    assert_eq!(bucket_policy(&bucket), Some(first));

    let rb = rollback(dir, &d1);
    assert_eq!(rb["plan"]["params"]["policy"], "{}");
    assert_eq!(
        bucket_policy(&bucket),
        None,
        "the first policy's rollback deletes it"
    );
    assert_eq!(rb["run"]["record"]["after"]["policy"], "{}");

    // A public policy is refused by its blocking precheck; nothing changes.
    let public = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    let params = json!({"policy": public.to_string()}).to_string();
    let mut args = vec![
        "check",
        "s3-put-bucket-policy",
        "--target",
        "e2e/bucket",
        "--params",
        &params,
        "--output",
        "json",
    ];
    args.extend_from_slice(SRE);
    let t = json_of(&run_in(dir, &args))["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = json_of(&run_in(
        dir,
        &["run", &t, "--executor", "aws", "--output", "json"],
    ));
    assert_eq!(v["reason_code"], "precheck_failed", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("policy_grants_no_public_access"),
        "{v}"
    );
    assert_eq!(bucket_policy(&bucket), None);
    verify(dir);
}

// ---------------------------------------------------------------- IAM

fn attached(role: &str) -> Vec<String> {
    call(
        "iam",
        "list_attached_role_policies",
        json!({"RoleName": role}),
    )["AttachedPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PolicyArn"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn iam_attach_and_its_rollback_detach() {
    let role = unique("role");
    py(&["create-role", &role]);
    let arn = py(&["create-policy", &unique("pol")])["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = project(&[("e2e/role", "aws-iam-role", json!({"role_name": role}))]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "iam-attach-role-policy",
        "e2e/role",
        json!({"policy_arn": arn}),
    );
    prechecks_passed(&report);
    assert_eq!(report["record"]["before"]["attached_policies"], json!([]));
    assert_eq!(attached(&role), std::slice::from_ref(&arn));
    assert_eq!(
        report["record"]["after"]["attached_policies"][0]["PolicyArn"],
        arn.as_str()
    );
    let rb = rollback(dir, &d);
    assert_eq!(rb["plan"]["action"], "iam-detach-role-policy");
    assert!(attached(&role).is_empty());
    verify(dir);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn iam_detach_and_its_rollback_attach() {
    let role = unique("role");
    py(&["create-role", &role]);
    let arn = py(&["create-policy", &unique("pol")])["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        "iam",
        "attach_role_policy",
        json!({"RoleName": role, "PolicyArn": arn}),
    );
    let p = project(&[("e2e/role", "aws-iam-role", json!({"role_name": role}))]);
    let dir = p.path();
    let (d, report) = act(
        dir,
        "iam-detach-role-policy",
        "e2e/role",
        json!({"policy_arn": arn}),
    );
    prechecks_passed(&report);
    assert_eq!(
        report["record"]["before"]["attached_policies"][0]["PolicyArn"],
        arn.as_str()
    );
    assert!(attached(&role).is_empty());
    assert_eq!(report["record"]["after"]["attached_policies"], json!([]));
    let rb = rollback(dir, &d);
    assert_eq!(rb["plan"]["action"], "iam-attach-role-policy");
    assert_eq!(attached(&role), [arn]);
    verify(dir);
}
