//! Tests of the SQLite backend alone: state survives reopening the file, and the files are
//! private to their owner. The trait's invariants are checked by [`crate::conformance`]
//! (run in `tests/conformance.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::Duration;

use jiff::Timestamp;

use crate::conformance::approval_record as record;
use crate::{SqliteStateStore, StateStore, Windows};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

const MIN: Duration = Duration::from_secs(60);

const WINDOWS: Windows = Windows {
    rate: MIN,
    breaker: MIN,
    risk: MIN,
};

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
