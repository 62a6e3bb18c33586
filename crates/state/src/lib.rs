//! Shared state of agentsafe: approval requests, rate-limit windows, circuit breakers,
//! operator pauses, cumulative risk and counters, behind the [`StateStore`] trait.
//!
//! * [`SqliteStateStore`]: the embedded default, one SQLite file (`<state_dir>/state.db`)
//!   in WAL mode shared by every process. Each operation is one `BEGIN IMMEDIATE`
//!   transaction, so check-and-charge is atomic across processes: eight processes charging
//!   one rate limit never exceed it in total. The file, its `-wal` and `-shm` files and the
//!   folders the store creates are private to their owner (0600, 0700).
//! * [`MemoryStateStore`]: the same semantics in memory, for unit tests.
//! * [`conformance`]: the suite that holds every backend to the [`StateStore`] invariants;
//!   a new backend (PostgreSQL) runs it from its own tests.
//!
//! Keys are chosen by the caller of the store (the runner keys limits by the root of the
//! caller's delegation chain); the store only keeps them apart. Sliding windows are stored
//! as event timestamps in milliseconds and pruned as they age out of the window.

mod approval;
pub mod conformance;
mod error;
mod memory;
mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use approval::{ApprovalRecord, ApprovalState, Vote};
pub use error::StateError;
pub use memory::MemoryStateStore;
pub use sqlite::SqliteStateStore;

/// The answer of [`StateStore::rate_charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCharge {
    /// Whether the request fit into the limit (and was charged).
    pub allowed: bool,
    /// Requests charged in the window, including this one when it was allowed.
    pub count: u32,
}

/// An operator's pause of a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Who paused it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// What the store knows about one key (a root caller).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallerState {
    /// The operator's pause, when paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Until when the circuit breaker is open, when it is open now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Timestamp>,
    /// Requests charged to the rate limit in the given window.
    pub rate_count: u32,
    /// Denials counted in the given window.
    pub denials: u32,
    /// Cumulative risk score in the given window.
    pub risk_score: u32,
}

/// An operator's pause and the breaker of one key: what admission checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The operator's pause, when paused.
    pub paused: Option<Pause>,
    /// Until when the breaker is open, when it is open now.
    pub open_until: Option<Timestamp>,
}

/// The windows [`StateStore::caller_state`] counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The rate-limit window.
    pub rate: Duration,
    /// The circuit-breaker window.
    pub breaker: Duration,
    /// The cumulative-risk window.
    pub risk: Duration,
}

/// Shared state, atomic across every process using the same backend.
///
/// Invariants every implementation keeps, checked by [`conformance`], the suite every
/// backend runs (a new backend calls [`conformance::run_all`] from its tests):
/// * `rate_charge` counts and charges in one atomic step: the number of allowed charges in
///   any window never exceeds `limit`, whatever the number of concurrent callers.
/// * `risk_charge` charges only when the new score stays below `deny_at`.
/// * `record_denial` opens the breaker when `threshold` denials fall in the window; it stays
///   open until the cooldown ends or an operator resumes the key.
/// * `update_approval` reads, changes and writes one approval in one atomic step, so two
///   approvers racing each other see each other's votes, and a claim sees the ticket
///   nonce a racing claim recorded.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Charges one request to `key` if fewer than `limit` were charged in the window ending at `now`.
    ///
    /// # Errors
    /// When the backend fails.
    fn rate_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        limit: u32,
    ) -> Result<RateCharge, StateError>;

    /// Adds `weight` to `key`'s risk score over the window ending at `now`, unless the
    /// result would reach `deny_at`. Returns the score including `weight` (charged or not).
    ///
    /// # Errors
    /// When the backend fails.
    fn risk_charge(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        weight: u32,
        deny_at: u32,
    ) -> Result<u32, StateError>;

    /// Counts one denial for `key`; when `threshold` denials fall in the window, opens the
    /// breaker for `cooldown` and returns until when.
    ///
    /// # Errors
    /// When the backend fails.
    fn record_denial(
        &self,
        key: &str,
        now: Timestamp,
        window: Duration,
        threshold: u32,
        cooldown: Duration,
    ) -> Result<Option<Timestamp>, StateError>;

    /// The pause, breaker and window counts of `key` at `now`.
    ///
    /// # Errors
    /// When the backend fails.
    fn caller_state(
        &self,
        key: &str,
        now: Timestamp,
        windows: Windows,
    ) -> Result<CallerState, StateError>;

    /// Whether `key` is paused, and until when its breaker is open (when it is open at
    /// `now`): the part of [`StateStore::caller_state`] every decision reads, without the
    /// window counts. Backends answer it from a plain read.
    ///
    /// # Errors
    /// When the backend fails.
    fn standing(&self, key: &str, now: Timestamp) -> Result<Standing, StateError> {
        let windows = Windows {
            rate: Duration::ZERO,
            breaker: Duration::ZERO,
            risk: Duration::ZERO,
        };
        self.caller_state(key, now, windows).map(|s| Standing {
            paused: s.paused,
            open_until: s.open_until,
        })
    }

    /// Pauses `key` until [`StateStore::resume`].
    ///
    /// # Errors
    /// When the backend fails.
    fn pause(&self, key: &str, pause: &Pause) -> Result<(), StateError>;

    /// Lifts a pause and closes an open breaker (clearing its denials). Returns whether
    /// anything was lifted.
    ///
    /// # Errors
    /// When the backend fails.
    fn resume(&self, key: &str) -> Result<bool, StateError>;

    /// Stores a new approval request.
    ///
    /// # Errors
    /// [`StateError::Conflict`] when the id exists; when the backend fails.
    fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StateError>;

    /// One approval request.
    ///
    /// # Errors
    /// When the backend fails.
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StateError>;

    /// Every approval request, oldest first.
    ///
    /// # Errors
    /// When the backend fails.
    fn approvals(&self) -> Result<Vec<ApprovalRecord>, StateError>;

    /// Reads approval `id`, lets `change` modify it and writes it back, in one atomic
    /// step. When `change` fails nothing is written and its error is returned.
    ///
    /// # Errors
    /// [`StateError::NotFound`]; `change`'s error; when the backend fails.
    fn update_approval(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ApprovalRecord) -> Result<(), StateError>,
    ) -> Result<ApprovalRecord, StateError>;

    /// Adds `n` to counter `name`.
    ///
    /// # Errors
    /// When the backend fails.
    fn add_counter(&self, name: &str, n: u64) -> Result<(), StateError>;

    /// Every counter.
    ///
    /// # Errors
    /// When the backend fails.
    fn counters(&self) -> Result<BTreeMap<String, u64>, StateError>;
}

/// Milliseconds since the Unix epoch.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// A window in milliseconds, saturating.
pub(crate) fn window_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A timestamp from milliseconds, clamped to the representable range.
pub(crate) fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::MAX)
}
