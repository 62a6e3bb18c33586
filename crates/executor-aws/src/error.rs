//! The crate's one error type, and the mapping of AWS SDK errors to the executor outcomes
//! of [`agentsafe_core::CoreError`].

use agentsafe_core::CoreError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::NAME;

/// What can go wrong in the AWS executor. Messages name the resource and never contain a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// A configuration value is invalid (the key is named).
    #[error("invalid [executors.aws] config: {0}")]
    Config(String),
    /// A param is missing, has the wrong type or does not have the expected format.
    #[error("param `{param}`: {reason}")]
    Param {
        /// The param name.
        param: String,
        /// What is wrong with it (never the whole value of a long param).
        reason: String,
    },
    /// The credential secret handed by the runner is not `KEY_ID:SECRET[:SESSION_TOKEN]`.
    #[error(
        "the aws credential secret is malformed: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] ({0})"
    )]
    CredentialFormat(&'static str),
    /// The resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// AWS refused or failed the call (the class, the resource and AWS's own message).
    #[error("{class}: {what}: {detail}")]
    Backend {
        /// `access denied`, `throttled`, `invalid parameter`, `conflict`, `endpoint unreachable`, ...
        class: &'static str,
        /// The call and the resource, such as `ec2 StopInstances on instance i-0abc...`.
        what: String,
        /// The AWS error code and message, or the transport error.
        detail: String,
    },
    /// The ticket's params name no account, so the executor cannot tell where it may act.
    /// Nothing was sent.
    #[error(
        "{action}: the ticket names no account: the action must bind an `account` param to the target (`target_attr = \"account\"`), as the shipped actions do; nothing was sent"
    )]
    NoAccount {
        /// The action.
        action: String,
    },
    /// The ticket's account is not in `[executors.aws] accounts`. Nothing was sent.
    #[error(
        "the ticket is for account `{account}`, which `[executors.aws] accounts` does not list (it lists {}); nothing was sent",
        listed(allowed)
    )]
    AccountNotAllowed {
        /// The account the ticket is for.
        account: String,
        /// The accounts the configuration lists.
        allowed: Vec<String>,
    },
    /// The credentials belong to another account than the ticket's. Nothing but STS
    /// GetCallerIdentity was sent.
    #[error(
        "the ticket is for account `{ticket}`, but the credentials this runner acts with belong to account `{credentials}`; nothing was sent to the target"
    )]
    WrongAccount {
        /// The account the ticket is for.
        ticket: String,
        /// The account of the credentials (STS GetCallerIdentity).
        credentials: String,
    },
    /// A wait for a state change ran out of time.
    #[error("{0}")]
    WaitTimeout(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// `a`, `b` in backticks.
fn listed(accounts: &[String]) -> String {
    accounts
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<AwsError> for CoreError {
    fn from(e: AwsError) -> CoreError {
        match e {
            AwsError::NotFound(what) => CoreError::ExecutorNotFound(what),
            AwsError::Cancelled => CoreError::ExecutorCancelled,
            e @ (AwsError::NoAccount { .. }
            | AwsError::AccountNotAllowed { .. }
            | AwsError::WrongAccount { .. }) => CoreError::ExecutorWrongLocation {
                executor: NAME.into(),
                message: e.to_string(),
            },
            other => CoreError::ExecutorBackend {
                executor: NAME.into(),
                message: other.to_string(),
            },
        }
    }
}

/// The outcome class of an AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    NotFound,
    AccessDenied,
    Throttled,
    InvalidParameter,
    Conflict,
    Other,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::NotFound => "not found",
            Class::AccessDenied => "access denied",
            Class::Throttled => "throttled",
            Class::InvalidParameter => "invalid parameter",
            Class::Conflict => "conflict",
            Class::Other => "request failed",
        }
    }
}

/// Classifies an AWS error code (EC2, ECS, S3, IAM, Lambda, STS spellings), falling back on
/// the HTTP status.
pub(crate) fn classify(code: &str, status: Option<u16>) -> Class {
    const NOT_FOUND: &[&str] = &[
        "NoSuchEntity",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "ResourceNotFoundException",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        "ObjectNotFound",
    ];
    const ACCESS: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "OptInRequired",
    ];
    const THROTTLE: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "ProvisionedThroughputExceededException",
    ];
    const INVALID: &[&str] = &[
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "ValidationError",
        "ValidationException",
        "MalformedPolicy",
        "MalformedPolicyDocument",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidInstanceID.Malformed",
        "MissingParameter",
        "InvalidInput",
        "RequestTooLargeException",
        "InvalidRequestContentException",
    ];
    const CONFLICT: &[&str] = &[
        "IncorrectInstanceState",
        "IncorrectState",
        "ResourceConflictException",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "OperationAborted",
        "ResourceInUseException",
        "ServiceNotActiveException",
        "OperationNotPermitted",
        "LimitExceeded",
        "LimitExceededException",
        "InsufficientInstanceCapacity",
        "PlatformTaskDefinitionIncompatibilityException",
        "DeleteConflict",
        "EntityTemporarilyUnmodifiable",
    ];
    if NOT_FOUND.contains(&code) || code.ends_with(".NotFound") {
        Class::NotFound
    } else if ACCESS.contains(&code) {
        Class::AccessDenied
    } else if THROTTLE.contains(&code) {
        Class::Throttled
    } else if INVALID.contains(&code) {
        Class::InvalidParameter
    } else if CONFLICT.contains(&code) {
        Class::Conflict
    } else {
        match status {
            Some(404) => Class::NotFound,
            Some(401 | 403) => Class::AccessDenied,
            Some(429) => Class::Throttled,
            Some(409) => Class::Conflict,
            Some(400) if code.is_empty() => Class::InvalidParameter,
            _ => Class::Other,
        }
    }
}

/// The code and message of a service error (empty when the SDK has none).
pub(crate) fn code_of<E: ProvideErrorMetadata>(e: &E) -> (&str, &str) {
    (
        e.code().unwrap_or_default(),
        e.message().unwrap_or_default(),
    )
}

/// Maps an SDK error of the call `what` (`ec2 StopInstances on instance i-...`) on the
/// resource `resource` (named in a not-found error) to an [`AwsError`].
pub(crate) fn sdk<E>(err: SdkError<E, HttpResponse>, what: &str, resource: &str) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let (code, message) = code_of(se.err());
            let class = classify(code, Some(status));
            if class == Class::NotFound {
                return AwsError::NotFound(resource.to_owned());
            }
            let detail = match (code.is_empty(), message.is_empty()) {
                (true, true) => format!("HTTP {status}"),
                (false, true) => code.to_owned(),
                (true, false) => format!("HTTP {status}: {message}"),
                (false, false) => format!("{code}: {message}"),
            };
            AwsError::Backend {
                class: class.label(),
                what: what.to_owned(),
                detail,
            }
        }
        SdkError::DispatchFailure(_) => AwsError::Backend {
            class: "endpoint unreachable",
            what: what.to_owned(),
            detail: DisplayErrorContext(&err).to_string(),
        },
        SdkError::TimeoutError(_) => AwsError::Backend {
            class: "timed out",
            what: what.to_owned(),
            detail: DisplayErrorContext(&err).to_string(),
        },
        SdkError::ResponseError(_) => AwsError::Backend {
            class: "unreadable response",
            what: what.to_owned(),
            detail: DisplayErrorContext(&err).to_string(),
        },
        _ => AwsError::Backend {
            class: "request not sent",
            what: what.to_owned(),
            detail: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// The AWS error code of an SDK error, when the service answered.
pub(crate) fn service_code<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> Option<String> {
    match err {
        SdkError::ServiceError(se) => se.err().code().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_outcomes() {
        let cases: &[(&str, Option<u16>, Class)] = &[
            ("InvalidInstanceID.NotFound", Some(400), Class::NotFound),
            ("NoSuchEntity", Some(404), Class::NotFound),
            ("ClusterNotFoundException", Some(400), Class::NotFound),
            ("ResourceNotFoundException", Some(404), Class::NotFound),
            ("NoSuchBucket", Some(404), Class::NotFound),
            ("", Some(404), Class::NotFound),
            ("UnauthorizedOperation", Some(403), Class::AccessDenied),
            ("AccessDenied", Some(403), Class::AccessDenied),
            ("InvalidClientTokenId", Some(403), Class::AccessDenied),
            ("", Some(403), Class::AccessDenied),
            ("RequestLimitExceeded", Some(503), Class::Throttled),
            ("ThrottlingException", Some(400), Class::Throttled),
            ("SlowDown", Some(503), Class::Throttled),
            ("InvalidParameterValue", Some(400), Class::InvalidParameter),
            ("MalformedPolicy", Some(400), Class::InvalidParameter),
            ("ValidationError", Some(400), Class::InvalidParameter),
            ("IncorrectInstanceState", Some(400), Class::Conflict),
            ("ResourceConflictException", Some(409), Class::Conflict),
            ("ServiceNotActiveException", Some(400), Class::Conflict),
            ("", Some(409), Class::Conflict),
            ("InternalError", Some(500), Class::Other),
        ];
        for (code, status, want) in cases {
            assert_eq!(classify(code, *status), *want, "{code} {status:?}");
        }
    }

    #[test]
    fn core_errors_keep_the_outcome() {
        assert_eq!(
            CoreError::from(AwsError::NotFound("instance `i-0123456789abcdef0`".into())),
            CoreError::ExecutorNotFound("instance `i-0123456789abcdef0`".into())
        );
        assert_eq!(
            CoreError::from(AwsError::Cancelled),
            CoreError::ExecutorCancelled
        );
        let e = CoreError::from(AwsError::Backend {
            class: "access denied",
            what: "ec2 StopInstances on instance `i-0123456789abcdef0`".into(),
            detail: "UnauthorizedOperation: You are not authorized".into(),
        });
        assert_eq!(
            e.to_string(),
            "aws: access denied: ec2 StopInstances on instance `i-0123456789abcdef0`: \
             UnauthorizedOperation: You are not authorized"
        );
    }
}
