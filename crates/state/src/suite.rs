//! One test suite for the [`StateStore`] contract, run against every backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use agentsafe_core::{Caller, Request};
use jiff::Timestamp;

use crate::{
    ApprovalRecord, ApprovalState, MemoryStateStore, Pause, SqliteStateStore, StateError,
    StateStore, Vote, Windows,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

const MIN: Duration = Duration::from_secs(60);

const WINDOWS: Windows = Windows {
    rate: MIN,
    breaker: MIN,
    risk: MIN,
};

fn backends() -> Vec<(Box<dyn StateStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    vec![
        (Box::new(MemoryStateStore::new()), None),
        (Box::new(sqlite), Some(dir)),
    ]
}

fn each(test: impl Fn(&dyn StateStore)) {
    for (store, _dir) in backends() {
        test(store.as_ref());
    }
}

#[test]
fn rate_limit_counts_a_sliding_window_per_key() {
    each(|s| {
        for i in 0..3 {
            let c = s.rate_charge("a", t(i), MIN, 3).unwrap();
            assert!(c.allowed, "{s:?} {i}");
            assert_eq!(c.count, u32::try_from(i).unwrap() + 1);
        }
        assert!(!s.rate_charge("a", t(10), MIN, 3).unwrap().allowed);
        // Another key has its own window.
        assert!(s.rate_charge("b", t(10), MIN, 3).unwrap().allowed);
        // The first charge ages out after the window: one slot frees up.
        assert!(s.rate_charge("a", t(60), MIN, 3).unwrap().allowed);
        assert!(!s.rate_charge("a", t(60), MIN, 3).unwrap().allowed);
        assert_eq!(s.caller_state("a", t(60), WINDOWS).unwrap().rate_count, 3);
    });
}

#[test]
fn risk_charges_until_the_deny_threshold() {
    each(|s| {
        assert_eq!(s.risk_charge("a", t(0), MIN, 15, 75).unwrap(), 15);
        assert_eq!(s.risk_charge("a", t(1), MIN, 50, 75).unwrap(), 65);
        // Would reach 80: reported, not charged.
        assert_eq!(s.risk_charge("a", t(2), MIN, 15, 75).unwrap(), 80);
        assert_eq!(s.caller_state("a", t(2), WINDOWS).unwrap().risk_score, 65);
        // After the window it is forgotten.
        assert_eq!(s.risk_charge("a", t(120), MIN, 1, 75).unwrap(), 1);
    });
}

#[test]
fn breaker_opens_at_the_threshold_and_resume_closes_it() {
    each(|s| {
        assert_eq!(s.record_denial("a", t(0), MIN, 3, MIN).unwrap(), None);
        assert_eq!(s.record_denial("a", t(1), MIN, 3, MIN).unwrap(), None);
        assert_eq!(
            s.record_denial("a", t(2), MIN, 3, MIN).unwrap(),
            Some(t(62))
        );
        assert_eq!(
            s.caller_state("a", t(3), WINDOWS).unwrap().open_until,
            Some(t(62))
        );
        assert_eq!(s.caller_state("b", t(3), WINDOWS).unwrap().open_until, None);
        // It closes by itself after the cooldown.
        assert_eq!(
            s.caller_state("a", t(62), WINDOWS).unwrap().open_until,
            None
        );
        // Denials spread wider than the window never trip it.
        for i in 0..5 {
            assert_eq!(s.record_denial("c", t(i * 61), MIN, 2, MIN).unwrap(), None);
        }
        s.record_denial("d", t(0), MIN, 1, MIN).unwrap();
        assert!(s.resume("d").unwrap());
        assert_eq!(s.caller_state("d", t(1), WINDOWS).unwrap().open_until, None);
        assert!(!s.resume("d").unwrap());
    });
}

#[test]
fn pause_holds_until_resume() {
    each(|s| {
        let p = Pause {
            by: "op".into(),
            reason: "investigating".into(),
            at: t(0),
        };
        s.pause("a", &p).unwrap();
        assert_eq!(
            s.caller_state("a", t(1000), WINDOWS).unwrap().paused,
            Some(p)
        );
        assert_eq!(s.caller_state("b", t(1000), WINDOWS).unwrap().paused, None);
        assert!(s.resume("a").unwrap());
        assert_eq!(s.caller_state("a", t(1000), WINDOWS).unwrap().paused, None);
    });
}

fn record(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        decision_id: "d".into(),
        request: Request {
            action: "scale".into(),
            target: "prod/x".into(),
            caller: Caller::unauthenticated("agent"),
            ..Request::default()
        },
        authenticated: false,
        redacted_params: Vec::new(),
        params_digest: "sha256:00".into(),
        risk: None,
        rule_id: Some("r".into()),
        reason: "needs approval".into(),
        approvers: vec!["approver".into()],
        required: 1,
        created_at: t(0),
        expires_at: t(3600),
        state: ApprovalState::Pending,
        votes: Vec::new(),
        denied: None,
        resolved_at: None,
        ticket_nonce: None,
        approved_decision_id: None,
    }
}

#[test]
fn approvals_are_stored_updated_atomically_and_listed() {
    each(|s| {
        s.create_approval(&record("b")).unwrap();
        s.create_approval(&record("a")).unwrap();
        assert!(matches!(
            s.create_approval(&record("a")),
            Err(StateError::Conflict(_))
        ));
        let ids: Vec<String> = s.approvals().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let updated = s
            .update_approval("a", &mut |r| {
                r.votes.push(Vote {
                    approver: "x".into(),
                    at: t(1),
                    reason: None,
                    root: "x".into(),
                    roles: vec!["approver".into()],
                });
                Ok(())
            })
            .unwrap();
        assert_eq!(updated.votes.len(), 1);
        // A refused change writes nothing.
        let refused = s.update_approval("a", &mut |r| {
            r.state = ApprovalState::Denied;
            Err(StateError::Refused("no".into()))
        });
        assert!(matches!(refused, Err(StateError::Refused(_))));
        let stored = s.approval("a").unwrap().unwrap();
        assert_eq!(stored.state, ApprovalState::Pending);
        assert_eq!(stored.votes.len(), 1);
        assert_eq!(stored.state_at(t(3600)), ApprovalState::Expired);
        assert!(s.approval("zz").unwrap().is_none());
        assert!(matches!(
            s.update_approval("zz", &mut |_| Ok(())),
            Err(StateError::NotFound(_))
        ));
    });
}

#[test]
fn counters_add_up() {
    each(|s| {
        s.add_counter("notify_failures", 2).unwrap();
        s.add_counter("notify_failures", 3).unwrap();
        assert_eq!(s.counters().unwrap()["notify_failures"], 5);
    });
}

#[test]
fn eight_connections_never_exceed_the_rate_limit_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let now = Timestamp::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = SqliteStateStore::open(&path).unwrap();
                (0..20)
                    .filter(|_| store.rate_charge("root", now, MIN, 50).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 50);
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStateStore::open(&path).unwrap();
        s.record_denial("a", t(0), MIN, 1, MIN).unwrap();
        s.create_approval(&record("a")).unwrap();
    }
    let s = SqliteStateStore::open(&path).unwrap();
    assert_eq!(
        s.caller_state("a", t(1), WINDOWS).unwrap().open_until,
        Some(t(60))
    );
    assert!(s.approval("a").unwrap().is_some());
}

/// The permission bits of `path`, in octal.
#[cfg(unix)]
fn mode(path: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    format!(
        "{:03o}",
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    )
}

/// `state.db` and its `-wal` and `-shm` files.
#[cfg(unix)]
fn db_files(path: &std::path::Path) -> [std::path::PathBuf; 3] {
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    [path.to_owned(), side("-wal"), side("-shm")]
}

#[cfg(unix)]
#[test]
fn a_new_store_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let path = folder.join("state.db");
    let s = SqliteStateStore::open(&path).unwrap();
    s.create_approval(&record("a")).unwrap();
    assert_eq!(mode(&folder), "700", "the folder the store created");
    for file in db_files(&path) {
        assert!(file.exists(), "{} after a write", file.display());
        assert_eq!(mode(&file), "600", "{}", file.display());
    }
}

#[cfg(unix)]
#[test]
fn opening_tightens_a_store_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("shared");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = folder.join("state.db");
    // Another connection keeps the -wal and -shm files in place while the store opens.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for file in db_files(&path) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = SqliteStateStore::open(&path).unwrap();
    s.create_approval(&record("a")).unwrap();
    for file in db_files(&path) {
        assert_eq!(mode(&file), "600", "{}", file.display());
    }
    // A folder the store did not create is the operator's: it keeps its mode.
    assert_eq!(mode(&folder), "755");
    drop(other);
}
