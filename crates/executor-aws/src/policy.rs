//! Bucket policy documents: the checks `s3-put-bucket-policy` runs on the new policy before
//! it is applied. Pure functions over the JSON text.
//!
//! The empty document `{}` stands for "no bucket policy": the state capture records a
//! bucket without a policy as `{}`, and putting `{}` deletes the policy, so the rollback of
//! a first policy removes it.

use serde_json::{Map, Value};

/// The actions the bucket owner needs to read and change the policy.
const POLICY_ACTIONS: [&str; 3] = [
    "s3:GetBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
];

/// A parsed policy document.
#[derive(Debug)]
pub(crate) enum Document {
    /// `{}`: no policy (putting it deletes the bucket policy).
    Empty,
    /// The statements.
    Statements(Vec<Map<String, Value>>),
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn sid(st: &Map<String, Value>, i: usize) -> String {
    match st.get("Sid").and_then(Value::as_str) {
        Some(s) => format!("statement `{s}`"),
        None => format!("statement {}", i + 1),
    }
}

/// Parses a policy document for `bucket`: JSON, an IAM policy's shape, and every resource
/// this bucket or one of its objects.
///
/// # Errors
/// A sentence saying what is wrong (never the whole document).
pub(crate) fn parse_for_bucket(text: &str, bucket: &str) -> Result<Document, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("the policy is not JSON: {e}"))?;
    let Value::Object(doc) = v else {
        return Err("the policy is not a JSON object".into());
    };
    if doc.is_empty() {
        return Ok(Document::Empty);
    }
    for key in doc.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return Err(format!("unknown top-level key `{key}`"));
        }
    }
    if let Some(version) = doc.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return Err("`Version` is neither 2012-10-17 nor 2008-10-17".into());
    }
    let statements: Vec<Map<String, Value>> = match doc.get("Statement") {
        Some(Value::Object(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_object().cloned().ok_or("a statement is not an object"))
            .collect::<Result<_, _>>()?,
        _ => return Err("`Statement` is missing or not an object or a list".into()),
    };
    if statements.is_empty() {
        return Err("`Statement` is empty".into());
    }
    for (i, st) in statements.iter().enumerate() {
        let name = sid(st, i);
        for key in st.keys() {
            if !matches!(
                key.as_str(),
                "Sid"
                    | "Effect"
                    | "Principal"
                    | "NotPrincipal"
                    | "Action"
                    | "NotAction"
                    | "Resource"
                    | "NotResource"
                    | "Condition"
            ) {
                return Err(format!("{name}: unknown key `{key}`"));
            }
        }
        if !matches!(
            st.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny")
        ) {
            return Err(format!("{name}: `Effect` must be Allow or Deny"));
        }
        if !(st.contains_key("Principal") ^ st.contains_key("NotPrincipal")) {
            return Err(format!(
                "{name}: needs exactly one of `Principal` and `NotPrincipal`"
            ));
        }
        if !(st.contains_key("Action") ^ st.contains_key("NotAction")) {
            return Err(format!(
                "{name}: needs exactly one of `Action` and `NotAction`"
            ));
        }
        let resources = match (st.get("Resource"), st.get("NotResource")) {
            (Some(r), None) | (None, Some(r)) => strings(Some(r)),
            _ => {
                return Err(format!(
                    "{name}: needs exactly one of `Resource` and `NotResource`"
                ));
            }
        };
        if resources.is_empty() {
            return Err(format!("{name}: no resource"));
        }
        for r in resources {
            if !resource_in_bucket(r, bucket) {
                return Err(format!(
                    "{name}: resource `{r}` is neither bucket `{bucket}` nor one of its objects"
                ));
            }
        }
    }
    Ok(Document::Statements(statements))
}

/// `arn:PARTITION:s3:::BUCKET` or `arn:PARTITION:s3:::BUCKET/...`.
fn resource_in_bucket(r: &str, bucket: &str) -> bool {
    let Some(rest) = r.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    partition.starts_with("aws")
        && rest
            .strip_prefix("s3:::")
            .and_then(|x| x.strip_prefix(bucket))
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
}

/// Case-insensitive glob match with `*` and `?`.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// The principals of a `Principal`/`NotPrincipal` value that are AWS accounts or `*`.
fn aws_principals(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Object(m)) => strings(m.get("AWS")),
        _ => Vec::new(),
    }
}

/// Statements that allow a `*` principal without a condition.
pub(crate) fn public_statements(statements: &[Map<String, Value>]) -> Vec<String> {
    statements
        .iter()
        .enumerate()
        .filter(|(_, st)| st.get("Effect").and_then(Value::as_str) == Some("Allow"))
        .filter(|(_, st)| !st.contains_key("Condition"))
        .filter(|(_, st)| {
            // Allow with NotPrincipal grants everyone but the listed principals.
            st.contains_key("NotPrincipal") || aws_principals(st.get("Principal")).contains(&"*")
        })
        .map(|(i, st)| sid(st, i))
        .collect()
}

/// Whether a principal entry names `account` (its id or its root ARN) or everyone.
fn names_account(p: &str, account: &str) -> bool {
    p == "*"
        || p == account
        || p.strip_prefix("arn:")
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(_, r)| r == format!("iam::{account}:root"))
}

/// Statements that deny, without a condition, the account `account` one of the actions it
/// needs to read or change the bucket policy.
pub(crate) fn account_lockout_statements(
    statements: &[Map<String, Value>],
    account: &str,
) -> Vec<String> {
    statements
        .iter()
        .enumerate()
        .filter(|(_, st)| st.get("Effect").and_then(Value::as_str) == Some("Deny"))
        .filter(|(_, st)| !st.contains_key("Condition"))
        .filter(|(_, st)| match st.get("NotPrincipal") {
            Some(np) => !aws_principals(Some(np))
                .iter()
                .any(|p| names_account(p, account)),
            None => aws_principals(st.get("Principal"))
                .iter()
                .any(|p| names_account(p, account)),
        })
        .filter(|(_, st)| {
            POLICY_ACTIONS.iter().any(|a| match st.get("NotAction") {
                Some(na) => !strings(Some(na)).iter().any(|p| glob(p, a)),
                None => strings(st.get("Action")).iter().any(|p| glob(p, a)),
            })
        })
        .map(|(i, st)| sid(st, i))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use super::*;

    fn statements(text: &str) -> Vec<Map<String, Value>> {
        match parse_for_bucket(text, "b-1").unwrap() {
            Document::Statements(s) => s,
            Document::Empty => panic!("empty"),
        }
    }

    #[test]
    fn documents_are_checked_against_the_bucket() {
        assert!(matches!(parse_for_bucket("{}", "b-1"), Ok(Document::Empty)));
        assert!(matches!(
            parse_for_bucket(" { } ", "b-1"),
            Ok(Document::Empty)
        ));
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Sid":"r","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:GetObject","Resource":["arn:aws:s3:::b-1/*","arn:aws:s3:::b-1"]}]}"#;
        assert_eq!(statements(ok).len(), 1);
        for (text, want) in [
            ("not json", "not JSON"),
            ("[]", "not a JSON object"),
            (r#"{"Statement":[]}"#, "`Statement` is empty"),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "`Version`"),
            (r#"{"Statment":[]}"#, "unknown top-level key `Statment`"),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b-10/*"}}"#,
                "resource `arn:aws:s3:::b-10/*` is neither bucket `b-1`",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
                "resource `*`",
            ),
            (
                r#"{"Statement":{"Effect":"Permit","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b-1"}}"#,
                "statement 1: `Effect` must be Allow or Deny",
            ),
            (
                r#"{"Statement":{"Sid":"x","Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b-1"}}"#,
                "statement `x`: needs exactly one of `Principal`",
            ),
        ] {
            let e = parse_for_bucket(text, "b-1").unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn public_grants_are_found() {
        let public = r#"{"Statement":[
            {"Sid":"a","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b-1/*"},
            {"Sid":"b","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root","*"]},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b-1/*"},
            {"Sid":"c","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b-1/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Sid":"d","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b-1/*"},
            {"Sid":"e","Effect":"Allow","Principal":{"Service":"logging.s3.amazonaws.com"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::b-1/*"}
        ]}"#;
        assert_eq!(
            public_statements(&statements(public)),
            ["statement `a`", "statement `b`"]
        );
    }

    #[test]
    fn owner_lockouts_are_found() {
        let text = r#"{"Statement":[
            {"Sid":"all","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b-1"},
            {"Sid":"tls","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b-1","Condition":{"Bool":{"aws:SecureTransport":"false"}}},
            {"Sid":"root","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:PutBucket*","Resource":"arn:aws:s3:::b-1"},
            {"Sid":"other","Effect":"Deny","Principal":{"AWS":"210987654321"},"Action":"s3:*","Resource":"arn:aws:s3:::b-1"},
            {"Sid":"objects","Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::b-1/*"},
            {"Sid":"notaction","Effect":"Deny","Principal":"*","NotAction":["s3:GetObject"],"Resource":"arn:aws:s3:::b-1"},
            {"Sid":"notaction-ok","Effect":"Deny","Principal":"*","NotAction":["s3:*Policy","s3:Get*"],"Resource":"arn:aws:s3:::b-1"},
            {"Sid":"notprincipal","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"s3:GetBucketPolicy","Resource":"arn:aws:s3:::b-1"},
            {"Sid":"notprincipal-ok","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:GetBucketPolicy","Resource":"arn:aws:s3:::b-1"}
        ]}"#;
        assert_eq!(
            account_lockout_statements(&statements(text), "123456789012"),
            [
                "statement `all`",
                "statement `root`",
                "statement `notaction`",
                "statement `notprincipal`"
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("s3:*", "s3:GetBucketPolicy"));
        assert!(glob("*", "s3:GetBucketPolicy"));
        assert!(glob("S3:get*policy", "s3:GetBucketPolicy"));
        assert!(glob("s3:?etBucketPolicy", "s3:GetBucketPolicy"));
        assert!(!glob("s3:Get", "s3:GetBucketPolicy"));
        assert!(!glob("s3:*Object", "s3:GetBucketPolicy"));
        assert!(!glob("ec2:*", "s3:GetBucketPolicy"));
    }
}
