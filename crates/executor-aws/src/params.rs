//! Typed access to an action's params, each identifier validated again as defence in depth
//! (the registry checked the same formats before the ticket was signed).

use agentsafe_core::Params as Map;
use serde_json::Value;

use crate::AwsError;

/// The params of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'a>(&'a Map);

fn bad(param: &str, reason: impl Into<String>) -> AwsError {
    AwsError::Param {
        param: param.to_owned(),
        reason: reason.into(),
    }
}

fn hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]`, at most 32 bytes.
pub(crate) fn is_region(s: &str) -> bool {
    if s.len() > 32 {
        return false;
    }
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let (first, rest) = match parts.split_first() {
        Some((f, r)) => (*f, r),
        None => return false,
    };
    if first.len() != 2 || !lower(first) {
        return false;
    }
    let rest = match rest {
        [p, tail @ ..]
            if (*p == "gov"
                || (p.starts_with("iso") && p.bytes().all(|b| b.is_ascii_lowercase())))
                && tail.len() == 2 =>
        {
            tail
        }
        r => r,
    };
    matches!(rest, [name, digit] if lower(name) && digit.len() == 1 && digit.bytes().all(|b| b.is_ascii_digit()))
}

/// An AWS account id: 12 digits.
pub(crate) fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `i-` then 8 or 17 lowercase hex digits.
pub(crate) fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|h| (h.len() == 8 || h.len() == 17) && hex(h))
}

/// ECS cluster and service names: `[A-Za-z0-9_-]{1,255}`.
pub(crate) fn is_ecs_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An ECS task id: 32 hex digits, or the UUID of the older ARN format (which moto and long
/// running tasks of old clusters still carry).
pub(crate) fn is_task_id(s: &str) -> bool {
    if s.len() == 32 {
        return hex(s);
    }
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && hex(g))
}

/// `family:revision` or a task definition ARN.
pub(crate) fn is_task_definition(s: &str) -> bool {
    let family_rev = |t: &str| {
        t.rsplit_once(':').is_some_and(|(f, r)| {
            is_ecs_name(f) && (1..=10).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return match parts.as_slice() {
            [partition, "ecs", region, account, resource] => {
                partition.starts_with("aws")
                    && is_region(region)
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && resource
                        .strip_prefix("task-definition/")
                        .is_some_and(family_rev)
            }
            _ => false,
        };
    }
    family_rev(s)
}

/// Lambda function names: `[A-Za-z0-9_-]{1,64}`.
pub(crate) fn is_function_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// S3 bucket names: `[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]`.
pub(crate) fn is_bucket(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'.' || *c == b'-')
}

/// Object keys: `/`-separated segments of `[A-Za-z0-9_.()'!-]`, no empty, `.` or `..`
/// segment, no segment starting with `.`, at most 1024 bytes.
pub(crate) fn is_key(s: &str) -> bool {
    let seg_ok = |seg: &str| {
        let mut bytes = seg.bytes();
        bytes
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_()'!-".contains(&c))
            && bytes.all(|c| c.is_ascii_alphanumeric() || b"_.()'!-".contains(&c))
    };
    (1..=1024).contains(&s.len()) && s.split('/').all(seg_ok)
}

/// IAM role names: `[A-Za-z0-9+=,.@_-]{1,64}`.
pub(crate) fn is_role_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(iam_char)
}

fn iam_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)
}

/// Managed policy ARNs: `arn:aws[a-z-]*:iam::(ACCOUNT|aws):policy/(PATH/)*NAME`.
pub(crate) fn is_policy_arn(s: &str) -> bool {
    if s.len() > 2048 {
        return false;
    }
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    match parts.as_slice() {
        [partition, "iam", "", account, resource] => {
            partition
                .strip_prefix("aws")
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
                && (*account == "aws"
                    || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
                && resource.strip_prefix("policy/").is_some_and(|path| {
                    path.split('/')
                        .all(|seg| !seg.is_empty() && seg.bytes().all(iam_char))
                })
        }
        _ => false,
    }
}

impl<'a> Params<'a> {
    pub(crate) fn new(map: &'a Map) -> Params<'a> {
        Params(map)
    }

    /// A required string param.
    pub(crate) fn str(&self, name: &str) -> Result<&'a str, AwsError> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(bad(name, "expected a string")),
            None => Err(bad(name, "missing")),
        }
    }

    /// A required string param in a checked format.
    fn checked(&self, name: &str, ok: fn(&str) -> bool, what: &str) -> Result<&'a str, AwsError> {
        let s = self.str(name)?;
        if ok(s) {
            Ok(s)
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(bad(name, format!("`{shown}` is not {what}")))
        }
    }

    /// The account the ticket is for, or `None` when the params name none.
    pub(crate) fn account(&self) -> Result<Option<&'a str>, AwsError> {
        if self.0.get("account").is_none_or(Value::is_null) {
            return Ok(None);
        }
        self.checked("account", is_account, "an AWS account id (12 digits)")
            .map(Some)
    }
    pub(crate) fn region(&self) -> Result<&'a str, AwsError> {
        self.checked("region", is_region, "an AWS region")
    }
    pub(crate) fn instance_id(&self) -> Result<&'a str, AwsError> {
        self.checked(
            "instance_id",
            is_instance_id,
            "an EC2 instance id (i-[0-9a-f]{8|17})",
        )
    }
    pub(crate) fn cluster(&self) -> Result<&'a str, AwsError> {
        self.checked("cluster", is_ecs_name, "an ECS cluster name")
    }
    pub(crate) fn service(&self) -> Result<&'a str, AwsError> {
        self.checked("service", is_ecs_name, "an ECS service name")
    }
    pub(crate) fn task_id(&self) -> Result<&'a str, AwsError> {
        self.checked("task_id", is_task_id, "an ECS task id")
    }
    pub(crate) fn task_definition(&self) -> Result<&'a str, AwsError> {
        self.checked(
            "task_definition",
            is_task_definition,
            "a task definition (family:revision or its ARN)",
        )
    }
    pub(crate) fn function_name(&self) -> Result<&'a str, AwsError> {
        self.checked("function_name", is_function_name, "a Lambda function name")
    }
    pub(crate) fn bucket(&self) -> Result<&'a str, AwsError> {
        self.checked("bucket", is_bucket, "an S3 bucket name")
    }
    pub(crate) fn key(&self) -> Result<&'a str, AwsError> {
        self.checked("key", is_key, "an object key of plain segments")
    }
    pub(crate) fn role_name(&self) -> Result<&'a str, AwsError> {
        self.checked("role_name", is_role_name, "an IAM role name")
    }
    pub(crate) fn policy_arn(&self) -> Result<&'a str, AwsError> {
        self.checked("policy_arn", is_policy_arn, "a managed policy ARN")
    }

    /// An optional integer param within `min..=max`.
    pub(crate) fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i32>, AwsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v.as_i64().ok_or_else(|| bad(name, "expected an integer"))?;
                if !(min..=max).contains(&n) {
                    return Err(bad(name, format!("{n} is outside {min}..={max}")));
                }
                i32::try_from(n)
                    .map(Some)
                    .map_err(|_| bad(name, "too large"))
            }
        }
    }

    /// A required integer param within `min..=max`.
    pub(crate) fn int(&self, name: &str, min: i64, max: i64) -> Result<i32, AwsError> {
        self.opt_int(name, min, max)?
            .ok_or_else(|| bad(name, "missing"))
    }

    /// An optional boolean param.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, AwsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(name, "expected a boolean")),
        }
    }

    /// An optional param of any JSON type.
    pub(crate) fn value(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        type Check = fn(&str) -> bool;
        let cases: &[(Check, &[&str], &[&str])] = &[
            (
                is_account,
                &["123456789012", "000000000000"],
                &[
                    "",
                    "12345678901",
                    "1234567890123",
                    "12345678901a",
                    "*",
                    " 123456789012",
                ],
            ),
            (
                is_region,
                &[
                    "us-east-1",
                    "eu-central-2",
                    "us-gov-west-1",
                    "us-isob-east-1",
                ],
                &[
                    "",
                    "us-east",
                    "US-east-1",
                    "us-east-12",
                    "us_east-1",
                    "u-east-1",
                    "us-east-1 ",
                    "us-east-1;rm",
                ],
            ),
            (
                is_instance_id,
                &["i-0123abcd", "i-0123456789abcdef0"],
                &[
                    "i-0123abc",
                    "i-0123456789ABCDEF0",
                    "i-0123456789abcdef",
                    "0123abcd",
                    "i-0123abcd/x",
                    "i-*",
                ],
            ),
            (
                is_task_id,
                &[
                    "0123456789abcdef0123456789abcdef",
                    "6af460f1-b555-4027-88da-31a8c9b959e1",
                ],
                &[
                    "0123456789abcdef0123456789abcde",
                    "6af460f1b555-4027-88da-31a8c9b959e1x",
                    "../x",
                ],
            ),
            (
                is_task_definition,
                &[
                    "web:3",
                    "arn:aws:ecs:us-east-1:123456789012:task-definition/web-td:10",
                ],
                &[
                    "web",
                    "web:",
                    "web:x",
                    "arn:aws:ecs:us-east-1:1234:task-definition/web:1",
                    "arn:aws:s3:us-east-1:123456789012:task-definition/web:1",
                ],
            ),
            (
                is_ecs_name,
                &["prod", "web_api-2"],
                &["", "a b", "a/b", "a*"],
            ),
            (
                is_function_name,
                &["fn", "my_fn-1"],
                &["", "fn:1", "arn:aws:lambda"],
            ),
            (
                is_bucket,
                &["abc", "my.bucket-1"],
                &["ab", "-abc", "abc-", "ABC", "a_b", "a/b"],
            ),
            (
                is_key,
                &["a", "reports/2024/summary.txt", "x(1)!'-_"],
                &[
                    "",
                    "/a",
                    "a/",
                    "a//b",
                    "a/../b",
                    "./a",
                    "a/.hidden",
                    "a b",
                    "a*",
                    "a?b",
                ],
            ),
            (is_role_name, &["role", "r+=,.@_-"], &["", "a/b", "a b"]),
            (
                is_policy_arn,
                &[
                    "arn:aws:iam::aws:policy/ReadOnlyAccess",
                    "arn:aws:iam::123456789012:policy/team/x/read",
                    "arn:aws-us-gov:iam::123456789012:policy/p",
                ],
                &[
                    "arn:aws:iam::12345:policy/p",
                    "arn:aws:iam::aws:role/p",
                    "arn:aws:iam::aws:policy/",
                    "arn:aws:iam::aws:policy//p",
                    "arn:aws:s3:::bucket",
                    "arn:aws:iam::aws:policy/a b",
                ],
            ),
        ];
        for (check, good, bad) in cases {
            for g in *good {
                assert!(check(g), "{g} should pass");
            }
            for b in *bad {
                assert!(!check(b), "{b} should fail");
            }
        }
    }

    #[test]
    fn params_name_what_is_wrong() {
        let map: Map = serde_json::from_value(serde_json::json!({
            "region": "us-east-1",
            "instance_id": "i-; rm -rf /",
            "desired_count": 501,
            "force": "yes",
        }))
        .unwrap_or_default();
        let p = Params::new(&map);
        assert_eq!(p.region().ok(), Some("us-east-1"));
        let e = p
            .instance_id()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("param `instance_id`: `i-; rm -rf /` is not"),
            "{e}"
        );
        let e = p
            .int("desired_count", 0, 500)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(e, "param `desired_count`: 501 is outside 0..=500");
        assert!(p.flag("force").is_err());
        let e = p.cluster().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "param `cluster`: missing");
        assert_eq!(p.opt_int("memory_size", 128, 10240).ok(), Some(None));
    }
}
