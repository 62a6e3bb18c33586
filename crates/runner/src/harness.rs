//! A harness for executor authors: the whole pipeline (ticket verification, redemption in
//! an in-memory store, simulated credentials, prechecks, state capture, the backend's dry
//! run, execution, the execution record) around one executor, with nothing to set up but
//! the decision point and a folder for the audit log.
//!
//! # Security
//! The harness signs tickets for whatever its PDP allows, without identity, limits or an
//! audited decision: it is for tests of executors, never for acting on anything real. The
//! enforcement point for that is `agentsafe-gate`.

use std::path::Path;
use std::sync::Arc;

use agentsafe_audit::{AuditConfig, AuditLog, SigningKey, SigningKeySource};
use agentsafe_core::{Executor, Request, Timestamp};
use agentsafe_pdp::Pdp;
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{KeySet, MemoryTicketStore, Signer, TicketConfig, TicketVerifier};

use crate::{RunKind, RunReport, Runner, RunnerError, SimulatedProvider, Timeouts};

/// See the module documentation.
#[derive(Debug)]
pub struct Harness {
    pdp: Pdp,
    issuer: TicketIssuer,
    verifier: TicketVerifier,
    store: MemoryTicketStore,
    audit: AuditLog,
    credentials: SimulatedProvider,
    timeouts: Timeouts,
}

impl Harness {
    /// A harness deciding with `pdp` and recording into `<dir>/audit.jsonl` (with a fresh
    /// audit key), with fresh ticket keys and an in-memory ticket store.
    ///
    /// # Errors
    /// When the audit log cannot be created in `dir`.
    pub fn new(pdp: Pdp, dir: &Path) -> Result<Harness, RunnerError> {
        let signer = Signer::generate();
        let key = signer.verifying_key();
        let cfg = TicketConfig::default();
        let issuer = TicketIssuer::new(signer, &cfg)
            .map_err(|e| RunnerError::Executor(format!("cannot create a ticket issuer: {e}")))?;
        let keys = KeySet::from_keys([key])
            .map_err(|e| RunnerError::Executor(format!("cannot trust the ticket key: {e}")))?;
        let audit_key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let audit = AuditLog::open(
            &dir.join("audit.jsonl"),
            SigningKeySource::Key(audit_key),
            &AuditConfig::default(),
        )?;
        Ok(Harness {
            pdp,
            issuer,
            verifier: TicketVerifier::new(keys, &cfg),
            store: MemoryTicketStore::new(),
            audit,
            credentials: SimulatedProvider::new(),
            timeouts: Timeouts::default(),
        })
    }

    /// Sets the executor time limits.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// A signed ticket for `request` when the PDP allows it.
    ///
    /// # Errors
    /// When the PDP does not allow it (the reason code and reason are in the message).
    pub fn ticket(&self, request: &Request) -> Result<String, RunnerError> {
        let d = self.pdp.decide(request);
        if !d.is_allow() {
            return Err(RunnerError::Executor(format!(
                "the decision point does not allow it: {} ({}): {}",
                d.decision, d.reason_code, d.reason
            )));
        }
        self.issuer
            .issue(&d, Timestamp::now())
            .map(agentsafe_tickets::SignedTicket::into_token)
            .map_err(|e| RunnerError::Executor(format!("cannot issue the ticket: {e}")))
    }

    /// Decides `request`, then runs its ticket through `executor` as `kind`.
    ///
    /// # Errors
    /// When the PDP does not allow the request, or the runtime cannot start; everything
    /// that happens in the run is in the report.
    pub fn run(
        &self,
        executor: Arc<dyn Executor>,
        request: &Request,
        kind: &RunKind,
    ) -> Result<RunReport, RunnerError> {
        let ticket = self.ticket(request)?;
        self.run_ticket(executor, &ticket, kind)
    }

    /// Runs an already issued ticket (to test a replay, say).
    ///
    /// # Errors
    /// When the runtime cannot start.
    pub fn run_ticket(
        &self,
        executor: Arc<dyn Executor>,
        ticket: &str,
        kind: &RunKind,
    ) -> Result<RunReport, RunnerError> {
        self.runner().run_blocking(ticket, executor, kind)
    }

    /// The runner over the harness's parts.
    pub fn runner(&self) -> Runner<'_> {
        Runner::new(
            self.pdp.registry(),
            self.pdp.inventory(),
            &self.verifier,
            &self.store,
            &self.audit,
            &self.credentials,
        )
        .with_timeouts(self.timeouts)
    }

    /// Credentials issued and not yet revoked (zero after every run).
    pub fn live_credentials(&self) -> usize {
        self.credentials.live()
    }

    /// The audit log the runs are recorded in.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }
}
