//! Lambda: update a function's memory and timeout, invoke it; state from
//! `GetFunctionConfiguration` (without the environment variables, which often hold secrets).

use std::time::Duration;

use agentsafe_core::{ActionContext, Cancel, ExecutionReport, PrecheckResult};
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::{Value, json};

use crate::error::sdk;
use crate::params::Params;
use crate::shape::Obj;
use crate::{Aws, AwsError, wait};

/// The synchronous invocation payload limit.
const SYNC_LIMIT: usize = 6 * 1024 * 1024;
/// The asynchronous (`Event`) invocation payload limit.
const ASYNC_LIMIT: usize = 256 * 1024;

fn fn_name(name: &str) -> String {
    format!("function `{name}`")
}

async fn get(aws: &Aws, name: &str) -> Result<GetFunctionConfigurationOutput, AwsError> {
    aws.lambda()
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(|e| {
            sdk(
                e,
                &format!("lambda GetFunctionConfiguration on {}", fn_name(name)),
                &format!("{} in {}", fn_name(name), aws.region()),
            )
        })
}

fn config_json(c: &GetFunctionConfigurationOutput) -> Value {
    Obj::new()
        .s("FunctionName", c.function_name())
        .s("FunctionArn", c.function_arn())
        .s("Runtime", c.runtime().map(|r| r.as_str()))
        .s("Role", c.role())
        .s("Handler", c.handler())
        .i("CodeSize", Some(c.code_size()))
        .s("CodeSha256", c.code_sha256())
        .s("Description", c.description())
        .i("Timeout", c.timeout().map(i64::from))
        .i("MemorySize", c.memory_size().map(i64::from))
        .s("LastModified", c.last_modified())
        .s("Version", c.version())
        .s("State", c.state().map(|s| s.as_str()))
        .s("StateReason", c.state_reason())
        .s("StateReasonCode", c.state_reason_code().map(|s| s.as_str()))
        .s(
            "LastUpdateStatus",
            c.last_update_status().map(|s| s.as_str()),
        )
        .s("LastUpdateStatusReason", c.last_update_status_reason())
        .s(
            "LastUpdateStatusReasonCode",
            c.last_update_status_reason_code().map(|s| s.as_str()),
        )
        .s("PackageType", c.package_type().map(|s| s.as_str()))
        .v(
            "Architectures",
            Some(Value::Array(
                c.architectures()
                    .iter()
                    .map(|a| Value::String(a.as_str().to_owned()))
                    .collect(),
            )),
        )
        .v(
            "EphemeralStorage",
            c.ephemeral_storage().map(|e| json!({"Size": e.size()})),
        )
        .done()
}

/// `GetFunctionConfiguration`, as the AWS CLI prints it (environment variables left out).
pub(crate) async fn capture(aws: &Aws, p: &Params<'_>) -> Result<Value, AwsError> {
    Ok(config_json(&get(aws, p.function_name()?).await?))
}

/// The payload as it is sent: compact JSON.
fn payload_bytes(p: &Params<'_>) -> Result<Vec<u8>, AwsError> {
    let payload = p.value("payload").cloned().unwrap_or_else(|| json!({}));
    serde_json::to_vec(&payload).map_err(|e| AwsError::Param {
        param: "payload".into(),
        reason: format!("cannot encode: {e}"),
    })
}

fn invocation_type(p: &Params<'_>) -> Result<&'static str, AwsError> {
    match p.value("invocation_type").and_then(Value::as_str) {
        None | Some("RequestResponse") => Ok("RequestResponse"),
        Some("Event") => Ok("Event"),
        Some("DryRun") => Ok("DryRun"),
        Some(_) => Err(AwsError::Param {
            param: "invocation_type".into(),
            reason: "expected RequestResponse, Event or DryRun".into(),
        }),
    }
}

pub(crate) async fn precheck(
    aws: &Aws,
    _ctx: &ActionContext,
    p: &Params<'_>,
    check: &str,
) -> Result<PrecheckResult, AwsError> {
    let name = p.function_name()?;
    let current = || async {
        match get(aws, name).await {
            Ok(c) => Ok(Ok(c)),
            Err(AwsError::NotFound(what)) => Ok(Err(PrecheckResult::Failed(format!(
                "{what} does not exist"
            )))),
            Err(e) => Err(e),
        }
    };
    match check {
        "function_exists" => Ok(match current().await? {
            Ok(c) => PrecheckResult::Passed(format!(
                "{} exists ({})",
                fn_name(name),
                c.function_arn().unwrap_or(name)
            )),
            Err(r) => r,
        }),
        "function_active" => Ok(match current().await? {
            Ok(c) => match c.state().map(|s| s.as_str()) {
                Some("Active") => PrecheckResult::Passed(format!("{} is Active", fn_name(name))),
                other => PrecheckResult::Failed(format!(
                    "{} is {}{}",
                    fn_name(name),
                    other.unwrap_or("in an unknown state"),
                    c.state_reason()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )),
            },
            Err(r) => r,
        }),
        "function_not_updating" => Ok(match current().await? {
            Ok(c) => match c.last_update_status().map(|s| s.as_str()) {
                Some("InProgress") => {
                    PrecheckResult::Failed(format!("an update of {} is in progress", fn_name(name)))
                }
                other => PrecheckResult::Passed(format!(
                    "LastUpdateStatus of {} is {}",
                    fn_name(name),
                    other.unwrap_or("absent")
                )),
            },
            Err(r) => r,
        }),
        "at_least_one_setting" => {
            let memory = p.opt_int("memory_size", 128, 10240)?;
            let timeout = p.opt_int("timeout", 1, 900)?;
            Ok(if memory.is_none() && timeout.is_none() {
                PrecheckResult::Failed("neither memory_size nor timeout is given".into())
            } else {
                PrecheckResult::Passed(format!(
                    "memory_size {}, timeout {}",
                    memory.map_or("unchanged".into(), |m| format!("{m} MB")),
                    timeout.map_or("unchanged".into(), |t| format!("{t} s"))
                ))
            })
        }
        "payload_within_size_limit" => {
            let size = payload_bytes(p)?.len();
            let kind = invocation_type(p)?;
            let limit = if kind == "Event" {
                ASYNC_LIMIT
            } else {
                SYNC_LIMIT
            };
            Ok(if size <= limit {
                PrecheckResult::Passed(format!("{size} bytes, within the {kind} limit of {limit}"))
            } else {
                PrecheckResult::Failed(format!("{size} bytes exceed the {kind} limit of {limit}"))
            })
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
    let name = p.function_name()?;
    let res = format!("{} in {}", fn_name(name), aws.region());
    match ctx.action.as_str() {
        "lambda-update-function-config" => {
            let memory = p.opt_int("memory_size", 128, 10240)?;
            let timeout = p.opt_int("timeout", 1, 900)?;
            if memory.is_none() && timeout.is_none() {
                return Err(AwsError::Param {
                    param: "memory_size".into(),
                    reason: "neither memory_size nor timeout is given: nothing to change".into(),
                });
            }
            aws.lambda()
                .update_function_configuration()
                .function_name(name)
                .set_memory_size(memory)
                .set_timeout(timeout)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &format!("lambda UpdateFunctionConfiguration on {}", fn_name(name)),
                        &res,
                    )
                })?;
            let done = wait::until(
                &format!("{} update finished", fn_name(name)),
                limit,
                cancel,
                || async move {
                    let c = get(aws, name).await?;
                    Ok(match c.last_update_status().map(|s| s.as_str()) {
                        Some("InProgress") => Err("LastUpdateStatus InProgress".to_owned()),
                        _ => Ok(c),
                    })
                },
            )
            .await?;
            if done.last_update_status().map(|s| s.as_str()) == Some("Failed") {
                return Err(AwsError::Backend {
                    class: "update failed",
                    what: format!("lambda UpdateFunctionConfiguration on {}", fn_name(name)),
                    detail: done
                        .last_update_status_reason()
                        .unwrap_or("LastUpdateStatus Failed")
                        .to_owned(),
                });
            }
            Ok(ExecutionReport {
                summary: format!(
                    "updated {}: memory {} MB, timeout {} s",
                    fn_name(name),
                    done.memory_size().unwrap_or_default(),
                    done.timeout().unwrap_or_default()
                ),
                output: config_json(&done),
            })
        }
        "lambda-invoke-function" => {
            let kind = invocation_type(p)?;
            let out = aws
                .lambda()
                .invoke()
                .function_name(name)
                .invocation_type(InvocationType::from(kind))
                .payload(Blob::new(payload_bytes(p)?))
                .send()
                .await
                .map_err(|e| sdk(e, &format!("lambda Invoke on {}", fn_name(name)), &res))?;
            let length = out.payload().map_or(0, |b| b.as_ref().len());
            // The response payload is not recorded: like the request payload (a sensitive
            // param) it often carries data, and the execution report goes to the audit log.
            let output = Obj::new()
                .i("StatusCode", Some(i64::from(out.status_code())))
                .s("FunctionError", out.function_error())
                .s("ExecutedVersion", out.executed_version())
                .i("PayloadLength", i64::try_from(length).ok())
                .done();
            if let Some(err) = out.function_error() {
                return Err(AwsError::Backend {
                    class: "function error",
                    what: format!("lambda Invoke on {}", fn_name(name)),
                    detail: format!("the function returned {err} (status {})", out.status_code()),
                });
            }
            Ok(ExecutionReport {
                summary: format!(
                    "invoked {} ({kind}): status {}, {length} bytes of response",
                    fn_name(name),
                    out.status_code()
                ),
                output,
            })
        }
        other => Err(AwsError::Config(format!(
            "action `{other}` is not a Lambda action"
        ))),
    }
}

/// Lambda's own dry run for `lambda-invoke-function`: `InvocationType=DryRun` checks the
/// permission and the params without running the function.
pub(crate) async fn dry_run(aws: &Aws, p: &Params<'_>) -> Result<Value, AwsError> {
    let name = p.function_name()?;
    let res = format!("{} in {}", fn_name(name), aws.region());
    let out = aws
        .lambda()
        .invoke()
        .function_name(name)
        .invocation_type(InvocationType::DryRun)
        .payload(Blob::new(payload_bytes(p)?))
        .send()
        .await
        .map_err(|e| {
            sdk(
                e,
                &format!("lambda Invoke (DryRun) on {}", fn_name(name)),
                &res,
            )
        })?;
    Ok(json!({
        "DryRun": true,
        "Operation": "Invoke",
        "FunctionName": name,
        "StatusCode": out.status_code(),
    }))
}
