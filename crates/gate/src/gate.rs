//! The gate: identity → PDP → limits → ticket (on ALLOW) → audit record → approval request,
//! failing closed, built once and shared by every caller of a process.
//!
//! A [`Gate`] owns, for its lifetime, the loaded decision point and the keys that go with
//! it (swapped together on [`Gate::reload`]), one open audit log (so concurrent callers
//! share its group commit), the state store and a notifier. Every method takes `&self`:
//! wrap the gate in an [`Arc`] and call it from as many threads as you like.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use agentsafe_audit::{AuditError, AuditEvent, AuditLog, EventType, FailureMode};
use agentsafe_core::{Caller, Decision, ReasonCode, Request, Timestamp, Verdict};
use agentsafe_pdp::Pdp;
use agentsafe_state::{CallerState, Pause, SqliteStateStore, StateStore};
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{IdentityVerifier, KeySet, SignedTicket, Signer, SqliteTicketStore};
use serde_json::json;

use crate::GateError;
use crate::limits::{Controls, key_of};
use crate::notify::Notifier;
use crate::settings::GateSettings;
use crate::snapshot;

/// A decision as handed to the caller, with its ticket and audit position.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The decision, after identity, limits, ticket and audit checks.
    pub decision: Decision,
    /// The signed ticket, for an ALLOW.
    pub ticket: Option<String>,
    /// The ticket's nonce, for an ALLOW.
    pub nonce: Option<String>,
    /// The audit sequence number of the decision record, when it was recorded.
    pub audit_seq: Option<u64>,
    /// The approval request a REQUIRE_APPROVAL created (or reused, for an identical
    /// pending request of the same root caller).
    pub approval_id: Option<String>,
}

impl Outcome {
    /// The outcome as one JSON object: the decision's fields plus `ticket`, `ticket_nonce`,
    /// `audit_seq` and `approval_id`.
    ///
    /// # Errors
    /// When the decision cannot be encoded (not expected).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut v = serde_json::to_value(&self.decision)?;
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = &self.ticket {
                obj.insert("ticket".into(), t.clone().into());
            }
            if let Some(n) = &self.nonce {
                obj.insert("ticket_nonce".into(), n.clone().into());
            }
            if let Some(seq) = self.audit_seq {
                obj.insert("audit_seq".into(), seq.into());
            }
            if let Some(id) = &self.approval_id {
                obj.insert("approval_id".into(), id.clone().into());
            }
        }
        Ok(v)
    }
}

/// Who is asking, as a command line or a request gives it.
#[derive(Debug, Default, Clone)]
pub struct Claimed {
    /// An identity token (JWT).
    pub token: Option<String>,
    /// A plain caller, accepted only when `[identity] allow_unauthenticated = true`; it is
    /// always treated as unauthenticated.
    pub plain: Option<Caller>,
}

impl Claimed {
    /// A caller presenting an identity token.
    pub fn token(token: impl Into<String>) -> Claimed {
        Claimed {
            token: Some(token.into()),
            plain: None,
        }
    }

    /// Who a refusal of this claim is recorded for: the plain id given (never
    /// authenticated), else `anonymous`.
    pub(crate) fn as_refused(&self) -> Caller {
        let mut c = self
            .plain
            .clone()
            .unwrap_or_else(|| Caller::unauthenticated("anonymous"));
        c.authenticated = false;
        c
    }

    /// A caller known by a plain id.
    pub fn plain(caller: Caller) -> Claimed {
        Claimed {
            token: None,
            plain: Some(caller),
        }
    }
}

/// One configuration as the gate decides with it: the PDP and the keys loaded with it.
pub(crate) struct Loaded {
    pub(crate) pdp: Arc<Pdp>,
    pub(crate) files: crate::snapshot::Sources,
    identity: Result<IdentityVerifier, String>,
    issuer: Result<TicketIssuer, String>,
    pub(crate) generation: u64,
    recorded: AtomicBool,
    /// Identity tokens this configuration verified, with the caller and expiry: a token is
    /// verified once (an Ed25519 verification is most of a decision's cost), then looked up
    /// until it expires. Bounded; cleared when full. A reload starts a new cache, so a key
    /// removed from the trusted set stops its tokens at once.
    verified: RwLock<HashMap<String, (Caller, Timestamp)>>,
}

/// How many verified tokens a configuration remembers.
const VERIFIED_TOKENS: usize = 16_384;

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("policy_hash", &self.pdp.policy_hash())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// An ALLOW that went through identity, policy and limits in this gate (or an approval
/// claimed through it): the only thing [`Loaded::mint`] signs a ticket for. It can only be
/// made by [`Allowed::check`] inside this crate.
pub(crate) struct Allowed<'d>(&'d Decision);

impl<'d> Allowed<'d> {
    /// The witness for `d`, when `d` is ALLOW.
    pub(crate) fn check(d: &'d Decision) -> Option<Allowed<'d>> {
        d.is_allow().then_some(Allowed(d))
    }
}

impl Loaded {
    pub(crate) fn mint(&self, allowed: Allowed<'_>) -> Result<SignedTicket, String> {
        let issuer = self.issuer.as_ref().map_err(Clone::clone)?;
        issuer
            .issue(allowed.0, Timestamp::now())
            .map_err(|e| e.to_string())
    }

    /// Authenticates the caller: a verified token, or a plain id where configuration allows.
    pub(crate) fn caller(
        &self,
        cfg: &agentsafe_tickets::IdentityConfig,
        claimed: &Claimed,
    ) -> Result<Caller, (ReasonCode, String)> {
        if let (Some(token), Ok(verifier)) = (&claimed.token, &self.identity) {
            return self.verified_caller(verifier, token, claimed.plain.as_ref());
        }
        let empty;
        let verifier = match (&claimed.token, &self.identity) {
            (_, Ok(v)) => v,
            (Some(_), Err(e)) => return Err((ReasonCode::InvalidIdentity, e.clone())),
            (None, Err(_)) => {
                empty = IdentityVerifier::new(KeySet::new(), cfg);
                &empty
            }
        };
        let plain = claimed.plain.clone().map(|mut c| {
            c.authenticated = false;
            c
        });
        cfg.resolve_caller(
            claimed.token.as_deref(),
            plain.as_ref(),
            verifier,
            Timestamp::now(),
        )
        .map_err(|e| (e.reason_code(), format!("identity refused: {e}")))
    }
}

impl Loaded {
    fn verified_caller(
        &self,
        verifier: &IdentityVerifier,
        token: &str,
        plain: Option<&Caller>,
    ) -> Result<Caller, (ReasonCode, String)> {
        let now = Timestamp::now();
        let hit = self.verified.read().ok().and_then(|m| {
            m.get(token)
                .filter(|(_, exp)| now < *exp)
                .map(|(c, _)| c.clone())
        });
        let caller = match hit {
            Some(c) => c,
            None => {
                let identity = verifier
                    .verify(token, now)
                    .map_err(|e| (e.reason_code(), format!("identity refused: {e}")))?;
                let caller = identity.caller();
                if let Ok(mut m) = self.verified.write() {
                    if m.len() >= VERIFIED_TOKENS {
                        m.clear();
                    }
                    m.insert(token.to_owned(), (caller.clone(), identity.expires_at()));
                }
                caller
            }
        };
        if let Some(p) = plain
            && !p.id.is_empty()
            && p.id != caller.id
        {
            let e = agentsafe_tickets::IdentityError::CallerMismatch {
                given: p.id.clone(),
                subject: caller.id.clone(),
            };
            return Err((e.reason_code(), format!("identity refused: {e}")));
        }
        Ok(caller)
    }
}

/// The enforcement point: see the module documentation.
pub struct Gate {
    pub(crate) settings: GateSettings,
    current: RwLock<Arc<Loaded>>,
    reload_lock: Mutex<()>,
    generation: AtomicU64,
    audit: RwLock<Option<Arc<AuditLog>>>,
    tickets: RwLock<Option<Arc<SqliteTicketStore>>>,
    pub(crate) state: Result<Arc<dyn StateStore>, String>,
    pub(crate) notifier: Notifier,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("paths", &self.settings.paths)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

/// What [`Gate::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The policy hash now in force.
    pub policy_hash: String,
    /// Whether it differs from the one before.
    pub changed: bool,
    /// The configuration generation (1 for the one loaded at open).
    pub generation: u64,
    /// The audit position of its `config_loaded` record.
    pub audit_seq: Option<u64>,
}

impl Gate {
    /// Builds the gate: loads and checks the actions, policies and inventory, the identity
    /// and ticket keys, and opens the state store (SQLite at `[limits] database`, default
    /// `<state_dir>/state.db`). The audit log is opened on first use and then kept open.
    ///
    /// A key or store that cannot be loaded does not stop the gate from starting: every
    /// decision that needs it fails closed (DENY with its reason code), as the CLI always did.
    ///
    /// # Errors
    /// When the actions, policies or inventory are missing or invalid.
    pub fn open(settings: GateSettings) -> Result<Gate, GateError> {
        let db = settings.paths.state_db(&settings.config.limits);
        // The store opens on a second thread while the configuration loads.
        let (state, loaded) = std::thread::scope(|scope| {
            let store = scope.spawn(|| {
                SqliteStateStore::open(&db)
                    .map(|s| Arc::new(s) as Arc<dyn StateStore>)
                    .map_err(|e| format!("cannot open the state store `{}`: {e}", db.display()))
            });
            let loaded = Gate::load(&settings, 1);
            let state = store
                .join()
                .unwrap_or_else(|_| Err("opening the state store panicked".to_owned()));
            (state, loaded)
        });
        Gate::assemble(settings, loaded?, state)
    }

    /// As [`Gate::open`], with a state store of the caller's (an in-memory one in tests, a
    /// shared database later), or the reason it could not be opened.
    ///
    /// # Errors
    /// When the actions, policies or inventory are missing or invalid.
    pub fn with_state_store(
        settings: GateSettings,
        state: Result<Arc<dyn StateStore>, String>,
    ) -> Result<Gate, GateError> {
        let loaded = Gate::load(&settings, 1)?;
        Gate::assemble(settings, loaded, state)
    }

    fn assemble(
        settings: GateSettings,
        loaded: Loaded,
        state: Result<Arc<dyn StateStore>, String>,
    ) -> Result<Gate, GateError> {
        let notifier = Notifier::new(
            settings.config.notifications.clone(),
            state.as_ref().ok().cloned(),
        );
        Ok(Gate {
            settings,
            current: RwLock::new(Arc::new(loaded)),
            reload_lock: Mutex::new(()),
            generation: AtomicU64::new(1),
            audit: RwLock::new(None),
            tickets: RwLock::new(None),
            state,
            notifier,
        })
    }

    fn load(settings: &GateSettings, generation: u64) -> Result<Loaded, GateError> {
        let snap = snapshot::load(&settings.paths, settings.config_file.as_ref())?;
        let (cfg, paths) = (&settings.config, &settings.paths);
        let identity = KeySet::load(&cfg.identity.trusted_key_paths(&paths.base, &paths.key_dir))
            .map(|keys| IdentityVerifier::new(keys, &cfg.identity))
            .map_err(|e| format!("cannot load identity verification keys: {e}"));
        let issuer = Signer::load(&cfg.tickets.signing_key_path(&paths.base, &paths.key_dir))
            .map_err(|e| e.to_string())
            .and_then(|s| TicketIssuer::new(s, &cfg.tickets).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot load the ticket signing key: {e}"));
        Ok(Loaded {
            pdp: Arc::new(snap.pdp),
            files: snap.files,
            identity,
            issuer,
            generation,
            recorded: AtomicBool::new(false),
            verified: RwLock::new(HashMap::new()),
        })
    }

    /// The configuration deciding now.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The decision point deciding now (it changes on [`Gate::reload`]).
    pub fn pdp(&self) -> Arc<Pdp> {
        Arc::clone(&self.current().pdp)
    }

    /// The settings the gate was built from.
    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// The gate's one open audit log, opened on first use. The runner of the same process
    /// appends its execution records through it too.
    ///
    /// # Errors
    /// When the log cannot be opened (a missing key, an unwritable folder).
    pub fn audit_log(&self) -> Result<Arc<AuditLog>, AuditError> {
        if let Ok(g) = self.audit.read()
            && let Some(log) = g.as_ref()
        {
            return Ok(Arc::clone(log));
        }
        let mut g = self
            .audit
            .write()
            .map_err(|_| AuditError::Config("the audit log lock is poisoned".into()))?;
        if let Some(log) = g.as_ref() {
            return Ok(Arc::clone(log));
        }
        let paths = &self.settings.paths;
        let log = Arc::new(AuditLog::open_configured(
            &self.settings.config.audit,
            &paths.state_dir,
            &paths.key_dir,
        )?);
        *g = Some(Arc::clone(&log));
        Ok(log)
    }

    /// The ticket redemption store every runner of the project shares (`[tickets]
    /// database`, default `<state_dir>/agentsafe.db`), opened on first use and kept open.
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn ticket_store(&self) -> Result<Arc<SqliteTicketStore>, GateError> {
        if let Ok(g) = self.tickets.read()
            && let Some(s) = g.as_ref()
        {
            return Ok(Arc::clone(s));
        }
        let mut g = self
            .tickets
            .write()
            .map_err(|_| GateError::Ticket("the ticket store lock is poisoned".into()))?;
        if let Some(s) = g.as_ref() {
            return Ok(Arc::clone(s));
        }
        let cfg = &self.settings.config.tickets;
        let paths = &self.settings.paths;
        let store = Arc::new(
            SqliteTicketStore::open_with(
                &cfg.database_path(&paths.base, &paths.state_dir),
                &cfg.store_options(),
            )
            .map_err(|e| GateError::Ticket(format!("cannot open the ticket store: {e}")))?,
        );
        *g = Some(Arc::clone(&store));
        Ok(store)
    }

    /// The state store, or why it could not be opened.
    ///
    /// # Errors
    /// When it could not be opened.
    pub fn state_store(&self) -> Result<Arc<dyn StateStore>, GateError> {
        self.state
            .clone()
            .map_err(|e| GateError::State(agentsafe_state::StateError::Corrupt(e)))
    }

    /// The notifier of approval requests.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Decides one request: see [`Gate::plan`].
    pub fn check(&self, claimed: &Claimed, request: Request) -> Outcome {
        let mut all = self.decide_all(claimed, vec![request], false);
        match all.pop() {
            Some(o) => o,
            None => Outcome {
                decision: self.current().pdp.refuse(
                    &Request::default(),
                    ReasonCode::InternalError,
                    "no decision",
                ),
                ticket: None,
                nonce: None,
                audit_seq: None,
                approval_id: None,
            },
        }
    }

    /// Decides the steps of a plan together: tickets only when every step is ALLOW.
    pub fn plan(&self, claimed: &Claimed, requests: Vec<Request>) -> Vec<Outcome> {
        self.decide_all(claimed, requests, true)
    }

    /// Authenticates the caller, asks the PDP, applies the limits, signs a ticket for each
    /// ALLOW (for a plan only when every step is ALLOW), records every decision in the
    /// audit log, and only then creates the approval requests of REQUIRE_APPROVAL decisions
    /// and notifies about them. Any failure ends in DENY with its reason code, never in an
    /// ALLOW that was not recorded.
    fn decide_all(
        &self,
        claimed: &Claimed,
        mut requests: Vec<Request>,
        plan: bool,
    ) -> Vec<Outcome> {
        let loaded = self.current();
        let pdp = &loaded.pdp;
        let cfg = &self.settings.config;
        let mut decisions: Vec<Decision> = match loaded.caller(&cfg.identity, claimed) {
            Ok(caller) => {
                for r in &mut requests {
                    r.caller = caller.clone();
                }
                let mut decided = if plan {
                    pdp.decide_plan(&requests).steps
                } else {
                    requests.iter().map(|r| pdp.decide(r)).collect()
                };
                let controls = self.controls();
                for d in &mut decided {
                    controls.apply(d);
                }
                decided
            }
            Err((code, reason)) => requests
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.caller = claimed.as_refused();
                    pdp.refuse(&r, code, reason.clone())
                })
                .collect(),
        };
        // Approval ids first (an identical pending request is reused), so the decision
        // record names the request that the store will hold.
        let approvals: Vec<Option<(String, bool)>> = decisions
            .iter()
            .map(|d| (d.decision == Verdict::RequireApproval).then(|| self.approval_id_for(d)))
            .collect();
        let all_allowed = decisions.iter().all(Decision::is_allow);
        let mut tickets: Vec<Option<SignedTicket>> = vec![None; decisions.len()];
        if !plan || all_allowed {
            for (d, slot) in decisions.iter_mut().zip(tickets.iter_mut()) {
                let Some(allowed) = Allowed::check(d) else {
                    continue;
                };
                match loaded.mint(allowed) {
                    Ok(t) => *slot = Some(t),
                    Err(e) => fail(
                        d,
                        ReasonCode::InternalError,
                        format!("cannot issue a ticket: {e}"),
                    ),
                }
            }
        }
        let ids: Vec<Option<&str>> = approvals
            .iter()
            .map(|a| a.as_ref().map(|(id, _)| id.as_str()))
            .collect();
        let (seqs, recorded) = self.record(&loaded, &mut decisions, &mut tickets, &ids);
        let mut out = Vec::with_capacity(decisions.len());
        for (((mut decision, ticket), audit_seq), approval) in
            decisions.into_iter().zip(tickets).zip(seqs).zip(approvals)
        {
            let approval_id = match approval {
                Some((id, is_new)) if recorded && decision.decision == Verdict::RequireApproval => {
                    if is_new {
                        match self.create_approval(&loaded, &decision, &id) {
                            Ok(()) => Some(id),
                            Err(e) => {
                                fail(
                                    &mut decision,
                                    ReasonCode::InternalError,
                                    format!("cannot create the approval request: {e}"),
                                );
                                None
                            }
                        }
                    } else {
                        Some(id)
                    }
                }
                _ => None,
            };
            let (nonce, ticket) = match ticket {
                Some(t) => (Some(t.nonce().to_string()), Some(t.into_token())),
                None => (None, None),
            };
            out.push(Outcome {
                decision,
                ticket,
                nonce,
                audit_seq,
                approval_id,
            });
        }
        out
    }

    pub(crate) fn controls(&self) -> Controls<'_> {
        Controls {
            cfg: &self.settings.config.limits,
            store: self.state.as_deref().map_err(String::as_str),
        }
    }

    /// Appends every decision to the audit log (after `config_loaded`, the first time).
    /// When that fails and the configuration fails closed (the default), every decision
    /// becomes DENY `audit_unavailable` and its ticket is withdrawn. Returns the audit
    /// positions and whether the decisions were recorded.
    fn record(
        &self,
        loaded: &Loaded,
        decisions: &mut [Decision],
        tickets: &mut [Option<SignedTicket>],
        approvals: &[Option<&str>],
    ) -> (Vec<Option<u64>>, bool) {
        let result = (|| -> Result<Vec<u64>, AuditError> {
            let log = self.audit_log()?;
            self.ensure_recorded(loaded, &log)?;
            let mut seqs = Vec::with_capacity(decisions.len());
            for ((d, t), a) in decisions.iter().zip(tickets.iter()).zip(approvals) {
                let mut event = decision_event(&loaded.pdp, d, &log);
                if let Some(t) = t {
                    event = event.with_ticket_nonce(t.nonce().to_string());
                }
                if let Some(id) = a {
                    event = event.with_approval_id((*id).to_owned());
                }
                seqs.push(log.append(event)?.seq);
            }
            Ok(seqs)
        })();
        match result {
            Ok(seqs) => (seqs.into_iter().map(Some).collect(), true),
            Err(e) => {
                self.count_audit_failure(&e);
                // A log changed behind the writer's back is never written around, whatever
                // `on_audit_failure` says.
                let tampered = matches!(e, AuditError::Tampered { .. });
                if tampered || self.settings.config.audit.on_failure() == FailureMode::Deny {
                    for (d, t) in decisions.iter_mut().zip(tickets.iter_mut()) {
                        *t = None;
                        fail(
                            d,
                            ReasonCode::AuditUnavailable,
                            format!("the audit log cannot be written, so nothing is allowed: {e}"),
                        );
                    }
                    (vec![None; decisions.len()], false)
                } else {
                    for d in decisions.iter_mut() {
                        d.diagnostics.push(format!(
                            "not recorded in the audit log (on_audit_failure = \"allow\"): {e}"
                        ));
                    }
                    (vec![None; decisions.len()], true)
                }
            }
        }
    }

    pub(crate) fn count_audit_failure(&self, e: &AuditError) {
        let log_path = self
            .settings
            .config
            .audit
            .log_path(&self.settings.paths.state_dir);
        let _ = agentsafe_audit::record_failure(&log_path, e);
    }

    /// Records `config_loaded` for `loaded` once, before its first decision. A marker in
    /// the state folder remembers the last hash recorded, so short-lived processes over an
    /// unchanged configuration do not record it again; when two race, it is recorded twice,
    /// which is harmless.
    pub(crate) fn ensure_recorded(
        &self,
        loaded: &Loaded,
        log: &AuditLog,
    ) -> Result<(), AuditError> {
        if loaded.recorded.load(Ordering::Acquire) {
            return Ok(());
        }
        let marker = self.settings.paths.state_dir.join("policy-hash");
        let hash = loaded.pdp.policy_hash();
        let seen = std::fs::read_to_string(&marker).unwrap_or_default();
        if seen.trim() != hash {
            log.append(AuditEvent::config_loaded(
                hash,
                &loaded.files.loaded_files(),
            ))?;
            // Failing to write the marker only means the event is recorded again next time.
            let _ = std::fs::write(&marker, hash);
        }
        loaded.recorded.store(true, Ordering::Release);
        Ok(())
    }

    /// Loads the configuration again from the same files (and keys) and swaps it in
    /// atomically. The new configuration is checked completely and recorded as
    /// `config_loaded` (from exactly the bytes loaded) before the first decision under it;
    /// a decision in flight finishes under the configuration it started with.
    ///
    /// # Errors
    /// When the new configuration is invalid or cannot be recorded: the old one keeps
    /// deciding, and the refusal is recorded when the log can be written.
    pub fn reload(&self) -> Result<Reloaded, GateError> {
        let _one_at_a_time = self.reload_lock.lock().ok();
        let old = self.current();
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let loaded = match Gate::load(&self.settings, generation) {
            Ok(l) => l,
            Err(e) => {
                if let Ok(log) = self.audit_log() {
                    let _ = log.append(AuditEvent::custom(
                        EventType::Operator,
                        json!({ "op": "reload", "result": "refused", "error": e.to_string() }),
                    ));
                }
                return Err(e);
            }
        };
        let log = self.audit_log()?;
        let hash = loaded.pdp.policy_hash().to_owned();
        let seq = log
            .append(AuditEvent::config_loaded(
                &hash,
                &loaded.files.loaded_files(),
            ))?
            .seq;
        let _ = std::fs::write(self.settings.paths.state_dir.join("policy-hash"), &hash);
        loaded.recorded.store(true, Ordering::Release);
        let changed = hash != old.pdp.policy_hash();
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        self.generation.store(generation, Ordering::SeqCst);
        Ok(Reloaded {
            policy_hash: hash,
            changed,
            generation,
            audit_seq: Some(seq),
        })
    }

    /// The configuration generation deciding now (1 at open, +1 per successful reload).
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// Pauses the root caller `key` until [`Gate::resume`]; recorded in the audit log
    /// first, so a pause that was not recorded never takes effect.
    ///
    /// # Errors
    /// When the audit log or the state store fails.
    pub fn pause(&self, key: &str, by: &str, reason: &str) -> Result<(), GateError> {
        let store = self.state_store()?;
        self.operator_event(json!({ "op": "pause", "caller": key, "by": by, "reason": reason }))?;
        store.pause(
            key,
            &Pause {
                by: by.to_owned(),
                reason: reason.to_owned(),
                at: Timestamp::now(),
            },
        )?;
        Ok(())
    }

    /// Lifts a pause (and an open breaker) of `key`; returns whether anything was lifted.
    ///
    /// # Errors
    /// When the audit log or the state store fails.
    pub fn resume(&self, key: &str, by: &str) -> Result<bool, GateError> {
        let store = self.state_store()?;
        self.operator_event(json!({ "op": "resume", "caller": key, "by": by }))?;
        Ok(store.resume(key)?)
    }

    /// The limits state of the root caller `key` over the configured windows.
    ///
    /// # Errors
    /// When the state store fails.
    pub fn caller_state(&self, key: &str) -> Result<CallerState, GateError> {
        Ok(self.state_store()?.caller_state(
            key,
            Timestamp::now(),
            self.settings.config.limits.windows(),
        )?)
    }

    /// Whether the root caller of `caller` may act now: not paused and no open breaker.
    /// The runner asks this before redeeming a ticket.
    ///
    /// # Errors
    /// The reason code and message when it may not (a store failure fails closed).
    pub fn may_act(&self, caller: &Caller) -> Result<(), (ReasonCode, String)> {
        let key = key_of(caller);
        let state = self
            .state_store()
            .and_then(|s| Ok(s.standing(key, Timestamp::now())?))
            .map_err(|e| (ReasonCode::InternalError, e.to_string()))?;
        crate::limits::refusal(key, &state).map_or(Ok(()), Err)
    }

    fn operator_event(&self, body: serde_json::Value) -> Result<u64, GateError> {
        let log = self.audit_log()?;
        let loaded = self.current();
        self.ensure_recorded(&loaded, &log)?;
        Ok(log
            .append(AuditEvent::custom(EventType::Operator, body))?
            .seq)
    }

    /// Waits (bounded) for notifications under way and closes the audit log with a final
    /// checkpoint. Call once before the process exits; later decisions open the log again.
    ///
    /// # Errors
    /// When the final checkpoint cannot be written.
    pub fn shutdown(&self) -> Result<(), GateError> {
        self.notifier.flush();
        let log = self.audit.write().ok().and_then(|mut g| g.take());
        if let Some(log) = log {
            log.shutdown()?;
        }
        Ok(())
    }
}

/// The audit event of a decision, sensitive params redacted.
pub(crate) fn decision_event(pdp: &Pdp, d: &Decision, log: &AuditLog) -> AuditEvent {
    let sensitive: Vec<&str> = pdp
        .registry()
        .get(&d.action)
        .map(|a| a.sensitive_params().collect())
        .unwrap_or_default();
    AuditEvent::decision(d, &sensitive, log.redactor())
}

/// Turns a decision into DENY with `code`, keeping what was decided before as a diagnostic.
pub(crate) fn fail(d: &mut Decision, code: ReasonCode, reason: String) {
    if d.decision != Verdict::Deny || d.reason_code != code {
        d.diagnostics.push(format!(
            "was {} ({}): {}",
            d.decision.label(),
            d.reason_code,
            d.reason
        ));
    }
    d.decision = Verdict::Deny;
    d.reason_code = code;
    d.reason = reason;
}
