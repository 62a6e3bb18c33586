//! Writing the log: sequence numbers, checkpoints, state recovery, decision records, keys and failures.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use agentsafe_audit::{
    AuditConfig, AuditError, AuditEvent, AuditLog, Entry, EventType, LoadedFile, SigningKeySource,
    SyncPolicy, verify_log,
};
use common::{Fixture, cfg, cfg_with, event, seqs};

#[test]
fn appends_are_gap_free_and_close_writes_a_checkpoint() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    for i in 0..5 {
        let a = log.append(event(i)).unwrap();
        assert_eq!(a.seq, i);
    }
    log.close().unwrap();
    assert_eq!(seqs(&fx.log), vec![0, 1, 2, 3, 4]);
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.latest_checkpoint.unwrap().size, 5);
}

#[test]
fn checkpoints_every_n_entries_and_on_close() {
    let fx = Fixture::new();
    fx.write(10, &cfg_with(SyncPolicy::Group, 3));
    let cps = agentsafe_audit::read_checkpoints(&fx.log, &fx.key.verifying_key()).unwrap();
    let sizes: Vec<u64> = cps.iter().map(|c| c.size()).collect();
    assert_eq!(sizes, vec![3, 6, 9, 10]);
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.checkpoints, 4);
}

#[test]
fn timer_checkpoints_cover_a_log_that_stays_open() {
    let fx = Fixture::new();
    let cfg = AuditConfig {
        checkpoint_interval: std::time::Duration::from_millis(20).into(),
        checkpoint_every: 0,
        ..AuditConfig::default()
    };
    let log = fx.open(&cfg);
    log.append(event(0)).unwrap();
    // Wait for the writer's timer (not a timing assertion: the loop ends as soon as it happened).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while agentsafe_audit::read_checkpoints(&fx.log, &fx.key.verifying_key())
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no timer checkpoint was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    log.close().unwrap();
}

#[test]
fn explicit_checkpoint_and_every_sync_policy() {
    for sync in [SyncPolicy::Every, SyncPolicy::Group, SyncPolicy::None] {
        let fx = Fixture::new();
        let log = fx.open(&cfg_with(sync, 0));
        log.append(event(0)).unwrap();
        log.append(event(1)).unwrap();
        let cp = log.checkpoint().unwrap();
        assert_eq!(cp.size(), 2, "{sync:?}");
        // No growth: the same checkpoint again, not a new one.
        assert_eq!(log.checkpoint().unwrap(), cp);
        log.close().unwrap();
        let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
        assert_eq!((report.entries, report.checkpoints), (2, 1), "{sync:?}");
    }
}

#[test]
fn reopening_continues_the_sequence() {
    let fx = Fixture::new();
    fx.write(3, &cfg());
    fx.write(2, &cfg());
    assert_eq!(seqs(&fx.log), vec![0, 1, 2, 3, 4]);
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!((report.entries, report.checkpoints), (5, 2));
}

fn state_path(fx: &Fixture) -> std::path::PathBuf {
    let mut p = fx.log.as_os_str().to_owned();
    p.push(".state");
    p.into()
}

#[test]
fn a_missing_state_file_is_rebuilt_and_recorded() {
    let fx = Fixture::new();
    fx.write(3, &cfg());
    std::fs::remove_file(state_path(&fx)).unwrap();
    fx.write(1, &cfg());
    let lines = fx.lines();
    assert_eq!(seqs(&fx.log), vec![0, 1, 2, 3, 4]);
    let recovered = Entry::parse(lines[3].as_bytes()).unwrap();
    assert_eq!(recovered.event, "recovered");
    assert_eq!(recovered.body["reason"], "state_rebuilt");
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
}

#[test]
fn a_damaged_state_file_is_rebuilt() {
    let fx = Fixture::new();
    fx.write(3, &cfg());
    std::fs::write(state_path(&fx), b"{\"v\":1,\"size\":99}\nnot-a-checksum\n").unwrap();
    fx.write(1, &cfg());
    assert_eq!(seqs(&fx.log), vec![0, 1, 2, 3, 4]);
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
}

#[test]
fn a_stale_state_file_is_caught_up_from_the_log() {
    let fx = Fixture::new();
    fx.write(3, &cfg());
    let old_state = std::fs::read(state_path(&fx)).unwrap();
    fx.write(2, &cfg());
    // As if the last writer died after writing the log but before updating the state.
    std::fs::write(state_path(&fx), old_state).unwrap();
    fx.write(1, &cfg());
    assert_eq!(seqs(&fx.log), vec![0, 1, 2, 3, 4, 5]);
    assert!(fx.lines().iter().all(|l| !l.contains("\"recovered\"")));
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
}

#[test]
fn a_log_shorter_than_its_checkpoint_refuses_appends() {
    let fx = Fixture::new();
    fx.write(5, &cfg());
    let lines = fx.lines();
    fx.set_lines(&lines[..3]);
    let err = AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("entries were deleted"), "{msg}");
    assert_eq!(err.first_bad_seq(), Some(3));
}

#[test]
fn decisions_record_everything_to_replay_and_redact_sensitive_params() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    let decision = agentsafe_audit::bench::sample_decision(7);
    let ev = AuditEvent::decision(&decision, &["token", "absent"], log.redactor())
        .with_ticket_nonce("n-1");
    log.append(ev).unwrap();
    let expected_mac = log.redactor().mac(&serde_json::json!("s3cr3t"));
    log.close().unwrap();

    let text = std::fs::read_to_string(&fx.log).unwrap();
    assert!(
        !text.contains("s3cr3t"),
        "a sensitive value reached the log"
    );
    let entry = Entry::parse(fx.lines()[0].as_bytes()).unwrap();
    assert_eq!(entry.event, "decision");
    assert_eq!(entry.decision(), Some("allow"));
    assert_eq!(entry.action(), Some("scale-deployment"));
    assert_eq!(entry.caller_id(), Some("agent-7"));
    assert_eq!(entry.target_id(), Some("prod/payments"));
    assert_eq!(entry.reason_code(), Some("rule_matched"));
    let body = &entry.body;
    assert_eq!(
        body["params"]["token"],
        serde_json::Value::String(expected_mac)
    );
    assert_eq!(body["params"]["replicas"], 7);
    assert_eq!(body["redacted_params"], serde_json::json!(["token"]));
    assert_eq!(body["caller"]["authenticated"], true);
    assert_eq!(body["rule_id"], "allow-scale-internal");
    assert_eq!(body["effective_risk"], "medium");
    assert_eq!(body["policy_hash"], decision.policy_hash.as_ref());
    assert_eq!(
        entry.links.decision_id.as_deref(),
        Some(decision.decision_id.to_string().as_str())
    );
    assert_eq!(
        entry.links.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(entry.links.correlation_id.as_deref(), Some("corr-7"));
    assert_eq!(entry.links.ticket_nonce.as_deref(), Some("n-1"));
    assert!(body.get("decision_id").is_none());
}

#[test]
fn config_loaded_and_custom_events() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    let files = [LoadedFile::new("policies/a.toml", b"x = 1\n")];
    log.append(AuditEvent::config_loaded("sha256:abc", &files))
        .unwrap();
    log.append(
        AuditEvent::custom(EventType::Rollback, serde_json::json!(5)).with_approval_id("ap-1"),
    )
    .unwrap();
    log.close().unwrap();
    let lines = fx.lines();
    let first = Entry::parse(lines[0].as_bytes()).unwrap();
    assert_eq!(first.event, "config_loaded");
    assert_eq!(first.body["files"][0]["path"], "policies/a.toml");
    assert_eq!(first.body["files"][0]["sha256"].as_str().unwrap().len(), 64);
    let second = Entry::parse(lines[1].as_bytes()).unwrap();
    assert_eq!(second.body["value"], 5);
    assert_eq!(second.links.approval_id.as_deref(), Some("ap-1"));
    assert_eq!(
        second.prev,
        Some(agentsafe_audit::merkle::leaf_hash(lines[0].as_bytes()))
    );
}

#[test]
fn a_closed_log_refuses_appends() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    log.shutdown().unwrap();
    log.shutdown().unwrap();
    let err = log.append(event(0)).unwrap_err();
    assert!(matches!(err, AuditError::Closed(_)), "{err}");
}

#[test]
fn keys_load_from_pem_files_and_missing_keys_name_the_path() {
    let fx = Fixture::new();
    let log = AuditLog::open(&fx.log, SigningKeySource::Path(fx.key_path()), &cfg()).unwrap();
    log.append(event(0)).unwrap();
    log.close().unwrap();
    let vk = agentsafe_audit::load_verifying_key(&fx.pub_path()).unwrap();
    verify_log(&fx.log, &vk, None).unwrap();

    let missing = fx.keys.path().join("nope.pem");
    let err = AuditLog::open(&fx.log, SigningKeySource::Path(missing.clone()), &cfg()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.starts_with("cannot load audit signing key"), "{msg}");

    let garbage = fx.keys.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let msg = AuditLog::open(&fx.log, SigningKeySource::Path(garbage), &cfg())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("PKCS#8"), "{msg}");
    assert!(agentsafe_audit::load_verifying_key(&fx.keys.path().join("nope.pub")).is_err());
}

#[cfg(unix)]
#[test]
fn private_key_files_are_written_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let fx = Fixture::new();
    let mode = std::fs::metadata(fx.key_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(fx.key_path()).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        std::fs::read_to_string(fx.pub_path())
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn a_signing_key_beside_the_log_is_refused() {
    let fx = Fixture::new();
    let beside = fx.dir.path().join("audit.key.pem");
    agentsafe_audit::keys::write_signing_key(&beside, &fx.key).unwrap();
    let err = AuditLog::open(&fx.log, SigningKeySource::Path(beside), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::KeyBesideLog { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn a_signing_key_anywhere_under_the_log_folder_is_refused() {
    let fx = Fixture::new();
    let nested = fx.dir.path().join("keys").join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    let key = nested.join("audit.key.pem");
    agentsafe_audit::keys::write_signing_key(&key, &fx.key).unwrap();
    let err = AuditLog::open(&fx.log, SigningKeySource::Path(key.clone()), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::KeyBesideLog { .. }), "{err}");

    // Reached through a symlinked folder outside the log's folder: still inside once resolved.
    let link = fx.keys.path().join("linked-keys");
    std::os::unix::fs::symlink(fx.dir.path().join("keys"), &link).unwrap();
    let via_link = link.join("nested").join("audit.key.pem");
    let err = AuditLog::open(&fx.log, SigningKeySource::Path(via_link), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::KeyBesideLog { .. }), "{err}");

    // A key file outside that is a symlink to a file inside the log's folder.
    let file_link = fx.keys.path().join("audit-link.key.pem");
    std::os::unix::fs::symlink(&key, &file_link).unwrap();
    let err = AuditLog::open(&fx.log, SigningKeySource::Path(file_link), &cfg()).unwrap_err();
    assert!(matches!(err, AuditError::KeyBesideLog { .. }), "{err}");

    // The log's folder reached through a symlink, the key in a subfolder of its real path.
    let log_link = fx.keys.path().join("linked-log");
    std::os::unix::fs::symlink(fx.dir.path(), &log_link).unwrap();
    let err = AuditLog::open(
        &log_link.join("audit.jsonl"),
        SigningKeySource::Path(key),
        &cfg(),
    )
    .unwrap_err();
    assert!(matches!(err, AuditError::KeyBesideLog { .. }), "{err}");

    // A key in a folder beside the log's folder (not under it) is fine.
    let log = AuditLog::open(&fx.log, SigningKeySource::Path(fx.key_path()), &cfg()).unwrap();
    log.close().unwrap();
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let fx = Fixture::new();
    let seed_hex = agentsafe_audit::Hash(fx.key.to_bytes()).to_hex();
    let source = SigningKeySource::Key(fx.key.clone());
    let log = fx.open(&cfg());
    for text in [
        format!("{source:?}"),
        format!("{log:?}"),
        format!("{:?}", log.redactor()),
    ] {
        assert!(!text.contains(&seed_hex), "{text}");
        assert!(!text.contains("42, 42, 42"), "{text}");
    }
    log.close().unwrap();
}

#[test]
fn unwritable_locations_fail_with_a_clear_error() {
    let fx = Fixture::new();
    // A log whose folder is a regular file: nobody, root included, can create it.
    let blocker = fx.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("audit.jsonl");
    let err = AuditLog::open(&path, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&blocker.display().to_string()), "{msg}");

    // A read-only log file and folder (only meaningful when not running with root's override).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let ro = tempfile::tempdir().unwrap();
        let log = ro.path().join("audit.jsonl");
        std::fs::write(&log, b"").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let privileged = std::fs::OpenOptions::new().append(true).open(&log).is_ok();
        let result = AuditLog::open(&log, SigningKeySource::Key(fx.key.clone()), &cfg());
        if privileged {
            eprintln!(
                "running with permission overrides (root): read-only files are writable here"
            );
        } else {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains("audit.jsonl"), "{msg}");
            assert!(msg.to_lowercase().contains("permission"), "{msg}");
        }
        std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn append_fails_with_a_clear_error_when_the_disk_refuses_writes() {
    // `/dev/full` accepts the open and the lock but fails every write with ENOSPC.
    let fx = Fixture::new();
    let path = fx.dir.path().join("full.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let log = AuditLog::open(&path, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap();
    let err = log.append(event(0)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot append to audit log"), "{msg}");
    assert!(msg.contains("full.jsonl"), "{msg}");
    // It keeps failing (fail closed), it does not skip sequence numbers or pretend.
    assert!(log.append(event(1)).is_err());
    assert_eq!(log.record_failure(&err).unwrap(), 1);
    assert_eq!(agentsafe_audit::read_counters(&path).unwrap().failures, 1);
    drop(log);
}

#[test]
fn stats_count_events_decisions_checkpoints_and_failures() {
    let fx = Fixture::new();
    let log = fx.open(&cfg());
    for i in 0..4 {
        let d = agentsafe_audit::bench::sample_decision(i);
        log.append(AuditEvent::decision(&d, &[], log.redactor()))
            .unwrap();
    }
    log.append(event(9)).unwrap();
    log.close().unwrap();
    agentsafe_audit::record_failure(&fx.log, &AuditError::Config("disk gone".into())).unwrap();
    let s = agentsafe_audit::stats(&fx.log).unwrap();
    assert_eq!(s.entries, 5);
    assert_eq!(s.by_event["decision"], 4);
    assert_eq!(s.by_event["execution"], 1);
    assert_eq!(s.by_decision["deny"], 2);
    assert_eq!(s.by_decision["allow"], 2);
    assert_eq!(s.checkpoints, 1);
    assert_eq!(s.last_checkpoint.unwrap().size, 5);
    assert_eq!(s.counters.failures, 1);
    assert!(s.counters.last_failure.unwrap().contains("disk gone"));
}

#[test]
fn open_configured_uses_the_configured_paths() {
    let fx = Fixture::new();
    let cfg = AuditConfig {
        path: Some("custom.jsonl".into()),
        ..cfg()
    };
    let log = AuditLog::open_configured(&cfg, fx.dir.path(), fx.keys.path()).unwrap();
    assert_eq!(log.path(), fx.dir.path().join("custom.jsonl"));
    log.append(event(0)).unwrap();
    log.close().unwrap();
    assert_eq!(cfg.public_key_path(fx.keys.path()), fx.pub_path());
    verify_log(
        &fx.dir.path().join("custom.jsonl"),
        &fx.key.verifying_key(),
        None,
    )
    .unwrap();
}

#[test]
fn a_log_whose_checkpoints_were_removed_refuses_appends() {
    // Signing on would vouch for whatever happened to the entries while they were unprotected.
    let fx = Fixture::new();
    fx.write(5, &cfg());
    std::fs::write(fx.checkpoints(), b"").unwrap();
    let err = AuditLog::open(&fx.log, SigningKeySource::Key(fx.key.clone()), &cfg()).unwrap_err();
    assert!(
        err.to_string().contains("checkpoints were removed"),
        "{err}"
    );
}

#[test]
fn a_torn_checkpoint_is_truncated_and_recorded() {
    let fx = Fixture::new();
    fx.write(3, &cfg());
    let mut cps = std::fs::read_to_string(fx.checkpoints()).unwrap();
    let whole = cps.clone();
    cps.push_str(&whole[..whole.len() - 20]);
    std::fs::write(fx.checkpoints(), cps).unwrap();
    // The torn note makes verification complain until the log is reopened...
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    // ...which repairs it.
    fx.write(1, &cfg());
    let lines = fx.lines();
    let recovered = Entry::parse(lines[3].as_bytes()).unwrap();
    assert_eq!(recovered.event, "recovered");
    assert_eq!(recovered.body["reason"], "torn_checkpoint");
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert!(report.warnings.is_empty());
    assert_eq!((report.entries, report.checkpoints), (5, 2));
}

#[test]
fn reading_the_tail_and_following_new_entries() {
    use agentsafe_audit::read::{Follower, offset_of_last_lines};
    let fx = Fixture::new();
    fx.write(5, &cfg());
    let start = offset_of_last_lines(&fx.log, 2).unwrap();
    let mut follower = Follower::open(&fx.log, start).unwrap();
    let got: Vec<String> = follower
        .poll()
        .unwrap()
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(got, fx.lines()[3..].to_vec());
    assert!(follower.poll().unwrap().is_empty());
    fx.write(2, &cfg());
    assert_eq!(follower.poll().unwrap().len(), 2);
    assert_eq!(offset_of_last_lines(&fx.log, 100).unwrap(), 0);
    assert_eq!(
        offset_of_last_lines(&fx.log, 0).unwrap(),
        std::fs::metadata(&fx.log).unwrap().len()
    );
}

#[test]
fn a_log_with_old_format_checkpoints_still_opens_and_verifies() {
    use agentsafe_audit::note::{LEGACY_AUDIT_EXTENSION, sign_note};
    let fx = Fixture::new();
    fx.write(3, &cfg());
    // Rewrite its checkpoint in the old format, with the extension line.
    let cp = agentsafe_audit::read_checkpoints(&fx.log, &fx.key.verifying_key()).unwrap();
    let cp = cp.last().unwrap();
    let old_body = format!(
        "{}\n{}\n{}\n{LEGACY_AUDIT_EXTENSION}\n",
        cp.origin(),
        cp.size(),
        cp.root().to_base64()
    );
    let old_note = sign_note(&old_body, cp.origin(), &fx.key).unwrap();
    std::fs::write(fx.checkpoints(), &old_note).unwrap();
    // A writer of this version appends after it; the new checkpoint has no extension line.
    fx.write(2, &cfg());
    let text = std::fs::read_to_string(fx.checkpoints()).unwrap();
    assert!(text.starts_with(&old_note));
    assert_eq!(text.matches(LEGACY_AUDIT_EXTENSION).count(), 1, "{text}");
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!((report.entries, report.checkpoints), (5, 2));

    // An unknown extension line is not accepted.
    let odd = sign_note(
        &format!(
            "{}\n3\n{}\nsomething/else\n",
            cp.origin(),
            cp.root().to_base64()
        ),
        cp.origin(),
        &fx.key,
    )
    .unwrap();
    let err = agentsafe_audit::Checkpoint::from_note(&odd, &fx.key.verifying_key()).unwrap_err();
    assert!(err.to_string().contains("extension"), "{err}");
}
