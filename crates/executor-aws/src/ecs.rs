//! ECS: update and scale a service, stop a task; state from `DescribeServices` /
//! `DescribeTasks` (camelCase, as the AWS CLI prints ECS).

use std::time::Duration;

use agentsafe_core::{ActionContext, Cancel, ExecutionReport, PrecheckResult};
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::types::{Deployment, Service, Task, TaskDefinition};
use serde_json::{Value, json};

use crate::error::sdk;
use crate::params::Params;
use crate::shape::Obj;
use crate::{Aws, AwsError, wait};

fn svc_name(cluster: &str, service: &str) -> String {
    format!("service `{cluster}/{service}`")
}

fn deployment_json(d: &Deployment) -> Value {
    Obj::new()
        .s("id", d.id())
        .s("status", d.status())
        .s("taskDefinition", d.task_definition())
        .i("desiredCount", Some(i64::from(d.desired_count())))
        .i("pendingCount", Some(i64::from(d.pending_count())))
        .i("runningCount", Some(i64::from(d.running_count())))
        .i("failedTasks", Some(i64::from(d.failed_tasks())))
        .s("rolloutState", d.rollout_state().map(|s| s.as_str()))
        .s("rolloutStateReason", d.rollout_state_reason())
        .s("launchType", d.launch_type().map(|l| l.as_str()))
        .t("createdAt", d.created_at())
        .t("updatedAt", d.updated_at())
        .done()
}

fn service_json(s: &Service) -> Value {
    Obj::new()
        .s("serviceArn", s.service_arn())
        .s("serviceName", s.service_name())
        .s("clusterArn", s.cluster_arn())
        .s("status", s.status())
        .i("desiredCount", Some(i64::from(s.desired_count())))
        .i("runningCount", Some(i64::from(s.running_count())))
        .i("pendingCount", Some(i64::from(s.pending_count())))
        .s("launchType", s.launch_type().map(|l| l.as_str()))
        .list(
            "capacityProviderStrategy",
            s.capacity_provider_strategy()
                .iter()
                .map(|c| {
                    Obj::new()
                        .s("capacityProvider", Some(c.capacity_provider()))
                        .i("weight", Some(i64::from(c.weight())))
                        .i("base", Some(i64::from(c.base())))
                        .done()
                })
                .collect(),
        )
        .s("taskDefinition", s.task_definition())
        .list(
            "deployments",
            s.deployments().iter().map(deployment_json).collect(),
        )
        .s(
            "schedulingStrategy",
            s.scheduling_strategy().map(|x| x.as_str()),
        )
        .t("createdAt", s.created_at())
        .done()
}

fn task_json(t: &Task) -> Value {
    Obj::new()
        .s("taskArn", t.task_arn())
        .s("clusterArn", t.cluster_arn())
        .s("taskDefinitionArn", t.task_definition_arn())
        .s("lastStatus", t.last_status())
        .s("desiredStatus", t.desired_status())
        .s("group", t.group())
        .s("startedBy", t.started_by())
        .s("launchType", t.launch_type().map(|l| l.as_str()))
        .s("cpu", t.cpu())
        .s("memory", t.memory())
        .t("createdAt", t.created_at())
        .t("startedAt", t.started_at())
        .t("stoppingAt", t.stopping_at())
        .t("stoppedAt", t.stopped_at())
        .s("stoppedReason", t.stopped_reason())
        .s("stopCode", t.stop_code().map(|c| c.as_str()))
        .done()
}

/// The service, or `NotFound` (also for a service that is INACTIVE: deleted).
async fn describe_service(aws: &Aws, cluster: &str, service: &str) -> Result<Service, AwsError> {
    let name = svc_name(cluster, service);
    let out = aws
        .ecs()
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| sdk(e, &format!("ecs DescribeServices on {name}"), &name))?;
    out.services()
        .iter()
        .find(|s| s.service_name() == Some(service) && s.status() != Some("INACTIVE"))
        .cloned()
        .ok_or_else(|| AwsError::NotFound(format!("{name} in {}", aws.region())))
}

async fn describe_task(aws: &Aws, cluster: &str, task: &str) -> Result<Task, AwsError> {
    let name = format!("task `{cluster}/{task}`");
    let out = aws
        .ecs()
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| sdk(e, &format!("ecs DescribeTasks on {name}"), &name))?;
    out.tasks()
        .iter()
        .find(|t| {
            t.task_arn()
                .is_some_and(|a| a.ends_with(&format!("/{task}")))
        })
        .cloned()
        .ok_or_else(|| AwsError::NotFound(format!("{name} in {}", aws.region())))
}

async fn describe_task_definition(aws: &Aws, td: &str) -> Result<TaskDefinition, AwsError> {
    let name = format!("task definition `{td}`");
    let out = aws
        .ecs()
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .map_err(|e| {
            // ECS answers ClientException for an unknown revision.
            match crate::error::service_code(&e).as_deref() {
                Some("ClientException") => AwsError::NotFound(name.clone()),
                _ => sdk(e, &format!("ecs DescribeTaskDefinition on {name}"), &name),
            }
        })?;
    out.task_definition()
        .cloned()
        .ok_or(AwsError::NotFound(name))
}

/// `DescribeServices` or `DescribeTasks`, as the AWS CLI prints it.
pub(crate) async fn capture(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
) -> Result<Value, AwsError> {
    let cluster = p.cluster()?;
    if ctx.action == "ecs-stop-task" {
        let task = describe_task(aws, cluster, p.task_id()?).await?;
        return Ok(json!({"tasks": [task_json(&task)], "failures": []}));
    }
    let service = describe_service(aws, cluster, p.service()?).await?;
    Ok(json!({"services": [service_json(&service)], "failures": []}))
}

fn passed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Passed(s))
}

fn failed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Failed(s))
}

/// The task's CPU units and memory MiB (task level, else the sum of its containers).
fn task_size(td: &TaskDefinition) -> (i64, i64) {
    let containers = td.container_definitions();
    let cpu = td
        .cpu()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| containers.iter().map(|c| i64::from(c.cpu())).sum());
    let mem = td.memory().and_then(|m| m.parse().ok()).unwrap_or_else(|| {
        containers
            .iter()
            .map(|c| i64::from(c.memory().or(c.memory_reservation()).unwrap_or(0)))
            .sum()
    });
    (cpu, mem)
}

fn family(td: &str) -> &str {
    let tail = td.rsplit('/').next().unwrap_or(td);
    tail.rsplit_once(':').map_or(tail, |(f, _)| f)
}

pub(crate) async fn precheck(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
    check: &str,
) -> Result<PrecheckResult, AwsError> {
    let cluster = p.cluster()?;
    match check {
        "service_exists" => {
            let service = p.service()?;
            match describe_service(aws, cluster, service).await {
                Ok(s) if s.status() == Some("ACTIVE") => {
                    passed(format!("{} is ACTIVE", svc_name(cluster, service)))
                }
                Ok(s) => failed(format!(
                    "{} is {}",
                    svc_name(cluster, service),
                    s.status().unwrap_or("in an unknown state")
                )),
                Err(AwsError::NotFound(what)) => failed(format!("{what} does not exist")),
                Err(e) => Err(e),
            }
        }
        "desired_count_within_autoscaling_bounds" => {
            let service = p.service()?;
            let want = p.int("desired_count", 0, 500)?;
            let resource = format!("service/{cluster}/{service}");
            let out = aws
                .autoscaling()
                .describe_scalable_targets()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_ids(&resource)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &format!("application-autoscaling DescribeScalableTargets on `{resource}`"),
                        &resource,
                    )
                })?;
            match out.scalable_targets().first() {
                None => passed(format!(
                    "Application Auto Scaling does not manage {}",
                    svc_name(cluster, service)
                )),
                Some(t) => {
                    let (min, max) = (t.min_capacity(), t.max_capacity());
                    if (min..=max).contains(&want) {
                        passed(format!(
                            "{want} lies within the scalable target's {min}..={max}"
                        ))
                    } else {
                        failed(format!(
                            "{want} lies outside the scalable target's {min}..={max}: Application Auto Scaling would undo it"
                        ))
                    }
                }
            }
        }
        "cluster_capacity_available" => {
            let service = p.service()?;
            let want = i64::from(p.int("desired_count", 0, 500)?);
            let s = describe_service(aws, cluster, service).await?;
            let added = want - i64::from(s.desired_count());
            if added <= 0 {
                return passed(format!("no task is added ({} → {want})", s.desired_count()));
            }
            let fargate = s.launch_type().is_some_and(|l| l.as_str() == "FARGATE")
                || s.capacity_provider_strategy()
                    .iter()
                    .any(|c| c.capacity_provider().starts_with("FARGATE"));
            if fargate {
                return passed(format!(
                    "{} runs on Fargate, whose capacity AWS provides ({added} tasks added)",
                    svc_name(cluster, service)
                ));
            }
            let td = describe_task_definition(aws, s.task_definition().unwrap_or_default()).await?;
            let (cpu, mem) = task_size(&td);
            let ecs = aws.ecs();
            // Only ACTIVE instances take new tasks (DRAINING ones are being emptied), and
            // every page counts: a partial list would understate or overstate capacity.
            let mut arns = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let page = ecs
                    .list_container_instances()
                    .cluster(cluster)
                    .status(aws_sdk_ecs::types::ContainerInstanceStatus::Active)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| {
                        sdk(
                            e,
                            &format!("ecs ListContainerInstances on cluster `{cluster}`"),
                            &format!("cluster `{cluster}`"),
                        )
                    })?;
                arns.extend(page.container_instance_arns().iter().cloned());
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                    _ => break,
                }
            }
            if arns.is_empty() {
                return failed(format!(
                    "cluster `{cluster}` has no container instance to place {added} more tasks on"
                ));
            }
            let mut fit = 0i64;
            // DescribeContainerInstances takes at most 100 instances a call.
            for chunk in arns.chunks(100) {
                let out = ecs
                    .describe_container_instances()
                    .cluster(cluster)
                    .set_container_instances(Some(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| {
                        sdk(
                            e,
                            &format!("ecs DescribeContainerInstances on cluster `{cluster}`"),
                            &format!("cluster `{cluster}`"),
                        )
                    })?;
                for ci in out.container_instances() {
                    let free = |name: &str| {
                        ci.remaining_resources()
                            .iter()
                            .find(|r| r.name() == Some(name))
                            .map_or(0, |r| i64::from(r.integer_value()))
                    };
                    let by_cpu = if cpu > 0 { free("CPU") / cpu } else { i64::MAX };
                    let by_mem = if mem > 0 {
                        free("MEMORY") / mem
                    } else {
                        i64::MAX
                    };
                    fit = fit.saturating_add(by_cpu.min(by_mem));
                }
            }
            if fit >= added {
                passed(format!(
                    "the container instances have room for {fit} more tasks ({added} needed)"
                ))
            } else {
                failed(format!(
                    "the container instances have room for {fit} more tasks of {cpu} CPU units / {mem} MiB, {added} needed"
                ))
            }
        }
        "task_definition_exists" => {
            let td = p.task_definition()?;
            match describe_task_definition(aws, td).await {
                Ok(d) if d.status().is_some_and(|s| s.as_str() == "ACTIVE") => {
                    passed(format!("task definition `{td}` is ACTIVE"))
                }
                Ok(d) => failed(format!(
                    "task definition `{td}` is {}",
                    d.status().map_or("in an unknown state", |s| s.as_str())
                )),
                Err(AwsError::NotFound(what)) => failed(format!("{what} does not exist")),
                Err(e) => Err(e),
            }
        }
        "task_definition_family_matches" => {
            let td = p.task_definition()?;
            let s = describe_service(aws, cluster, p.service()?).await?;
            let current = s.task_definition().unwrap_or_default();
            if family(current) == family(td) {
                passed(format!("family `{}` as before", family(td)))
            } else {
                failed(format!(
                    "the service runs family `{}`, the new task definition is family `{}`",
                    family(current),
                    family(td)
                ))
            }
        }
        "deployment_not_in_progress" => {
            let s = describe_service(aws, cluster, p.service()?).await?;
            let busy: Vec<String> = s
                .deployments()
                .iter()
                .filter(|d| {
                    d.status() == Some("ACTIVE")
                        || d.rollout_state()
                            .is_some_and(|r| r.as_str() == "IN_PROGRESS")
                })
                .map(|d| {
                    format!(
                        "{} ({}, {})",
                        d.id().unwrap_or("?"),
                        d.status().unwrap_or("?"),
                        d.rollout_state().map_or("?", |r| r.as_str())
                    )
                })
                .collect();
            if busy.is_empty() {
                passed("no deployment is in progress".into())
            } else {
                failed(format!("deployments in progress: {}", busy.join(", ")))
            }
        }
        "task_exists" => {
            let task = p.task_id()?;
            match describe_task(aws, cluster, task).await {
                Ok(t) if t.last_status() == Some("STOPPED") => {
                    failed(format!("task `{cluster}/{task}` is already STOPPED"))
                }
                Ok(t) => passed(format!(
                    "task `{cluster}/{task}` is {}",
                    t.last_status().unwrap_or("in an unknown state")
                )),
                Err(AwsError::NotFound(what)) => failed(format!("{what} does not exist")),
                Err(e) => Err(e),
            }
        }
        "task_belongs_to_target" => {
            let task = p.task_id()?;
            let t = describe_task(aws, cluster, task).await?;
            let group = t.group().unwrap_or_default();
            if ctx.target_type.as_deref() == Some("aws-ecs-service") {
                let Some(service) = ctx.attributes.get("service") else {
                    return failed(format!(
                        "target `{}` is a service target without a `service` attribute",
                        ctx.target
                    ));
                };
                if group == format!("service:{service}") {
                    passed(format!("task `{task}` was started by service `{service}`"))
                } else {
                    failed(format!(
                        "task `{task}` has group `{group}`, not `service:{service}`: it is not a task of the target"
                    ))
                }
            } else {
                passed(format!(
                    "task `{task}` runs in cluster `{cluster}`, the target's cluster"
                ))
            }
        }
        "task_is_replaced" => {
            let task = p.task_id()?;
            let t = describe_task(aws, cluster, task).await?;
            match t.group().and_then(|g| g.strip_prefix("service:")) {
                Some(s) => passed(format!("service `{s}` starts a replacement")),
                None => failed(format!(
                    "task `{task}` belongs to no service (group `{}`): nothing replaces it",
                    t.group().unwrap_or_default()
                )),
            }
        }
        _ => Ok(PrecheckResult::Unsupported),
    }
}

pub(crate) async fn execute(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
    cancel: &Cancel,
    limit: Duration,
) -> Result<ExecutionReport, AwsError> {
    let cluster = p.cluster()?;
    if ctx.action == "ecs-stop-task" {
        let task = p.task_id()?;
        let name = format!("task `{cluster}/{task}`");
        let out = aws
            .ecs()
            .stop_task()
            .cluster(cluster)
            .task(task)
            .reason(format!("agentsafe decision {}", ctx.decision_id))
            .send()
            .await
            .map_err(|e| sdk(e, &format!("ecs StopTask on {name}"), &name))?;
        let status = out
            .task()
            .and_then(|t| t.last_status())
            .unwrap_or("?")
            .to_owned();
        return Ok(ExecutionReport {
            summary: format!("stopped {name} (last status {status})"),
            output: json!({"task": out.task().map(task_json)}),
        });
    }
    let service = p.service()?;
    let name = svc_name(cluster, service);
    let count = p.int("desired_count", 0, 500)?;
    let mut req = aws
        .ecs()
        .update_service()
        .cluster(cluster)
        .service(service)
        .desired_count(count);
    let mut td_wanted = None;
    if ctx.action == "ecs-update-service" {
        let td = p.task_definition()?;
        td_wanted = Some(td);
        req = req
            .task_definition(td)
            .force_new_deployment(p.flag("force_new_deployment")?);
    }
    let out = req
        .send()
        .await
        .map_err(|e| sdk(e, &format!("ecs UpdateService on {name}"), &name))?;
    // A family:revision param names the same definition as the ARN the service reports.
    let td_arn = out
        .service()
        .and_then(|s| s.task_definition())
        .map(str::to_owned);
    let seen = wait::until(
        &format!("{name} at {count} desired tasks"),
        limit,
        cancel,
        || {
            let td_arn = td_arn.clone();
            async move {
                let s = describe_service(aws, cluster, service).await?;
                let td_ok = match (td_wanted, &td_arn) {
                    (None, _) => true,
                    (Some(_), Some(arn)) => s.task_definition() == Some(arn.as_str()),
                    (Some(want), None) => s.task_definition().is_some_and(|t| t.ends_with(want)),
                };
                Ok(if s.desired_count() == count && td_ok {
                    Ok(s)
                } else {
                    Err(format!(
                        "desiredCount {}, taskDefinition {}",
                        s.desired_count(),
                        s.task_definition().unwrap_or("?")
                    ))
                })
            }
        },
    )
    .await?;
    let summary = match ctx.action.as_str() {
        "ecs-update-service" => format!(
            "updated {name}: task definition {}, {count} desired tasks",
            seen.task_definition().unwrap_or("?")
        ),
        _ => format!("scaled {name} to {count} desired tasks"),
    };
    Ok(ExecutionReport {
        summary,
        output: json!({"service": service_json(&seen)}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(family("web:3"), "web");
        assert_eq!(
            family("arn:aws:ecs:us-east-1:123456789012:task-definition/web-td:10"),
            "web-td"
        );
    }
}
