//! The `[identity]` and `[tickets]` sections of `agentsafe.toml`.
//!
//! Paths given in these sections are relative to the config file's folder (the caller passes
//! it as `base`); when a path is not set, a default inside the key folder or the state folder
//! is used.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::keys::KeyPurpose;
use crate::store::StoreOptions;

/// The `[identity]` section: how agent identity tokens are issued and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The `iss` written into and required of identity tokens (default `agentsafe`).
    pub issuer: String,
    /// The `aud` written into and required of identity tokens (default `agentsafe`).
    pub audience: String,
    /// Whether a plain, unsigned caller id is accepted (default `false`).
    pub allow_unauthenticated: bool,
    /// The longest delegation chain accepted or issued (default 3). Never taken from a token.
    pub max_delegation_depth: usize,
    /// How far `exp`/`nbf` may be off to allow for clock differences (default `30s`).
    pub clock_skew: HumanDuration,
    /// SPKI PEM public keys trusted for identity tokens (default `<key_dir>/identity.pub.pem`).
    pub trusted_keys: Option<Vec<PathBuf>>,
    /// The PKCS#8 PEM private key used by `agentsafe token issue` and `delegate`
    /// (default `<key_dir>/identity.key.pem`).
    pub signing_key: Option<PathBuf>,
    /// The lifetime of issued tokens when `--ttl` is not given (default `1h`).
    pub default_ttl: HumanDuration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: "agentsafe".to_owned(),
            audience: "agentsafe".to_owned(),
            allow_unauthenticated: false,
            max_delegation_depth: 3,
            clock_skew: HumanDuration::from_secs(30),
            trusted_keys: None,
            signing_key: None,
            default_ttl: HumanDuration::from_secs(3600),
        }
    }
}

impl IdentityConfig {
    /// The trusted public key files, resolved against `base` (the config file's folder).
    pub fn trusted_key_paths(&self, base: &Path, key_dir: &Path) -> Vec<PathBuf> {
        resolve_list(
            base,
            self.trusted_keys.as_deref(),
            KeyPurpose::Identity.public_key_path(key_dir),
        )
    }

    /// The signing key file, resolved against `base` (the config file's folder).
    pub fn signing_key_path(&self, base: &Path, key_dir: &Path) -> PathBuf {
        resolve(
            base,
            self.signing_key.as_deref(),
            KeyPurpose::Identity.private_key_path(key_dir),
        )
    }
}

/// The `[tickets]` section: how execution tickets are issued, verified and redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketConfig {
    /// The runner a ticket is meant for (`aud`, default `agentsafe-runner`).
    pub audience: String,
    /// How long a ticket stays valid after issuance (default `5m`).
    pub ttl: HumanDuration,
    /// How far `exp`/`iat` may be off to allow for clock differences (default `30s`).
    pub clock_skew: HumanDuration,
    /// The PKCS#8 PEM private key that signs tickets (default `<key_dir>/ticket.key.pem`).
    pub signing_key: Option<PathBuf>,
    /// SPKI PEM public keys trusted for tickets (default `<key_dir>/ticket.pub.pem`).
    pub trusted_keys: Option<Vec<PathBuf>>,
    /// The SQLite redemption database (default `<state_dir>/agentsafe.db`).
    pub database: Option<PathBuf>,
    /// How long after expiry redemption records are kept before `prune` removes them
    /// (default `24h`). Must be at least `clock_skew`.
    pub retention: HumanDuration,
}

impl Default for TicketConfig {
    fn default() -> Self {
        TicketConfig {
            audience: "agentsafe-runner".to_owned(),
            ttl: HumanDuration::from_secs(300),
            clock_skew: HumanDuration::from_secs(30),
            signing_key: None,
            trusted_keys: None,
            database: None,
            retention: HumanDuration::from_secs(86_400),
        }
    }
}

impl TicketConfig {
    /// The trusted public key files, resolved against `base` (the config file's folder).
    pub fn trusted_key_paths(&self, base: &Path, key_dir: &Path) -> Vec<PathBuf> {
        resolve_list(
            base,
            self.trusted_keys.as_deref(),
            KeyPurpose::Ticket.public_key_path(key_dir),
        )
    }

    /// The signing key file, resolved against `base` (the config file's folder).
    pub fn signing_key_path(&self, base: &Path, key_dir: &Path) -> PathBuf {
        resolve(
            base,
            self.signing_key.as_deref(),
            KeyPurpose::Ticket.private_key_path(key_dir),
        )
    }

    /// The redemption database, resolved against `base` (the config file's folder).
    pub fn database_path(&self, base: &Path, state_dir: &Path) -> PathBuf {
        resolve(
            base,
            self.database.as_deref(),
            state_dir.join("agentsafe.db"),
        )
    }

    /// Store options from this section. The retention is raised to the clock skew when
    /// configured lower, so a pruned ticket can never still pass verification.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            retention: self.retention.max(self.clock_skew),
            ..StoreOptions::default()
        }
    }
}

fn resolve(base: &Path, configured: Option<&Path>, default: PathBuf) -> PathBuf {
    configured.map_or(default, |p| base.join(p))
}

fn resolve_list(base: &Path, configured: Option<&[PathBuf]>, default: PathBuf) -> Vec<PathBuf> {
    configured.map_or_else(
        || vec![default],
        |list| list.iter().map(|p| base.join(p)).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        identity: IdentityConfig,
        #[serde(default)]
        tickets: TicketConfig,
    }

    #[test]
    fn defaults_and_overrides() {
        let file: File = serde_json::from_value(serde_json::json!({
            "identity": { "max_delegation_depth": 1, "clock_skew": "10s", "trusted_keys": ["a.pem", "/abs/b.pem"] },
            "tickets": { "ttl": "2m", "database": "db/t.db" }
        }))
        .unwrap();
        assert_eq!(file.identity.max_delegation_depth, 1);
        assert_eq!(file.identity.clock_skew.as_secs(), 10);
        assert_eq!(file.identity.issuer, "agentsafe");
        assert_eq!(file.identity.default_ttl.as_secs(), 3600);
        assert_eq!(
            file.identity
                .trusted_key_paths(Path::new("/cfg"), Path::new("/keys")),
            vec![PathBuf::from("/cfg/a.pem"), PathBuf::from("/abs/b.pem")]
        );
        assert_eq!(
            file.identity
                .signing_key_path(Path::new("/cfg"), Path::new("/keys")),
            PathBuf::from("/keys/identity.key.pem")
        );
        assert_eq!(file.tickets.ttl.as_secs(), 120);
        assert_eq!(file.tickets.audience, "agentsafe-runner");
        assert_eq!(
            file.tickets
                .database_path(Path::new("/cfg"), Path::new("/state")),
            PathBuf::from("/cfg/db/t.db")
        );
        assert_eq!(
            TicketConfig::default().database_path(Path::new("/cfg"), Path::new("/state")),
            PathBuf::from("/state/agentsafe.db")
        );
        assert_eq!(
            TicketConfig::default().trusted_key_paths(Path::new(""), Path::new("/keys")),
            vec![PathBuf::from("/keys/ticket.pub.pem")]
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors() {
        let typo =
            serde_json::from_value::<File>(serde_json::json!({"identity": {"max_depth": 9}}));
        assert!(typo.unwrap_err().to_string().contains("max_depth"));
        let bad =
            serde_json::from_value::<File>(serde_json::json!({"tickets": {"ttl": "5 minutes"}}));
        assert!(bad.unwrap_err().to_string().contains("invalid duration"));
    }
}
