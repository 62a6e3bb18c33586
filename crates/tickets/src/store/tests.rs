//! Tests of the SQLite store alone: restarts, journal mode, schema version, lock timeouts
//! and file modes. The trait's invariants are checked by [`super::conformance`] (run in
//! `tests/conformance.rs`).

use serde_json::json;

use super::*;
use crate::bench::sample_decision;
use crate::config::TicketConfig;
use crate::keys::{KeySet, Signer};
use crate::ticket::{TicketIssuer, TicketVerifier};

/// Issues ticket number `i` now and verifies it at the same time.
fn ticket(i: u64) -> (SignedTicket, VerifiedTicket) {
    let signer = Signer::from_seed(&[5; 32]);
    let keys = KeySet::from_keys([signer.verifying_key()]).unwrap();
    let config = TicketConfig::default();
    let issuer = TicketIssuer::new(signer, &config).unwrap();
    let verifier = TicketVerifier::new(keys, &config);
    let now = Timestamp::now();
    let signed = issuer.issue(&sample_decision(i), now).unwrap();
    let verified = verifier.verify(signed.token(), now).unwrap();
    (signed, verified)
}

#[test]
fn sqlite_replay_after_restart_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("agentsafe.db");
    let (_, committed) = ticket(30);
    let (_, crashed) = ticket(31);
    {
        let store = SqliteTicketStore::open(&path).unwrap();
        let Redemption::Execute(g) = store.begin(&committed).unwrap() else {
            panic!("expected Execute");
        };
        g.commit(Outcome::Succeeded, json!({"done": true})).unwrap();
        let Redemption::Execute(g) = store.begin(&crashed).unwrap() else {
            panic!("expected Execute");
        };
        drop(g);
    }
    // A new store instance on the same file (a restarted runner).
    let store = SqliteTicketStore::open(&path).unwrap();
    match store.begin(&committed).unwrap() {
        Redemption::AlreadyCommitted(r) => assert_eq!(r.receipt, json!({"done": true})),
        other => panic!("replay after restart must not execute, got {other:?}"),
    }
    assert!(matches!(
        store.begin(&crashed).unwrap(),
        Redemption::Blocked { .. }
    ));
    store
        .reconcile(crashed.nonce(), Outcome::Succeeded, Some("checked by hand"))
        .unwrap();
    drop(store);
    let store = SqliteTicketStore::open(&path).unwrap();
    assert!(matches!(
        store.begin(&crashed).unwrap(),
        Redemption::AlreadyCommitted(_)
    ));
}

#[test]
fn sqlite_store_is_wal_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentsafe.db");
    let _store = SqliteTicketStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
}

#[test]
fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentsafe.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7")
        .unwrap();
    let err = SqliteTicketStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn sqlite_lock_held_past_the_busy_timeout_fails_safe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentsafe.db");
    let options = StoreOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let store = SqliteTicketStore::open_with(&path, &options).unwrap();
    let (_, t) = ticket(50);
    // Another process holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.begin(&t).unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    other.execute_batch("ROLLBACK").unwrap();
    // Nothing was recorded, and the ticket is still redeemable once the lock is gone.
    assert!(store.get(t.nonce()).unwrap().is_none());
    assert!(matches!(store.begin(&t).unwrap(), Redemption::Execute(_)));
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

/// `agentsafe.db` and its `-wal` and `-shm` files.
#[cfg(unix)]
fn db_files(path: &std::path::Path) -> [std::path::PathBuf; 3] {
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    [path.to_owned(), side("-wal"), side("-shm")]
}

/// Redeems ticket `i` through `store`: a write.
#[cfg(unix)]
fn redeem(store: &SqliteTicketStore, i: u64) {
    let (_, t) = ticket(i);
    let Redemption::Execute(g) = store.begin(&t).unwrap() else {
        panic!("expected Execute");
    };
    g.commit(Outcome::Succeeded, json!({})).unwrap();
}

#[cfg(unix)]
#[test]
fn sqlite_store_files_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let path = folder.join("agentsafe.db");
    let store = SqliteTicketStore::open(&path).unwrap();
    redeem(&store, 60);
    assert_eq!(mode(&folder), "700", "the folder the store created");
    for file in db_files(&path) {
        assert!(file.exists(), "{} after a write", file.display());
        assert_eq!(mode(&file), "600", "{}", file.display());
    }
}

#[cfg(unix)]
#[test]
fn sqlite_open_tightens_store_files_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("shared");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = folder.join("agentsafe.db");
    // Another connection keeps the -wal and -shm files in place while the store opens.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for file in db_files(&path) {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = SqliteTicketStore::open(&path).unwrap();
    redeem(&store, 61);
    for file in db_files(&path) {
        assert_eq!(mode(&file), "600", "{}", file.display());
    }
    // A folder the store did not create is the operator's: it keeps its mode.
    assert_eq!(mode(&folder), "755");
    drop(other);
}
