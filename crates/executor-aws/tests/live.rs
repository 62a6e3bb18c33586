//! The AWS executor against a live AWS endpoint (moto from `cargo xtask moto-up`): every
//! action executed, before/after state compared with what boto3 (an independent client)
//! reads back, prechecks in their pass and fail cases, EC2 dry runs, error mapping, and the
//! conformance suite. Every test creates its own resources, so they run in parallel and
//! repeatedly against one server.
//!
//! Run: `cargo xtask moto-up && set -a && . ~/.cache/agentsafe/moto/run/env && set +a &&
//! cargo test -p agentsafe-executor-aws --test live -- --ignored`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;

use agentsafe_core::{
    ActionContext, Cancel, CoreError, Credentials, Executor, PrecheckResult, Secret, Timestamp,
};
use agentsafe_e2e::moto::{
    Svc, account, call, call_fails_with, endpoint, new_function, new_instance, new_service,
    oracle_service, other_account, py, region,
};
use agentsafe_e2e::unique;
use agentsafe_executor_aws::{AwsConfig, AwsExecutor};
use agentsafe_testkit::conformance::{ConformanceCase, check};
use serde_json::{Value, json};

fn executor() -> AwsExecutor {
    endpoint();
    AwsExecutor::new(AwsConfig::default()).unwrap()
}

/// A context for `action` in the credentials' account (unless `params` name another).
fn ctx(action: &str, params: Value) -> ActionContext {
    let mut params = params.as_object().cloned().unwrap();
    params
        .entry("account")
        .or_insert_with(|| Value::from(account()));
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

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn precheck(ex: &AwsExecutor, c: &ActionContext, name: &str) -> PrecheckResult {
    block_on(ex.precheck(c, name, &none())).unwrap_or_else(|e| panic!("precheck {name}: {e}"))
}

fn assert_passes(ex: &AwsExecutor, c: &ActionContext, names: &[&str]) {
    for n in names {
        let r = precheck(ex, c, n);
        assert!(r.passed(), "{} precheck {n}: {r:?}", c.action);
    }
}

fn assert_fails(ex: &AwsExecutor, c: &ActionContext, name: &str, needle: &str) {
    match precheck(ex, c, name) {
        PrecheckResult::Failed(d) => assert!(d.contains(needle), "{name}: {d}"),
        other => panic!("{} precheck {name} should fail, got {other:?}", c.action),
    }
}

fn capture(ex: &AwsExecutor, c: &ActionContext) -> Value {
    block_on(ex.capture_state(c, &none())).unwrap_or_else(|e| panic!("capture {}: {e}", c.action))
}

fn execute(ex: &AwsExecutor, c: &ActionContext) -> agentsafe_core::ExecutionReport {
    block_on(ex.execute(c, &none(), &Cancel::new()))
        .unwrap_or_else(|e| panic!("execute {}: {e}", c.action))
}

// ---------------------------------------------------------------- EC2

fn oracle_instance(id: &str) -> Value {
    let r = call("ec2", "describe_instances", json!({"InstanceIds": [id]}));
    r["Reservations"][0]["Instances"][0].clone()
}

fn ec2(action: &str, id: &str) -> ActionContext {
    ctx(action, json!({"region": region(), "instance_id": id}))
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_stop_then_start_round_trip() {
    let ex = executor();
    let id = new_instance();
    let stop = ec2("ec2-stop-instance", &id);

    let before = capture(&ex, &stop);
    let inst = &before["Reservations"][0]["Instances"][0];
    let oracle = oracle_instance(&id);
    assert_eq!(inst["State"]["Name"], "running");
    for field in [
        "InstanceId",
        "InstanceType",
        "PrivateIpAddress",
        "RootDeviceType",
        "ImageId",
    ] {
        assert_eq!(inst[field], oracle[field], "{field}");
    }
    assert_eq!(inst["State"]["Name"], oracle["State"]["Name"]);
    assert_eq!(
        inst["Placement"]["AvailabilityZone"],
        oracle["Placement"]["AvailabilityZone"]
    );

    assert_passes(
        &ex,
        &stop,
        &[
            "instance_exists",
            "instance_state_allows_stop",
            "root_device_is_ebs",
            "instance_not_in_auto_scaling_group",
        ],
    );
    let start = ec2("ec2-start-instance", &id);
    assert_fails(
        &ex,
        &start,
        "instance_state_allows_start",
        "is running; a start needs stopped",
    );
    assert_eq!(
        precheck(&ex, &stop, "no_such_check"),
        PrecheckResult::Unsupported
    );

    // The dry run validates without acting.
    let dry = block_on(ex.dry_run(&stop, &none()))
        .unwrap()
        .expect("EC2 has a dry run");
    assert_eq!(
        dry["Result"],
        "DryRunOperation: the request would have succeeded"
    );
    assert_eq!(oracle_instance(&id)["State"]["Name"], "running");

    let report = execute(&ex, &stop);
    assert!(report.summary.contains(&id), "{}", report.summary);
    assert_eq!(
        report.output["StoppingInstances"][0]["PreviousState"]["Name"],
        "running"
    );
    let now = oracle_instance(&id)["State"]["Name"].clone();
    assert!(now == "stopped" || now == "stopping", "{now}");
    assert_eq!(
        capture(&ex, &stop)["Reservations"][0]["Instances"][0]["State"]["Name"],
        now
    );

    // The rollback of a stop is a start.
    assert_passes(
        &ex,
        &start,
        &[
            "instance_exists",
            "instance_state_allows_start",
            "capacity_available",
        ],
    );
    assert_fails(
        &ex,
        &stop,
        "instance_state_allows_stop",
        "a stop needs running",
    );
    let report = execute(&ex, &start);
    assert!(
        report.summary.starts_with("started instance"),
        "{}",
        report.summary
    );
    let now = oracle_instance(&id)["State"]["Name"].clone();
    assert!(now == "running" || now == "pending", "{now}");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_reboot_keeps_the_instance_running() {
    let ex = executor();
    let id = new_instance();
    let reboot = ec2("ec2-reboot-instance", &id);
    assert_passes(
        &ex,
        &reboot,
        &["instance_exists", "instance_state_allows_reboot"],
    );
    let before = capture(&ex, &reboot);
    assert!(block_on(ex.dry_run(&reboot, &none())).unwrap().is_some());
    let report = execute(&ex, &reboot);
    assert_eq!(report.summary, format!("rebooted instance {id}"));
    let after = capture(&ex, &reboot);
    assert_eq!(after, before, "a reboot keeps state and launch time");
    assert_eq!(oracle_instance(&id)["State"]["Name"], "running");

    call("ec2", "stop_instances", json!({"InstanceIds": [id]}));
    assert_fails(
        &ex,
        &reboot,
        "instance_state_allows_reboot",
        "is stopped; a reboot needs running",
    );
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_terminate_respects_termination_protection() {
    let ex = executor();
    let id = new_instance();
    let term = ec2("ec2-terminate-instance", &id);
    call(
        "ec2",
        "modify_instance_attribute",
        json!({"InstanceId": id, "DisableApiTermination": {"Value": true}}),
    );
    assert_fails(
        &ex,
        &term,
        "termination_protection_disabled",
        "termination protection",
    );
    call(
        "ec2",
        "modify_instance_attribute",
        json!({"InstanceId": id, "DisableApiTermination": {"Value": false}}),
    );
    assert_passes(
        &ex,
        &term,
        &["instance_exists", "termination_protection_disabled"],
    );

    // The advisory volume check agrees with what boto3 reports.
    let deleted_with_it = oracle_instance(&id)["BlockDeviceMappings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["Ebs"]["DeleteOnTermination"] == true);
    assert_eq!(
        !precheck(&ex, &term, "volumes_deleted_on_termination").passed(),
        deleted_with_it
    );

    let before = capture(&ex, &term);
    let oracle = oracle_instance(&id);
    assert_eq!(
        before["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"],
        oracle["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    );
    let report = execute(&ex, &term);
    assert!(
        report
            .summary
            .starts_with(&format!("terminated instance {id}"))
    );
    let now = oracle_instance(&id)["State"]["Name"].clone();
    assert!(now == "terminated" || now == "shutting-down", "{now}");
    assert_fails(&ex, &term, "instance_exists", "already terminated");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_instances_of_an_auto_scaling_group_are_refused() {
    let ex = executor();
    let name = unique("asg");
    let image = call(
        "ec2",
        "describe_images",
        json!({"Filters": [{"Name": "root-device-type", "Values": ["ebs"]}]}),
    )["Images"][0]["ImageId"]
        .clone();
    call(
        "autoscaling",
        "create_launch_configuration",
        json!({"LaunchConfigurationName": name, "ImageId": image, "InstanceType": "t3.micro"}),
    );
    let az = format!("{}a", region());
    call(
        "autoscaling",
        "create_auto_scaling_group",
        json!({"AutoScalingGroupName": name, "LaunchConfigurationName": name, "MinSize": 1, "MaxSize": 1, "DesiredCapacity": 1, "AvailabilityZones": [az]}),
    );
    let groups = call(
        "autoscaling",
        "describe_auto_scaling_groups",
        json!({"AutoScalingGroupNames": [name]}),
    );
    let id = groups["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_fails(
        &ex,
        &ec2("ec2-stop-instance", &id),
        "instance_not_in_auto_scaling_group",
        &format!("belongs to Auto Scaling group `{name}`"),
    );
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_missing_instances_are_not_found() {
    let ex = executor();
    let stop = ec2("ec2-stop-instance", "i-0123456789abcdef0");
    match block_on(ex.capture_state(&stop, &none())) {
        Err(CoreError::ExecutorNotFound(what)) => {
            assert!(what.contains("i-0123456789abcdef0"), "{what}")
        }
        other => panic!("expected not found, got {other:?}"),
    }
    assert_fails(&ex, &stop, "instance_exists", "does not exist");
    // (No dry-run assertion here: moto checks the DryRun flag before the instance id.)
    let e = block_on(ex.execute(&stop, &none(), &Cancel::new())).unwrap_err();
    assert!(matches!(e, CoreError::ExecutorNotFound(_)), "{e}");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ec2_stop_conforms() {
    let ex = executor();
    let id = new_instance();
    let case = ConformanceCase::new("ec2-stop-instance", "web-1")
        .params(
            json!({"account": account(), "region": region(), "instance_id": id, "force": false}),
        )
        .target(
            "aws-ec2-instance",
            &[
                ("account", &account()),
                ("region", &region()),
                ("instance_id", &id),
            ],
        )
        .prechecks(&[
            "instance_exists",
            "instance_state_allows_stop",
            "root_device_is_ebs",
            "instance_not_in_auto_scaling_group",
        ]);
    let problems = block_on(check(&ex, &case));
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(oracle_instance(&id)["State"]["Name"], "stopped");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn a_cancelled_execution_acts_on_nothing() {
    let ex = executor();
    let id = new_instance();
    let cancel = Cancel::new();
    cancel.cancel();
    let e = block_on(ex.execute(&ec2("ec2-stop-instance", &id), &none(), &cancel)).unwrap_err();
    assert_eq!(e, CoreError::ExecutorCancelled);
    assert_eq!(oracle_instance(&id)["State"]["Name"], "running");
}

// ---------------------------------------------------------------- credentials, endpoint

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn static_credentials_from_the_runner_are_used_and_never_shown() {
    let ex = executor();
    let id = new_instance();
    let c = ec2("ec2-stop-instance", &id);
    let creds = |secret: &str| Credentials {
        kind: "aws".into(),
        scope: BTreeMap::new(),
        expires_at: Timestamp::now(),
        lease_id: "l".into(),
        secret: Secret::new(secret),
    };
    let state =
        block_on(ex.capture_state(&c, &creds("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG")))
            .unwrap();
    assert_eq!(
        state["Reservations"][0]["Instances"][0]["InstanceId"],
        id.as_str()
    );
    let e = block_on(ex.capture_state(&c, &creds("no-separator-canary")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("malformed") && !e.contains("canary"), "{e}");
}

/// A ticket for another account than the one the credentials belong to (as STS says) is
/// refused by every call before anything reads or changes the target; the allow-list
/// `accounts` refuses an account it does not list; a ticket naming no account is refused.
#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn a_ticket_for_another_account_is_refused_and_changes_nothing() {
    let ex = executor();
    let id = new_instance();
    let mut stop = ec2("ec2-stop-instance", &id);
    stop.params.insert("account".into(), json!(other_account()));
    let refusals = |ex: &AwsExecutor, c: &ActionContext| {
        vec![
            block_on(ex.precheck(c, "instance_exists", &none())).unwrap_err(),
            block_on(ex.capture_state(c, &none())).unwrap_err(),
            block_on(ex.dry_run(c, &none())).unwrap_err(),
            block_on(ex.execute(c, &none(), &Cancel::new())).unwrap_err(),
        ]
    };
    for e in refusals(&ex, &stop) {
        let text = e.to_string();
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. }),
            "{e:?}"
        );
        assert!(
            text.contains(&format!("the ticket is for account `{}`", other_account()))
                && text.contains(&format!("belong to account `{}`", account()))
                && text.contains("nothing was sent to the target"),
            "{text}"
        );
    }
    assert_eq!(oracle_instance(&id)["State"]["Name"], "running");

    // The allow-list: the credentials' own account, unlisted, is refused before STS.
    let listed = |accounts: Vec<String>| {
        AwsExecutor::new(AwsConfig {
            accounts,
            ..AwsConfig::default()
        })
        .unwrap()
    };
    let right = ec2("ec2-stop-instance", &id);
    for e in refusals(&listed(vec![other_account()]), &right) {
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string()
                    .contains("`[executors.aws] accounts` does not list"),
            "{e:?}"
        );
    }
    // Listed and the credentials' own: it acts.
    let ex = listed(vec![other_account(), account()]);
    assert_eq!(
        capture(&ex, &right)["Reservations"][0]["Instances"][0]["InstanceId"],
        id.as_str()
    );
    let mut nowhere = right.clone();
    nowhere.params.remove("account");
    for e in refusals(&ex, &nowhere) {
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string().contains("names no account"),
            "{e:?}"
        );
    }
    // A ticket whose account is not its target's.
    let mut moved = right.clone();
    moved.attributes.insert("account".into(), other_account());
    let e = block_on(ex.capture_state(&moved, &none())).unwrap_err();
    assert!(
        e.to_string().contains("differs from the target's account"),
        "{e}"
    );
    assert_eq!(oracle_instance(&id)["State"]["Name"], "running");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn an_unreachable_endpoint_is_a_clear_backend_error() {
    endpoint();
    let ex = AwsExecutor::new(AwsConfig {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        ..AwsConfig::default()
    })
    .unwrap();
    let e = block_on(ex.capture_state(&ec2("ec2-stop-instance", "i-0123456789abcdef0"), &none()))
        .unwrap_err();
    match e {
        CoreError::ExecutorBackend { executor, message } => {
            assert_eq!(executor, "aws");
            assert!(
                // The first request of a credential asks whose it is.
                message.starts_with("endpoint unreachable: sts GetCallerIdentity: "),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- ECS

fn scale(s: &Svc, n: u32) -> ActionContext {
    ctx(
        "ecs-scale-service",
        json!({"region": region(), "cluster": s.cluster, "service": s.service, "desired_count": n}),
    )
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_scale_and_back() {
    let ex = executor();
    let s = new_service(2);
    let up = scale(&s, 3);
    assert_passes(
        &ex,
        &up,
        &[
            "service_exists",
            "desired_count_within_autoscaling_bounds",
            "cluster_capacity_available",
        ],
    );
    let before = capture(&ex, &up);
    let oracle = oracle_service(&s);
    for f in [
        "desiredCount",
        "runningCount",
        "pendingCount",
        "taskDefinition",
        "serviceArn",
        "status",
    ] {
        assert_eq!(before["services"][0][f], oracle[f], "{f}");
    }
    assert_eq!(before["services"][0]["desiredCount"], 2);

    let report = execute(&ex, &up);
    assert!(
        report.summary.contains("to 3 desired tasks"),
        "{}",
        report.summary
    );
    assert_eq!(oracle_service(&s)["desiredCount"], 3);
    assert_eq!(capture(&ex, &up)["services"][0]["desiredCount"], 3);

    // Rollback: back to the recorded count.
    execute(&ex, &scale(&s, 2));
    assert_eq!(oracle_service(&s)["desiredCount"], 2);

    // Application Auto Scaling bounds.
    call(
        "application-autoscaling",
        "register_scalable_target",
        json!({"ServiceNamespace": "ecs", "ResourceId": format!("service/{}/{}", s.cluster, s.service),
               "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 1, "MaxCapacity": 4}),
    );
    assert_passes(
        &ex,
        &scale(&s, 4),
        &["desired_count_within_autoscaling_bounds"],
    );
    assert_fails(
        &ex,
        &scale(&s, 5),
        "desired_count_within_autoscaling_bounds",
        "outside the scalable target's 1..=4",
    );
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_scale_conforms() {
    let ex = executor();
    let s = new_service(1);
    let case = ConformanceCase::new("ecs-scale-service", "web")
        .params(json!({"account": account(), "region": region(), "cluster": s.cluster, "service": s.service, "desired_count": 4}))
        .target("aws-ecs-service", &[("account", &account()), ("region", &region()), ("cluster", &s.cluster), ("service", &s.service)])
        .prechecks(&["service_exists", "desired_count_within_autoscaling_bounds", "cluster_capacity_available"]);
    let problems = block_on(check(&ex, &case));
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(oracle_service(&s)["desiredCount"], 4);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_update_service_and_back() {
    let ex = executor();
    let s = new_service(2);
    let upd = |td: &str, n: u32| {
        ctx(
            "ecs-update-service",
            json!({"region": region(), "cluster": s.cluster, "service": s.service,
                   "task_definition": td, "desired_count": n, "force_new_deployment": false}),
        )
    };
    let to2 = upd(&s.td2, 1);
    assert_passes(
        &ex,
        &to2,
        &[
            "service_exists",
            "task_definition_exists",
            "task_definition_family_matches",
        ],
    );
    // moto reports a rollout IN_PROGRESS while no task runs: the advisory check says so.
    let rollout = oracle_service(&s)["deployments"][0]["rolloutState"].clone();
    assert_eq!(
        precheck(&ex, &to2, "deployment_not_in_progress").passed(),
        rollout != "IN_PROGRESS"
    );
    let family = s
        .td1
        .rsplit('/')
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    assert_fails(
        &ex,
        &upd(&format!("{family}:99"), 1),
        "task_definition_exists",
        "does not exist",
    );
    let other = new_service(1);
    assert_fails(
        &ex,
        &upd(&other.td1, 1),
        "task_definition_family_matches",
        "the service runs family",
    );

    let before = capture(&ex, &to2);
    assert_eq!(before["services"][0]["taskDefinition"], s.td1.as_str());
    assert_eq!(
        before["services"][0]["deployments"],
        capture(&ex, &to2)["services"][0]["deployments"]
    );
    let report = execute(&ex, &to2);
    assert!(report.summary.contains(&s.td2), "{}", report.summary);
    let oracle = oracle_service(&s);
    assert_eq!(oracle["taskDefinition"], s.td2.as_str());
    assert_eq!(oracle["desiredCount"], 1);
    let after = capture(&ex, &to2);
    assert_eq!(
        after["services"][0]["taskDefinition"],
        oracle["taskDefinition"]
    );
    assert_eq!(
        after["services"][0]["deployments"][0]["taskDefinition"],
        oracle["deployments"][0]["taskDefinition"]
    );

    // Rollback to the recorded definition and count.
    let recorded = before["services"][0]["taskDefinition"]
        .as_str()
        .unwrap()
        .to_owned();
    let count = u32::try_from(before["services"][0]["desiredCount"].as_u64().unwrap()).unwrap();
    execute(&ex, &upd(&recorded, count));
    let oracle = oracle_service(&s);
    assert_eq!(oracle["taskDefinition"], s.td1.as_str());
    assert_eq!(oracle["desiredCount"], 2);

    // The family:revision form works too.
    let rev2 = s.td2.rsplit('/').next().unwrap().to_owned();
    execute(&ex, &upd(&rev2, 2));
    let oracle = oracle_service(&s);
    assert!(
        oracle["taskDefinition"].as_str().unwrap().ends_with(&rev2),
        "{oracle}"
    );
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_stop_task_of_a_service() {
    let ex = executor();
    let s = new_service(1);
    let task = py(&[
        "run-task",
        &s.cluster,
        &s.td1,
        &format!("service:{}", s.service),
    ]);
    let arn = task["taskArn"].as_str().unwrap();
    let task_id = arn.rsplit('/').next().unwrap().to_owned();
    let mut stop = ctx(
        "ecs-stop-task",
        json!({"region": region(), "cluster": s.cluster, "task_id": task_id}),
    );
    stop.target_type = Some("aws-ecs-service".into());
    stop.attributes = [("service".to_owned(), s.service.clone())].into();
    assert_passes(
        &ex,
        &stop,
        &["task_exists", "task_belongs_to_target", "task_is_replaced"],
    );
    let mut foreign = stop.clone();
    foreign.attributes = [("service".to_owned(), "other".to_owned())].into();
    assert_fails(
        &ex,
        &foreign,
        "task_belongs_to_target",
        "not `service:other`",
    );

    let before = capture(&ex, &stop);
    let oracle = call(
        "ecs",
        "describe_tasks",
        json!({"cluster": s.cluster, "tasks": [arn]}),
    )["tasks"][0]
        .clone();
    for f in [
        "lastStatus",
        "desiredStatus",
        "group",
        "taskDefinitionArn",
        "taskArn",
    ] {
        assert_eq!(before["tasks"][0][f], oracle[f], "{f}");
    }
    let report = execute(&ex, &stop);
    assert!(
        report.summary.starts_with("stopped task"),
        "{}",
        report.summary
    );
    let oracle = call(
        "ecs",
        "describe_tasks",
        json!({"cluster": s.cluster, "tasks": [arn]}),
    )["tasks"][0]
        .clone();
    assert_eq!(oracle["desiredStatus"], "STOPPED");
    assert_eq!(
        capture(&ex, &stop)["tasks"][0]["lastStatus"],
        oracle["lastStatus"]
    );

    // A task started outside a service is not replaced.
    let lone = py(&["run-task", &s.cluster, &s.td1]);
    let lone_id = lone["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let c = ctx(
        "ecs-stop-task",
        json!({"region": region(), "cluster": s.cluster, "task_id": lone_id}),
    );
    assert_fails(&ex, &c, "task_is_replaced", "nothing replaces it");
    let missing = ctx(
        "ecs-stop-task",
        json!({"region": region(), "cluster": s.cluster, "task_id": "0123456789abcdef0123456789abcdef"}),
    );
    assert!(matches!(
        block_on(ex.capture_state(&missing, &none())),
        Err(CoreError::ExecutorNotFound(_))
    ));
    assert_fails(&ex, &missing, "task_exists", "does not exist");
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn ecs_missing_service_is_not_found() {
    let ex = executor();
    let s = new_service(1);
    let gone = Svc {
        service: "no-such-service".into(),
        ..s
    };
    assert!(matches!(
        block_on(ex.capture_state(&scale(&gone, 1), &none())),
        Err(CoreError::ExecutorNotFound(_))
    ));
    assert_fails(&ex, &scale(&gone, 1), "service_exists", "does not exist");
}

// ---------------------------------------------------------------- Lambda

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn lambda_update_config_and_back() {
    let ex = executor();
    let name = new_function();
    let upd = |m: Value, t: Value| {
        ctx(
            "lambda-update-function-config",
            json!({"region": region(), "function_name": name, "memory_size": m, "timeout": t}),
        )
    };
    let c = upd(json!(256), json!(10));
    assert_passes(
        &ex,
        &c,
        &[
            "function_exists",
            "at_least_one_setting",
            "function_not_updating",
        ],
    );
    assert_fails(
        &ex,
        &upd(Value::Null, Value::Null),
        "at_least_one_setting",
        "neither",
    );
    let before = capture(&ex, &c);
    let oracle = call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    );
    for f in [
        "MemorySize",
        "Timeout",
        "State",
        "LastUpdateStatus",
        "FunctionArn",
        "Version",
        "CodeSha256",
    ] {
        assert_eq!(before[f], oracle[f], "{f}");
    }
    assert!(
        before.get("Environment").is_none(),
        "environment variables are never captured"
    );
    let report = execute(&ex, &c);
    assert_eq!(
        report.summary,
        format!("updated function `{name}`: memory 256 MB, timeout 10 s")
    );
    let oracle = call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    );
    assert_eq!(
        (oracle["MemorySize"].clone(), oracle["Timeout"].clone()),
        (json!(256), json!(10))
    );
    // Rollback to the recorded settings.
    execute(
        &ex,
        &upd(before["MemorySize"].clone(), before["Timeout"].clone()),
    );
    let oracle = call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    );
    assert_eq!(
        (oracle["MemorySize"].clone(), oracle["Timeout"].clone()),
        (json!(128), json!(3))
    );
    // Only one setting: the other stays.
    execute(&ex, &upd(Value::Null, json!(30)));
    let oracle = call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    );
    assert_eq!(
        (oracle["MemorySize"].clone(), oracle["Timeout"].clone()),
        (json!(128), json!(30))
    );
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn lambda_invoke_reaches_the_function() {
    // moto runs function code only in Docker; configured without it (`aws.py moto-config`),
    // it answers an invocation with the request payload (or a fixed text for an empty one)
    // instead of running the code. The test checks that our payload reached the function
    // and what the executor reports, not the function's own result.
    py(&["moto-config"]);
    let ex = executor();
    let name = new_function();
    let inv = |payload: Value, kind: &str| {
        ctx(
            "lambda-invoke-function",
            json!({"region": region(), "function_name": name, "payload": payload, "invocation_type": kind}),
        )
    };
    let c = inv(json!({"hello": "world"}), "RequestResponse");
    assert_passes(
        &ex,
        &c,
        &[
            "function_exists",
            "function_active",
            "payload_within_size_limit",
        ],
    );
    let big = "x".repeat(300 * 1024);
    assert_fails(
        &ex,
        &inv(json!({"blob": big}), "Event"),
        "payload_within_size_limit",
        "exceed the Event limit",
    );
    assert!(
        precheck(
            &ex,
            &inv(json!({"blob": big}), "RequestResponse"),
            "payload_within_size_limit"
        )
        .passed()
    );
    let before = capture(&ex, &c);
    let oracle = call(
        "lambda",
        "get_function_configuration",
        json!({"FunctionName": name}),
    );
    for f in ["State", "LastUpdateStatus", "Version"] {
        assert_eq!(before[f], oracle[f], "{f}");
    }
    let report = execute(&ex, &c);
    // Without Docker moto echoes the request payload: the same call through boto3 shows
    // what the function received.
    let sent = json!({"hello": "world"}).to_string();
    let expected = call(
        "lambda",
        "invoke",
        json!({"FunctionName": name, "Payload": sent}),
    );
    assert_eq!(expected["Payload"], sent.as_str());
    assert_eq!(report.output["StatusCode"], expected["StatusCode"]);
    assert_eq!(
        report.output["PayloadLength"],
        sent.len(),
        "our payload reached the function"
    );
    assert!(
        report.output.get("Payload").is_none(),
        "the response payload is not recorded"
    );
    assert_eq!(
        capture(&ex, &c),
        before,
        "an invocation changes no configuration"
    );
    let missing = ctx(
        "lambda-invoke-function",
        json!({"region": region(), "function_name": "no-such-fn"}),
    );
    assert_fails(&ex, &missing, "function_exists", "does not exist");
    assert!(matches!(
        block_on(ex.capture_state(&missing, &none())),
        Err(CoreError::ExecutorNotFound(_))
    ));
    // Lambda's own DryRun invocation type: 204, and the configuration is untouched.
    let dry = block_on(ex.dry_run(&c, &none()))
        .unwrap()
        .expect("Lambda invoke has a dry run");
    assert_eq!(dry["StatusCode"], 204);
    assert_eq!(capture(&ex, &c), before);
    let upd = ctx(
        "lambda-update-function-config",
        json!({"region": region(), "function_name": name, "memory_size": 256}),
    );
    assert!(
        block_on(ex.dry_run(&upd, &none())).unwrap().is_none(),
        "UpdateFunctionConfiguration has no dry run"
    );
}

// ---------------------------------------------------------------- S3

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn s3_delete_object() {
    let ex = executor();
    let bucket = unique("bkt");
    call("s3", "create_bucket", json!({"Bucket": bucket}));
    call(
        "s3",
        "put_object",
        json!({"Bucket": bucket, "Key": "a/b.txt", "Body": "twelve bytes"}),
    );
    let del = ctx(
        "s3-delete-object",
        json!({"region": region(), "bucket": bucket, "key": "a/b.txt"}),
    );
    assert_passes(
        &ex,
        &del,
        &["bucket_exists", "object_exists", "object_not_locked"],
    );
    // Unversioned: "is off: the deletion is permanent" (or, against moto, whose answer the
    // SDK cannot parse, "may be permanent").
    assert_fails(&ex, &del, "bucket_versioning_enabled", "permanent");
    let before = capture(&ex, &del);
    let head = call(
        "s3",
        "head_object",
        json!({"Bucket": bucket, "Key": "a/b.txt"}),
    );
    assert_eq!(before["ContentLength"], 12);
    assert_eq!(before["ContentLength"], head["ContentLength"]);
    assert_eq!(before["ETag"], head["ETag"]);
    let report = execute(&ex, &del);
    assert_eq!(
        report.summary,
        format!("deleted object `s3://{bucket}/a/b.txt`")
    );
    assert_eq!(
        call("s3", "list_objects_v2", json!({"Bucket": bucket}))["KeyCount"],
        0
    );
    assert!(matches!(
        block_on(ex.capture_state(&del, &none())),
        Err(CoreError::ExecutorNotFound(_))
    ));
    assert_fails(&ex, &del, "object_exists", "does not exist");
    let nob = ctx(
        "s3-delete-object",
        json!({"region": region(), "bucket": unique("nob"), "key": "k"}),
    );
    assert_fails(&ex, &nob, "bucket_exists", "does not exist");

    // Versioned: the advisory check passes, a delete marker is reported.
    call(
        "s3",
        "put_bucket_versioning",
        json!({"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}}),
    );
    call(
        "s3",
        "put_object",
        json!({"Bucket": bucket, "Key": "a/b.txt", "Body": "v2"}),
    );
    assert_eq!(
        call("s3", "get_bucket_versioning", json!({"Bucket": bucket}))["Status"],
        "Enabled"
    );
    match precheck(&ex, &del, "bucket_versioning_enabled") {
        PrecheckResult::Passed(d) => assert!(d.contains("keeps versions"), "{d}"),
        // moto 5.2 answers GetBucketVersioning with a `GetBucketVersioningResponse` root
        // element (S3's is `VersioningConfiguration`), which the Rust SDK rejects; the
        // advisory check then says it could not read the state. Nothing else may fail it.
        PrecheckResult::Failed(d) => assert!(d.contains("cannot be read"), "{d}"),
        PrecheckResult::Unsupported => panic!("bucket_versioning_enabled is supported"),
    }
    let before = capture(&ex, &del);
    assert_eq!(
        before["VersionId"],
        call(
            "s3",
            "head_object",
            json!({"Bucket": bucket, "Key": "a/b.txt"})
        )["VersionId"]
    );
    let report = execute(&ex, &del);
    assert_eq!(report.output["DeleteMarker"], true);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn s3_locked_objects_are_refused() {
    let ex = executor();
    let bucket = unique("lck");
    call(
        "s3",
        "create_bucket",
        json!({"Bucket": bucket, "ObjectLockEnabledForBucket": true}),
    );
    call(
        "s3",
        "put_object",
        json!({"Bucket": bucket, "Key": "held", "Body": "x", "ObjectLockLegalHoldStatus": "ON"}),
    );
    call(
        "s3",
        "put_object",
        json!({"Bucket": bucket, "Key": "free", "Body": "x"}),
    );
    let c = |key: &str| {
        ctx(
            "s3-delete-object",
            json!({"region": region(), "bucket": bucket, "key": key}),
        )
    };
    assert_fails(&ex, &c("held"), "object_not_locked", "legal hold");
    assert_passes(&ex, &c("free"), &["object_not_locked"]);
}

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn s3_bucket_policy_put_and_rolled_back() {
    let ex = executor();
    let bucket = unique("pol");
    call("s3", "create_bucket", json!({"Bucket": bucket}));
    let policy = |stmts: Value| json!({"Version": "2012-10-17", "Statement": stmts}).to_string();
    let read = policy(json!([{"Sid": "read", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*")}]));
    let put = |text: &str| {
        ctx(
            "s3-put-bucket-policy",
            json!({"region": region(), "bucket": bucket, "policy": text}),
        )
    };
    let c = put(&read);
    assert_passes(
        &ex,
        &c,
        &[
            "bucket_exists",
            "bucket_policy_is_json",
            "policy_grants_no_public_access",
            "policy_keeps_account_access",
            "existing_policy_captured",
        ],
    );
    let public = policy(
        json!([{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*")}]),
    );
    assert_fails(
        &ex,
        &put(&public),
        "policy_grants_no_public_access",
        "allow a `*` principal",
    );
    let lockout = policy(
        json!([{"Sid": "lock", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": format!("arn:aws:s3:::{bucket}")}]),
    );
    assert_fails(
        &ex,
        &put(&lockout),
        "policy_keeps_account_access",
        "statement `lock` deny account 123456789012",
    );
    let elsewhere = policy(
        json!([{"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::another-bucket/*"}]),
    );
    assert_fails(
        &ex,
        &put(&elsewhere),
        "bucket_policy_is_json",
        "neither bucket",
    );
    assert_fails(&ex, &put("{not json"), "bucket_policy_is_json", "not JSON");

    // No policy yet: recorded as the empty document.
    assert_eq!(capture(&ex, &c), json!({"Policy": "{}"}));
    assert!(call_fails_with(
        "s3",
        "get_bucket_policy",
        json!({"Bucket": bucket}),
        "NoSuchBucketPolicy"
    ));
    execute(&ex, &c);
    let oracle = call("s3", "get_bucket_policy", json!({"Bucket": bucket}));
    let got: Value = serde_json::from_str(oracle["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(got, serde_json::from_str::<Value>(&read).unwrap());
    let after = capture(&ex, &c);
    assert_eq!(after["Policy"], oracle["Policy"]);

    // A second policy, rolled back to the first.
    let second = policy(json!([{"Sid": "write", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:PutObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*")}]));
    let before_second = capture(&ex, &put(&second));
    execute(&ex, &put(&second));
    execute(&ex, &put(before_second["Policy"].as_str().unwrap()));
    let oracle = call("s3", "get_bucket_policy", json!({"Bucket": bucket}));
    assert_eq!(oracle["Policy"], before_second["Policy"]);

    // The rollback of the first policy: the recorded `{}` deletes it.
    assert_passes(
        &ex,
        &put("{}"),
        &[
            "bucket_policy_is_json",
            "policy_grants_no_public_access",
            "policy_keeps_account_access",
        ],
    );
    let report = execute(&ex, &put("{}"));
    assert!(
        report.summary.starts_with("deleted the bucket policy"),
        "{}",
        report.summary
    );
    assert!(call_fails_with(
        "s3",
        "get_bucket_policy",
        json!({"Bucket": bucket}),
        "NoSuchBucketPolicy"
    ));
    assert_eq!(capture(&ex, &c), json!({"Policy": "{}"}));
}

// ---------------------------------------------------------------- IAM

#[test]
#[ignore = "needs an AWS endpoint: cargo xtask moto-up"]
fn iam_attach_then_detach() {
    let ex = executor();
    let role = unique("role");
    py(&["create-role", &role]);
    let arn = py(&["create-policy", &unique("pol")])["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = |action: &str, policy: &str| {
        ctx(
            action,
            json!({"region": region(), "role_name": role, "policy_arn": policy}),
        )
    };
    let attach = c("iam-attach-role-policy", &arn);
    let detach = c("iam-detach-role-policy", &arn);
    assert_passes(
        &ex,
        &attach,
        &[
            "role_exists",
            "policy_arn_exists",
            "policy_not_attached",
            "attached_policy_quota",
            "policy_not_administrator",
        ],
    );
    assert_fails(&ex, &detach, "policy_attached", "is not attached");
    assert_fails(
        &ex,
        &c(
            "iam-attach-role-policy",
            "arn:aws:iam::aws:policy/AdministratorAccess",
        ),
        "policy_not_administrator",
        "AdministratorAccess",
    );
    let star = py(&[
        "create-policy",
        &unique("star"),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ])["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_fails(
        &ex,
        &c("iam-attach-role-policy", &star),
        "policy_not_administrator",
        "grants administrator access",
    );
    assert_fails(
        &ex,
        &c(
            "iam-attach-role-policy",
            "arn:aws:iam::123456789012:policy/no-such-policy",
        ),
        "policy_arn_exists",
        "does not exist",
    );

    assert_eq!(capture(&ex, &attach), json!({"AttachedPolicies": []}));
    let report = execute(&ex, &attach);
    assert!(report.summary.starts_with("attached"), "{}", report.summary);
    let oracle = call(
        "iam",
        "list_attached_role_policies",
        json!({"RoleName": role}),
    );
    assert_eq!(
        capture(&ex, &attach)["AttachedPolicies"],
        oracle["AttachedPolicies"]
    );
    assert_eq!(oracle["AttachedPolicies"][0]["PolicyArn"], arn.as_str());
    assert_fails(&ex, &attach, "policy_not_attached", "already attached");

    // The rollback: detach.
    assert_passes(
        &ex,
        &detach,
        &["role_exists", "policy_attached", "role_keeps_needed_access"],
    );
    execute(&ex, &detach);
    let oracle = call(
        "iam",
        "list_attached_role_policies",
        json!({"RoleName": role}),
    );
    assert_eq!(oracle["AttachedPolicies"], json!([]));

    // The attachment quota, as the account summary states it.
    let quota =
        call("iam", "get_account_summary", json!({}))["SummaryMap"]["AttachedPoliciesPerRoleQuota"]
            .as_u64()
            .unwrap();
    for i in 0..quota {
        let p = py(&["create-policy", &unique(&format!("q{i}"))])["Arn"]
            .as_str()
            .unwrap()
            .to_owned();
        call(
            "iam",
            "attach_role_policy",
            json!({"RoleName": role, "PolicyArn": p}),
        );
    }
    assert_fails(
        &ex,
        &attach,
        "attached_policy_quota",
        &format!("the quota is {quota}"),
    );
    assert_eq!(
        capture(&ex, &attach)["AttachedPolicies"]
            .as_array()
            .unwrap()
            .len() as u64,
        quota
    );

    let missing = c("iam-attach-role-policy", &arn);
    let missing = ActionContext {
        params: json!({"account": account(), "region": region(), "role_name": "no-such-role", "policy_arn": arn})
            .as_object()
            .cloned()
            .unwrap(),
        ..missing
    };
    assert_fails(&ex, &missing, "role_exists", "does not exist");
    assert!(matches!(
        block_on(ex.capture_state(&missing, &none())),
        Err(CoreError::ExecutorNotFound(_))
    ));
    let e = block_on(ex.execute(&missing, &none(), &Cancel::new())).unwrap_err();
    assert!(matches!(e, CoreError::ExecutorNotFound(_)), "{e}");
}
