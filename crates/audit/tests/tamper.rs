//! One test per kind of tampering: each must be caught, and the failure must name the right first
//! bad sequence number.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use agentsafe_audit::{
    AuditEvent, Checkpoint, EventType, Hash, SigningKey, SyncPolicy, TamperKind, VerifyOptions,
    encode_entry, merkle, verify_log, verify_log_with,
};
use common::{Fixture, cfg_with};

/// Ten entries with checkpoints at 4, 8 and 10 (on close).
fn ten() -> Fixture {
    let fx = Fixture::new();
    fx.write(10, &cfg_with(SyncPolicy::Group, 4));
    fx
}

fn failure(fx: &Fixture) -> (u64, TamperKind, String) {
    failure_with(fx, &VerifyOptions::default())
}

fn failure_with(fx: &Fixture, opts: &VerifyOptions) -> (u64, TamperKind, String) {
    let err = verify_log_with(&fx.log, &fx.key.verifying_key(), opts).unwrap_err();
    let f = err
        .verify_failure()
        .unwrap_or_else(|| panic!("not a verification failure: {err}"));
    (f.seq, f.kind, err.to_string())
}

fn leaf(line: &str) -> Hash {
    merkle::leaf_hash(line.as_bytes())
}

#[test]
fn an_untouched_log_verifies() {
    let fx = ten();
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(
        (report.entries, report.checkpoints, report.unsigned_tail),
        (10, 3, 0)
    );
    assert!(report.warnings.is_empty());
}

#[test]
fn an_edited_entry_is_named() {
    let fx = ten();
    let original = fx.lines();
    // Every position but the last, including those just before a checkpoint (3 and 7).
    for k in 0..9 {
        let mut lines = original.clone();
        lines[k] = lines[k].replace(&format!("\"n\":{k}"), "\"n\":1000");
        assert_ne!(lines[k], original[k]);
        fx.set_lines(&lines);
        let (seq, kind, msg) = failure(&fx);
        assert_eq!((seq, kind), (k as u64, TamperKind::EntryEdited), "{msg}");
        assert!(msg.contains(&format!("seq {k}")), "{msg}");
    }
}

#[test]
fn an_edited_last_entry_is_caught_by_the_checkpoint() {
    let fx = ten();
    let mut lines = fx.lines();
    lines[9] = lines[9].replace("restart", "rEstart");
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    // Checkpoint 8 still matches, checkpoint 10 does not: entries from 8 on are unproven, and
    // with an intact chain entry 9 is certainly the one altered.
    assert_eq!((seq, kind), (8, TamperKind::CheckpointMismatch), "{msg}");
    assert!(msg.contains("seq 9"), "{msg}");
}

#[test]
fn an_edit_with_a_rewritten_hash_chain_is_caught_by_the_checkpoint() {
    let fx = ten();
    let mut lines = fx.lines();
    lines[5] = lines[5].replace("\"n\":5", "\"n\":55");
    // Fix every later `prev` so the chain looks intact.
    for i in 6..10 {
        let prev = leaf(&lines[i - 1]).to_hex();
        let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
        v["prev"] = prev.into();
        lines[i] = agentsafe_core::canonical::to_string(&v).unwrap();
    }
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (4, TamperKind::CheckpointMismatch), "{msg}");
}

#[test]
fn an_inserted_copy_is_named() {
    let fx = ten();
    let mut lines = fx.lines();
    let copy = lines[3].clone();
    lines.insert(6, copy);
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (6, TamperKind::SequenceGap), "{msg}");
}

#[test]
fn a_crafted_inserted_entry_is_named() {
    let fx = ten();
    let mut lines = fx.lines();
    // A well-formed entry 6 linked to entry 5, inserted before the real entry 6.
    let forged = encode_entry(
        6,
        agentsafe_core::Timestamp::UNIX_EPOCH,
        Some(&leaf(&lines[5])),
        &AuditEvent::custom(EventType::Approval, serde_json::json!({"approved": true})),
    )
    .unwrap();
    lines.insert(6, String::from_utf8(forged).unwrap());
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (6, TamperKind::SequenceGap), "{msg}");
    assert!(msg.contains("inserted"), "{msg}");
}

#[test]
fn a_deleted_middle_entry_is_named() {
    let fx = ten();
    let mut lines = fx.lines();
    lines.remove(3);
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (3, TamperKind::SequenceGap), "{msg}");
    assert!(msg.contains("deleted"), "{msg}");
}

#[test]
fn reordered_entries_are_named() {
    let fx = ten();
    let mut lines = fx.lines();
    lines.swap(6, 7);
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (6, TamperKind::SequenceGap), "{msg}");
}

#[test]
fn a_truncated_tail_is_caught_by_the_latest_checkpoint() {
    let fx = ten();
    let lines = fx.lines();
    fx.set_lines(&lines[..7]);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (7, TamperKind::Truncated), "{msg}");
    assert!(msg.contains("7..=9"), "{msg}");
}

#[test]
fn a_truncated_tail_with_truncated_checkpoints_is_caught_by_a_saved_checkpoint() {
    let fx = ten();
    // An auditor copies the latest checkpoint (size 10) away.
    let saved = fx.dir.path().join("saved-checkpoint.txt");
    let latest = agentsafe_audit::read_checkpoints(&fx.log, &fx.key.verifying_key()).unwrap();
    std::fs::write(&saved, latest.last().unwrap().note()).unwrap();
    fx.write(5, &cfg_with(SyncPolicy::Group, 4));

    // The attacker cuts the log to 8 entries and the checkpoints file to the checkpoints up to 8.
    let lines = fx.lines();
    fx.set_lines(&lines[..8]);
    let kept: String = agentsafe_audit::read_checkpoints(&fx.log, &fx.key.verifying_key())
        .unwrap()
        .iter()
        .filter(|c| c.size() <= 8)
        .map(|c| c.note().to_owned())
        .collect();
    std::fs::write(fx.checkpoints(), kept).unwrap();

    // On its own the log now looks fine...
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    // ...but not against the checkpoint saved earlier.
    let err = verify_log(&fx.log, &fx.key.verifying_key(), Some(&saved)).unwrap_err();
    let f = err.verify_failure().unwrap();
    assert_eq!((f.seq, f.kind), (8, TamperKind::Truncated), "{err}");
    assert!(err.to_string().contains("saved-checkpoint.txt"), "{err}");
}

#[test]
fn a_saved_checkpoint_must_verify_with_the_key() {
    let fx = ten();
    let saved = fx.dir.path().join("cp.txt");
    let mallory = SigningKey::from_bytes(&[66u8; 32]);
    let forged = Checkpoint::sign("agentsafe.local/audit", 20, Hash::default(), &mallory).unwrap();
    std::fs::write(&saved, forged.note()).unwrap();
    let err = verify_log(&fx.log, &fx.key.verifying_key(), Some(&saved)).unwrap_err();
    assert!(
        matches!(err, agentsafe_audit::AuditError::Checkpoint(_)),
        "{err}"
    );
    assert!(err.to_string().contains("cp.txt"), "{err}");
}

#[test]
fn a_forged_checkpoint_is_named() {
    let fx = ten();
    let mut lines = fx.lines();
    // The attacker appends two well-chained entries and a checkpoint signed with their own key.
    for seq in 10..12 {
        let prev = leaf(lines.last().unwrap());
        let e = encode_entry(
            seq,
            agentsafe_core::Timestamp::UNIX_EPOCH,
            Some(&prev),
            &AuditEvent::custom(EventType::Execution, serde_json::json!({"n": seq})),
        )
        .unwrap();
        lines.push(String::from_utf8(e).unwrap());
    }
    fx.set_lines(&lines);
    let leaves: Vec<Hash> = lines.iter().map(|l| leaf(l)).collect();
    let mallory = SigningKey::from_bytes(&[66u8; 32]);
    let forged = Checkpoint::sign(
        "agentsafe.local/audit",
        12,
        merkle::root_of(&leaves),
        &mallory,
    )
    .unwrap();
    let mut cps = std::fs::read_to_string(fx.checkpoints()).unwrap();
    cps.push_str(forged.note());
    std::fs::write(fx.checkpoints(), cps).unwrap();
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (10, TamperKind::BadCheckpoint), "{msg}");

    // Re-signing every checkpoint with another key proves nothing at all.
    let all: String = [4u64, 8, 10, 12]
        .iter()
        .map(|&n| {
            let root = merkle::root_of(&leaves[..n as usize]);
            Checkpoint::sign("agentsafe.local/audit", n, root, &mallory)
                .unwrap()
                .note()
                .to_owned()
        })
        .collect();
    std::fs::write(fx.checkpoints(), all).unwrap();
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (0, TamperKind::BadCheckpoint), "{msg}");
}

#[test]
fn an_edited_checkpoint_is_caught() {
    let fx = ten();
    let text = std::fs::read_to_string(fx.checkpoints()).unwrap();
    std::fs::write(fx.checkpoints(), text.replacen("\n8\n", "\n9\n", 1)).unwrap();
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (4, TamperKind::BadCheckpoint), "{msg}");
}

#[test]
fn appended_entries_without_a_checkpoint_are_unproven() {
    let fx = ten();
    let mut lines = fx.lines();
    let prev = leaf(lines.last().unwrap());
    let e = encode_entry(
        10,
        agentsafe_core::Timestamp::UNIX_EPOCH,
        Some(&prev),
        &AuditEvent::custom(EventType::Execution, serde_json::json!({})),
    )
    .unwrap();
    lines.push(String::from_utf8(e).unwrap());
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (10, TamperKind::UnsignedTail), "{msg}");
    let report = verify_log_with(
        &fx.log,
        &fx.key.verifying_key(),
        &VerifyOptions {
            allow_unsigned_tail: true,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.unsigned_tail, 1);
    assert_eq!(report.warnings.len(), 1);
}

#[test]
fn a_torn_final_line_is_named() {
    let fx = ten();
    let mut text = std::fs::read_to_string(&fx.log).unwrap();
    text.push_str("{\"body\":{\"n\":10");
    std::fs::write(&fx.log, text).unwrap();
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (10, TamperKind::TornLine), "{msg}");
}

#[test]
fn a_garbage_line_is_named() {
    let fx = ten();
    let mut lines = fx.lines();
    lines[2] = "hello".into();
    fx.set_lines(&lines);
    let (seq, kind, msg) = failure(&fx);
    assert_eq!((seq, kind), (2, TamperKind::Malformed), "{msg}");
}
