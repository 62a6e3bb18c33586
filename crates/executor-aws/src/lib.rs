//! The AWS executor: the 13 AWS actions of the catalogue (EC2, ECS, Lambda, S3, IAM) on the
//! AWS SDK for Rust, with prechecks that ask AWS, state captured as the AWS CLI prints the
//! describe/get responses, dry runs where AWS has them (EC2's `DryRun` flag, Lambda's
//! `DryRun` invocation type), bounded waits and errors mapped to executor outcomes.
//!
//! Credentials: when the runner hands `aws` credentials with a secret, the secret is
//! `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` and is used for that call only;
//! otherwise the standard chain (environment, shared profile, container and instance
//! metadata). The region is the `region` param the decision point bound to the target. The
//! endpoint is [`AwsConfig::endpoint_url`], else `AWS_ENDPOINT_URL` (LocalStack, moto), else
//! AWS's own.
//!
//! Where it acts: every AWS action binds the target's `account` and `region` into the
//! params the ticket signs. Before any call that reads or changes the target, the executor
//! asks STS GetCallerIdentity whose the credentials are (once per access key id for the
//! life of the process) and refuses a ticket for another account, for an account that
//! [`AwsConfig::accounts`] does not list (when it lists any), or naming no account, with
//! [`CoreError::ExecutorWrongLocation`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentsafe_core::{
    ActionContext, ActionSupport, Cancel, CoreError, Credentials, ExecutionReport, Executor,
    PrecheckResult,
};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

mod ec2;
mod ecs;
mod error;
mod iam;
mod lambda;
mod params;
mod policy;
mod s3;
mod shape;
mod wait;

pub use error::AwsError;

use params::Params;

/// The executor name, as in `agentsafe run --executor aws`.
pub const NAME: &str = "aws";

/// The actions this executor runs.
pub const ACTIONS: [&str; 13] = [
    "ec2-stop-instance",
    "ec2-start-instance",
    "ec2-reboot-instance",
    "ec2-terminate-instance",
    "ecs-update-service",
    "ecs-scale-service",
    "ecs-stop-task",
    "lambda-update-function-config",
    "lambda-invoke-function",
    "s3-delete-object",
    "s3-put-bucket-policy",
    "iam-attach-role-policy",
    "iam-detach-role-policy",
];

/// The default bound of the waits.
const DEFAULT_WAIT_SECONDS: u64 = 120;

/// `[executors.aws]` of `agentsafe.toml`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Endpoint for every service (LocalStack, moto); None: AWS_ENDPOINT_URL, then the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Named profile of the shared config files; None: AWS_PROFILE / default.
    pub profile: Option<String>,
    /// Path-style S3 addressing (needed by moto and LocalStack); default: true when an endpoint override is set.
    pub force_path_style: Option<bool>,
    /// Default bound of the waits in seconds (0/absent: 120).
    pub wait_timeout_seconds: u64,
    /// Per-action bound of the wait in seconds, by action name (`ec2-stop-instance = 300`). Unknown action names are an error at `new`.
    pub wait_timeout_seconds_by_action: BTreeMap<String, u64>,
    /// The accounts this runner may act in (12-digit ids); empty: any account. Whatever
    /// the list, a ticket runs only when the credentials belong to its `account` param.
    pub accounts: Vec<String>,
}

/// The SDK configuration of one region, loaded once.
#[derive(Debug, Clone)]
struct Shared {
    sdk: aws_config::SdkConfig,
    path_style: bool,
}

/// The AWS executor. Cheap to build; SDK configuration is loaded on the first call, once
/// per region.
#[derive(Debug)]
pub struct AwsExecutor {
    config: AwsConfig,
    regions: Mutex<BTreeMap<String, Shared>>,
    /// The account of each credential seen (by access key id, never the secret), asked
    /// of STS GetCallerIdentity once per credential for the life of the process.
    identities: Mutex<BTreeMap<String, String>>,
}

impl AwsExecutor {
    /// Synchronous, no I/O beyond validating the config. SDK clients are built lazily inside the first async call
    /// (one per region, cached), because the runner creates its tokio runtime later (current_thread, io+time).
    ///
    /// # Errors
    /// [`AwsError::Config`] for an endpoint that is not an http(s) URL, an empty profile
    /// name, or a per-action wait bound for an action this executor does not run.
    pub fn new(config: AwsConfig) -> Result<AwsExecutor, AwsError> {
        if let Some(url) = &config.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(AwsError::Config(format!(
                "endpoint_url `{url}` is not an http:// or https:// URL"
            )));
        }
        if config.profile.as_deref() == Some("") {
            return Err(AwsError::Config("profile is empty".into()));
        }
        if let Some(bad) = config.accounts.iter().find(|a| !params::is_account(a)) {
            return Err(AwsError::Config(format!(
                "accounts: `{bad}` is not an AWS account id (12 digits)"
            )));
        }
        for name in config.wait_timeout_seconds_by_action.keys() {
            if !ACTIONS.contains(&name.as_str()) {
                return Err(AwsError::Config(format!(
                    "wait_timeout_seconds_by_action names `{name}`, which is not an action of the aws executor ({})",
                    ACTIONS.join(", ")
                )));
            }
        }
        Ok(AwsExecutor {
            config,
            regions: Mutex::new(BTreeMap::new()),
            identities: Mutex::new(BTreeMap::new()),
        })
    }

    /// The wait bound of `action`.
    fn wait_limit(&self, action: &str) -> Duration {
        let secs = self
            .config
            .wait_timeout_seconds_by_action
            .get(action)
            .copied()
            .filter(|s| *s > 0)
            .unwrap_or(match self.config.wait_timeout_seconds {
                0 => DEFAULT_WAIT_SECONDS,
                s => s,
            });
        Duration::from_secs(secs)
    }

    /// Whether an endpoint override is in effect (config or environment).
    fn endpoint_override(&self) -> bool {
        self.config.endpoint_url.is_some()
            || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
                .iter()
                .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
    }

    /// The SDK configuration of `region`, loaded on first use.
    async fn shared(&self, region: &str) -> Shared {
        let mut regions = self.regions.lock().await;
        if let Some(s) = regions.get(region) {
            return s.clone();
        }
        // One HTTPS client (rustls on ring) for every service client of the region.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // No retries by the SDK: the executor contract forbids repeating a mutating call
        // (a reset after StopInstances or Invoke was sent would act twice). A failed call is
        // reported, and the operator decides.
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .http_client(http);
        if let Some(url) = &self.config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(p) = &self.config.profile {
            loader = loader.profile_name(p);
        }
        let shared = Shared {
            sdk: loader.load().await,
            path_style: self
                .config
                .force_path_style
                .unwrap_or_else(|| self.endpoint_override()),
        };
        regions.insert(region.to_owned(), shared.clone());
        shared
    }

    /// The clients of one call: the region's SDK configuration, with the runner's static
    /// credentials when it handed any, after the account check. Every call goes through
    /// here before it sends anything about the target.
    ///
    /// # Errors
    /// [`AwsError::NoAccount`], [`AwsError::AccountNotAllowed`] and
    /// [`AwsError::WrongAccount`] (all become [`CoreError::ExecutorWrongLocation`]); an
    /// invalid param or credential; STS failing to say whose the credentials are.
    async fn clients(&self, ctx: &ActionContext, creds: &Credentials) -> Result<Aws, AwsError> {
        let p = Params::new(&ctx.params);
        let account = p.account()?.ok_or_else(|| AwsError::NoAccount {
            action: ctx.action.clone(),
        })?;
        if let Some(expected) = ctx.attributes.get("account")
            && expected != account
        {
            return Err(AwsError::Param {
                param: "account".into(),
                reason: format!("`{account}` differs from the target's account `{expected}`"),
            });
        }
        if !self.config.accounts.is_empty() && !self.config.accounts.iter().any(|a| a == account) {
            return Err(AwsError::AccountNotAllowed {
                account: account.to_owned(),
                allowed: self.config.accounts.clone(),
            });
        }
        let region = p.region()?;
        let static_creds = static_credentials(creds)?;
        let shared = self.shared(region).await;
        let mut sdk = shared.sdk.clone();
        if let Some(c) = static_creds {
            sdk = sdk
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(c),
                )
                .build();
        }
        let aws = Aws {
            sdk: Arc::new(sdk),
            path_style: shared.path_style,
            region: region.to_owned(),
            account: account.to_owned(),
        };
        let actual = self.account_of(&aws).await?;
        if actual != account {
            return Err(AwsError::WrongAccount {
                ticket: account.to_owned(),
                credentials: actual,
            });
        }
        Ok(aws)
    }

    /// The account the credentials of `aws` belong to: STS GetCallerIdentity, asked once
    /// per access key id for the life of the executor.
    ///
    /// # Errors
    /// When no credentials can be resolved or STS does not answer with an account.
    async fn account_of(&self, aws: &Aws) -> Result<String, AwsError> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let provider = aws
            .sdk
            .credentials_provider()
            .ok_or_else(|| AwsError::Backend {
                class: "access denied",
                what: "sts GetCallerIdentity".into(),
                detail: "no AWS credentials are configured".into(),
            })?;
        let key = provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::Backend {
                class: "access denied",
                what: "resolving the AWS credentials".into(),
                detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            })?
            .access_key_id()
            .to_owned();
        if let Some(account) = self.identities.lock().await.get(&key) {
            return Ok(account.clone());
        }
        let out = aws
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| error::sdk(e, "sts GetCallerIdentity", "the caller identity"))?;
        let account = out
            .account()
            .filter(|a| params::is_account(a))
            .map(str::to_owned)
            .ok_or_else(|| AwsError::Backend {
                class: "unreadable response",
                what: "sts GetCallerIdentity".into(),
                detail: "no account id in the answer".into(),
            })?;
        self.identities.lock().await.insert(key, account.clone());
        Ok(account)
    }
}

/// Static credentials from the runner's secret, when it handed `aws` credentials.
///
/// # Errors
/// [`AwsError::CredentialFormat`] when the secret is not `KEY_ID:SECRET[:TOKEN]`; the error
/// never contains the secret.
fn static_credentials(
    creds: &Credentials,
) -> Result<Option<aws_credential_types::Credentials>, AwsError> {
    if creds.kind != "aws" || creds.secret.is_empty() {
        return Ok(None);
    }
    let secret = creds.secret.expose();
    let mut parts = secret.splitn(3, ':');
    let key = parts.next().unwrap_or_default();
    let Some(value) = parts.next() else {
        return Err(AwsError::CredentialFormat("no `:` separator"));
    };
    let token = parts.next();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AwsError::CredentialFormat(
            "the access key id is empty or not alphanumeric",
        ));
    }
    if value.is_empty() {
        return Err(AwsError::CredentialFormat("the secret access key is empty"));
    }
    if value.chars().any(char::is_whitespace)
        || token.is_some_and(|t| t.chars().any(char::is_whitespace))
    {
        return Err(AwsError::CredentialFormat("whitespace in the secret"));
    }
    if token == Some("") {
        return Err(AwsError::CredentialFormat("the session token is empty"));
    }
    Ok(Some(aws_credential_types::Credentials::new(
        key,
        value,
        token.map(str::to_owned),
        None,
        "agentsafe-runner",
    )))
}

/// The SDK configuration of one call, from which service clients are built.
#[derive(Debug, Clone)]
pub(crate) struct Aws {
    sdk: Arc<aws_config::SdkConfig>,
    path_style: bool,
    region: String,
    /// The account of the ticket, which the credentials were checked to belong to.
    account: String,
}

impl Aws {
    pub(crate) fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }
    pub(crate) fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk)
    }
    pub(crate) fn autoscaling(&self) -> aws_sdk_applicationautoscaling::Client {
        aws_sdk_applicationautoscaling::Client::new(&self.sdk)
    }
    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&*self.sdk)
            .force_path_style(self.path_style)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
    pub(crate) fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk)
    }
    pub(crate) fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }
    pub(crate) fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk)
    }
    pub(crate) fn region(&self) -> &str {
        &self.region
    }
    /// The account the call acts in: the ticket's, which the credentials belong to.
    pub(crate) fn account(&self) -> &str {
        &self.account
    }
}

/// Which service module handles an action.
enum Service {
    Ec2,
    Ecs,
    Lambda,
    S3,
    Iam,
}

fn service(action: &str) -> Option<Service> {
    if !ACTIONS.contains(&action) {
        return None;
    }
    Some(match action.split('-').next() {
        Some("ec2") => Service::Ec2,
        Some("ecs") => Service::Ecs,
        Some("lambda") => Service::Lambda,
        Some("s3") => Service::S3,
        _ => Service::Iam,
    })
}

/// The service of an action of this executor, or an error naming the action.
fn aws_service(ctx: &ActionContext) -> Result<Service, AwsError> {
    service(&ctx.action)
        .ok_or_else(|| AwsError::Config(format!("action `{}` is not an aws action", ctx.action)))
}

impl AwsExecutor {
    fn unsupported(&self, ctx: &ActionContext) -> CoreError {
        CoreError::ExecutorUnsupported {
            executor: NAME.into(),
            action: ctx.action.clone(),
        }
    }

    async fn do_precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        creds: &Credentials,
    ) -> Result<PrecheckResult, AwsError> {
        let Some(svc) = service(&ctx.action) else {
            return Ok(PrecheckResult::Unsupported);
        };
        let p = Params::new(&ctx.params);
        let aws = self.clients(ctx, creds).await?;
        match svc {
            Service::Ec2 => ec2::precheck(&aws, ctx, &p, check).await,
            Service::Ecs => ecs::precheck(&aws, ctx, &p, check).await,
            Service::Lambda => lambda::precheck(&aws, ctx, &p, check).await,
            Service::S3 => s3::precheck(&aws, ctx, &p, check).await,
            Service::Iam => iam::precheck(&aws, ctx, &p, check).await,
        }
    }

    async fn do_capture(
        &self,
        ctx: &ActionContext,
        creds: &Credentials,
    ) -> Result<Value, AwsError> {
        let svc = aws_service(ctx)?;
        let p = Params::new(&ctx.params);
        let aws = self.clients(ctx, creds).await?;
        match svc {
            Service::Ec2 => ec2::capture(&aws, &p).await,
            Service::Ecs => ecs::capture(&aws, ctx, &p).await,
            Service::Lambda => lambda::capture(&aws, &p).await,
            Service::S3 => s3::capture(&aws, ctx, &p).await,
            Service::Iam => iam::capture(&aws, &p).await,
        }
    }

    async fn do_execute(
        &self,
        ctx: &ActionContext,
        creds: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, AwsError> {
        let svc = aws_service(ctx)?;
        let p = Params::new(&ctx.params);
        let aws = self.clients(ctx, creds).await?;
        let limit = self.wait_limit(&ctx.action);
        // Nothing has been sent yet: a cancelled run acts on nothing.
        if cancel.is_cancelled() {
            return Err(AwsError::Cancelled);
        }
        match svc {
            Service::Ec2 => ec2::execute(&aws, ctx, &p, cancel, limit).await,
            Service::Ecs => ecs::execute(&aws, ctx, &p, cancel, limit).await,
            Service::Lambda => lambda::execute(&aws, ctx, &p, cancel, limit).await,
            Service::S3 => s3::execute(&aws, ctx, &p).await,
            Service::Iam => iam::execute(&aws, ctx, &p).await,
        }
    }
}

#[async_trait]
impl Executor for AwsExecutor {
    fn name(&self) -> &str {
        NAME
    }

    fn supported_actions(&self) -> ActionSupport {
        ActionSupport::Only(ACTIONS.iter().map(|a| (*a).to_owned()).collect())
    }

    async fn precheck(
        &self,
        ctx: &ActionContext,
        check: &str,
        credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        if service(&ctx.action).is_none() {
            return Err(self.unsupported(ctx));
        }
        self.do_precheck(ctx, check, credentials)
            .await
            .map_err(CoreError::from)
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        if service(&ctx.action).is_none() {
            return Err(self.unsupported(ctx));
        }
        self.do_capture(ctx, credentials)
            .await
            .map_err(CoreError::from)
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        if service(&ctx.action).is_none() {
            return Err(self.unsupported(ctx));
        }
        if cancel.is_cancelled() {
            return Err(CoreError::ExecutorCancelled);
        }
        self.do_execute(ctx, credentials, cancel)
            .await
            .map_err(CoreError::from)
    }

    async fn dry_run(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        match service(&ctx.action) {
            None => Err(self.unsupported(ctx)),
            Some(Service::Ec2) => {
                let p = Params::new(&ctx.params);
                let aws = self.clients(ctx, credentials).await?;
                ec2::dry_run(&aws, ctx, &p)
                    .await
                    .map(Some)
                    .map_err(CoreError::from)
            }
            Some(Service::Lambda) if ctx.action == "lambda-invoke-function" => {
                let p = Params::new(&ctx.params);
                let aws = self.clients(ctx, credentials).await?;
                lambda::dry_run(&aws, &p)
                    .await
                    .map(Some)
                    .map_err(CoreError::from)
            }
            // ECS, S3, IAM and Lambda's configuration API have no dry-run mode.
            Some(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use super::*;
    use agentsafe_core::{Secret, Timestamp};

    fn creds(kind: &str, secret: &str) -> Credentials {
        Credentials {
            kind: kind.into(),
            scope: BTreeMap::new(),
            expires_at: Timestamp::UNIX_EPOCH,
            lease_id: "l".into(),
            secret: Secret::new(secret),
        }
    }

    #[test]
    fn config_is_checked_at_new() {
        assert!(AwsExecutor::new(AwsConfig::default()).is_ok());
        let bad = AwsConfig {
            wait_timeout_seconds_by_action: [("ec2-stop-instanse".to_owned(), 10)].into(),
            ..AwsConfig::default()
        };
        let e = AwsExecutor::new(bad).unwrap_err().to_string();
        assert!(e.contains("`ec2-stop-instanse`"), "{e}");
        let bad = AwsConfig {
            endpoint_url: Some("localhost:5000".into()),
            ..AwsConfig::default()
        };
        assert!(AwsExecutor::new(bad).is_err());
        let cfg: AwsConfig = serde_json::from_value(serde_json::json!({
            "endpoint_url": "http://127.0.0.1:5000",
            "wait_timeout_seconds": 30,
            "wait_timeout_seconds_by_action": {"ec2-stop-instance": 300}
        }))
        .unwrap();
        let ex = AwsExecutor::new(cfg).unwrap();
        assert_eq!(ex.wait_limit("ec2-stop-instance"), Duration::from_secs(300));
        assert_eq!(ex.wait_limit("ecs-scale-service"), Duration::from_secs(30));
        assert_eq!(
            AwsExecutor::new(AwsConfig::default())
                .unwrap()
                .wait_limit("x"),
            Duration::from_secs(120)
        );
        let bad = AwsConfig {
            accounts: vec!["123456789012".into(), "12345".into()],
            ..AwsConfig::default()
        };
        let e = AwsExecutor::new(bad).unwrap_err().to_string();
        assert!(
            e.contains("accounts: `12345` is not an AWS account id"),
            "{e}"
        );
        let typo = serde_json::from_value::<AwsConfig>(serde_json::json!({"endpoint": "x"}));
        assert!(typo.is_err(), "unknown keys are errors");
    }

    /// The account checks that need no AWS: a ticket naming no account, or one the
    /// allow-list does not list, is refused before any request (no endpoint is reachable
    /// here, so a request would be a different error).
    #[test]
    fn a_ticket_without_a_listed_account_sends_nothing() {
        let ex = AwsExecutor::new(AwsConfig {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            accounts: vec!["123456789012".into()],
            ..AwsConfig::default()
        })
        .unwrap();
        let ctx = |params: serde_json::Value| ActionContext {
            action: "ec2-stop-instance".into(),
            target: "t".into(),
            target_type: None,
            attributes: BTreeMap::new(),
            params: params.as_object().cloned().unwrap_or_default(),
            decision_id: "0".repeat(32),
            ticket_nonce: "0".repeat(32),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let none = Credentials::none(Timestamp::now());
        let e = rt
            .block_on(ex.capture_state(
                &ctx(serde_json::json!({"region": "eu-west-1", "instance_id": "i-0123abcd"})),
                &none,
            ))
            .unwrap_err();
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string()
                    .contains("ec2-stop-instance: the ticket names no account"),
            "{e:?}"
        );
        let e = rt
            .block_on(ex.execute(
                &ctx(serde_json::json!({"account": "210987654321", "region": "eu-west-1", "instance_id": "i-0123abcd"})),
                &none,
                &Cancel::new(),
            ))
            .unwrap_err();
        assert!(
            matches!(e, CoreError::ExecutorWrongLocation { .. })
                && e.to_string().contains(
                    "the ticket is for account `210987654321`, which `[executors.aws] accounts` does not list (it lists `123456789012`)"
                ),
            "{e:?}"
        );
        let e = rt
            .block_on(ex.capture_state(
                &ctx(serde_json::json!({"account": "2109876543", "region": "eu-west-1", "instance_id": "i-0123abcd"})),
                &none,
            ))
            .unwrap_err();
        assert!(e.to_string().contains("param `account`"), "{e}");
    }

    #[test]
    fn the_executor_names_its_thirteen_actions() {
        let ex = AwsExecutor::new(AwsConfig::default()).unwrap();
        assert_eq!(ex.name(), "aws");
        let ActionSupport::Only(names) = ex.supported_actions() else {
            panic!("expected a list")
        };
        assert_eq!(names.len(), 13);
        assert!(names.iter().all(|n| service(n).is_some()));
        assert!(service("scale-deployment").is_none());
    }

    #[test]
    fn credential_secrets_parse_without_leaking() {
        assert!(static_credentials(&creds("none", "")).unwrap().is_none());
        assert!(static_credentials(&creds("aws", "")).unwrap().is_none());
        assert!(
            static_credentials(&creds("test", "AKIA:x"))
                .unwrap()
                .is_none()
        );
        let c = static_credentials(&creds("aws", "AKIAEXAMPLE:s3cr3t/+x"))
            .unwrap()
            .unwrap();
        assert_eq!(c.access_key_id(), "AKIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "s3cr3t/+x");
        assert!(c.session_token().is_none());
        let c = static_credentials(&creds("aws", "AKIAEXAMPLE:s3cr3t:tok:en"))
            .unwrap()
            .unwrap();
        assert_eq!(c.session_token(), Some("tok:en"));
        for bad in [
            "hunter2-no-colon",
            ":hunter2",
            "AKIA:",
            "AK IA:hunter2",
            "AKIA:hunter2:",
            "AKIA:hun ter2",
        ] {
            let e = static_credentials(&creds("aws", bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("malformed"), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("AKIA"), "{e}");
        }
    }
}
