//! The [`StateStore`] conformance suite run against the in-memory and the SQLite backend,
//! one test per check, plus the races: threads sharing one store and, for SQLite, one
//! connection per thread on one file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentsafe_state::{
    ApprovalRecord, CallerState, MemoryStateStore, Pause, RateCharge, SqliteStateStore, StateError,
    StateStore, Windows, conformance,
};
use jiff::Timestamp;

/// Makes fresh, empty stores of one backend.
trait Factory {
    fn make(&self) -> Box<dyn StateStore>;
}

struct Memory;

impl Factory for Memory {
    fn make(&self) -> Box<dyn StateStore> {
        Box::new(MemoryStateStore::new())
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
        self.dir.path().join(format!("state-{n}.db"))
    }
}

impl Factory for SqliteFiles {
    fn make(&self) -> Box<dyn StateStore> {
        Box::new(SqliteStateStore::open(&self.path()).unwrap())
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
                    let store = factory.make();
                    conformance::$check(store.as_ref()).unwrap();
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
                conformance::run_all(&|| factory.make()).unwrap();
            }

            #[test]
            fn threads_sharing_one_store_never_exceed_the_rate_limit() {
                let store = $factory.make();
                let handles = vec![store.as_ref(); conformance::THREADS];
                conformance::concurrent_rate_charges_never_exceed_the_limit(&handles).unwrap();
            }

            #[test]
            fn threads_sharing_one_store_keep_every_vote() {
                let store = $factory.make();
                let handles = vec![store.as_ref(); conformance::THREADS];
                conformance::concurrent_approval_updates_keep_every_vote(&handles).unwrap();
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
    rate_limit_counts_a_sliding_window_per_key,
    risk_charges_until_the_deny_threshold,
    breaker_opens_at_the_threshold_and_resume_closes_it,
    pause_holds_until_resume,
    approvals_are_stored_updated_atomically_and_listed,
    counters_add_up,
);

/// Eight connections on one SQLite file, one per thread.
fn eight_connections(files: &SqliteFiles) -> Vec<SqliteStateStore> {
    let path = files.path();
    (0..8)
        .map(|_| SqliteStateStore::open(&path).unwrap())
        .collect()
}

#[test]
fn eight_sqlite_connections_never_exceed_the_rate_limit_together() {
    let files = SqliteFiles::new();
    let stores = eight_connections(&files);
    let handles: Vec<&dyn StateStore> = stores.iter().map(|s| s as &dyn StateStore).collect();
    conformance::concurrent_rate_charges_never_exceed_the_limit(&handles).unwrap();
}

#[test]
fn eight_sqlite_connections_keep_every_vote() {
    let files = SqliteFiles::new();
    let stores = eight_connections(&files);
    let handles: Vec<&dyn StateStore> = stores.iter().map(|s| s as &dyn StateStore).collect();
    conformance::concurrent_approval_updates_keep_every_vote(&handles).unwrap();
}

/// A store that keeps nothing: the suite must say so instead of passing.
#[derive(Debug)]
struct Forgetful(MemoryStateStore);

impl StateStore for Forgetful {
    fn rate_charge(
        &self,
        _key: &str,
        _now: Timestamp,
        _window: Duration,
        _limit: u32,
    ) -> Result<RateCharge, StateError> {
        // Never counts: every charge is allowed.
        Ok(RateCharge {
            allowed: true,
            count: 1,
        })
    }
    fn risk_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        weight: u32,
        deny_at: u32,
    ) -> Result<u32, StateError> {
        self.0.risk_charge(key, now, window, weight, deny_at)
    }
    fn record_denial(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        threshold: u32,
        cooldown: Duration,
    ) -> Result<Option<Timestamp>, StateError> {
        self.0.record_denial(key, now, window, threshold, cooldown)
    }
    fn caller_state(
        &self,
        key: &str,
        now: Timestamp,
        windows: Windows,
    ) -> Result<CallerState, StateError> {
        self.0.caller_state(key, now, windows)
    }
    fn pause(&self, key: &str, pause: &Pause) -> Result<(), StateError> {
        self.0.pause(key, pause)
    }
    fn resume(&self, key: &str) -> Result<bool, StateError> {
        self.0.resume(key)
    }
    fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StateError> {
        self.0.create_approval(record)
    }
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StateError> {
        self.0.approval(id)
    }
    fn approvals(&self) -> Result<Vec<ApprovalRecord>, StateError> {
        self.0.approvals()
    }
    fn update_approval(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ApprovalRecord) -> Result<(), StateError>,
    ) -> Result<ApprovalRecord, StateError> {
        self.0.update_approval(id, change)
    }
    fn add_counter(&self, name: &str, n: u64) -> Result<(), StateError> {
        self.0.add_counter(name, n)
    }
    fn counters(&self) -> Result<BTreeMap<String, u64>, StateError> {
        self.0.counters()
    }
}

#[test]
fn a_store_that_does_not_count_fails_the_rate_checks() {
    let err = conformance::run_all(&|| Box::new(Forgetful(MemoryStateStore::new()))).unwrap_err();
    let failed: Vec<&str> = err.lines().map(|l| l.split_once(':').unwrap().0).collect();
    assert_eq!(
        failed,
        [
            "rate_limit_counts_a_sliding_window_per_key",
            "concurrent_rate_charges_never_exceed_the_limit"
        ],
        "{err}"
    );
}
