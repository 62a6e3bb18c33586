//! Helpers shared by the integration tests: temp folders, keys, configs and sample events.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::path::{Path, PathBuf};

use agentsafe_audit::{
    AuditConfig, AuditEvent, AuditLog, EventType, SigningKey, SigningKeySource, SyncPolicy,
};

/// A log folder and a separate key folder, with a key pair written to the key folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub keys: tempfile::TempDir,
    pub key: SigningKey,
    pub log: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[42u8; 32]);
        agentsafe_audit::keys::write_signing_key(&keys.path().join("audit.key.pem"), &key).unwrap();
        agentsafe_audit::keys::write_verifying_key(
            &keys.path().join("audit.pub.pem"),
            &key.verifying_key(),
        )
        .unwrap();
        let log = dir.path().join("audit.jsonl");
        Fixture {
            dir,
            keys,
            key,
            log,
        }
    }

    pub fn key_path(&self) -> PathBuf {
        self.keys.path().join("audit.key.pem")
    }

    pub fn pub_path(&self) -> PathBuf {
        self.keys.path().join("audit.pub.pem")
    }

    pub fn open(&self, cfg: &AuditConfig) -> AuditLog {
        AuditLog::open(&self.log, SigningKeySource::Key(self.key.clone()), cfg).unwrap()
    }

    /// Writes `n` entries and closes the log (so a final checkpoint covers them).
    pub fn write(&self, n: u64, cfg: &AuditConfig) {
        let log = self.open(cfg);
        for i in 0..n {
            log.append(event(i)).unwrap();
        }
        log.close().unwrap();
    }

    pub fn lines(&self) -> Vec<String> {
        read_lines(&self.log)
    }

    pub fn set_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        std::fs::write(&self.log, text).unwrap();
    }

    pub fn checkpoints(&self) -> PathBuf {
        agentsafe_audit::checkpoints_path(&self.log)
    }
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A config with no timer-driven checkpoints, so tests are deterministic.
pub fn cfg() -> AuditConfig {
    AuditConfig {
        checkpoint_interval: std::time::Duration::ZERO.into(),
        ..AuditConfig::default()
    }
}

pub fn cfg_with(sync: SyncPolicy, every: u64) -> AuditConfig {
    AuditConfig {
        sync,
        checkpoint_every: every,
        ..cfg()
    }
}

pub fn event(i: u64) -> AuditEvent {
    AuditEvent::custom(
        EventType::Execution,
        serde_json::json!({ "n": i, "action": "restart", "target": "t1" }),
    )
}

/// The seq numbers of a log's lines.
pub fn seqs(path: &Path) -> Vec<u64> {
    read_lines(path)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}
