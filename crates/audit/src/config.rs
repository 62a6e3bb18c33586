//! The `[audit]` configuration section: where the log lives, how it syncs, checkpoints and ships.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuditError;
use crate::s3::S3Location;

/// File name of the log inside the state folder.
pub const DEFAULT_LOG_FILE: &str = "audit.jsonl";

/// `[audit]` in `agentsafe.toml`. Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The log file (default `<state_dir>/audit.jsonl`).
    pub path: Option<PathBuf>,
    /// The PKCS#8 PEM signing key (default `<key_dir>/audit.key.pem`). It must not live in the
    /// log's folder or any folder under it.
    pub signing_key: Option<PathBuf>,
    /// The checkpoint origin line and signature key name (default `agentsafe.local/audit`).
    pub origin: String,
    /// When entries are flushed to disk: `every`, `group` (default) or `none`.
    pub sync: SyncPolicy,
    /// How long the writer waits for more concurrent entries before one shared fdatasync (default `2ms`).
    pub group_commit_window: HumanDuration,
    /// Write a checkpoint whenever the tree crosses a multiple of this many entries (default 1000; 0 disables).
    pub checkpoint_every: u64,
    /// Write a checkpoint this long after the last one when entries were added (default `10s`; `0s` disables).
    pub checkpoint_interval: HumanDuration,
    /// What the runner does when an entry cannot be written: `deny` (default) or `allow`.
    pub on_audit_failure: FailureMode,
    /// Destinations the log ships entries to while it runs.
    pub ship: Vec<ShipTarget>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            signing_key: None,
            origin: "agentsafe.local/audit".into(),
            sync: SyncPolicy::Group,
            group_commit_window: HumanDuration(Duration::from_millis(2)),
            checkpoint_every: 1000,
            checkpoint_interval: HumanDuration(Duration::from_secs(10)),
            on_audit_failure: FailureMode::Deny,
            ship: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// What to do when an entry cannot be written.
    pub fn on_failure(&self) -> FailureMode {
        self.on_audit_failure
    }

    /// The log file: `path` (relative to `state_dir` when relative) or `<state_dir>/audit.jsonl`.
    pub fn log_path(&self, state_dir: &Path) -> PathBuf {
        match &self.path {
            Some(p) => state_dir.join(p),
            None => state_dir.join(DEFAULT_LOG_FILE),
        }
    }

    /// The signing key: `signing_key` (relative to `key_dir` when relative) or `<key_dir>/audit.key.pem`.
    pub fn signing_key_path(&self, key_dir: &Path) -> PathBuf {
        match &self.signing_key {
            Some(p) => key_dir.join(p),
            None => key_dir.join(crate::keys::SIGNING_KEY_FILE),
        }
    }

    /// The public key verification uses by default: `<key_dir>/audit.pub.pem`.
    pub fn public_key_path(&self, key_dir: &Path) -> PathBuf {
        key_dir.join(crate::keys::PUBLIC_KEY_FILE)
    }

    /// Checks values serde cannot.
    ///
    /// # Errors
    /// When the origin is not a valid key name or a shipping target is unusable.
    pub fn validate(&self) -> Result<(), AuditError> {
        crate::note::check_origin(&self.origin).map_err(|_| {
            AuditError::Config(format!(
                "`origin` `{}` must be non-empty, without spaces or `+`",
                self.origin
            ))
        })?;
        for t in &self.ship {
            if t.batch_size == 0 || t.buffer == 0 {
                return Err(AuditError::Config(format!(
                    "shipping target `{}` needs `batch_size` and `buffer` of at least 1",
                    t.to
                )));
            }
            t.check_s3_keys()?;
        }
        Ok(())
    }
}

/// When appended entries are flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// One fdatasync per entry.
    Every,
    /// Entries arriving together share one fdatasync; each caller returns once its entry is durable.
    #[default]
    Group,
    /// No fdatasync: a power failure may lose recent entries (a process crash does not).
    None,
}

/// What the runner does when the audit log cannot record a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Fail closed: the decision becomes DENY `audit_unavailable`.
    #[default]
    Deny,
    /// Keep the decision, count the failure (shown by `agentsafe audit stats`).
    Allow,
}

/// A duration written as text: `500ms`, `10s`, `5m`, `1h` (also `250us`, `0`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&agentsafe_core::duration::format(self.0))
    }
}

impl FromStr for HumanDuration {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        agentsafe_core::duration::parse(s)
            .map(HumanDuration)
            .map_err(AuditError::Config)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where shipped entries go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Append the entry lines to a file (`file:PATH`).
    File(PathBuf),
    /// POST CloudEvents batches to an `http://` or `https://` URL.
    Http(String),
    /// Put one object per batch in an S3 bucket (`s3://BUCKET/PREFIX`); see [`crate::s3`].
    S3(S3Location),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::File(p) => write!(f, "file:{}", p.display()),
            Destination::Http(u) => f.write_str(u),
            Destination::S3(l) => fmt::Display::fmt(l, f),
        }
    }
}

impl FromStr for Destination {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err(AuditError::Config(
                    "`file:` needs a path, as in `file:/var/log/audit.jsonl`".into(),
                ));
            }
            return Ok(Destination::File(PathBuf::from(p)));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Destination::Http(s.to_owned()));
        }
        if s.starts_with("s3://") {
            return s.parse().map(Destination::S3);
        }
        Err(AuditError::Config(format!(
            "unknown shipping destination `{s}`, expected `file:PATH`, `http://URL`, `https://URL` or `s3://BUCKET/PREFIX`"
        )))
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One `[[audit.ship]]` destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShipTarget {
    /// `file:PATH`, `http://URL`, `https://URL` or `s3://BUCKET/PREFIX`.
    pub to: Destination,
    /// Entries per batch (default 100).
    pub batch_size: usize,
    /// Entries held in memory while the destination is slow or down; beyond this they are dropped
    /// and counted (default 10000).
    pub buffer: usize,
    /// First retry delay, doubled after each failure (default `100ms`).
    pub retry_initial: HumanDuration,
    /// Longest retry delay (default `30s`).
    pub retry_max: HumanDuration,
    /// Per-request timeout for HTTP and S3 destinations (default `10s`).
    pub timeout: HumanDuration,
    /// How long closing the log waits for pending entries to ship (default `5s`).
    pub flush_timeout: HumanDuration,
    /// S3 only: the bucket's region (default `AWS_REGION`, else `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// S3 only: an S3-compatible endpoint such as `http://127.0.0.1:5077`, addressed path-style
    /// (default `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
}

impl Default for ShipTarget {
    fn default() -> Self {
        ShipTarget {
            to: Destination::File(PathBuf::from("audit-shipped.jsonl")),
            batch_size: 100,
            buffer: 10_000,
            retry_initial: HumanDuration(Duration::from_millis(100)),
            retry_max: HumanDuration(Duration::from_secs(30)),
            timeout: HumanDuration(Duration::from_secs(10)),
            flush_timeout: HumanDuration(Duration::from_secs(5)),
            region: None,
            endpoint: None,
        }
    }
}

impl ShipTarget {
    /// A target with default settings.
    pub fn new(to: Destination) -> Self {
        ShipTarget {
            to,
            ..ShipTarget::default()
        }
    }

    /// `region` and `endpoint` belong to `s3://` destinations only.
    fn check_s3_keys(&self) -> Result<(), AuditError> {
        if matches!(self.to, Destination::S3(_)) {
            return Ok(());
        }
        for (key, set) in [
            ("region", self.region.is_some()),
            ("endpoint", self.endpoint.is_some()),
        ] {
            if set {
                return Err(AuditError::Config(format!(
                    "`{key}` of shipping target `{}` applies to `s3://` destinations only",
                    self.to
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("250us", Duration::from_micros(250)),
        ] {
            let parsed: HumanDuration = text.parse().unwrap();
            assert_eq!(parsed.get(), d, "{text}");
            let again: HumanDuration = parsed.to_string().parse().unwrap();
            assert_eq!(again, parsed);
        }
        assert!("10 parsecs".parse::<HumanDuration>().is_err());
        assert!("s".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn config_from_toml_rejects_unknown_keys() {
        let cfg: AuditConfig = toml_like(
            r#"{"sync":"every","checkpoint_interval":"5m","ship":[{"to":"http://127.0.0.1:1/x"}]}"#,
        );
        assert_eq!(cfg.sync, SyncPolicy::Every);
        assert_eq!(cfg.checkpoint_interval.get(), Duration::from_secs(300));
        assert_eq!(
            cfg.ship[0].to,
            Destination::Http("http://127.0.0.1:1/x".into())
        );
        assert_eq!(cfg.ship[0].batch_size, 100);
        assert!(serde_json::from_str::<AuditConfig>(r#"{"sink":"every"}"#).is_err());
        assert!(serde_json::from_str::<AuditConfig>(r#"{"ship":[{"to":"ftp://x"}]}"#).is_err());
        assert_eq!(AuditConfig::default().on_failure(), FailureMode::Deny);
    }

    #[test]
    fn s3_targets_parse_and_their_keys_are_checked() {
        let cfg: AuditConfig = toml_like(
            r#"{"ship":[{"to":"s3://audit-bucket/agentsafe/","region":"eu-west-1","endpoint":"http://127.0.0.1:5077"}]}"#,
        );
        cfg.validate().unwrap();
        let t = &cfg.ship[0];
        assert_eq!(t.to.to_string(), "s3://audit-bucket/agentsafe");
        assert_eq!(t.region.as_deref(), Some("eu-west-1"));
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:5077"));
        let Destination::S3(l) = &t.to else {
            panic!("not an S3 destination: {:?}", t.to)
        };
        assert_eq!((l.bucket(), l.prefix()), ("audit-bucket", "agentsafe"));

        // `region` and `endpoint` on another kind of destination are mistakes, not ignored.
        let cfg: AuditConfig =
            toml_like(r#"{"ship":[{"to":"file:/tmp/x.jsonl","region":"eu-west-1"}]}"#);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("`region` of shipping target `file:/tmp/x.jsonl` applies to `s3://` destinations only"),
            "{err}"
        );
        let cfg: AuditConfig =
            toml_like(r#"{"ship":[{"to":"http://h/x","endpoint":"http://h:1"}]}"#);
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("`endpoint`")
        );

        for (json, want) in [
            (
                r#"{"ship":[{"to":"s3://Bad_Bucket/x"}]}"#,
                "not a valid S3 bucket name",
            ),
            (r#"{"ship":[{"to":"s3://"}]}"#, "not a valid S3 bucket name"),
            (
                r#"{"ship":[{"to":"s3://audit-bucket/a//b"}]}"#,
                "empty segment",
            ),
            (
                r#"{"ship":[{"to":"s3://audit-bucket","regoin":"x"}]}"#,
                "unknown field `regoin`",
            ),
            (
                r#"{"ship":[{"to":"gs://audit-bucket"}]}"#,
                "`s3://BUCKET/PREFIX`",
            ),
        ] {
            let err = serde_json::from_str::<AuditConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    fn toml_like(json: &str) -> AuditConfig {
        serde_json::from_str(json).unwrap()
    }
}
