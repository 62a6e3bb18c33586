//! Benchmark hooks for `cargo xtask bench` and `examples/audit_bench.rs`: real files, real
//! fdatasync, realistic decision entries.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use agentsafe_core::{
    Caller, Decision, DecisionId, ReasonCode, Risk, Sensitivity, TargetInfo, Timestamp, Verdict,
};

use crate::AuditError;
use crate::config::{AuditConfig, SyncPolicy};
use crate::event::{AuditEvent, Redactor};
use crate::keys::SigningKeySource;
use crate::log::AuditLog;
use crate::verify::{VerifyOptions, verify_log_with};

/// A realistic decision, as the runner would record it.
pub fn sample_decision(i: u64) -> Decision {
    let mut params = agentsafe_core::Params::new();
    params.insert("namespace".into(), "payments".into());
    params.insert("deployment".into(), "api".into());
    params.insert("replicas".into(), serde_json::Value::from(i % 10));
    params.insert("token".into(), "s3cr3t".into());
    Decision {
        decision_id: DecisionId::from_parts(1_700_000_000_000 + i, u128::from(i)),
        decision: if i.is_multiple_of(3) {
            Verdict::Deny
        } else {
            Verdict::Allow
        },
        reason_code: ReasonCode::RuleMatched,
        reason: "rule `allow-scale-internal` allows scale-deployment on internal targets".into(),
        rule_id: Some("allow-scale-internal".into()),
        action: "scale-deployment".into(),
        target: TargetInfo {
            id: "prod/payments".into(),
            known: true,
            target_type: Some("k8s-deployment".into()),
            environment: Some("prod".into()),
            sensitivity: Sensitivity::Internal,
        },
        caller: Caller {
            id: "agent-7".into(),
            roles: vec!["sre".into()],
            groups: Vec::new(),
            delegation_chain: Vec::new(),
            authenticated: true,
        },
        action_risk: Some(Risk::Medium),
        effective_risk: Some(Risk::Medium),
        params,
        change_ticket: None,
        evaluated_at: Timestamp::UNIX_EPOCH,
        policy_hash: "sha256:5f0c6a3e0d6b1f7c2a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a"
            .into(),
        plan_id: None,
        correlation_id: Some(format!("corr-{i}")),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        diagnostics: Vec::new(),
        approval: None,
        risk_score: None,
        escalated_from: None,
    }
}

fn sample_event(i: u64, redactor: &Redactor) -> AuditEvent {
    AuditEvent::decision(&sample_decision(i), &["token"], redactor)
}

fn bench_config(sync: SyncPolicy) -> AuditConfig {
    AuditConfig {
        sync,
        ..AuditConfig::default()
    }
}

/// Audited appends per second with group commit: `threads` concurrent callers appending `n`
/// entries in total to a fresh log in `dir`, each call returning once its entry is fdatasynced.
///
/// # Errors
/// When the log cannot be written.
pub fn appends_per_sec(dir: &Path, threads: usize, n: usize) -> Result<f64, AuditError> {
    appends_per_sec_with(dir, threads, n, SyncPolicy::Group)
}

/// [`appends_per_sec`] with another sync policy (`None` shows the cost without fdatasync).
///
/// # Errors
/// When the log cannot be written.
pub fn appends_per_sec_with(
    dir: &Path,
    threads: usize,
    n: usize,
    sync: SyncPolicy,
) -> Result<f64, AuditError> {
    let path = dir.join("bench-appends.jsonl");
    let log = Arc::new(AuditLog::open(
        &path,
        SigningKeySource::Key(crate::keys::generate_signing_key()),
        &bench_config(sync),
    )?);
    let threads = threads.max(1);
    let per = n.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || -> Result<(), AuditError> {
                for i in 0..per {
                    let ev = sample_event((t * per + i) as u64, log.redactor());
                    log.append(ev)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| AuditError::Encode("a benchmark thread panicked".into()))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    log.shutdown()?;
    Ok((per * threads) as f64 / elapsed)
}

/// Fills a log in `dir` with `n` entries (without fdatasync) and returns its path.
///
/// # Errors
/// When the log cannot be written.
pub fn fill_log(
    dir: &Path,
    name: &str,
    n: u64,
    key: &crate::SigningKey,
) -> Result<std::path::PathBuf, AuditError> {
    let path = dir.join(name);
    let log = Arc::new(AuditLog::open(
        &path,
        SigningKeySource::Key(key.clone()),
        &bench_config(SyncPolicy::None),
    )?);
    let threads = 4u64;
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || -> Result<(), AuditError> {
                for i in 0..per {
                    if t * per + i >= n {
                        break;
                    }
                    log.append(sample_event(t * per + i, log.redactor()))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| AuditError::Encode("a benchmark thread panicked".into()))??;
    }
    log.shutdown()?;
    Ok(path)
}

/// Entries verified per second by [`crate::verify_log`] on a log of `n` entries in `dir`.
///
/// # Errors
/// When the log cannot be written or does not verify.
pub fn verify_entries_per_sec(dir: &Path, n: u64) -> Result<f64, AuditError> {
    let key = crate::keys::generate_signing_key();
    let path = fill_log(dir, "bench-verify.jsonl", n, &key)?;
    let start = Instant::now();
    let report = verify_log_with(&path, &key.verifying_key(), &VerifyOptions::default())?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(report.entries as f64 / elapsed)
}

/// Microseconds for one short-lived process's work on a log that already holds `existing`
/// entries: open, append one decision (fdatasynced), close (final checkpoint).
///
/// # Errors
/// When the log cannot be written.
pub fn open_append_close_micros(dir: &Path, existing: u64) -> Result<f64, AuditError> {
    let key = crate::keys::generate_signing_key();
    let path = fill_log(dir, "bench-open.jsonl", existing, &key)?;
    let rounds = 20u32;
    let start = Instant::now();
    for i in 0..rounds {
        let log = AuditLog::open(
            &path,
            SigningKeySource::Key(key.clone()),
            &bench_config(SyncPolicy::Group),
        )?;
        log.append(sample_event(u64::from(i), log.redactor()))?;
        log.close()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}
