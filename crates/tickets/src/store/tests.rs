//! One trait-level test suite, run against the in-memory and the SQLite store, plus the
//! SQLite-only restart tests.

use std::sync::{Arc, Barrier};

use serde_json::json;

use super::*;
use crate::bench::sample_decision;
use crate::config::TicketConfig;
use crate::keys::{KeySet, Signer};
use crate::ticket::{TicketIssuer, TicketVerifier};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// Issues ticket number `i` at time `iat` and verifies it at the same time.
fn ticket_at(i: u64, iat: i64) -> (SignedTicket, VerifiedTicket) {
    let signer = Signer::from_seed(&[5; 32]);
    let keys = KeySet::from_keys([signer.verifying_key()]).unwrap();
    let config = TicketConfig::default();
    let issuer = TicketIssuer::new(signer, &config).unwrap();
    let verifier = TicketVerifier::new(keys, &config);
    let signed = issuer.issue(&sample_decision(i), at(iat)).unwrap();
    let verified = verifier.verify(signed.token(), at(iat)).unwrap();
    (signed, verified)
}

fn ticket(i: u64) -> (SignedTicket, VerifiedTicket) {
    ticket_at(i, Timestamp::now().as_second())
}

/// Makes stores for the shared suite.
trait Factory {
    fn make(&self, options: &StoreOptions) -> Arc<dyn TicketStore>;
}

struct Memory;

impl Factory for Memory {
    fn make(&self, options: &StoreOptions) -> Arc<dyn TicketStore> {
        Arc::new(MemoryTicketStore::with_options(options))
    }
}

struct Sqlite(tempfile::TempDir);

impl Sqlite {
    fn new() -> Self {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

impl Factory for Sqlite {
    fn make(&self, options: &StoreOptions) -> Arc<dyn TicketStore> {
        let path = self
            .0
            .path()
            .join(format!("t-{}.db", rand::random::<u64>()));
        Arc::new(SqliteTicketStore::open_with(&path, options).unwrap())
    }
}

macro_rules! suite {
    ($module:ident, $factory:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn fresh_ticket_executes_exactly_once() {
                super::fresh_ticket_executes_exactly_once(&$factory);
            }

            #[test]
            fn issued_then_redeemed() {
                super::issued_then_redeemed(&$factory);
            }

            #[test]
            fn crash_leaves_it_blocked_until_reconciled() {
                super::crash_leaves_it_blocked_until_reconciled(&$factory);
            }

            #[test]
            fn reconcile_only_moves_pending_tickets() {
                super::reconcile_only_moves_pending_tickets(&$factory);
            }

            #[test]
            fn prune_removes_only_long_expired_settled_rows() {
                super::prune_removes_only_long_expired_settled_rows(&$factory);
            }

            #[test]
            fn begin_refuses_tickets_older_than_the_retention() {
                super::begin_refuses_tickets_older_than_the_retention(&$factory);
            }

            #[test]
            fn concurrent_redeemers_in_one_process() {
                super::concurrent_redeemers_in_one_process(&$factory);
            }
        }
    };
}

suite!(memory, Memory);
suite!(sqlite, Sqlite::new());

fn fresh_ticket_executes_exactly_once(f: &dyn Factory) {
    let store = f.make(&StoreOptions::default());
    let (_, t) = ticket(1);
    let Redemption::Execute(guard) = store.begin(&t).unwrap() else {
        panic!("a fresh ticket must be executable");
    };
    assert_eq!(guard.nonce(), t.nonce());
    // While it runs, anyone else is blocked.
    assert!(matches!(
        store.begin(&t).unwrap(),
        Redemption::Blocked {
            state: TicketState::Pending
        }
    ));
    assert_eq!(
        store.get(t.nonce()).unwrap().unwrap().state,
        TicketState::Pending
    );
    let receipt = guard
        .commit(Outcome::Succeeded, json!({"replicas": 3}))
        .unwrap();
    assert_eq!(receipt.outcome, Outcome::Succeeded);
    assert!(!receipt.reconciled);
    // Afterwards, everyone gets the stored receipt and executes nothing.
    for _ in 0..2 {
        match store.begin(&t).unwrap() {
            Redemption::AlreadyCommitted(r) => assert_eq!(r, receipt),
            other => panic!("expected the receipt, got {other:?}"),
        }
    }
    let record = store.get(t.nonce()).unwrap().unwrap();
    assert_eq!(record.state, TicketState::Committed);
    assert_eq!(record.action, "scale-deployment");
    assert_eq!(record.target, "prod/payments");
    assert_eq!(record.decision_id, t.decision_id());
    assert_eq!(record.expires_at, t.expires_at());
    assert!(record.pending_at.is_some());
    assert_eq!(record.receipt, Some(receipt));
    assert!(store.get(ticket(2).1.nonce()).unwrap().is_none());
}

fn issued_then_redeemed(f: &dyn Factory) {
    let store = f.make(&StoreOptions::default());
    let (signed, t) = ticket(3);
    store.record_issued(&signed).unwrap();
    let record = store.get(t.nonce()).unwrap().unwrap();
    assert_eq!(record.state, TicketState::Issued);
    assert!(record.issued_at.is_some());
    let Redemption::Execute(guard) = store.begin(&t).unwrap() else {
        panic!("an issued ticket must be executable");
    };
    // Recording it again changes nothing.
    store.record_issued(&signed).unwrap();
    assert_eq!(
        store.get(t.nonce()).unwrap().unwrap().state,
        TicketState::Pending
    );
    guard
        .commit(Outcome::Failed, json!({"error": "boom"}))
        .unwrap();
    store.record_issued(&signed).unwrap();
    match store.begin(&t).unwrap() {
        Redemption::AlreadyCommitted(r) => {
            assert_eq!(r.outcome, Outcome::Failed);
            assert_eq!(r.receipt, json!({"error": "boom"}));
        }
        other => panic!("expected the receipt, got {other:?}"),
    }
}

fn crash_leaves_it_blocked_until_reconciled(f: &dyn Factory) {
    let store = f.make(&StoreOptions::default());
    let (_, t) = ticket(4);
    match store.begin(&t).unwrap() {
        // The executor "crashes": the guard is dropped without commit.
        Redemption::Execute(guard) => drop(guard),
        other => panic!("expected Execute, got {other:?}"),
    }
    for _ in 0..3 {
        assert!(matches!(
            store.begin(&t).unwrap(),
            Redemption::Blocked { .. }
        ));
    }
    let receipt = store
        .reconcile(t.nonce(), Outcome::Unknown, Some("node died mid-rollout"))
        .unwrap();
    assert!(receipt.reconciled);
    assert_eq!(receipt.note.as_deref(), Some("node died mid-rollout"));
    assert_eq!(receipt.receipt, serde_json::Value::Null);
    match store.begin(&t).unwrap() {
        Redemption::AlreadyCommitted(r) => assert_eq!(r, receipt),
        other => panic!("a reconciled ticket never executes again, got {other:?}"),
    }
}

fn reconcile_only_moves_pending_tickets(f: &dyn Factory) {
    let store = f.make(&StoreOptions::default());
    let (signed, t) = ticket(5);
    let err = store
        .reconcile(t.nonce(), Outcome::Failed, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    store.record_issued(&signed).unwrap();
    let err = store
        .reconcile(t.nonce(), Outcome::Failed, None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotPending {
                state: TicketState::Issued,
                ..
            }
        ),
        "{err}"
    );
    let Redemption::Execute(guard) = store.begin(&t).unwrap() else {
        panic!("expected Execute");
    };
    store.reconcile(t.nonce(), Outcome::Failed, None).unwrap();
    // The executor comes back after the operator reconciled: its commit is refused and the
    // operator's outcome stands.
    let err = guard.commit(Outcome::Succeeded, json!({})).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotPending {
                state: TicketState::Committed,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .reconcile(t.nonce(), Outcome::Succeeded, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotPending { .. }), "{err}");
    let record = store.get(t.nonce()).unwrap().unwrap();
    assert_eq!(record.receipt.unwrap().outcome, Outcome::Failed);
}

fn prune_removes_only_long_expired_settled_rows(f: &dyn Factory) {
    let options = StoreOptions {
        retention: HumanDuration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = f.make(&options);
    // Tickets issued at t0 expire at t0 + 300.
    let t0 = Timestamp::now().as_second() - 100;
    let (old_issued, _) = ticket_at(10, t0);
    store.record_issued(&old_issued).unwrap();
    let (_, old_committed) = ticket_at(11, t0);
    let Redemption::Execute(g) = store.begin(&old_committed).unwrap() else {
        panic!("expected Execute");
    };
    g.commit(Outcome::Succeeded, json!(null)).unwrap();
    let (_, old_pending) = ticket_at(12, t0);
    let Redemption::Execute(g) = store.begin(&old_pending).unwrap() else {
        panic!("expected Execute");
    };
    drop(g);
    let (recent, _) = ticket_at(13, t0 + 3000);
    store.record_issued(&recent).unwrap();

    // Within the retention nothing goes.
    assert_eq!(store.prune(at(t0 + 300 + 3600)).unwrap(), 0);
    // Past it, the settled old rows go; the pending one waits for reconciliation.
    assert_eq!(store.prune(at(t0 + 300 + 3601)).unwrap(), 2);
    assert!(store.get(old_issued.nonce()).unwrap().is_none());
    assert!(store.get(old_committed.nonce()).unwrap().is_none());
    assert_eq!(
        store.get(old_pending.nonce()).unwrap().unwrap().state,
        TicketState::Pending
    );
    assert!(store.get(recent.nonce()).unwrap().is_some());
}

fn begin_refuses_tickets_older_than_the_retention(f: &dyn Factory) {
    let options = StoreOptions {
        retention: HumanDuration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = f.make(&options);
    let now = Timestamp::now().as_second();
    // Expired 3600 s + a margin ago: its record may be pruned, so it must not start.
    let (_, stale) = ticket_at(40, now - 300 - 3700);
    let err = store.begin(&stale).unwrap_err();
    assert!(matches!(err, StoreError::TooOld(_)), "{err}");
    assert!(store.get(stale.nonce()).unwrap().is_none());
    // Expired, but within the retention: the store still answers (verification is what
    // refuses expired tickets).
    let (_, recent) = ticket_at(41, now - 300 - 60);
    assert!(matches!(
        store.begin(&recent).unwrap(),
        Redemption::Execute(_)
    ));
}

fn concurrent_redeemers_in_one_process(f: &dyn Factory) {
    let store = f.make(&StoreOptions::default());
    let (_, t) = ticket(20);
    let threads = 32;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, t, barrier) = (store.clone(), t.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                match store.begin(&t).unwrap() {
                    Redemption::Execute(guard) => {
                        guard.commit(Outcome::Succeeded, json!({})).unwrap();
                        1
                    }
                    Redemption::AlreadyCommitted(_) | Redemption::Blocked { .. } => 0,
                }
            })
        })
        .collect();
    let executed: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(executed, 1);
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
