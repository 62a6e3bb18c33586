//! Short-lived credentials for one execution: the [`CredentialProvider`] trait, the scope
//! templating that no param value can widen, and the built-in providers.
//!
//! # Security
//! Secrets live only in [`Credentials::secret`], which never prints; scopes, lease ids and
//! kinds are not secret. Errors name the kind and where the secret was looked for, never
//! its value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use agentsafe_core::{Credentials, Params, Secret, Timestamp};
use agentsafe_registry::{CredentialsDef, TemplatePart};
use serde_json::Value;

use crate::RunnerError;

/// What a run asks a provider for: a kind, a rendered scope and a lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    /// The provider type from the action's credentials block (`kubernetes`, `aws`).
    pub kind: String,
    /// The scope, rendered from the params with [`render_scope`].
    pub scope: BTreeMap<String, String>,
    /// How long the credential may live.
    pub ttl: Duration,
}

/// Issues and revokes credentials. Dyn-compatible.
///
/// # Contract
/// * `issue` returns credentials limited to `request.scope` for at most `request.ttl`.
/// * `revoke` is called once per issued credential, on every path of a run (success,
///   failure, panic or timeout of the executor); after it the credential is unusable.
/// * Neither method puts a secret into an error message.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// The provider name, for records and messages.
    fn name(&self) -> &str;

    /// Issues credentials for one run.
    ///
    /// # Errors
    /// When no credential is available for the kind.
    fn issue(&self, request: &CredentialRequest) -> Result<Credentials, RunnerError>;

    /// Revokes credentials issued by [`CredentialProvider::issue`].
    ///
    /// # Errors
    /// When revocation failed; the runner reports it.
    fn revoke(&self, credentials: &Credentials) -> Result<(), RunnerError>;
}

/// Characters a param value may keep in a credential scope; everything else is
/// percent-encoded, so `*`, `,`, `?`, whitespace or `:` in a value can never act as a
/// wildcard, a list separator or an ARN field separator.
fn keep(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '/')
}

/// Escapes one param value for a credential scope.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if keep(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Renders the action's credentials block against the params.
///
/// Literal text of the action file is kept as written (it may hold `*` on purpose);
/// each param value is escaped and must be a non-empty string, number or boolean, so no
/// value can widen the scope: an empty namespace (all namespaces in Kubernetes) is
/// refused, and `*` becomes `%2A`.
///
/// # Errors
/// [`RunnerError::Scope`] for a missing, empty or structured param value.
pub fn render_scope(
    def: &CredentialsDef,
    params: &Params,
) -> Result<BTreeMap<String, String>, RunnerError> {
    let mut scope = BTreeMap::new();
    for (field, template) in def.fields() {
        let mut out = String::new();
        for part in template.parts() {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Param(name) => {
                    let bad = |why: &str| RunnerError::Scope {
                        param: name.clone(),
                        field: field.clone(),
                        why: why.to_owned(),
                    };
                    let text = match params.get(name) {
                        None | Some(Value::Null) => return Err(bad("the param is absent")),
                        Some(Value::String(s)) => s.clone(),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                        Some(Value::Array(_) | Value::Object(_)) => {
                            return Err(bad("only strings, numbers and booleans are allowed"));
                        }
                    };
                    if text.is_empty() {
                        return Err(bad("an empty value would widen the scope"));
                    }
                    out.push_str(&escape(&text));
                }
            }
        }
        scope.insert(field.clone(), out);
    }
    Ok(scope)
}

/// The request for `def` with `params`.
///
/// # Errors
/// As [`render_scope`].
pub fn request_for(
    def: &CredentialsDef,
    params: &Params,
) -> Result<CredentialRequest, RunnerError> {
    Ok(CredentialRequest {
        kind: def.kind().to_owned(),
        scope: render_scope(def, params)?,
        ttl: def.ttl(),
    })
}

fn lease_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn expiry(ttl: Duration) -> Timestamp {
    let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

/// Tracks which leases are live, so a provider can prove revocation on every path.
#[derive(Debug, Default)]
struct Leases {
    live: Mutex<BTreeSet<String>>,
    revoked: Mutex<BTreeSet<String>>,
}

impl Leases {
    fn add(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned());
    }

    fn remove(&self, id: &str) -> bool {
        let removed = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        if removed {
            self.revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned());
        }
        removed
    }

    fn live(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn revoked(&self) -> usize {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Mints random, scoped, in-memory credentials: for the dry-run executor and tests.
/// Nothing outside the process accepts them.
#[derive(Debug, Default)]
pub struct SimulatedProvider {
    leases: Leases,
}

impl SimulatedProvider {
    /// A provider with no live lease.
    pub fn new() -> SimulatedProvider {
        SimulatedProvider::default()
    }

    /// How many issued credentials are not revoked yet.
    pub fn live(&self) -> usize {
        self.leases.live()
    }

    /// How many credentials were revoked.
    pub fn revoked(&self) -> usize {
        self.leases.revoked()
    }
}

impl CredentialProvider for SimulatedProvider {
    fn name(&self) -> &str {
        "simulated"
    }

    fn issue(&self, request: &CredentialRequest) -> Result<Credentials, RunnerError> {
        let id = lease_id();
        self.leases.add(&id);
        Ok(Credentials {
            kind: request.kind.clone(),
            scope: request.scope.clone(),
            expires_at: expiry(request.ttl),
            lease_id: id,
            secret: Secret::new(format!("simulated-{:032x}", rand::random::<u128>())),
        })
    }

    fn revoke(&self, credentials: &Credentials) -> Result<(), RunnerError> {
        if self.leases.remove(&credentials.lease_id) {
            Ok(())
        } else {
            Err(RunnerError::Credentials(format!(
                "lease `{}` is not live",
                credentials.lease_id
            )))
        }
    }
}

/// Reads a base credential per kind from the environment or a folder:
/// `AGENTSAFE_CREDENTIALS_<KIND>` (uppercase, `-` as `_`), else the file `<dir>/<kind>`.
///
/// The secret is the base credential an executor exchanges for a scoped one (a Kubernetes
/// TokenRequest, an AWS AssumeRole with a session policy built from the scope). Revoking
/// forgets the lease; the exchanged credential expires with its TTL.
#[derive(Debug)]
pub struct EnvFileProvider {
    dir: Option<PathBuf>,
    ambient_fallback: bool,
    leases: Leases,
}

impl EnvFileProvider {
    /// A provider reading the environment, then `dir` when given.
    pub fn new(dir: Option<PathBuf>) -> EnvFileProvider {
        EnvFileProvider {
            dir,
            ambient_fallback: false,
            leases: Leases::default(),
        }
    }

    /// When neither the variable nor the file of a kind exists, issue ambient credentials
    /// (see [`AmbientProvider`]) instead of failing. A file that exists but cannot be read
    /// is still an error.
    #[must_use]
    pub fn or_ambient(mut self) -> EnvFileProvider {
        self.ambient_fallback = true;
        self
    }

    fn variable(kind: &str) -> String {
        format!(
            "AGENTSAFE_CREDENTIALS_{}",
            kind.to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl CredentialProvider for EnvFileProvider {
    fn name(&self) -> &str {
        "env"
    }

    fn issue(&self, request: &CredentialRequest) -> Result<Credentials, RunnerError> {
        let var = EnvFileProvider::variable(&request.kind);
        let from_env = std::env::var(&var).ok().filter(|v| !v.is_empty());
        let file_absent = |dir: &PathBuf| {
            matches!(
                std::fs::symlink_metadata(dir.join(&request.kind)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            )
        };
        if from_env.is_none() && self.ambient_fallback && self.dir.as_ref().is_none_or(file_absent)
        {
            return Ok(ambient(request, &self.leases));
        }
        let secret = match (from_env, &self.dir) {
            (Some(s), _) => s,
            (None, Some(dir)) => {
                if !request
                    .kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(RunnerError::Credentials(format!(
                        "invalid credential kind `{}`",
                        request.kind
                    )));
                }
                let path = dir.join(&request.kind);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    RunnerError::Credentials(format!(
                        "no `{}` credential: {var} is unset and `{}` cannot be read ({})",
                        request.kind,
                        path.display(),
                        e.kind()
                    ))
                })?;
                text.trim().to_owned()
            }
            (None, None) => {
                return Err(RunnerError::Credentials(format!(
                    "no `{}` credential: set {var} or `[runner] credentials_dir`",
                    request.kind
                )));
            }
        };
        let id = lease_id();
        self.leases.add(&id);
        Ok(Credentials {
            kind: request.kind.clone(),
            scope: request.scope.clone(),
            expires_at: expiry(request.ttl),
            lease_id: id,
            secret: Secret::new(secret),
        })
    }

    fn revoke(&self, credentials: &Credentials) -> Result<(), RunnerError> {
        self.leases.remove(&credentials.lease_id);
        Ok(())
    }
}

/// Credentials that carry no secret: the executor authenticates with its own
/// configuration (the kubeconfig's user, the AWS default credential chain). The kind,
/// scope and expiry are still recorded, so the audit log shows what the run was meant to be
/// limited to; limiting the ambient identity itself is the platform's job (RBAC, IAM).
#[derive(Debug, Default)]
pub struct AmbientProvider {
    leases: Leases,
}

impl AmbientProvider {
    /// A provider handing out ambient credentials.
    pub fn new() -> AmbientProvider {
        AmbientProvider::default()
    }
}

fn ambient(request: &CredentialRequest, leases: &Leases) -> Credentials {
    let id = lease_id();
    leases.add(&id);
    Credentials {
        kind: request.kind.clone(),
        scope: request.scope.clone(),
        expires_at: expiry(request.ttl),
        lease_id: id,
        secret: Secret::new(""),
    }
}

impl CredentialProvider for AmbientProvider {
    fn name(&self) -> &str {
        "ambient"
    }

    fn issue(&self, request: &CredentialRequest) -> Result<Credentials, RunnerError> {
        Ok(ambient(request, &self.leases))
    }

    fn revoke(&self, credentials: &Credentials) -> Result<(), RunnerError> {
        self.leases.remove(&credentials.lease_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use super::*;

    fn scale() -> agentsafe_registry::Registry {
        agentsafe_registry::Registry::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions"),
        )
        .unwrap()
    }

    #[test]
    fn a_param_value_cannot_widen_the_scope() {
        let reg = scale();
        let def = reg
            .get("scale-deployment")
            .and_then(|a| a.credentials())
            .unwrap();
        let params = |ns: &str, name: &str| -> Params {
            serde_json::json!({"cluster": "dev-1", "namespace": ns, "name": name, "replicas": 3})
                .as_object()
                .cloned()
                .unwrap()
        };
        let scope = render_scope(def, &params("web", "api-server")).unwrap();
        assert_eq!(scope["cluster"], "dev-1");
        assert_eq!(scope["namespace"], "web");
        assert_eq!(scope["resource_name"], "api-server");
        let scope = render_scope(def, &params("web", "*")).unwrap();
        assert_eq!(scope["resource_name"], "%2A");
        let scope = render_scope(def, &params("web", "a,b c")).unwrap();
        assert_eq!(scope["resource_name"], "a%2Cb%20c");
        let err = render_scope(def, &params("", "x")).unwrap_err();
        assert!(err.to_string().contains("widen"), "{err}");
    }

    #[test]
    fn simulated_leases_are_revoked_once() {
        let p = SimulatedProvider::new();
        let c = p
            .issue(&CredentialRequest {
                kind: "kubernetes".into(),
                scope: BTreeMap::new(),
                ttl: Duration::from_secs(60),
            })
            .unwrap();
        assert_eq!(p.live(), 1);
        assert!(!format!("{c:?}").contains(c.secret.expose()));
        p.revoke(&c).unwrap();
        assert_eq!((p.live(), p.revoked()), (0, 1));
        assert!(p.revoke(&c).is_err());
    }

    #[test]
    fn env_provider_never_prints_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aws"), "s3cr3t-value\n").unwrap();
        let p = EnvFileProvider::new(Some(dir.path().to_path_buf()));
        let req = |kind: &str| CredentialRequest {
            kind: kind.into(),
            scope: BTreeMap::new(),
            ttl: Duration::from_secs(60),
        };
        let c = p.issue(&req("aws")).unwrap();
        assert_eq!(c.secret.expose(), "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let err = p.issue(&req("kubernetes")).unwrap_err().to_string();
        assert!(err.contains("AGENTSAFE_CREDENTIALS_KUBERNETES"), "{err}");
        p.revoke(&c).unwrap();
    }
}
