//! IAM: attach and detach a managed policy on a role; state from
//! `ListAttachedRolePolicies` (every page).

use agentsafe_core::{ActionContext, ExecutionReport, PrecheckResult};
use aws_sdk_iam::types::{AttachedPolicy, SummaryKeyType};
use serde_json::{Value, json};

use crate::error::sdk;
use crate::params::Params;
use crate::shape::Obj;
use crate::{Aws, AwsError};

/// IAM's default quota of managed policies per role, when the account summary lacks it.
const DEFAULT_QUOTA: i32 = 10;
/// A role used more recently than this counts as in use.
const RECENT_USE_DAYS: i64 = 7;

fn role(name: &str) -> String {
    format!("role `{name}`")
}

/// Every managed policy attached to the role.
async fn attached(aws: &Aws, name: &str) -> Result<Vec<AttachedPolicy>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = aws
            .iam()
            .list_attached_role_policies()
            .role_name(name)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| {
                sdk(
                    e,
                    &format!("iam ListAttachedRolePolicies on {}", role(name)),
                    &role(name),
                )
            })?;
        all.extend(out.attached_policies().iter().cloned());
        match out.marker() {
            Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
            _ => return Ok(all),
        }
    }
}

/// `ListAttachedRolePolicies`, as the AWS CLI prints it (all pages joined).
pub(crate) async fn capture(aws: &Aws, p: &Params<'_>) -> Result<Value, AwsError> {
    let list = attached(aws, p.role_name()?).await?;
    Ok(json!({
        "AttachedPolicies": list
            .iter()
            .map(|a| Obj::new().s("PolicyName", a.policy_name()).s("PolicyArn", a.policy_arn()).done())
            .collect::<Vec<_>>()
    }))
}

fn passed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Passed(s))
}

fn failed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Failed(s))
}

/// Decodes the RFC 3986 percent-encoding IAM applies to policy documents.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a policy document allows `*` on `*`.
/// Whether a policy document grants administrator access: an `Allow` statement whose
/// actions include `*`, `*:*` or `iam:*` (or that uses `NotAction`, which allows everything
/// but a list) on resource `*` (or `NotResource`). `Err` when the document cannot be read:
/// a check that cannot see the policy must not pass.
fn grants_everything(document: &str) -> Result<bool, String> {
    let doc = serde_json::from_str::<Value>(document)
        .map_err(|e| format!("the policy document is not JSON ({e})"))?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("the policy document has no Statement".into()),
    };
    let any = |v: Option<&Value>, wide: &dyn Fn(&str) -> bool| match v {
        Some(Value::String(s)) => wide(s),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(wide),
        _ => false,
    };
    let admin_action = |a: &str| matches!(a.to_ascii_lowercase().as_str(), "*" | "*:*" | "iam:*");
    Ok(statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let actions = s.get("NotAction").is_some() || any(s.get("Action"), &admin_action);
        let resources =
            s.get("NotResource").is_some() || any(s.get("Resource"), &|r: &str| r == "*");
        allow && actions && resources
    }))
}

pub(crate) async fn precheck(
    aws: &Aws,
    _ctx: &ActionContext,
    p: &Params<'_>,
    check: &str,
) -> Result<PrecheckResult, AwsError> {
    let name = p.role_name()?;
    let iam = aws.iam();
    match check {
        "role_exists" => match iam.get_role().role_name(name).send().await {
            Ok(out) => passed(format!(
                "{} exists ({})",
                role(name),
                out.role().map(|r| r.arn()).unwrap_or(name)
            )),
            Err(e) => match sdk(e, &format!("iam GetRole on {}", role(name)), &role(name)) {
                AwsError::NotFound(what) => failed(format!("{what} does not exist")),
                other => Err(other),
            },
        },
        "policy_arn_exists" => {
            let arn = p.policy_arn()?;
            match iam.get_policy().policy_arn(arn).send().await {
                Ok(_) => passed(format!("policy `{arn}` exists")),
                Err(e) => match sdk(
                    e,
                    &format!("iam GetPolicy on `{arn}`"),
                    &format!("policy `{arn}`"),
                ) {
                    AwsError::NotFound(what) => failed(format!("{what} does not exist")),
                    other => Err(other),
                },
            }
        }
        "policy_not_attached" | "policy_attached" => {
            let arn = p.policy_arn()?;
            let list = match attached(aws, name).await {
                Ok(l) => l,
                Err(AwsError::NotFound(what)) => return failed(format!("{what} does not exist")),
                Err(e) => return Err(e),
            };
            let is_attached = list.iter().any(|a| a.policy_arn() == Some(arn));
            match (check, is_attached) {
                ("policy_not_attached", false) | ("policy_attached", true) => passed(format!(
                    "policy `{arn}` is {}attached to {}",
                    if is_attached { "" } else { "not " },
                    role(name)
                )),
                _ => failed(format!(
                    "policy `{arn}` is {}attached to {}",
                    if is_attached { "already " } else { "not " },
                    role(name)
                )),
            }
        }
        "attached_policy_quota" => {
            let list = match attached(aws, name).await {
                Ok(l) => l,
                Err(AwsError::NotFound(what)) => return failed(format!("{what} does not exist")),
                Err(e) => return Err(e),
            };
            let summary = iam
                .get_account_summary()
                .send()
                .await
                .map_err(|e| sdk(e, "iam GetAccountSummary", "the account summary"))?;
            let quota = summary
                .summary_map()
                .and_then(|m| m.get(&SummaryKeyType::AttachedPoliciesPerRoleQuota))
                .copied()
                .unwrap_or(DEFAULT_QUOTA);
            let n = list.len();
            if i64::try_from(n).unwrap_or(i64::MAX) < i64::from(quota) {
                passed(format!(
                    "{} has {n} of {quota} managed policies",
                    role(name)
                ))
            } else {
                failed(format!(
                    "{} already has {n} managed policies, the quota is {quota}",
                    role(name)
                ))
            }
        }
        "policy_not_administrator" => {
            let arn = p.policy_arn()?;
            if arn.ends_with(":policy/AdministratorAccess") {
                return failed(format!("`{arn}` is AdministratorAccess"));
            }
            let pol = iam.get_policy().policy_arn(arn).send().await.map_err(|e| {
                sdk(
                    e,
                    &format!("iam GetPolicy on `{arn}`"),
                    &format!("policy `{arn}`"),
                )
            })?;
            let Some(version) = pol.policy().and_then(|x| x.default_version_id()) else {
                return failed(format!("policy `{arn}` has no default version to inspect"));
            };
            let v = iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &format!("iam GetPolicyVersion on `{arn}` {version}"),
                        &format!("policy `{arn}`"),
                    )
                })?;
            let Some(doc) = v
                .policy_version()
                .and_then(|x| x.document())
                .map(percent_decode)
            else {
                return failed(format!(
                    "policy `{arn}` ({version}): IAM returned no document, so it cannot be checked"
                ));
            };
            match grants_everything(&doc) {
                Ok(true) => failed(format!(
                    "policy `{arn}` ({version}) grants administrator access (`*`, `*:*`, `iam:*` or NotAction on every resource)"
                )),
                Ok(false) => passed(format!(
                    "policy `{arn}` ({version}) grants no administrator access"
                )),
                Err(why) => failed(format!("policy `{arn}` ({version}): {why}")),
            }
        }
        "role_keeps_needed_access" => {
            let out = iam
                .get_role()
                .role_name(name)
                .send()
                .await
                .map_err(|e| sdk(e, &format!("iam GetRole on {}", role(name)), &role(name)))?;
            let last = out
                .role()
                .and_then(|r| r.role_last_used())
                .and_then(|u| u.last_used_date());
            let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
            match last {
                Some(d) if now.secs() - d.secs() < RECENT_USE_DAYS * 86_400 => failed(format!(
                    "{} was used {} (within {RECENT_USE_DAYS} days): whatever uses it may lose access",
                    role(name),
                    d.fmt(aws_smithy_types::date_time::Format::DateTime)
                        .unwrap_or_default()
                )),
                Some(d) => passed(format!(
                    "{} was last used {}",
                    role(name),
                    d.fmt(aws_smithy_types::date_time::Format::DateTime)
                        .unwrap_or_default()
                )),
                None => passed(format!(
                    "IAM records no use of {} (RoleLastUsed is empty)",
                    role(name)
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
) -> Result<ExecutionReport, AwsError> {
    let name = p.role_name()?;
    let arn = p.policy_arn()?;
    let iam = aws.iam();
    let what = |op: &str| format!("iam {op} of `{arn}` on {}", role(name));
    match ctx.action.as_str() {
        "iam-attach-role-policy" => {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &what("AttachRolePolicy"),
                        &format!("{} or policy `{arn}`", role(name)),
                    )
                })?;
            Ok(ExecutionReport {
                summary: format!("attached `{arn}` to {}", role(name)),
                output: json!({"RoleName": name, "PolicyArn": arn, "Attached": true}),
            })
        }
        "iam-detach-role-policy" => {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &what("DetachRolePolicy"),
                        &format!("attachment of `{arn}` to {}", role(name)),
                    )
                })?;
            Ok(ExecutionReport {
                summary: format!("detached `{arn}` from {}", role(name)),
                output: json!({"RoleName": name, "PolicyArn": arn, "Attached": false}),
            })
        }
        other => Err(AwsError::Config(format!(
            "action `{other}` is not an IAM action"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, reason = "test code")]

    use super::*;

    #[test]
    fn documents_are_decoded_and_judged() {
        let enc = "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        let doc = percent_decode(enc);
        assert_eq!(
            doc,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#
        );
        let admin = |d: &str| grants_everything(d).unwrap_or_else(|e| panic!("{e}: {d}"));
        assert!(admin(&doc));
        assert!(admin(
            r#"{"Statement":{"Effect":"Allow","Action":["s3:*","*"],"Resource":["*"]}}"#
        ));
        assert!(admin(
            r#"{"Statement":[{"Effect":"Allow","Action":"*:*","Resource":"*"}]}"#
        ));
        assert!(admin(
            r#"{"Statement":[{"Effect":"Allow","Action":"IAM:*","Resource":"*"}]}"#
        ));
        assert!(admin(
            r#"{"Statement":[{"Effect":"Allow","NotAction":"s3:*","Resource":"*"}]}"#
        ));
        assert!(admin(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","NotResource":"arn:aws:s3:::x"}]}"#
        ));
        assert!(!admin(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
        ));
        assert!(!admin(
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#
        ));
        // A document that cannot be read never passes as harmless.
        assert!(grants_everything("not json").is_err());
        assert!(grants_everything(r#"{"Version":"2012-10-17"}"#).is_err());
        assert_eq!(percent_decode("100%"), "100%");
    }
}
