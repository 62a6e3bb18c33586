//! Exactly-once redemption: the ticket state machine ISSUED → PENDING → COMMITTED and its stores.
//!
//! A runner that verified a ticket calls [`TicketStore::begin`]. Exactly one caller ever gets
//! [`Redemption::Execute`] for a nonce: the row moved to PENDING in the same transaction that
//! checked it was not PENDING or COMMITTED already. That caller executes and then calls
//! [`PendingGuard::commit`] with the outcome and a receipt. Everyone else gets the stored
//! receipt ([`Redemption::AlreadyCommitted`]) or, while the winner has not committed (or
//! crashed before committing), [`Redemption::Blocked`].
//!
//! **Architecture Invariant:** no transition leads back to ISSUED or PENDING. A ticket left
//! PENDING (a crash, or a [`PendingGuard`] dropped without commit) stays blocked until an
//! operator runs `agentsafe ticket reconcile`, which moves it to COMMITTED with the outcome
//! the operator determined; it never becomes executable again.
//!
//! **Architecture Invariant:** [`TicketStore::prune`] only removes rows whose ticket expired
//! more than the retention (at least the verifiers' clock skew) ago. Such a ticket fails
//! verification as `expired` before it can reach `begin`, so forgetting its row cannot make
//! it redeemable again. As a second line of defence, `begin` itself refuses a ticket that
//! expired more than the retention ago ([`StoreError::TooOld`]), so the invariant holds even
//! for a [`VerifiedTicket`] kept in memory past its expiry. PENDING rows are never pruned:
//! they wait for reconciliation.
//!
//! Every store is held to these invariants by [`conformance`], the suite a new backend
//! (PostgreSQL) runs from its own tests too.
//!
//! [`SqliteTicketStore`] keeps its file, its `-wal` and `-shm` files and the folders it
//! creates private to their owner (0600, 0700), and tightens an existing file that others
//! may read.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use agentsafe_core::{DecisionId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::error::StoreError;
use crate::ticket::{Nonce, SignedTicket, VerifiedTicket};

pub mod conformance;
mod memory;
mod sqlite;

pub use memory::MemoryTicketStore;
pub use sqlite::SqliteTicketStore;

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketState {
    /// Issued, not redeemed yet.
    Issued,
    /// A runner is executing it (or crashed while doing so).
    Pending,
    /// Executed (or reconciled) with a recorded outcome. Final.
    Committed,
}

impl TicketState {
    /// The lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Issued => "issued",
            TicketState::Pending => "pending",
            TicketState::Committed => "committed",
        }
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TicketState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            TicketState::Issued,
            TicketState::Pending,
            TicketState::Committed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown ticket state `{s}`"))
    }
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action ran and succeeded.
    Succeeded,
    /// The action ran (or started) and failed.
    Failed,
    /// Nobody knows (for example a crash mid-execution, reconciled without evidence).
    Unknown,
}

impl Outcome {
    /// The lowercase name, as stored and as given to `--outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Outcome::Succeeded, Outcome::Failed, Outcome::Unknown]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome `{s}`, expected succeeded, failed or unknown"))
    }
}

/// The stored result of a redemption, returned to anyone presenting the ticket again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The ticket nonce.
    pub nonce: Nonce,
    /// How the execution ended.
    pub outcome: Outcome,
    /// What the executor reported (`null` for a reconciled ticket).
    pub receipt: serde_json::Value,
    /// When the outcome was recorded.
    pub committed_at: Timestamp,
    /// Whether an operator recorded the outcome with `ticket reconcile`.
    pub reconciled: bool,
    /// The operator's note, for a reconciled ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything the store knows about one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// The ticket nonce.
    pub nonce: Nonce,
    /// Its state.
    pub state: TicketState,
    /// The action it allows.
    pub action: String,
    /// The target it allows acting on.
    pub target: String,
    /// The decision it was issued for.
    pub decision_id: DecisionId,
    /// When the ticket expires.
    pub expires_at: Timestamp,
    /// When the issuer recorded it, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Timestamp>,
    /// When a runner began redeeming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_at: Option<Timestamp>,
    /// The outcome, once COMMITTED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// The answer of [`TicketStore::begin`].
#[derive(Debug)]
#[must_use = "a redemption that is ignored leaves the ticket pending"]
pub enum Redemption {
    /// This caller won: the ticket is now PENDING. Execute, then call [`PendingGuard::commit`].
    Execute(PendingGuard),
    /// The ticket was redeemed already: here is its receipt. Execute nothing.
    AlreadyCommitted(Receipt),
    /// The ticket is PENDING: another runner is executing it or crashed while doing so.
    /// Execute nothing; it stays blocked until committed or reconciled.
    Blocked {
        /// Always [`TicketState::Pending`].
        state: TicketState,
    },
}

/// How a store records the outcome of a PENDING ticket; implemented by every store.
pub trait CommitPending: Send + Sync {
    /// Moves `nonce` from PENDING to COMMITTED with `outcome` and `receipt`.
    ///
    /// # Errors
    /// [`StoreError::NotPending`] when the ticket is not PENDING (it was reconciled in the
    /// meantime), or a database error.
    fn commit_pending(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        receipt: serde_json::Value,
    ) -> Result<Receipt, StoreError>;
}

/// Proof that this caller won the redemption of one ticket; it must record the outcome.
///
/// Dropping the guard without [`PendingGuard::commit`] leaves the ticket PENDING, exactly
/// as a crash would: it is not executable again until reconciled.
#[must_use = "call `commit` with the outcome once the action ran"]
pub struct PendingGuard {
    nonce: Nonce,
    sink: Arc<dyn CommitPending>,
}

impl fmt::Debug for PendingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingGuard")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl PendingGuard {
    /// A guard for `nonce` that commits through `sink`. For store implementations.
    pub fn new(nonce: Nonce, sink: Arc<dyn CommitPending>) -> Self {
        PendingGuard { nonce, sink }
    }

    /// The nonce being redeemed.
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// Records the outcome: PENDING → COMMITTED. Returns once the store made it durable.
    ///
    /// # Errors
    /// As [`CommitPending::commit_pending`]. On error the ticket stays PENDING.
    pub fn commit(
        self,
        outcome: Outcome,
        receipt: serde_json::Value,
    ) -> Result<Receipt, StoreError> {
        self.sink.commit_pending(self.nonce, outcome, receipt)
    }
}

/// Settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long after expiry rows are kept (default 24 h).
    pub retention: HumanDuration,
    /// How long a SQLite writer waits for another process's transaction (default 10 s).
    pub busy_timeout: std::time::Duration,
    /// The most requests one SQLite transaction groups together (default 1024).
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: HumanDuration::from_secs(86_400),
            busy_timeout: std::time::Duration::from_secs(10),
            max_batch: 1024,
        }
    }
}

/// The facts a store keeps about a ticket besides its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TicketFacts {
    pub(crate) nonce: Nonce,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) decision_id: DecisionId,
    /// Unix milliseconds.
    pub(crate) expires_at_ms: i64,
}

impl TicketFacts {
    pub(crate) fn from_signed(t: &SignedTicket) -> Self {
        TicketFacts {
            nonce: t.nonce(),
            action: t.action().to_owned(),
            target: t.target().to_owned(),
            decision_id: t.decision_id(),
            expires_at_ms: t.expires_at_secs().saturating_mul(1000),
        }
    }

    pub(crate) fn from_verified(t: &VerifiedTicket) -> Self {
        TicketFacts {
            nonce: t.nonce(),
            action: t.action().to_owned(),
            target: t.target().to_owned(),
            decision_id: t.decision_id(),
            expires_at_ms: t.expires_at_secs().saturating_mul(1000),
        }
    }
}

/// Keeps ticket states so every ticket executes at most once. Dyn-compatible.
///
/// # Contract
/// Checked for every backend by [`conformance::run_all`].
/// * [`begin`](TicketStore::begin) returns [`Redemption::Execute`] at most once per nonce,
///   over the store's whole life and, for a shared store, across every process using it. A
///   nonce the store has never seen is inserted directly as PENDING (the signature proves
///   it was issued).
/// * A ticket's outcome, once COMMITTED, never changes.
/// * Every method returns only after its change is durable.
pub trait TicketStore: Send + Sync + fmt::Debug {
    /// Records a freshly issued ticket as ISSUED (a no-op if the nonce is known).
    ///
    /// # Errors
    /// A database error.
    fn record_issued(&self, ticket: &SignedTicket) -> Result<(), StoreError>;

    /// Tries to start redeeming `ticket`.
    ///
    /// # Errors
    /// [`StoreError::TooOld`] for a ticket that expired longer ago than the retention (its
    /// record may be pruned already), or a database error; the ticket must then not be
    /// executed.
    fn begin(&self, ticket: &VerifiedTicket) -> Result<Redemption, StoreError>;

    /// Records an operator-determined outcome for a PENDING ticket: PENDING → COMMITTED.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::NotPending`], or a database error.
    fn reconcile(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        note: Option<&str>,
    ) -> Result<Receipt, StoreError>;

    /// What the store knows about `nonce`.
    ///
    /// # Errors
    /// A database error.
    fn get(&self, nonce: Nonce) -> Result<Option<TicketRecord>, StoreError>;

    /// Removes ISSUED and COMMITTED rows whose ticket expired more than the retention before
    /// `now`; returns how many. PENDING rows are kept.
    ///
    /// # Errors
    /// A database error.
    fn prune(&self, now: Timestamp) -> Result<u64, StoreError>;
}

pub(crate) fn ms_timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests;
