//! Whoever can edit the log but does not hold the audit key cannot get a forged entry signed: the
//! writer refuses to append (and so to sign a checkpoint) over entries that neither a signed
//! checkpoint nor its authenticated state vouches for, and counts the alarm.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use agentsafe_audit::{
    AuditError, AuditEvent, AuditLog, Hash, SigningKeySource, SyncPolicy, TamperKind, encode_entry,
    merkle, read_checkpoints, verify_log,
};
use common::{Fixture, cfg, cfg_with, event};

/// Ten entries, closed (the last checkpoint covers all ten).
fn ten() -> Fixture {
    let fx = Fixture::new();
    fx.write(10, &cfg_with(SyncPolicy::Group, 4));
    fx
}

fn state_path(fx: &Fixture) -> std::path::PathBuf {
    let mut p = fx.log.as_os_str().to_owned();
    p.push(".state");
    p.into()
}

/// A well-formed decision entry that ALLOWs, chained to the log's last line, appended by hand.
fn append_forged_allow(fx: &Fixture) -> u64 {
    let mut lines = fx.lines();
    let seq = lines.len() as u64;
    let prev = merkle::leaf_hash(lines.last().unwrap().as_bytes());
    let mut decision = agentsafe_audit::bench::sample_decision(1);
    decision.decision = agentsafe_core::Verdict::Allow;
    let redactor = agentsafe_audit::Redactor::from_signing_key(&fx.key);
    let forged = encode_entry(
        seq,
        agentsafe_core::Timestamp::now(),
        Some(&prev),
        &AuditEvent::decision(&decision, &[], &redactor),
    )
    .unwrap();
    lines.push(String::from_utf8(forged).unwrap());
    fx.set_lines(&lines);
    seq
}

/// The largest tree size any checkpoint of the log covers.
fn signed_size(fx: &Fixture) -> u64 {
    read_checkpoints(&fx.log, &fx.key.verifying_key())
        .unwrap()
        .iter()
        .map(|c| c.size())
        .max()
        .unwrap_or(0)
}

/// Tries one legitimate open, append and close; returns whether any step was refused.
fn legitimate_append(fx: &Fixture) -> bool {
    match AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()) {
        Err(_) => true,
        Ok(log) => {
            let appended = log.append(event(99));
            let closed = log.close();
            appended.is_err() || closed.is_err()
        }
    }
}

/// The forged entry at `seq` is still unproven: no checkpoint covers it and verification fails there.
fn assert_never_signed(fx: &Fixture, seq: u64) {
    assert!(
        signed_size(fx) <= seq,
        "a checkpoint covers the forged entry {seq} (signed size {})",
        signed_size(fx)
    );
    let err = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap_err();
    let f = err
        .verify_failure()
        .unwrap_or_else(|| panic!("not a verification failure: {err}"));
    assert_eq!((f.seq, f.kind), (seq, TamperKind::UnsignedTail), "{err}");
}

#[test]
fn a_forged_line_is_never_signed_by_the_next_writer() {
    let fx = ten();
    let seq = append_forged_allow(&fx);
    assert!(legitimate_append(&fx), "the writer accepted a forged entry");
    assert_never_signed(&fx, seq);
}

#[test]
fn a_refused_append_is_a_tampered_error_and_counts_an_alarm() {
    let fx = ten();
    let seq = append_forged_allow(&fx);
    let err = AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    assert_eq!(err.first_bad_seq(), Some(seq));
    let msg = err.to_string();
    assert!(msg.contains("entries 10..=10"), "{msg}");
    assert!(msg.contains("appends are refused"), "{msg}");
    // Every refusal is counted, and the statistics show the last one.
    let _ = AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    let stats = agentsafe_audit::stats(&fx.log).unwrap();
    assert_eq!(stats.counters.tamper_detected, 2);
    assert!(stats.counters.last_tamper_at.is_some());
    assert_eq!(stats.counters.last_tamper.as_deref(), Some(msg.as_str()));
    // The log is left as it was found, for the investigation.
    assert_eq!(fx.lines().len() as u64, seq + 1);
}

#[test]
fn deleting_unsigned_entries_a_key_holder_wrote_is_refused() {
    let fx = Fixture::new();
    let log = fx.open(&cfg_with(SyncPolicy::Group, 0));
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    // The process dies without closing: no checkpoint covers the five entries, only the state.
    std::mem::forget(log);
    let lines = fx.lines();
    fx.set_lines(&lines[..4]);
    let err = AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("entries were deleted"), "{err}");
    assert_eq!(err.first_bad_seq(), Some(4));
    assert_eq!(
        read_checkpoints(&fx.log, &fx.key.verifying_key()).unwrap(),
        vec![]
    );
}

#[test]
fn an_unclosed_log_reopens_from_its_authenticated_state() {
    // The legitimate twin of the cases above: entries no checkpoint covers yet, written by a key
    // holder that died, are vouched for by the state and signed by the next writer.
    let fx = Fixture::new();
    let log = fx.open(&cfg_with(SyncPolicy::Group, 0));
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    std::mem::forget(log);
    fx.write(1, &cfg());
    assert_eq!(signed_size(&fx), 6);
    assert_eq!(
        verify_log(&fx.log, &fx.key.verifying_key(), None)
            .unwrap()
            .entries,
        6
    );
}

#[test]
fn a_state_file_of_the_earlier_version_is_replaced_when_checkpoints_cover_the_log() {
    let fx = ten();
    // As written by the version before authenticated state: a JSON line and its SHA-256.
    let lines = fx.lines();
    let mut range = merkle::CompactRange::new();
    for l in &lines {
        range.push(merkle::leaf_hash(l.as_bytes()));
    }
    write_v1_state(&fx, &range, lines.last().unwrap());
    fx.write(1, &cfg());
    let lines = fx.lines();
    let rebuilt = agentsafe_audit::Entry::parse(lines[10].as_bytes()).unwrap();
    assert_eq!(rebuilt.event, "recovered");
    assert_eq!(rebuilt.body["reason"], "state_rebuilt");
    assert_eq!(rebuilt.body["state"], "legacy");
    assert_eq!(
        verify_log(&fx.log, &fx.key.verifying_key(), None)
            .unwrap()
            .entries,
        12
    );
    // From now on the state is authenticated: the next open reads no more than the tail.
    fx.write(1, &cfg());
    assert!(
        fx.lines()[12..]
            .iter()
            .all(|l| !l.contains("\"recovered\""))
    );
}

#[test]
fn a_forged_line_is_never_signed_by_a_writer_that_is_running() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    log.checkpoint().unwrap();
    let seq = append_forged_allow(&fx);
    assert!(
        log.append(event(3)).is_err(),
        "the running writer accepted a forged entry"
    );
    let _ = log.close();
    assert_never_signed(&fx, seq);
}

#[test]
fn a_forged_line_is_never_signed_after_the_state_file_is_deleted() {
    let fx = ten();
    let seq = append_forged_allow(&fx);
    std::fs::remove_file(state_path(&fx)).unwrap();
    assert!(legitimate_append(&fx), "the writer accepted a forged entry");
    assert_never_signed(&fx, seq);
}

#[test]
fn a_forged_line_is_never_signed_after_the_checkpoints_and_state_are_deleted() {
    let fx = ten();
    append_forged_allow(&fx);
    std::fs::remove_file(state_path(&fx)).unwrap();
    std::fs::remove_file(fx.checkpoints()).unwrap();
    assert!(legitimate_append(&fx), "the writer accepted a forged entry");
    assert_eq!(
        signed_size(&fx),
        0,
        "the writer signed the whole forged log"
    );
}

#[test]
fn a_forged_line_is_never_signed_with_a_forged_state_file() {
    let fx = ten();
    let seq = append_forged_allow(&fx);
    // The attacker also writes a state file that matches the edited log, in the format of the
    // version before authenticated state (a JSON line and its SHA-256).
    let lines = fx.lines();
    let mut range = merkle::CompactRange::new();
    for l in &lines {
        range.push(merkle::leaf_hash(l.as_bytes()));
    }
    write_v1_state(&fx, &range, lines.last().unwrap());
    assert!(legitimate_append(&fx), "the writer accepted a forged entry");
    assert_never_signed(&fx, seq);
}

/// Writes a version 1 state file (unauthenticated: a JSON line and its SHA-256) for the log.
fn write_v1_state(fx: &Fixture, range: &merkle::CompactRange, last: &str) {
    let cp_len = std::fs::metadata(fx.checkpoints()).unwrap().len();
    let json = serde_json::json!({
        "v": 1,
        "size": range.size(),
        "frontier": range.hashes().iter().map(Hash::to_hex).collect::<Vec<_>>(),
        "log_len": std::fs::metadata(&fx.log).unwrap().len(),
        "last_leaf": merkle::leaf_hash(last.as_bytes()).to_hex(),
        "last_line_len": last.len() + 1,
        "cp_size": 10,
        "cp_len": cp_len,
    })
    .to_string();
    use sha2::Digest as _;
    let sum: String = sha2::Sha256::digest(json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(state_path(fx), format!("{json}\n{sum}\n")).unwrap();
}
