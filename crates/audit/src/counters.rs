//! Persisted counters beside the log (`<log>.counters`): audit failures tolerated under
//! `on_audit_failure = "allow"`, and entries shipped or dropped per destination.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use agentsafe_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::AuditError;

/// Counters shown by `agentsafe audit stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Entries that could not be written (only counted when failures are allowed).
    pub failures: u64,
    /// When the last failure happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Timestamp>,
    /// The last failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Appends refused because the log, its checkpoints or its state file did not match what
    /// holders of the audit key wrote ([`crate::AuditError::Tampered`] and
    /// [`crate::AuditError::Corrupt`]): an alarm, someone may have edited the log.
    pub tamper_detected: u64,
    /// When the last refusal happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_tamper_at: Option<Timestamp>,
    /// The last refusal's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_tamper: Option<String>,
    /// Entries delivered, per destination.
    pub shipped: BTreeMap<String, u64>,
    /// Entries given up on (buffer overflow, rejected or undeliverable), per destination.
    pub dropped: BTreeMap<String, u64>,
}

/// The counters file of a log.
pub fn counters_path(log: &Path) -> PathBuf {
    crate::sibling(log, "counters")
}

/// Reads the counters of a log (zeros when there are none yet).
///
/// # Errors
/// When the file exists but cannot be read.
pub fn read_counters(log: &Path) -> Result<Counters, AuditError> {
    let path = counters_path(log);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Counters::default()),
        Err(e) => Err(AuditError::io("read audit counters", path, e)),
    }
}

/// Applies `change` to the counters under an exclusive file lock (several processes share them).
pub(crate) fn update_counters(
    log: &Path,
    change: impl FnOnce(&mut Counters),
) -> Result<Counters, AuditError> {
    let path = counters_path(log);
    let io = |action: &'static str| {
        let path = path.clone();
        move |e| AuditError::io(action, path, e)
    };
    let mut f: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open audit counters"))?;
    f.lock().map_err(io("lock audit counters"))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io("read audit counters"))?;
    let mut counters: Counters = serde_json::from_slice(&buf).unwrap_or_default();
    change(&mut counters);
    let out =
        serde_json::to_vec_pretty(&counters).map_err(|e| AuditError::Encode(e.to_string()))?;
    f.seek(SeekFrom::Start(0))
        .map_err(io("write audit counters"))?;
    f.write_all(&out).map_err(io("write audit counters"))?;
    f.set_len(out.len() as u64)
        .map_err(io("write audit counters"))?;
    let _ = f.unlock();
    Ok(counters)
}

/// Counts an audit failure that the runner let pass (`on_audit_failure = "allow"`), so that
/// `agentsafe audit stats` shows it. Returns the new failure count.
///
/// # Errors
/// When the counters file cannot be written either (the log's folder is unusable).
pub fn record_failure(log: &Path, error: &AuditError) -> Result<u64, AuditError> {
    let message = error.to_string();
    update_counters(log, |c| {
        c.failures += 1;
        c.last_failure_at = Some(Timestamp::now());
        c.last_failure = Some(message);
    })
    .map(|c| c.failures)
}

/// Counts a refusal to append over a log that does not match what holders of the audit key
/// wrote (the tamper alarm shown by `agentsafe audit stats`). Returns the new count.
///
/// # Errors
/// When the counters file cannot be written.
pub(crate) fn record_tamper(log: &Path, error: &AuditError) -> Result<u64, AuditError> {
    let message = error.to_string();
    update_counters(log, |c| {
        c.tamper_detected += 1;
        c.last_tamper_at = Some(Timestamp::now());
        c.last_tamper = Some(message);
    })
    .map(|c| c.tamper_detected)
}

/// Adds shipped and dropped counts for a destination.
pub(crate) fn add_ship_counts(
    log: &Path,
    target: &str,
    shipped: u64,
    dropped: u64,
) -> Result<(), AuditError> {
    if shipped == 0 && dropped == 0 {
        return Ok(());
    }
    update_counters(log, |c| {
        *c.shipped.entry(target.to_owned()).or_default() += shipped;
        *c.dropped.entry(target.to_owned()).or_default() += dropped;
    })
    .map(|_| ())
}
