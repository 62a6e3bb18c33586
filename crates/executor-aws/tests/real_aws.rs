//! The executor against AWS itself, with made-up keys: proves the HTTPS stack (rustls on
//! ring, native roots), request signing and error mapping without an account. Needs
//! internet access to AWS and no endpoint override:
//! `env -u AWS_ENDPOINT_URL cargo test -p agentsafe-executor-aws --test real_aws -- --ignored`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;

use agentsafe_core::{ActionContext, CoreError, Credentials, Executor, Secret, Timestamp};
use agentsafe_executor_aws::{AwsConfig, AwsExecutor};
use serde_json::json;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The HTTPS stack (rustls on ring, native roots) against AWS itself: no account is
/// needed, the request (STS GetCallerIdentity, which every credential is asked first) is
/// signed with made-up keys and AWS must answer InvalidClientTokenId, which
/// proves the TLS handshake, the signing and the error mapping. Run it without an endpoint
/// override.
#[test]
#[ignore = "needs internet access to AWS (no account): env -u AWS_ENDPOINT_URL"]
fn real_aws_answers_over_tls() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_none(),
        "unset AWS_ENDPOINT_URL: this test talks to AWS itself"
    );
    let ex = AwsExecutor::new(AwsConfig::default()).unwrap();
    let creds = Credentials {
        kind: "aws".into(),
        scope: BTreeMap::new(),
        expires_at: Timestamp::now(),
        lease_id: "l".into(),
        secret: Secret::new("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"),
    };
    let c = ActionContext {
        action: "ec2-stop-instance".into(),
        target: "t".into(),
        target_type: None,
        attributes: BTreeMap::new(),
        params: json!({"account": "123456789012", "region": "us-east-1", "instance_id": "i-0123456789abcdef0"})
            .as_object()
            .cloned()
            .unwrap(),
        decision_id: "0".repeat(32),
        ticket_nonce: "0".repeat(32),
    };
    match block_on(ex.capture_state(&c, &creds)) {
        Err(CoreError::ExecutorBackend { message, .. }) => {
            assert!(
                // The first request of a credential asks STS whose it is.
                message.starts_with("access denied: sts GetCallerIdentity"),
                "{message}"
            );
            assert!(!message.contains("wJalrXUtnFEMIK7MDENG"), "{message}");
        }
        other => panic!("expected AWS to refuse made-up keys, got {other:?}"),
    }
}
