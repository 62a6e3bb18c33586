//! The [`TicketStore`] conformance suite run against the in-memory and the SQLite store,
//! one test per check, plus the race: threads sharing one store and, for SQLite, one
//! connection per thread on one file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentsafe_tickets::store::conformance;
use agentsafe_tickets::{
    MemoryTicketStore, Nonce, Outcome, Receipt, Redemption, SignedTicket, SqliteTicketStore,
    StoreError, StoreOptions, TicketRecord, TicketStore, VerifiedTicket,
};
use jiff::Timestamp;

/// Makes fresh, empty stores of one backend.
trait Factory {
    fn make(&self, options: &StoreOptions) -> Box<dyn TicketStore>;
}

struct Memory;

impl Factory for Memory {
    fn make(&self, options: &StoreOptions) -> Box<dyn TicketStore> {
        Box::new(MemoryTicketStore::with_options(options))
    }
}

/// Real SQLite files, a new one per store, in one temporary folder.
struct SqliteFiles {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl SqliteFiles {
    fn new() -> Self {
        SqliteFiles {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicUsize::new(0),
        }
    }

    fn path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.dir.path().join(format!("tickets-{n}.db"))
    }
}

impl Factory for SqliteFiles {
    fn make(&self, options: &StoreOptions) -> Box<dyn TicketStore> {
        Box::new(SqliteTicketStore::open_with(&self.path(), options).unwrap())
    }
}

macro_rules! suite {
    ($backend:ident, $factory:expr, [$($check:ident),* $(,)?]) => {
        mod $backend {
            use super::*;

            $(
                #[test]
                fn $check() {
                    let factory = $factory;
                    conformance::$check(&|o| factory.make(o)).unwrap();
                }
            )*

            #[test]
            fn every_check_has_a_test() {
                let tested = [$(stringify!($check)),*];
                let listed: Vec<&str> = conformance::CHECKS.iter().map(|(n, _)| *n).collect();
                assert_eq!(tested.as_slice(), listed.as_slice());
            }

            #[test]
            fn run_all_passes() {
                let factory = $factory;
                conformance::run_all(&|o| factory.make(o)).unwrap();
            }

            #[test]
            fn threads_sharing_one_store_have_one_winner() {
                let store = $factory.make(&StoreOptions::default());
                let handles = vec![store.as_ref(); conformance::THREADS];
                conformance::concurrent_redeemers_have_one_winner(&handles).unwrap();
            }
        }
    };
}

macro_rules! backends {
    ($($check:ident),* $(,)?) => {
        suite!(memory, Memory, [$($check),*]);
        suite!(sqlite, SqliteFiles::new(), [$($check),*]);
    };
}

backends!(
    fresh_ticket_executes_exactly_once,
    issued_then_redeemed,
    crash_leaves_it_blocked_until_reconciled,
    reconcile_only_moves_pending_tickets,
    prune_removes_only_long_expired_settled_rows,
    begin_refuses_tickets_older_than_the_retention,
);

#[test]
fn sixteen_sqlite_connections_have_one_winner() {
    let files = SqliteFiles::new();
    let path = files.path();
    let stores: Vec<SqliteTicketStore> = (0..16)
        .map(|_| SqliteTicketStore::open(&path).unwrap())
        .collect();
    let handles: Vec<&dyn TicketStore> = stores.iter().map(|s| s as &dyn TicketStore).collect();
    conformance::concurrent_redeemers_have_one_winner(&handles).unwrap();
}

/// A store that forgets a ticket once committed: a replay executes again.
#[derive(Debug)]
struct Amnesiac(MemoryTicketStore);

impl TicketStore for Amnesiac {
    fn record_issued(&self, ticket: &SignedTicket) -> Result<(), StoreError> {
        self.0.record_issued(ticket)
    }

    fn begin(&self, ticket: &VerifiedTicket) -> Result<Redemption, StoreError> {
        match self.0.begin(ticket)? {
            // Forgets the receipt: a fresh store starts the ticket again.
            Redemption::AlreadyCommitted(_) => MemoryTicketStore::new().begin(ticket),
            other => Ok(other),
        }
    }

    fn reconcile(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        note: Option<&str>,
    ) -> Result<Receipt, StoreError> {
        self.0.reconcile(nonce, outcome, note)
    }

    fn get(&self, nonce: Nonce) -> Result<Option<TicketRecord>, StoreError> {
        self.0.get(nonce)
    }

    fn prune(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.0.prune(now)
    }
}

#[test]
fn a_store_that_lets_a_replay_execute_fails_the_suite() {
    let err = conformance::run_all(&|o| Box::new(Amnesiac(MemoryTicketStore::with_options(o))))
        .unwrap_err();
    let failed: Vec<&str> = err.lines().map(|l| l.split_once(':').unwrap().0).collect();
    // The race fails too unless every loser happened to be blocked: not asserted.
    assert_eq!(
        failed[..3],
        [
            "fresh_ticket_executes_exactly_once",
            "issued_then_redeemed",
            "crash_leaves_it_blocked_until_reconciled",
        ],
        "{err}"
    );
    assert!(
        failed[3..]
            .iter()
            .all(|f| *f == "concurrent_redeemers_have_one_winner"),
        "{err}"
    );
    assert!(err.contains("expected `AlreadyCommitted`"), "{err}");
}
