//! Approval requests: created by a final REQUIRE_APPROVAL (after its audit record), voted
//! on by people holding an approver role, and claimed by their requester for exactly one
//! ticket.
//!
//! * An approver presents a verified identity token with one of the roles the rule names
//!   (`approvers`, default `approver`). The requester, every member of its delegation
//!   chain, and every agent delegated from any of them cannot vote. Votes count per
//!   delegation root: one person and a token she delegated to herself are one approver.
//! * The store never holds a ticket, and never holds a `sensitive` param in clear: the
//!   request is stored with those values HMAC-redacted, and their names listed.
//! * Once enough distinct approvers agreed, the requester (authenticated as the requester,
//!   or an agent the requester delegated to) claims the request ([`Gate::claim`]), sending
//!   the redacted params again. The claim goes through the whole gate once more: the
//!   policy as it is now (a DENY closes the request; a rule tightened since, with other
//!   approver roles or more approvers, reopens it for the votes that are missing), the
//!   params digest, pause, breaker, rate and cumulative risk, the ticket, and the audit
//!   record, in one state-store transaction, so an approval yields at most one ticket.

use std::collections::BTreeSet;

use agentsafe_audit::{AuditEvent, AuditLog, EventType};
use agentsafe_core::{
    ApprovalPolicy, Caller, Decision, DecisionId, Params, ReasonCode, Request, Timestamp, Verdict,
};
use agentsafe_state::{ApprovalRecord, ApprovalState, StateError, Vote};
use agentsafe_tickets::params_digest;
use serde::Deserialize;
use serde_json::json;

use crate::gate::{Allowed, Claimed, Loaded, Outcome, decision_event, fail};
use crate::{Gate, GateError};

/// The `[approvals]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long a request waits for approvers before it expires (default `1h`).
    pub expiry: agentsafe_tickets::HumanDuration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            expiry: agentsafe_tickets::HumanDuration::from_secs(3600),
        }
    }
}

/// What [`Gate::approve`] did.
#[derive(Debug, Clone)]
pub enum ApproveOutcome {
    /// The vote was counted; more approvers are needed.
    Counted(ApprovalRecord),
    /// Enough approvers agreed: the requester may claim its ticket.
    Approved(ApprovalRecord),
}

/// A fresh request id: 48 bits of milliseconds and 80 random bits, as decision ids.
fn new_id(now: Timestamp) -> String {
    let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    DecisionId::from_parts(ms, rand::random::<u128>()).to_string()
}

fn default_policy() -> ApprovalPolicy {
    ApprovalPolicy {
        approvers: vec!["approver".to_owned()],
        required: 1,
    }
}

/// A request as JSON for listings and notifications: as stored (sensitive params
/// redacted), never a ticket.
pub fn summary_json(r: &ApprovalRecord, now: Timestamp) -> serde_json::Value {
    json!({
        "id": r.id,
        "state": r.state_at(now).as_str(),
        "decision_id": r.decision_id,
        "action": r.request.action,
        "target": r.request.target,
        "caller": r.request.caller,
        "params": r.request.params,
        "redacted_params": r.redacted_params,
        "params_digest": r.params_digest,
        "change_ticket": r.request.change_ticket,
        "risk": r.risk,
        "rule_id": r.rule_id,
        "reason": r.reason,
        "approvers": r.approvers,
        "required": r.required,
        "approvals": r.votes,
        "denied": r.denied,
        "created_at": r.created_at.to_string(),
        "expires_at": r.expires_at.to_string(),
        "resolved_at": r.resolved_at.map(|t| t.to_string()),
        "claimed": r.ticket_nonce.is_some(),
        "ticket_nonce": r.ticket_nonce,
    })
}

/// Why `who` may not vote on `r`, if it may not: role, requester and delegation checks.
fn refusal(r: &ApprovalRecord, who: &Caller) -> Option<String> {
    if !r.approvers.iter().any(|role| who.has_role(role)) {
        return Some(format!(
            "`{}` has none of the approver roles this request needs ({})",
            who.id,
            r.approvers.join(", ")
        ));
    }
    let requester = &r.request.caller;
    let related: BTreeSet<&str> = std::iter::once(requester.id.as_str())
        .chain(requester.delegation_chain.iter().map(String::as_str))
        .collect();
    if let Some(hit) = std::iter::once(who.id.as_str())
        .chain(who.delegation_chain.iter().map(String::as_str))
        .find(|id| related.contains(id))
    {
        return Some(if hit == who.id {
            format!(
                "`{}` requested this action (or delegated to its requester) and cannot approve it",
                who.id
            )
        } else {
            format!(
                "`{}` acts on behalf of `{hit}`, who is in the requester's delegation chain, and cannot approve",
                who.id
            )
        });
    }
    if let Some(v) = r
        .votes
        .iter()
        .find(|v| v.approver == who.id || vote_root(v) == who.root())
    {
        return Some(if v.approver == who.id {
            format!(
                "`{}` already approved `{}`; {} of {} approvals so far",
                who.id,
                r.id,
                r.votes.len(),
                r.required
            )
        } else {
            format!(
                "`{}` acts for `{}`, who already approved `{}` (through `{}`): distinct approvers must be distinct people",
                who.id,
                who.root(),
                r.id,
                v.approver
            )
        });
    }
    None
}

/// The delegation root of a vote (records written before roots were kept: the approver).
fn vote_root(v: &Vote) -> &str {
    if v.root.is_empty() {
        &v.approver
    } else {
        &v.root
    }
}

/// How many distinct people among the votes hold one of `policy`'s roles.
fn votes_for(votes: &[Vote], policy: &ApprovalPolicy) -> u32 {
    let roots: BTreeSet<&str> = votes
        .iter()
        .filter(|v| v.roles.iter().any(|r| policy.approvers.contains(r)))
        .map(vote_root)
        .collect();
    u32::try_from(roots.len()).unwrap_or(u32::MAX)
}

fn refused(msg: String) -> StateError {
    StateError::Refused(msg)
}

fn state_error(e: StateError) -> GateError {
    match e {
        StateError::Refused(why) => GateError::Refused(why),
        StateError::NotFound(id) => GateError::NoSuchApproval(id),
        other => GateError::State(other),
    }
}

impl Gate {
    /// The approval id for a REQUIRE_APPROVAL decision: an identical pending request (same
    /// root caller, action, target and params digest) is reused (`false`), else a new id
    /// (`true`), created by [`Gate::create_approval`] after the decision's audit record.
    pub(crate) fn approval_id_for(&self, d: &Decision) -> (String, bool) {
        let now = Timestamp::now();
        if let (Ok(store), Ok(digest)) = (&self.state, params_digest(&d.params))
            && let Ok(all) = store.approvals()
            && let Some(r) = all.iter().rev().find(|r| {
                r.state_at(now) == ApprovalState::Pending
                    && r.request.caller.root() == d.caller.root()
                    && r.request.action == d.action
                    && r.request.target == d.target.id
                    && r.params_digest == digest
            })
        {
            return (r.id.clone(), false);
        }
        (new_id(now), true)
    }

    /// Stores the approval request `id` for a recorded REQUIRE_APPROVAL decision, sensitive
    /// params redacted, and queues its notification.
    pub(crate) fn create_approval(
        &self,
        loaded: &Loaded,
        d: &Decision,
        id: &str,
    ) -> Result<(), GateError> {
        let store = self.state_store()?;
        let log = self.audit_log()?;
        let now = Timestamp::now();
        let policy = d
            .approval
            .as_deref()
            .cloned()
            .unwrap_or_else(default_policy);
        let expiry = jiff::SignedDuration::try_from(self.settings.config.approvals.expiry.as_std())
            .unwrap_or(jiff::SignedDuration::MAX);
        let mut params = d.params.clone();
        let mut redacted_params = Vec::new();
        if let Some(def) = loaded.pdp.registry().get(&d.action) {
            for name in def.sensitive_params() {
                if let Some(v) = params.get_mut(name) {
                    *v = log.redactor().redact(v);
                    redacted_params.push(name.to_owned());
                }
            }
        }
        let record = ApprovalRecord {
            id: id.to_owned(),
            decision_id: d.decision_id.to_string(),
            request: Request {
                action: d.action.clone(),
                target: d.target.id.clone(),
                caller: d.caller.clone(),
                params,
                change_ticket: d.change_ticket.clone(),
                correlation_id: d.correlation_id.clone(),
                trace_id: d.trace_id.clone(),
            },
            authenticated: d.caller.authenticated,
            redacted_params,
            params_digest: params_digest(&d.params)
                .map_err(|e| GateError::Refused(e.to_string()))?,
            risk: d.effective_risk,
            rule_id: d.rule_id.as_deref().map(str::to_owned),
            reason: d.reason.clone(),
            approvers: policy.approvers,
            required: policy.required.max(1),
            created_at: now,
            expires_at: now.checked_add(expiry).unwrap_or(Timestamp::MAX),
            state: ApprovalState::Pending,
            votes: Vec::new(),
            denied: None,
            resolved_at: None,
            ticket_nonce: None,
            approved_decision_id: None,
        };
        if let Err(e) = store.create_approval(&record) {
            // The decision record names this request: say in the log that it never existed.
            let _ = log.append(
                AuditEvent::custom(
                    EventType::Approval,
                    json!({ "step": "creation_failed", "error": e.to_string() }),
                )
                .with_approval_id(id.to_owned()),
            );
            return Err(e.into());
        }
        self.notify("approval.created", &record);
        Ok(())
    }

    fn notify(&self, event_type: &str, r: &ApprovalRecord) {
        let now = Timestamp::now();
        let text = format!(
            "agentsafe approval {} ({}): {} on {} by {}{}: {}",
            r.id,
            r.state_at(now).as_str(),
            r.request.action,
            r.request.target,
            r.request.caller.id,
            r.request
                .change_ticket
                .as_deref()
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default(),
            r.reason
        );
        self.notifier.send(event_type, summary_json(r, now), &text);
    }

    /// One approval request, as stored (sensitive params redacted, no ticket).
    ///
    /// # Errors
    /// When the request does not exist or the store fails.
    pub fn approval(&self, id: &str) -> Result<ApprovalRecord, GateError> {
        self.state_store()?
            .approval(id)?
            .ok_or_else(|| GateError::NoSuchApproval(id.to_owned()))
    }

    /// Every approval request, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub fn approvals(&self) -> Result<Vec<ApprovalRecord>, GateError> {
        Ok(self.state_store()?.approvals()?)
    }

    /// Verifies an approver's identity token with the gate's identity keys.
    ///
    /// # Errors
    /// When the keys could not be loaded or the token does not verify.
    pub fn verify_approver(&self, token: &str) -> Result<Caller, GateError> {
        let loaded = self.current();
        loaded
            .caller(&self.settings.config.identity, &Claimed::token(token))
            .map_err(|(_, why)| {
                GateError::Identity(format!("the approver's token is not valid: {why}"))
            })
    }

    fn step(
        log: &AuditLog,
        id: &str,
        step: &str,
        who: &Caller,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        log.append(
            AuditEvent::custom(
                EventType::Approval,
                json!({ "step": step, "approver": who.id, "root": who.root(), "roles": who.roles, "reason": reason }),
            )
            .with_approval_id(id.to_owned()),
        )
        .map(|_| ())
        .map_err(|e| refused(format!("the audit log cannot be written: {e}")))
    }

    /// Counts the vote of the holder of `token` on request `id`; see the module documentation.
    ///
    /// # Errors
    /// The request does not exist, is not pending, the approver may not vote on it (role,
    /// requester, same person), or the audit log or the state store fails.
    pub fn approve(
        &self,
        id: &str,
        token: &str,
        reason: Option<&str>,
    ) -> Result<ApproveOutcome, GateError> {
        let who = self.verify_approver(token)?;
        let store = self.state_store()?;
        let log = self.audit_log()?;
        self.ensure_recorded(&self.current(), &log)?;
        let mut result = None;
        let updated = store.update_approval(id, &mut |r| {
            let now = Timestamp::now();
            match r.state_at(now) {
                ApprovalState::Pending => {}
                ApprovalState::Approved => {
                    return Err(refused(format!("approval `{id}` is already approved")));
                }
                ApprovalState::Denied => {
                    return Err(refused(format!("approval `{id}` was denied")));
                }
                ApprovalState::Expired => {
                    return Err(refused(format!(
                        "approval `{id}` expired at {}",
                        r.expires_at
                    )));
                }
            }
            if let Some(why) = refusal(r, &who) {
                return Err(refused(why));
            }
            r.votes.push(Vote {
                approver: who.id.clone(),
                at: now,
                reason: reason.map(str::to_owned),
                root: who.root().to_owned(),
                roles: who.roles.clone(),
            });
            Gate::step(&log, id, "approved_by", &who, reason)?;
            let policy = ApprovalPolicy {
                approvers: r.approvers.clone(),
                required: r.required,
            };
            if votes_for(&r.votes, &policy) < r.required {
                result = Some(ApproveOutcome::Counted(r.clone()));
                return Ok(());
            }
            r.state = ApprovalState::Approved;
            r.resolved_at = Some(now);
            Gate::step(&log, id, "approved", &who, None)?;
            result = Some(ApproveOutcome::Approved(r.clone()));
            Ok(())
        });
        match updated {
            Ok(_) => {}
            Err(StateError::Refused(why)) => {
                let _ = Gate::step(&log, id, "refused", &who, Some(&why));
                return Err(GateError::Refused(why));
            }
            Err(e) => return Err(state_error(e)),
        }
        let out =
            result.ok_or_else(|| GateError::Refused(format!("approval `{id}`: no result")))?;
        if let ApproveOutcome::Approved(r) = &out {
            self.notify("approval.resolved", r);
        }
        Ok(out)
    }

    /// Closes a pending request as denied. Same role and requester checks as [`Gate::approve`].
    ///
    /// # Errors
    /// The request does not exist or is not pending, the denier may not act on it, or the
    /// audit log or the state store fails.
    pub fn deny(
        &self,
        id: &str,
        token: &str,
        reason: Option<&str>,
    ) -> Result<ApprovalRecord, GateError> {
        let who = self.verify_approver(token)?;
        let store = self.state_store()?;
        let log = self.audit_log()?;
        self.ensure_recorded(&self.current(), &log)?;
        let updated = store.update_approval(id, &mut |r| {
            let now = Timestamp::now();
            if r.state_at(now) != ApprovalState::Pending {
                return Err(refused(format!(
                    "approval `{id}` is {}, not pending",
                    r.state_at(now).as_str()
                )));
            }
            // A denial needs the role and may not come from the requester's side; voting
            // twice does not apply to it.
            let mut probe = r.clone();
            probe.votes.clear();
            if let Some(why) = refusal(&probe, &who) {
                return Err(refused(why));
            }
            r.state = ApprovalState::Denied;
            r.resolved_at = Some(now);
            r.denied = Some(Vote {
                approver: who.id.clone(),
                at: now,
                reason: reason.map(str::to_owned),
                root: who.root().to_owned(),
                roles: who.roles.clone(),
            });
            Gate::step(&log, id, "denied_by", &who, reason)
        });
        match updated {
            Ok(r) => {
                self.notify("approval.resolved", &r);
                Ok(r)
            }
            Err(StateError::Refused(why)) => {
                let _ = Gate::step(&log, id, "refused", &who, Some(&why));
                Err(GateError::Refused(why))
            }
            Err(e) => Err(state_error(e)),
        }
    }

    /// The requester claims the one ticket of approved request `id`. `params` must be sent
    /// when the request has redacted (sensitive) params, and must then digest to exactly
    /// what was approved. The claim is decided again through the whole gate (see the
    /// module documentation) and recorded; the outcome is ALLOW with the ticket, or why not.
    pub fn claim(&self, id: &str, claimed: &Claimed, params: Option<Params>) -> Outcome {
        let loaded = self.current();
        let refuse = |request: &Request, code: ReasonCode, why: String| -> Outcome {
            let d = loaded.pdp.refuse(request, code, why);
            self.recorded_outcome(&loaded, d, Some(id))
        };
        let record = match self.approval(id) {
            Ok(r) => r,
            Err(e) => {
                return refuse(
                    &Request::default(),
                    ReasonCode::InvalidRequest,
                    e.to_string(),
                );
            }
        };
        let caller = match loaded.caller(&self.settings.config.identity, claimed) {
            Ok(c) => c,
            Err((code, why)) => {
                let mut req = record.request.clone();
                req.caller = claimed.as_refused();
                return refuse(&req, code, why);
            }
        };
        let mut request = record.request.clone();
        request.caller = caller.clone();
        let requester = &record.request.caller.id;
        let is_requester =
            caller.id == *requester || caller.delegation_chain.iter().any(|a| a == requester);
        if !is_requester || (record.authenticated && !caller.authenticated) {
            return refuse(
                &request,
                ReasonCode::InvalidIdentity,
                format!(
                    "approval `{id}` was requested by `{requester}`: only that caller (authenticated as it was) or an agent it delegated to can claim its ticket"
                ),
            );
        }
        match params {
            Some(p) => request.params = p,
            None if !record.redacted_params.is_empty() => {
                return refuse(
                    &request,
                    ReasonCode::InvalidParams,
                    format!(
                        "approval `{id}` holds the sensitive params {} only as HMACs: send the params again to claim it",
                        record.redacted_params.join(", ")
                    ),
                );
            }
            None => {}
        }
        let now = Timestamp::now();
        match record.state_at(now) {
            ApprovalState::Approved if record.ticket_nonce.is_none() => {}
            ApprovalState::Approved => {
                return refuse(
                    &request,
                    ReasonCode::InvalidRequest,
                    format!(
                        "approval `{id}` was already claimed (ticket {}): an approval gives one ticket",
                        record.ticket_nonce.as_deref().unwrap_or("?")
                    ),
                );
            }
            other => {
                return refuse(
                    &request,
                    ReasonCode::InvalidRequest,
                    format!("approval `{id}` is {}, not approved", other.as_str()),
                );
            }
        }
        let mut d = loaded.pdp.decide(&request);
        let digest = params_digest(&d.params).unwrap_or_default();
        if d.decision != Verdict::Deny && digest != record.params_digest {
            fail(
                &mut d,
                ReasonCode::InvalidParams,
                format!(
                    "the params differ from those approved in `{id}` ({} was approved)",
                    record.params_digest
                ),
            );
            return self.recorded_outcome(&loaded, d, Some(id));
        }
        if d.decision == Verdict::Deny {
            let why = format!("the policy now denies it ({}): {}", d.reason_code, d.reason);
            let out = self.recorded_outcome(&loaded, d, Some(id));
            if out.audit_seq.is_some() {
                self.close_denied(id, &why);
            }
            return out;
        }
        if d.decision == Verdict::RequireApproval {
            let now_needed = d
                .approval
                .as_deref()
                .cloned()
                .unwrap_or_else(default_policy);
            if votes_for(&record.votes, &now_needed) < now_needed.required {
                return self.reopen(&loaded, d, &record, &now_needed);
            }
        }
        let votes = record.votes.clone();
        approved_decision(&mut d, &record);
        self.controls().apply(&mut d);
        if d.decision == Verdict::RequireApproval
            && d.reason_code == ReasonCode::RiskEscalated
            && votes_for(&votes, d.approval.as_deref().unwrap_or(&default_policy())) >= 1
        {
            // The escalation asks for an approver, and this request has one.
            approved_decision(&mut d, &record);
        }
        if !d.is_allow() {
            return self.recorded_outcome(&loaded, d, Some(id));
        }
        self.mint_claim(&loaded, d, id)
    }

    /// Mints the claim's ticket, records it and marks the approval claimed, in one
    /// transaction of the state store: a second claim finds it claimed.
    fn mint_claim(&self, loaded: &Loaded, mut d: Decision, id: &str) -> Outcome {
        let (store, log) = match (self.state_store(), self.audit_log()) {
            (Ok(s), Ok(l)) => (s, l),
            (Err(e), _) => {
                fail(&mut d, ReasonCode::InternalError, e.to_string());
                return self.recorded_outcome(loaded, d, Some(id));
            }
            (_, Err(e)) => {
                self.count_audit_failure(&e);
                fail(
                    &mut d,
                    ReasonCode::AuditUnavailable,
                    format!("the audit log cannot be written, so nothing is allowed: {e}"),
                );
                return Outcome {
                    decision: d,
                    ticket: None,
                    nonce: None,
                    audit_seq: None,
                    approval_id: Some(id.to_owned()),
                };
            }
        };
        let mut minted = None;
        let mut seq = None;
        // Which failure it was, kept as a value rather than read back from the message.
        let mut audit_failure: Option<agentsafe_audit::AuditError> = None;
        let updated = store.update_approval(id, &mut |r| {
            if r.ticket_nonce.is_some() {
                return Err(refused(format!("approval `{id}` was already claimed")));
            }
            let allowed = Allowed::check(&d).ok_or_else(|| refused("not allowed".into()))?;
            let ticket = loaded
                .mint(allowed)
                .map_err(|e| refused(format!("cannot issue a ticket: {e}")))?;
            let appended = self
                .ensure_recorded(loaded, &log)
                .and_then(|()| {
                    log.append(
                        decision_event(&loaded.pdp, &d, &log)
                            .with_approval_id(id.to_owned())
                            .with_ticket_nonce(ticket.nonce().to_string()),
                    )
                })
                .map_err(|e| {
                    let why =
                        format!("the audit log cannot be written, so nothing is allowed: {e}");
                    audit_failure = Some(e);
                    refused(why)
                })?;
            seq = Some(appended.seq);
            r.ticket_nonce = Some(ticket.nonce().to_string());
            r.approved_decision_id = Some(d.decision_id.to_string());
            minted = Some(ticket);
            Ok(())
        });
        match (updated, minted) {
            (Ok(_), Some(t)) => Outcome {
                decision: d,
                nonce: Some(t.nonce().to_string()),
                ticket: Some(t.into_token()),
                audit_seq: seq,
                approval_id: Some(id.to_owned()),
            },
            (Err(e), _) => {
                let code = match &audit_failure {
                    Some(failure) => {
                        self.count_audit_failure(failure);
                        ReasonCode::AuditUnavailable
                    }
                    None => ReasonCode::InternalError,
                };
                fail(&mut d, code, e.to_string());
                self.recorded_outcome(loaded, d, Some(id))
            }
            (Ok(_), None) => {
                fail(
                    &mut d,
                    ReasonCode::InternalError,
                    "no ticket was issued".into(),
                );
                self.recorded_outcome(loaded, d, Some(id))
            }
        }
    }

    /// The rule was tightened since the votes were given: the request is pending again
    /// under the new requirement, and the claim is answered REQUIRE_APPROVAL.
    fn reopen(
        &self,
        loaded: &Loaded,
        d: Decision,
        record: &ApprovalRecord,
        needed: &ApprovalPolicy,
    ) -> Outcome {
        let id = record.id.clone();
        let mut out = self.recorded_outcome(loaded, d, Some(&id));
        if out.audit_seq.is_none() {
            return out;
        }
        let have = votes_for(&record.votes, needed);
        let reopened = self.state_store().and_then(|s| {
            s.update_approval(&id, &mut |r| {
                r.approvers = needed.approvers.clone();
                r.required = needed.required.max(1);
                r.state = ApprovalState::Pending;
                r.resolved_at = None;
                Ok(())
            })
            .map_err(GateError::from)
        });
        match reopened {
            Ok(r) => {
                out.decision.reason = format!(
                    "the rule now needs {} approver(s) of role {}; {have} of the votes given count: approval `{id}` is pending again",
                    r.required,
                    r.approvers.join(" | ")
                );
                self.notify("approval.created", &r);
            }
            Err(e) => fail(&mut out.decision, ReasonCode::InternalError, e.to_string()),
        }
        out
    }

    fn close_denied(&self, id: &str, why: &str) {
        if let Ok(store) = self.state_store() {
            let closed = store.update_approval(id, &mut |r| {
                let now = Timestamp::now();
                r.state = ApprovalState::Denied;
                r.resolved_at = Some(now);
                r.denied = Some(Vote {
                    approver: "policy".to_owned(),
                    at: now,
                    reason: Some(why.to_owned()),
                    root: "policy".to_owned(),
                    roles: Vec::new(),
                });
                Ok(())
            });
            if let Ok(r) = closed {
                self.notify("approval.resolved", &r);
            }
        }
    }

    /// Records `d` (no ticket) and hands it back; an unwritable log makes it DENY
    /// `audit_unavailable` as everywhere else.
    pub(crate) fn recorded_outcome(
        &self,
        loaded: &Loaded,
        mut d: Decision,
        approval_id: Option<&str>,
    ) -> Outcome {
        let appended = self.audit_log().and_then(|log| {
            self.ensure_recorded(loaded, &log)?;
            let mut ev = decision_event(&loaded.pdp, &d, &log);
            if let Some(id) = approval_id {
                ev = ev.with_approval_id(id.to_owned());
            }
            log.append(ev)
        });
        let audit_seq = match appended {
            Ok(a) => Some(a.seq),
            Err(e) => {
                self.count_audit_failure(&e);
                fail(
                    &mut d,
                    ReasonCode::AuditUnavailable,
                    format!("the audit log cannot be written, so nothing is allowed: {e}"),
                );
                None
            }
        };
        Outcome {
            decision: d,
            ticket: None,
            nonce: None,
            audit_seq,
            approval_id: approval_id.map(str::to_owned),
        }
    }
}

/// The re-evaluated decision, marked ALLOW by the approval.
fn approved_decision(d: &mut Decision, r: &ApprovalRecord) {
    let by: Vec<&str> = r.votes.iter().map(|v| v.approver.as_str()).collect();
    d.diagnostics.push(format!(
        "re-evaluated on claim as {} ({}): {}",
        d.decision.label(),
        d.reason_code,
        d.reason
    ));
    if d.escalated_from.is_none() && d.decision != Verdict::Allow {
        d.escalated_from = Some(d.decision);
    }
    d.decision = Verdict::Allow;
    d.reason_code = ReasonCode::RuleMatched;
    d.reason = format!(
        "approved by {} (approval {}): {}",
        by.join(", "),
        r.id,
        r.reason
    );
}
