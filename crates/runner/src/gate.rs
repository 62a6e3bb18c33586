//! The decision gate: identity → PDP → ticket (on ALLOW) → audit record, failing closed.
//!
//! Every command that hands out decisions (`check`, `plan`, `demo`) goes through here, so
//! each decision is authenticated the same way, recorded in the audit log before it is
//! returned, and an ALLOW carries a signed single-use ticket.

use std::path::PathBuf;

use agentsafe_audit::{AuditError, AuditEvent, AuditLog, FailureMode, LoadedFile};
use agentsafe_core::{Caller, Decision, ReasonCode, Request, Timestamp, Verdict};
use agentsafe_pdp::Pdp;
use agentsafe_tickets::{IdentityVerifier, KeySet, Signer, TicketIssuer};

use crate::context::Context;

/// A decision as handed to the caller, with its ticket and audit position.
#[derive(Debug)]
pub struct Outcome {
    /// The decision, after identity, ticket and audit checks.
    pub decision: Decision,
    /// The signed ticket, for an ALLOW.
    pub ticket: Option<String>,
    /// The ticket's nonce, for an ALLOW.
    pub nonce: Option<String>,
    /// The audit sequence number of the decision record, when it was recorded.
    pub audit_seq: Option<u64>,
    /// The approval request a REQUIRE_APPROVAL created (`agentsafe approval`).
    pub approval_id: Option<String>,
}

impl Outcome {
    /// The outcome as one JSON object: the decision's fields plus `ticket` and `audit_seq`.
    pub fn to_json(&self) -> anyhow::Result<serde_json::Value> {
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

/// Who is asking, as the command line or a request gives it.
#[derive(Debug, Default, Clone)]
pub struct Claimed {
    /// An identity token (JWT).
    pub token: Option<String>,
    /// A plain caller, accepted only when `[identity] allow_unauthenticated = true`.
    pub plain: Option<Caller>,
}

/// The loaded decision point plus the pieces around it.
#[derive(Debug)]
pub struct Gate<'a> {
    ctx: &'a Context,
    pdp: Pdp,
}

impl<'a> Gate<'a> {
    /// Loads the registry, policies and inventory.
    ///
    /// # Errors
    /// When any of them is missing or invalid: the command refuses rather than deciding.
    pub fn open(ctx: &'a Context) -> anyhow::Result<Gate<'a>> {
        Ok(Gate {
            ctx,
            pdp: ctx.load_pdp()?,
        })
    }

    /// The decision point.
    pub fn pdp(&self) -> &Pdp {
        &self.pdp
    }

    fn base(&self) -> PathBuf {
        self.ctx.config_base()
    }

    /// Authenticates the caller: a verified token, or a plain id where configuration allows.
    fn caller(&self, claimed: &Claimed) -> Result<Caller, (ReasonCode, String)> {
        let cfg = &self.ctx.config.identity;
        let verifier = match &claimed.token {
            Some(_) => {
                let paths = cfg.trusted_key_paths(&self.base(), &self.ctx.key_dir);
                let keys = KeySet::load(&paths).map_err(|e| {
                    (
                        ReasonCode::InvalidIdentity,
                        format!("cannot load identity verification keys: {e}"),
                    )
                })?;
                IdentityVerifier::new(keys, cfg)
            }
            None => IdentityVerifier::new(KeySet::new(), cfg),
        };
        cfg.resolve_caller(
            claimed.token.as_deref(),
            claimed.plain.as_ref(),
            &verifier,
            Timestamp::now(),
        )
        .map_err(|e| (e.reason_code(), format!("identity refused: {e}")))
    }

    /// Decides one request: see [`Gate::decide_all`].
    pub fn decide(&self, claimed: &Claimed, request: Request) -> Outcome {
        let mut all = self.decide_all(claimed, vec![request], false);
        all.pop().unwrap_or_else(|| Outcome {
            decision: self.pdp.refuse(
                &Request::default(),
                ReasonCode::InternalError,
                "no decision",
            ),
            ticket: None,
            nonce: None,
            audit_seq: None,
            approval_id: None,
        })
    }

    /// Decides requests (as a plan when `plan` is set): authenticates the caller, asks the
    /// PDP, issues a ticket for each ALLOW (for a plan only when every step is ALLOW),
    /// and records every decision in the audit log before returning it. Any failure ends
    /// in DENY with its reason code, never in an ALLOW that was not recorded.
    pub fn decide_all(
        &self,
        claimed: &Claimed,
        mut requests: Vec<Request>,
        plan: bool,
    ) -> Vec<Outcome> {
        let mut approvals: Vec<Option<String>> = vec![None; requests.len()];
        let mut decisions: Vec<Decision> = match self.caller(claimed) {
            Ok(caller) => {
                for r in &mut requests {
                    r.caller = caller.clone();
                }
                let mut decided = if plan {
                    self.pdp.decide_plan(&requests).steps
                } else {
                    requests.iter().map(|r| self.pdp.decide(r)).collect()
                };
                // Limits (pause, breaker, rate, cumulative risk) and approval requests.
                let controls = crate::limits::Controls::open(self.ctx);
                approvals = decided.iter_mut().map(|d| controls.apply(d)).collect();
                decided
            }
            Err((code, reason)) => requests
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.caller = claimed
                        .plain
                        .clone()
                        .unwrap_or_else(|| Caller::unauthenticated("anonymous"));
                    r.caller.authenticated = false;
                    self.pdp.refuse(&r, code, reason.clone())
                })
                .collect(),
        };
        let all_allowed = decisions.iter().all(Decision::is_allow);
        let mut tickets: Vec<Option<(String, String)>> = vec![None; decisions.len()];
        if decisions.iter().any(Decision::is_allow) && (!plan || all_allowed) {
            match self.issuer() {
                Ok(issuer) => {
                    for (d, slot) in decisions.iter_mut().zip(tickets.iter_mut()) {
                        if !d.is_allow() {
                            continue;
                        }
                        match issuer.issue(d, Timestamp::now()) {
                            Ok(t) => *slot = Some((t.nonce().to_string(), t.into_token())),
                            Err(e) => fail(
                                d,
                                ReasonCode::InternalError,
                                format!("cannot issue a ticket: {e}"),
                            ),
                        }
                    }
                }
                Err(e) => {
                    for d in decisions.iter_mut().filter(|d| d.is_allow()) {
                        fail(
                            d,
                            ReasonCode::InternalError,
                            format!("cannot issue a ticket: {e}"),
                        );
                    }
                }
            }
        }
        let seqs = self.record(&mut decisions, &mut tickets, &approvals);
        decisions
            .into_iter()
            .zip(tickets)
            .zip(seqs)
            .zip(approvals)
            .map(|(((decision, t), audit_seq), approval_id)| {
                let (nonce, ticket) = match t {
                    Some((n, t)) => (Some(n), Some(t)),
                    None => (None, None),
                };
                Outcome {
                    decision,
                    ticket,
                    nonce,
                    audit_seq,
                    approval_id,
                }
            })
            .collect()
    }

    fn issuer(&self) -> anyhow::Result<TicketIssuer> {
        let cfg = &self.ctx.config.tickets;
        let signer = Signer::load(&cfg.signing_key_path(&self.base(), &self.ctx.key_dir))?;
        Ok(TicketIssuer::new(signer, cfg)?)
    }

    /// Appends every decision to the audit log. When that fails and the configuration
    /// fails closed (the default), every decision becomes DENY `audit_unavailable` and
    /// its ticket is withdrawn.
    fn record(
        &self,
        decisions: &mut [Decision],
        tickets: &mut [Option<(String, String)>],
        approvals: &[Option<String>],
    ) -> Vec<Option<u64>> {
        let cfg = &self.ctx.config.audit;
        let result = (|| -> Result<Vec<u64>, AuditError> {
            let log = AuditLog::open_configured(cfg, &self.ctx.state_dir, &self.ctx.key_dir)?;
            self.record_config(&log)?;
            let mut seqs = Vec::with_capacity(decisions.len());
            for ((d, t), a) in decisions.iter().zip(tickets.iter()).zip(approvals) {
                let sensitive: Vec<&str> = self
                    .pdp
                    .registry()
                    .get(&d.action)
                    .map(|a| a.sensitive_params().collect())
                    .unwrap_or_default();
                let mut event = AuditEvent::decision(d, &sensitive, log.redactor());
                if let Some((nonce, _)) = t {
                    event = event.with_ticket_nonce(nonce.clone());
                }
                if let Some(id) = a {
                    event = event.with_approval_id(id.clone());
                }
                seqs.push(log.append(event)?.seq);
            }
            log.close()?;
            Ok(seqs)
        })();
        match result {
            Ok(seqs) => seqs.into_iter().map(Some).collect(),
            Err(e) => {
                let log_path = cfg.log_path(&self.ctx.state_dir);
                let _ = agentsafe_audit::record_failure(&log_path, &e);
                if cfg.on_failure() == FailureMode::Deny {
                    for (d, t) in decisions.iter_mut().zip(tickets.iter_mut()) {
                        *t = None;
                        fail(
                            d,
                            ReasonCode::AuditUnavailable,
                            format!("the audit log cannot be written, so nothing is allowed: {e}"),
                        );
                    }
                } else {
                    for d in decisions.iter_mut() {
                        d.diagnostics.push(format!(
                            "not recorded in the audit log (on_audit_failure = \"allow\"): {e}"
                        ));
                    }
                }
                vec![None; decisions.len()]
            }
        }
    }
}

impl Gate<'_> {
    /// Records a `config_loaded` event (the policy hash and every file behind it) before
    /// the first decision made under a configuration the log has not seen yet. A marker
    /// in the state folder remembers the last hash recorded; when two processes race, the
    /// event is recorded twice, which is harmless.
    fn record_config(&self, log: &AuditLog) -> Result<(), AuditError> {
        let marker = self.ctx.state_dir.join("policy-hash");
        let hash = self.pdp.policy_hash();
        let seen = std::fs::read_to_string(&marker).unwrap_or_default();
        if seen.trim() == hash {
            return Ok(());
        }
        log.append(AuditEvent::config_loaded(hash, &self.config_files()))?;
        // Failing to write the marker only means the event is recorded again next time.
        let _ = std::fs::write(&marker, hash);
        Ok(())
    }

    /// The files the decision point was loaded from, with their SHA-256.
    fn config_files(&self) -> Vec<LoadedFile> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for dir in [&self.ctx.actions_dir, &self.ctx.policies_dir] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                    .collect();
                found.sort();
                paths.extend(found);
            }
        }
        paths.push(self.ctx.inventory_path.clone());
        paths.extend(self.ctx.config_path.clone());
        paths
            .into_iter()
            .filter_map(|p| {
                std::fs::read(&p)
                    .ok()
                    .map(|bytes| LoadedFile::new(p.display().to_string(), &bytes))
            })
            .collect()
    }
}

/// Turns a decision into DENY with `code`, keeping what was decided before as a diagnostic.
fn fail(d: &mut Decision, code: ReasonCode, reason: String) {
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
