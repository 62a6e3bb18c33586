//! EC2: stop, start, reboot and terminate an instance; state from `DescribeInstances`;
//! `Executor::dry_run` through EC2's native `DryRun`.

use std::time::Duration;

use agentsafe_core::{ActionContext, Cancel, ExecutionReport, PrecheckResult};
use aws_sdk_ec2::types::{
    Filter, Instance, InstanceAttributeName, InstanceStateChange, LocationType, Reservation,
};
use serde_json::{Value, json};

use crate::error::{sdk, service_code};
use crate::params::Params;
use crate::shape::Obj;
use crate::{Aws, AwsError, wait};

/// The tag AWS puts on every instance an Auto Scaling group launches or attaches.
const ASG_TAG: &str = "aws:autoscaling:groupName";

fn what(op: &str, id: &str) -> String {
    format!("ec2 {op} on instance `{id}`")
}

fn not_found(id: &str, region: &str) -> AwsError {
    AwsError::NotFound(format!("instance `{id}` in {region}"))
}

/// The instance, as `DescribeInstances` returns it.
async fn describe(aws: &Aws, id: &str) -> Result<(Reservation, Instance), AwsError> {
    let out = aws
        .ec2()
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| {
            sdk(
                e,
                &what("DescribeInstances", id),
                &format!("instance `{id}` in {}", aws.region()),
            )
        })?;
    let found = out.reservations().iter().find_map(|r| {
        r.instances()
            .iter()
            .find(|i| i.instance_id() == Some(id))
            .map(|i| (r.clone(), i.clone()))
    });
    found.ok_or_else(|| not_found(id, aws.region()))
}

fn state_name(i: &Instance) -> &str {
    i.state()
        .and_then(|s| s.name())
        .map(|n| n.as_str())
        .unwrap_or("unknown")
}

/// One instance as the AWS CLI prints it.
pub(crate) fn instance_json(i: &Instance) -> Value {
    let block_devices = i
        .block_device_mappings()
        .iter()
        .map(|m| {
            Obj::new()
                .s("DeviceName", m.device_name())
                .v(
                    "Ebs",
                    m.ebs().map(|e| {
                        Obj::new()
                            .t("AttachTime", e.attach_time())
                            .b("DeleteOnTermination", e.delete_on_termination())
                            .s("Status", e.status().map(|s| s.as_str()))
                            .s("VolumeId", e.volume_id())
                            .done()
                    }),
                )
                .done()
        })
        .collect();
    let tags = i
        .tags()
        .iter()
        .map(|t| Obj::new().s("Key", t.key()).s("Value", t.value()).done())
        .collect();
    Obj::new()
        .s("InstanceId", i.instance_id())
        .s("ImageId", i.image_id())
        .s("InstanceType", i.instance_type().map(|t| t.as_str()))
        .t("LaunchTime", i.launch_time())
        .v(
            "State",
            i.state().map(|s| {
                Obj::new()
                    .i("Code", s.code().map(i64::from))
                    .s("Name", s.name().map(|n| n.as_str()))
                    .done()
            }),
        )
        .s("StateTransitionReason", i.state_transition_reason())
        .v(
            "StateReason",
            i.state_reason().map(|r| {
                Obj::new()
                    .s("Code", r.code())
                    .s("Message", r.message())
                    .done()
            }),
        )
        .v(
            "Placement",
            i.placement().map(|p| {
                Obj::new()
                    .s("AvailabilityZone", p.availability_zone())
                    .s("Tenancy", p.tenancy().map(|t| t.as_str()))
                    .done()
            }),
        )
        .s("PrivateIpAddress", i.private_ip_address())
        .s("PublicIpAddress", i.public_ip_address())
        .s("VpcId", i.vpc_id())
        .s("SubnetId", i.subnet_id())
        .s("Architecture", i.architecture().map(|a| a.as_str()))
        .s("RootDeviceType", i.root_device_type().map(|t| t.as_str()))
        .s("RootDeviceName", i.root_device_name())
        .list("BlockDeviceMappings", block_devices)
        .list("Tags", tags)
        .done()
}

/// `DescribeInstances` for the instance, as the AWS CLI prints it.
pub(crate) async fn capture(aws: &Aws, p: &Params<'_>) -> Result<Value, AwsError> {
    let id = p.instance_id()?;
    let (r, i) = describe(aws, id).await?;
    Ok(json!({
        "Reservations": [
            Obj::new()
                .s("ReservationId", r.reservation_id())
                .s("OwnerId", r.owner_id())
                .list("Instances", vec![instance_json(&i)])
                .done()
        ]
    }))
}

fn passed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Passed(s))
}

fn failed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Failed(s))
}

pub(crate) async fn precheck(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
    check: &str,
) -> Result<PrecheckResult, AwsError> {
    let id = p.instance_id()?;
    let known = [
        "instance_exists",
        "instance_state_allows_stop",
        "instance_state_allows_start",
        "instance_state_allows_reboot",
        "root_device_is_ebs",
        "instance_not_in_auto_scaling_group",
        "capacity_available",
        "termination_protection_disabled",
        "volumes_deleted_on_termination",
    ];
    if !known.contains(&check) {
        return Ok(PrecheckResult::Unsupported);
    }
    let instance = match describe(aws, id).await {
        Ok((_, i)) => i,
        Err(AwsError::NotFound(what)) => return failed(format!("{what} does not exist")),
        Err(e) => return Err(e),
    };
    let state = state_name(&instance);
    let in_state = |allowed: &[&str], verb: &str| {
        if allowed.contains(&state) {
            passed(format!("instance `{id}` is {state}"))
        } else {
            failed(format!(
                "instance `{id}` is {state}; {verb} needs {}",
                allowed.join(" or ")
            ))
        }
    };
    match check {
        "instance_exists" => {
            if ctx.action == "ec2-terminate-instance" && state == "terminated" {
                failed(format!("instance `{id}` is already terminated"))
            } else {
                passed(format!("instance `{id}` exists ({state})"))
            }
        }
        "instance_state_allows_stop" => in_state(&["running"], "a stop"),
        "instance_state_allows_start" => in_state(&["stopped"], "a start"),
        "instance_state_allows_reboot" => in_state(&["running"], "a reboot"),
        "root_device_is_ebs" => match instance.root_device_type().map(|t| t.as_str()) {
            Some("ebs") => passed(format!("the root device of `{id}` is an EBS volume")),
            other => failed(format!(
                "the root device of `{id}` is {} (instance store instances cannot be stopped)",
                other.unwrap_or("unknown")
            )),
        },
        "instance_not_in_auto_scaling_group" => {
            match instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(ASG_TAG))
                .and_then(|t| t.value())
            {
                Some(group) => failed(format!(
                    "instance `{id}` belongs to Auto Scaling group `{group}` (tag {ASG_TAG}), which would replace it"
                )),
                None => passed(format!("instance `{id}` has no {ASG_TAG} tag")),
            }
        }
        "capacity_available" => {
            let itype = instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default();
            let az = instance
                .placement()
                .and_then(|pl| pl.availability_zone())
                .unwrap_or_default()
                .to_owned();
            let out = aws
                .ec2()
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(
                    Filter::builder()
                        .name("instance-type")
                        .values(&itype)
                        .build(),
                )
                .filters(Filter::builder().name("location").values(&az).build())
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &format!("ec2 DescribeInstanceTypeOfferings for `{itype}` in {az}"),
                        &az,
                    )
                })?;
            if out.instance_type_offerings().is_empty() {
                failed(format!("instance type {itype} is not offered in {az}"))
            } else {
                passed(format!(
                    "instance type {itype} is offered in {az} (EC2 does not publish spare capacity; a start can still fail with InsufficientInstanceCapacity)"
                ))
            }
        }
        "termination_protection_disabled" => {
            let out = aws
                .ec2()
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(InstanceAttributeName::DisableApiTermination)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &what("DescribeInstanceAttribute", id),
                        &format!("instance `{id}`"),
                    )
                })?;
            match out.disable_api_termination().and_then(|v| v.value()) {
                Some(false) => passed(format!("instance `{id}` has no termination protection")),
                Some(true) => failed(format!(
                    "instance `{id}` has termination protection (DisableApiTermination = true)"
                )),
                None => failed(format!(
                    "instance `{id}`: EC2 did not say whether termination protection is on"
                )),
            }
        }
        "volumes_deleted_on_termination" => {
            let deleted: Vec<String> = instance
                .block_device_mappings()
                .iter()
                .filter_map(|m| {
                    let ebs = m.ebs()?;
                    ebs.delete_on_termination().filter(|d| *d).map(|_| {
                        format!(
                            "{} ({})",
                            ebs.volume_id().unwrap_or("?"),
                            m.device_name().unwrap_or("?")
                        )
                    })
                })
                .collect();
            if deleted.is_empty() {
                passed(format!("no EBS volume of `{id}` is deleted with it"))
            } else {
                failed(format!(
                    "terminating `{id}` deletes EBS volumes {}",
                    deleted.join(", ")
                ))
            }
        }
        _ => Ok(PrecheckResult::Unsupported),
    }
}

fn changes(list: &[InstanceStateChange]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| {
                let st = |s: Option<&aws_sdk_ec2::types::InstanceState>| {
                    s.map(|s| {
                        Obj::new()
                            .i("Code", s.code().map(i64::from))
                            .s("Name", s.name().map(|n| n.as_str()))
                            .done()
                    })
                };
                Obj::new()
                    .s("InstanceId", c.instance_id())
                    .v("CurrentState", st(c.current_state()))
                    .v("PreviousState", st(c.previous_state()))
                    .done()
            })
            .collect(),
    )
}

/// Waits until the instance is in one of `states`.
async fn wait_for(
    aws: &Aws,
    id: &str,
    states: &[&str],
    cancel: &Cancel,
    limit: Duration,
) -> Result<String, AwsError> {
    wait::until(
        &format!("instance `{id}` {}", states.join(" or ")),
        limit,
        cancel,
        || async move {
            let (_, i) = describe(aws, id).await?;
            let s = state_name(&i).to_owned();
            Ok(if states.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(s)
            })
        },
    )
    .await
}

pub(crate) async fn execute(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
    cancel: &Cancel,
    limit: Duration,
) -> Result<ExecutionReport, AwsError> {
    let id = p.instance_id()?;
    let res = format!("instance `{id}` in {}", aws.region());
    let ec2 = aws.ec2();
    match ctx.action.as_str() {
        "ec2-stop-instance" => {
            let force = p.flag("force")?;
            let out = ec2
                .stop_instances()
                .instance_ids(id)
                .force(force)
                .send()
                .await
                .map_err(|e| sdk(e, &what("StopInstances", id), &res))?;
            let state = wait_for(aws, id, &["stopping", "stopped"], cancel, limit).await?;
            Ok(ExecutionReport {
                summary: format!(
                    "stopped instance {id}{} (now {state})",
                    if force { " (forced)" } else { "" }
                ),
                output: json!({"StoppingInstances": changes(out.stopping_instances())}),
            })
        }
        "ec2-start-instance" => {
            let out = ec2
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| sdk(e, &what("StartInstances", id), &res))?;
            let state = wait_for(aws, id, &["pending", "running"], cancel, limit).await?;
            Ok(ExecutionReport {
                summary: format!("started instance {id} (now {state})"),
                output: json!({"StartingInstances": changes(out.starting_instances())}),
            })
        }
        "ec2-reboot-instance" => {
            ec2.reboot_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| sdk(e, &what("RebootInstances", id), &res))?;
            Ok(ExecutionReport {
                summary: format!("rebooted instance {id}"),
                output: json!({"RebootInstances": {"InstanceId": id}}),
            })
        }
        "ec2-terminate-instance" => {
            let out = ec2
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| sdk(e, &what("TerminateInstances", id), &res))?;
            let state = wait_for(aws, id, &["shutting-down", "terminated"], cancel, limit).await?;
            Ok(ExecutionReport {
                summary: format!("terminated instance {id} (now {state})"),
                output: json!({"TerminatingInstances": changes(out.terminating_instances())}),
            })
        }
        other => Err(AwsError::Config(format!(
            "action `{other}` is not an EC2 action"
        ))),
    }
}

/// EC2 `DryRun`: `DryRunOperation` means the call would succeed.
pub(crate) async fn dry_run(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
) -> Result<Value, AwsError> {
    let id = p.instance_id()?;
    let res = format!("instance `{id}` in {}", aws.region());
    let ec2 = aws.ec2();
    macro_rules! dry {
        ($op:literal, $call:expr) => {
            match $call.dry_run(true).send().await {
                Ok(_) => Err(AwsError::Backend {
                    class: "dry run not honoured",
                    what: what($op, id),
                    detail: "the endpoint answered success to a DryRun request".into(),
                }),
                Err(e) if service_code(&e).as_deref() == Some("DryRunOperation") => Ok(json!({
                    "DryRun": true,
                    "Operation": $op,
                    "InstanceId": id,
                    "Result": "DryRunOperation: the request would have succeeded",
                })),
                Err(e) => Err(sdk(e, &format!("{} (DryRun)", what($op, id)), &res)),
            }
        };
    }
    match ctx.action.as_str() {
        "ec2-stop-instance" => dry!(
            "StopInstances",
            ec2.stop_instances()
                .instance_ids(id)
                .force(p.flag("force")?)
        ),
        "ec2-start-instance" => dry!("StartInstances", ec2.start_instances().instance_ids(id)),
        "ec2-reboot-instance" => dry!("RebootInstances", ec2.reboot_instances().instance_ids(id)),
        "ec2-terminate-instance" => dry!(
            "TerminateInstances",
            ec2.terminate_instances().instance_ids(id)
        ),
        other => Err(AwsError::Config(format!(
            "action `{other}` is not an EC2 action"
        ))),
    }
}
