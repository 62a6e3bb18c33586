//! S3: delete an object, replace a bucket policy; state from `HeadObject` /
//! `GetBucketPolicy`. A bucket without a policy is captured as the empty document `{}`
//! (see [`crate::policy`]), so the rollback of a first policy deletes it.

use agentsafe_core::{ActionContext, ExecutionReport, PrecheckResult};
use serde_json::{Value, json};

use crate::error::{sdk, service_code};
use crate::params::Params;
use crate::policy::{self, Document};
use crate::shape::Obj;
use crate::{Aws, AwsError};

/// What a bucket without a policy is recorded as, and what deletes a policy when put.
pub(crate) const NO_POLICY: &str = "{}";

fn object(bucket: &str, key: &str) -> String {
    format!("object `s3://{bucket}/{key}`")
}

fn bucket_name(bucket: &str) -> String {
    format!("bucket `{bucket}`")
}

/// The bucket policy text, `None` when the bucket has none.
async fn get_policy(aws: &Aws, bucket: &str) -> Result<Option<String>, AwsError> {
    match aws.s3().get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => Ok(out.policy().map(str::to_owned)),
        Err(e) if service_code(&e).as_deref() == Some("NoSuchBucketPolicy") => Ok(None),
        Err(e) => Err(sdk(
            e,
            &format!("s3 GetBucketPolicy on {}", bucket_name(bucket)),
            &bucket_name(bucket),
        )),
    }
}

/// `HeadObject` or `GetBucketPolicy`, as the AWS CLI prints it.
pub(crate) async fn capture(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
) -> Result<Value, AwsError> {
    let bucket = p.bucket()?;
    if ctx.action == "s3-put-bucket-policy" {
        let text = get_policy(aws, bucket).await?;
        return Ok(json!({"Policy": text.unwrap_or_else(|| NO_POLICY.to_owned())}));
    }
    let key = p.key()?;
    let out = aws
        .s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            sdk(
                e,
                &format!("s3 HeadObject on {}", object(bucket, key)),
                &object(bucket, key),
            )
        })?;
    Ok(Obj::new()
        .t("LastModified", out.last_modified())
        .i("ContentLength", out.content_length())
        .s("ETag", out.e_tag())
        .s("VersionId", out.version_id())
        .s("ContentType", out.content_type())
        .s("StorageClass", out.storage_class().map(|s| s.as_str()))
        .s("ObjectLockMode", out.object_lock_mode().map(|s| s.as_str()))
        .t(
            "ObjectLockRetainUntilDate",
            out.object_lock_retain_until_date(),
        )
        .s(
            "ObjectLockLegalHoldStatus",
            out.object_lock_legal_hold_status().map(|s| s.as_str()),
        )
        .done())
}

fn passed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Passed(s))
}

fn failed(s: String) -> Result<PrecheckResult, AwsError> {
    Ok(PrecheckResult::Failed(s))
}

pub(crate) async fn precheck(
    aws: &Aws,
    _ctx: &ActionContext,
    p: &Params<'_>,
    check: &str,
) -> Result<PrecheckResult, AwsError> {
    let bucket = p.bucket()?;
    let s3 = aws.s3();
    match check {
        "bucket_exists" => match s3.head_bucket().bucket(bucket).send().await {
            Ok(_) => passed(format!("{} exists and is reachable", bucket_name(bucket))),
            Err(e) => match sdk(
                e,
                &format!("s3 HeadBucket on {}", bucket_name(bucket)),
                &bucket_name(bucket),
            ) {
                AwsError::NotFound(what) => failed(format!("{what} does not exist")),
                other => Err(other),
            },
        },
        "object_exists" => {
            let key = p.key()?;
            match s3.head_object().bucket(bucket).key(key).send().await {
                Ok(o) => passed(format!(
                    "{} exists ({} bytes)",
                    object(bucket, key),
                    o.content_length().unwrap_or_default()
                )),
                Err(e) => match sdk(
                    e,
                    &format!("s3 HeadObject on {}", object(bucket, key)),
                    &object(bucket, key),
                ) {
                    AwsError::NotFound(what) => failed(format!("{what} does not exist")),
                    other => Err(other),
                },
            }
        }
        "object_not_locked" => {
            let key = p.key()?;
            let lock = s3
                .get_object_lock_configuration()
                .bucket(bucket)
                .send()
                .await;
            let enabled = match lock {
                Ok(c) => c
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled"),
                Err(e)
                    if service_code(&e).as_deref()
                        == Some("ObjectLockConfigurationNotFoundError") =>
                {
                    false
                }
                Err(e) => {
                    return Err(sdk(
                        e,
                        &format!("s3 GetObjectLockConfiguration on {}", bucket_name(bucket)),
                        &bucket_name(bucket),
                    ));
                }
            };
            if !enabled {
                return passed(format!("{} has no Object Lock", bucket_name(bucket)));
            }
            let head = s3
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    sdk(
                        e,
                        &format!("s3 HeadObject on {}", object(bucket, key)),
                        &object(bucket, key),
                    )
                })?;
            if head
                .object_lock_legal_hold_status()
                .is_some_and(|s| s.as_str() == "ON")
            {
                return failed(format!("{} is under a legal hold", object(bucket, key)));
            }
            let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
            if let Some(until) = head.object_lock_retain_until_date()
                && until.secs() > now.secs()
            {
                return failed(format!(
                    "{} is retained ({}) until {}",
                    object(bucket, key),
                    head.object_lock_mode().map_or("retention", |m| m.as_str()),
                    until
                        .fmt(aws_smithy_types::date_time::Format::DateTime)
                        .unwrap_or_default()
                ));
            }
            passed(format!(
                "{} has no retention and no legal hold",
                object(bucket, key)
            ))
        }
        "bucket_versioning_enabled" => {
            match s3.get_bucket_versioning().bucket(bucket).send().await {
                Ok(out) => match out.status().map(|s| s.as_str()) {
                    Some("Enabled") => passed(format!(
                        "{} keeps versions: the deletion leaves a delete marker",
                        bucket_name(bucket)
                    )),
                    other => failed(format!(
                        "versioning of {} is {}: the deletion is permanent",
                        bucket_name(bucket),
                        other.unwrap_or("off")
                    )),
                },
                // An advisory warning: when the state cannot be read, say what that means.
                Err(e) => failed(format!(
                    "the versioning state of {} cannot be read ({}): the deletion may be permanent",
                    bucket_name(bucket),
                    sdk(
                        e,
                        &format!("s3 GetBucketVersioning on {}", bucket_name(bucket)),
                        &bucket_name(bucket)
                    )
                )),
            }
        }
        "bucket_policy_is_json" => {
            let text = p.str("policy")?;
            match policy::parse_for_bucket(text, bucket) {
                Ok(Document::Empty) => {
                    passed("the empty document {}: the bucket policy is deleted".into())
                }
                Ok(Document::Statements(s)) => passed(format!(
                    "a policy document of {} statements on {} and its objects",
                    s.len(),
                    bucket_name(bucket)
                )),
                Err(why) => failed(why),
            }
        }
        "policy_grants_no_public_access" => {
            let text = p.str("policy")?;
            match policy::parse_for_bucket(text, bucket) {
                Ok(Document::Empty) => passed("no policy, no grant".into()),
                Ok(Document::Statements(s)) => {
                    let public = policy::public_statements(&s);
                    if public.is_empty() {
                        passed("no statement allows everyone without a condition".into())
                    } else {
                        failed(format!(
                            "{} allow a `*` principal without a condition",
                            public.join(", ")
                        ))
                    }
                }
                Err(why) => failed(why),
            }
        }
        "policy_keeps_account_access" => {
            let text = p.str("policy")?;
            match policy::parse_for_bucket(text, bucket) {
                Ok(Document::Empty) => passed("no policy denies anything".into()),
                Ok(Document::Statements(s)) => {
                    let account = aws.account();
                    let lockout = policy::account_lockout_statements(&s, account);
                    if lockout.is_empty() {
                        passed(format!(
                            "no statement denies account {account} reading or changing the policy"
                        ))
                    } else {
                        failed(format!(
                            "{} deny account {account} reading or changing the bucket policy",
                            lockout.join(", ")
                        ))
                    }
                }
                Err(why) => failed(why),
            }
        }
        "existing_policy_captured" => match get_policy(aws, bucket).await {
            Ok(Some(text)) => passed(format!(
                "the current policy ({} bytes) is read and recorded: the rollback restores it",
                text.len()
            )),
            Ok(None) => passed(format!(
                "{} has no policy now, recorded as {NO_POLICY}: the rollback deletes the new one",
                bucket_name(bucket)
            )),
            Err(AwsError::NotFound(what)) => failed(format!("{what} does not exist")),
            Err(e) => failed(format!(
                "the current policy cannot be read, so no rollback could restore it: {e}"
            )),
        },
        _ => Ok(PrecheckResult::Unsupported),
    }
}

pub(crate) async fn execute(
    aws: &Aws,
    ctx: &ActionContext,
    p: &Params<'_>,
) -> Result<ExecutionReport, AwsError> {
    let bucket = p.bucket()?;
    let s3 = aws.s3();
    if ctx.action == "s3-put-bucket-policy" {
        let text = p.str("policy")?;
        let doc = policy::parse_for_bucket(text, bucket).map_err(|why| AwsError::Param {
            param: "policy".into(),
            reason: why,
        })?;
        let name = bucket_name(bucket);
        return match doc {
            Document::Empty => {
                s3.delete_bucket_policy()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| sdk(e, &format!("s3 DeleteBucketPolicy on {name}"), &name))?;
                Ok(ExecutionReport {
                    summary: format!("deleted the bucket policy of {name} (empty document)"),
                    output: json!({"DeletedPolicy": true}),
                })
            }
            Document::Statements(s) => {
                s3.put_bucket_policy()
                    .bucket(bucket)
                    .policy(text)
                    .send()
                    .await
                    .map_err(|e| sdk(e, &format!("s3 PutBucketPolicy on {name}"), &name))?;
                Ok(ExecutionReport {
                    summary: format!("put a policy of {} statements on {name}", s.len()),
                    output: json!({"PolicyLength": text.len()}),
                })
            }
        };
    }
    let key = p.key()?;
    let name = object(bucket, key);
    let out = s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| sdk(e, &format!("s3 DeleteObject on {name}"), &name))?;
    Ok(ExecutionReport {
        summary: format!(
            "deleted {name}{}",
            if out.delete_marker() == Some(true) {
                " (a delete marker was added)"
            } else {
                ""
            }
        ),
        output: Obj::new()
            .b("DeleteMarker", out.delete_marker())
            .s("VersionId", out.version_id())
            .done(),
    })
}
