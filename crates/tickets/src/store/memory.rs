//! An in-memory [`TicketStore`] for tests of other crates: same state machine, no durability.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agentsafe_core::Timestamp;

use crate::error::StoreError;
use crate::store::{
    CommitPending, Outcome, PendingGuard, Receipt, Redemption, StoreOptions, TicketFacts,
    TicketRecord, TicketState, TicketStore, ms_timestamp, now_ms,
};
use crate::ticket::{Nonce, SignedTicket, VerifiedTicket};

/// Ticket states in a process-local map. Forgets everything when dropped, so it gives
/// exactly-once within one process only: use [`crate::SqliteTicketStore`] for real runners.
#[derive(Clone)]
pub struct MemoryTicketStore {
    inner: Arc<Inner>,
}

struct Inner {
    rows: Mutex<HashMap<Nonce, Row>>,
    retention_ms: i64,
}

#[derive(Debug, Clone)]
struct Row {
    facts: TicketFacts,
    state: TicketState,
    issued_at: Option<i64>,
    pending_at: Option<i64>,
    receipt: Option<Receipt>,
}

impl fmt::Debug for MemoryTicketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTicketStore")
            .field("tickets", &self.inner.lock().len())
            .finish()
    }
}

impl Default for MemoryTicketStore {
    fn default() -> Self {
        MemoryTicketStore::new()
    }
}

impl MemoryTicketStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        MemoryTicketStore::with_options(&StoreOptions::default())
    }

    /// An empty store with `options` (only the retention applies).
    pub fn with_options(options: &StoreOptions) -> Self {
        MemoryTicketStore {
            inner: Arc::new(Inner {
                rows: Mutex::new(HashMap::new()),
                retention_ms: options.retention.as_secs_i64().saturating_mul(1000),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Nonce, Row>> {
        // Every update below is a single map operation, so a poisoned map is consistent.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CommitPending for Inner {
    fn commit_pending(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        receipt: serde_json::Value,
    ) -> Result<Receipt, StoreError> {
        let mut rows = self.lock();
        let row = rows
            .get_mut(&nonce)
            .ok_or_else(|| StoreError::NotFound(nonce.to_string()))?;
        if row.state != TicketState::Pending {
            return Err(StoreError::NotPending {
                nonce: nonce.to_string(),
                state: row.state,
            });
        }
        let r = Receipt {
            nonce,
            outcome,
            receipt,
            committed_at: ms_timestamp(now_ms()),
            reconciled: false,
            note: None,
        };
        row.state = TicketState::Committed;
        row.receipt = Some(r.clone());
        Ok(r)
    }
}

impl TicketStore for MemoryTicketStore {
    fn record_issued(&self, ticket: &SignedTicket) -> Result<(), StoreError> {
        let facts = TicketFacts::from_signed(ticket);
        self.inner.lock().entry(facts.nonce).or_insert_with(|| Row {
            facts,
            state: TicketState::Issued,
            issued_at: Some(now_ms()),
            pending_at: None,
            receipt: None,
        });
        Ok(())
    }

    fn begin(&self, ticket: &VerifiedTicket) -> Result<Redemption, StoreError> {
        let facts = TicketFacts::from_verified(ticket);
        let nonce = facts.nonce;
        if facts.expires_at_ms < now_ms().saturating_sub(self.inner.retention_ms) {
            return Err(StoreError::TooOld(nonce.to_string()));
        }
        let mut rows = self.inner.lock();
        let row = rows.entry(nonce).or_insert_with(|| Row {
            facts,
            state: TicketState::Issued,
            issued_at: None,
            pending_at: None,
            receipt: None,
        });
        match (row.state, &row.receipt) {
            (TicketState::Issued, _) => {
                row.state = TicketState::Pending;
                row.pending_at = Some(now_ms());
                let sink: Arc<dyn CommitPending> = self.inner.clone();
                Ok(Redemption::Execute(PendingGuard::new(nonce, sink)))
            }
            (TicketState::Pending, _) => Ok(Redemption::Blocked {
                state: TicketState::Pending,
            }),
            (TicketState::Committed, Some(receipt)) => {
                Ok(Redemption::AlreadyCommitted(receipt.clone()))
            }
            (TicketState::Committed, None) => Err(StoreError::Corrupt {
                nonce: nonce.to_string(),
                detail: "committed without a receipt".to_owned(),
            }),
        }
    }

    fn reconcile(
        &self,
        nonce: Nonce,
        outcome: Outcome,
        note: Option<&str>,
    ) -> Result<Receipt, StoreError> {
        let mut rows = self.inner.lock();
        let row = rows
            .get_mut(&nonce)
            .ok_or_else(|| StoreError::NotFound(nonce.to_string()))?;
        if row.state != TicketState::Pending {
            return Err(StoreError::NotPending {
                nonce: nonce.to_string(),
                state: row.state,
            });
        }
        let r = Receipt {
            nonce,
            outcome,
            receipt: serde_json::Value::Null,
            committed_at: ms_timestamp(now_ms()),
            reconciled: true,
            note: note.map(str::to_owned),
        };
        row.state = TicketState::Committed;
        row.receipt = Some(r.clone());
        Ok(r)
    }

    fn get(&self, nonce: Nonce) -> Result<Option<TicketRecord>, StoreError> {
        Ok(self.inner.lock().get(&nonce).map(|row| TicketRecord {
            nonce,
            state: row.state,
            action: row.facts.action.clone(),
            target: row.facts.target.clone(),
            decision_id: row.facts.decision_id,
            expires_at: ms_timestamp(row.facts.expires_at_ms),
            issued_at: row.issued_at.map(ms_timestamp),
            pending_at: row.pending_at.map(ms_timestamp),
            receipt: row.receipt.clone(),
        }))
    }

    fn prune(&self, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff = now.as_millisecond().saturating_sub(self.inner.retention_ms);
        let mut rows = self.inner.lock();
        let before = rows.len();
        rows.retain(|_, row| {
            row.state == TicketState::Pending || row.facts.expires_at_ms >= cutoff
        });
        Ok(u64::try_from(before.saturating_sub(rows.len())).unwrap_or(u64::MAX))
    }
}
