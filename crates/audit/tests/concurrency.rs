//! Many threads and many processes appending to one log, and crash recovery after `kill -9`.
//!
//! Child processes are this test binary re-executed with `AGENTSAFE_AUDIT_CHILD` set: it then
//! runs only the ignored `child_appender` helper.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use agentsafe_audit::{AuditLog, Entry, SigningKey, SigningKeySource, SyncPolicy, verify_log};
use common::{Fixture, cfg_with, event, seqs};

const CHILD_ENV: &str = "AGENTSAFE_AUDIT_CHILD";

/// Appends as a child process: `append` mode writes `N` entries from `THREADS` threads and closes;
/// `loop` mode appends until it is killed.
#[test]
#[ignore = "helper run as a child process by the multi-process tests"]
fn child_appender() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log_path = PathBuf::from(std::env::var("AUDIT_LOG").unwrap());
    let n: u64 = std::env::var("AUDIT_N").unwrap().parse().unwrap();
    let threads: u64 = std::env::var("AUDIT_THREADS").unwrap().parse().unwrap();
    let sync = if mode == "loop" {
        SyncPolicy::None
    } else {
        SyncPolicy::Group
    };
    let log = Arc::new(
        AuditLog::open(
            &log_path,
            SigningKeySource::Key(SigningKey::from_bytes(&[42u8; 32])),
            &cfg_with(sync, 100),
        )
        .unwrap(),
    );
    let pid = u64::from(std::process::id());
    let forever = mode == "loop";
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut i = 0u64;
                loop {
                    if !forever && i >= n / threads {
                        break;
                    }
                    log.append(event(pid * 1_000_000 + t * 10_000 + i)).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(log).unwrap().close().unwrap();
}

fn spawn_child(mode: &str, log: &Path, n: u64, threads: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env("AUDIT_LOG", log)
        .env("AUDIT_N", n.to_string())
        .env("AUDIT_THREADS", threads.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn assert_gap_free(log: &Path, expected: u64) {
    let seqs = seqs(log);
    assert_eq!(seqs.len() as u64, expected);
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len() as u64, expected, "duplicate sequence numbers");
    assert_eq!(
        seqs,
        (0..expected).collect::<Vec<_>>(),
        "sequence numbers out of order or with gaps"
    );
}

#[test]
fn eight_processes_append_500_each_without_forking() {
    let fx = Fixture::new();
    let children: Vec<Child> = (0..8)
        .map(|_| spawn_child("append", &fx.log, 500, 4))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child process failed");
    }
    assert_gap_free(&fx.log, 4000);
    // Every entry written by every child is there exactly once.
    let bodies: BTreeSet<u64> = fx
        .lines()
        .iter()
        .map(|l| {
            Entry::parse(l.as_bytes()).unwrap().body["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(bodies.len(), 4000);
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.entries, 4000);
    assert!(
        report.checkpoints >= 40,
        "checkpoints every 100 entries: {}",
        report.checkpoints
    );
}

#[test]
fn many_threads_and_two_handles_in_one_process() {
    let fx = Fixture::new();
    let a = Arc::new(fx.open(&cfg_with(SyncPolicy::Group, 50)));
    let b = Arc::new(fx.open(&cfg_with(SyncPolicy::Every, 50)));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let log = Arc::clone(if t % 2 == 0 { &a } else { &b });
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..100 {
                    mine.push(log.append(event(t * 1000 + i)).unwrap().seq);
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..1600).collect::<Vec<_>>(),
        "every caller got a distinct seq"
    );
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    assert_gap_free(&fx.log, 1600);
    verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
}

#[test]
fn kill_9_mid_write_then_a_torn_line_recovers_and_verifies() {
    let fx = Fixture::new();
    let mut child = spawn_child("loop", &fx.log, 0, 4);
    // Let it write for a while (the loop ends as soon as enough is there; nothing is timed).
    while std::fs::metadata(&fx.log).map(|m| m.len()).unwrap_or(0) < 200_000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Simulate the worst case too: half a line at the end.
    let mut bytes = std::fs::read(&fx.log).unwrap();
    let complete = bytes.len();
    let last_line_start = bytes[..complete - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let half = bytes[last_line_start..complete].len() / 2;
    let torn: Vec<u8> = bytes[last_line_start..last_line_start + half].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&fx.log, &bytes).unwrap();

    let log = fx.open(&cfg_with(SyncPolicy::Group, 100));
    log.append(event(1)).unwrap();
    log.close().unwrap();

    let lines = fx.lines();
    let recovered: Vec<Entry> = lines
        .iter()
        .map(|l| Entry::parse(l.as_bytes()).unwrap())
        .filter(|e| e.event == "recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "exactly one recovery");
    assert_eq!(recovered[0].body["reason"], "torn_tail");
    assert_eq!(recovered[0].body["truncated_bytes"], half as u64);
    assert_eq!(recovered[0].body["offset"], complete as u64);
    let n = lines.len() as u64;
    assert_gap_free(&fx.log, n);
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!(report.entries, n);
}

#[test]
fn verifying_a_log_while_it_is_written_never_sees_half_a_line() {
    let fx = Fixture::new();
    let log = Arc::new(fx.open(&cfg_with(SyncPolicy::None, 7)));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..300 {
                    log.append(event(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    let opts = agentsafe_audit::VerifyOptions {
        allow_unsigned_tail: true,
        ..Default::default()
    };
    let mut runs = 0;
    while writers.iter().any(|w| !w.is_finished()) || runs == 0 {
        agentsafe_audit::verify_log_with(&fx.log, &fx.key.verifying_key(), &opts).unwrap();
        runs += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    log.shutdown().unwrap();
    assert_eq!(
        verify_log(&fx.log, &fx.key.verifying_key(), None)
            .unwrap()
            .entries,
        1200
    );
}

#[test]
fn the_log_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<AuditLog>();
    shared::<agentsafe_audit::Shipper>();
}
