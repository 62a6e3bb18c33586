//! Approval requests: created by a final REQUIRE_APPROVAL, approved or denied by people
//! holding an approver role, and turned into exactly one ticket.
//!
//! * An approver presents a verified identity token with one of the roles the rule names
//!   (`approvers`, default `approver`). The requester, every member of its delegation
//!   chain, and every agent delegated from any of them cannot approve or deny.
//! * Each approver counts once; when `required` distinct approvers agreed, the stored
//!   request (params exactly as stored, digest checked) is decided again. A DENY now closes
//!   the request as denied; otherwise one ticket is issued for the re-evaluated decision,
//!   marked ALLOW by the approval, and stored with the request. The vote, the decision and
//!   the ticket are written in one state-store transaction after their audit records, so a
//!   request never gets a second ticket and no ticket exists without its record.
//! * Expired and denied requests cannot be approved; an approved one answers with its
//!   ticket and never mints another.

use std::collections::BTreeSet;

use agentsafe_audit::{AuditEvent, AuditLog, EventType};
use agentsafe_core::{Caller, Decision, DecisionId, ReasonCode, Timestamp, Verdict};
use agentsafe_pdp::Pdp;
use agentsafe_state::{ApprovalRecord, ApprovalState, StateError, StateStore, Vote};
use agentsafe_tickets::{IdentityVerifier, KeySet, Signer, TicketIssuer, params_digest};
use serde_json::json;

use crate::context::Context;

/// A fresh request id: 48 bits of milliseconds and 80 random bits, as decision ids.
fn new_id(now: Timestamp) -> String {
    let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    DecisionId::from_parts(ms, rand::random::<u128>()).to_string()
}

/// Creates the approval request for a REQUIRE_APPROVAL decision and notifies about it.
///
/// # Errors
/// When the params cannot be digested or the request cannot be stored.
pub fn create(ctx: &Context, store: &dyn StateStore, d: &Decision) -> anyhow::Result<String> {
    let now = Timestamp::now();
    let policy = d
        .approval
        .as_deref()
        .cloned()
        .unwrap_or(agentsafe_core::ApprovalPolicy {
            approvers: vec!["approver".to_owned()],
            required: 1,
        });
    let expiry = ctx.config.approvals.expiry.as_std();
    let record = ApprovalRecord {
        id: new_id(now),
        decision_id: d.decision_id.to_string(),
        request: agentsafe_core::Request {
            action: d.action.clone(),
            target: d.target.id.clone(),
            caller: d.caller.clone(),
            params: d.params.clone(),
            change_ticket: d.change_ticket.clone(),
            correlation_id: d.correlation_id.clone(),
            trace_id: d.trace_id.clone(),
        },
        params_digest: params_digest(&d.params)?,
        risk: d.effective_risk,
        rule_id: d.rule_id.as_deref().map(str::to_owned),
        reason: d.reason.clone(),
        approvers: policy.approvers,
        required: policy.required.max(1),
        created_at: now,
        expires_at: now
            .checked_add(jiff::SignedDuration::try_from(expiry)?)
            .unwrap_or(Timestamp::MAX),
        state: ApprovalState::Pending,
        votes: Vec::new(),
        denied: None,
        resolved_at: None,
        ticket: None,
        ticket_nonce: None,
        approved_decision_id: None,
    };
    store.create_approval(&record)?;
    notify(ctx, "approval.created", &record);
    Ok(record.id)
}

/// The notification body: the request without its ticket.
fn notify(ctx: &Context, event_type: &str, r: &ApprovalRecord) {
    let data = summary_json(r, Timestamp::now());
    let text = format!(
        "agentsafe approval {} ({}): {} on {} by {}{}: {}",
        r.id,
        r.state_at(Timestamp::now()).as_str(),
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
    crate::notify::send(ctx, event_type, data, text);
}

/// A request as JSON for listings and notifications: everything but the ticket itself.
pub fn summary_json(r: &ApprovalRecord, now: Timestamp) -> serde_json::Value {
    json!({
        "id": r.id,
        "state": r.state_at(now).as_str(),
        "decision_id": r.decision_id,
        "action": r.request.action,
        "target": r.request.target,
        "caller": r.request.caller,
        "params": r.request.params,
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
        "ticket_nonce": r.ticket_nonce,
    })
}

/// Verifies an approver's identity token with the same keys and settings as `check --token`.
///
/// # Errors
/// When the keys cannot be loaded or the token does not verify.
pub fn verify_approver(ctx: &Context, token: &str) -> anyhow::Result<Caller> {
    let cfg = &ctx.config.identity;
    let keys = KeySet::load(&cfg.trusted_key_paths(&ctx.config_base(), &ctx.key_dir))
        .map_err(|e| anyhow::anyhow!("cannot load identity verification keys: {e}"))?;
    let identity = IdentityVerifier::new(keys, cfg)
        .verify(token, Timestamp::now())
        .map_err(|e| anyhow::anyhow!("the approver's token is not valid: {e}"))?;
    Ok(identity.caller())
}

/// Why `who` may not act on `r`, if it may not: role, requester and delegation checks.
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
    None
}

/// What `approve` did.
#[derive(Debug)]
pub enum ApproveOutcome {
    /// The vote was counted; more approvers are needed.
    Counted(ApprovalRecord),
    /// The request is approved and carries its one ticket (also when it already was).
    Approved(ApprovalRecord),
    /// The policy denies the request now: it was closed as denied.
    DeniedByPolicy(ApprovalRecord),
}

fn refused(msg: String) -> StateError {
    StateError::Refused(msg)
}

struct Audit {
    log: AuditLog,
}

impl Audit {
    fn open(ctx: &Context) -> anyhow::Result<Audit> {
        let log = AuditLog::open_configured(&ctx.config.audit, &ctx.state_dir, &ctx.key_dir)
            .map_err(|e| anyhow::anyhow!("the audit log cannot be written: {e}"))?;
        Ok(Audit { log })
    }

    fn append(&self, event: AuditEvent) -> Result<(), StateError> {
        self.log
            .append(event)
            .map(|_| ())
            .map_err(|e| refused(format!("the audit log cannot be written: {e}")))
    }

    fn step(
        &self,
        id: &str,
        step: &str,
        who: &Caller,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        self.append(
            AuditEvent::custom(
                EventType::Approval,
                json!({ "step": step, "approver": who.id, "roles": who.roles, "reason": reason }),
            )
            .with_approval_id(id.to_owned()),
        )
    }

    fn close(self) {
        let _ = self.log.close();
    }
}

/// Records a refused attempt in the audit log (best effort: the refusal stands anyway).
fn audit_refusal(audit: &Audit, id: &str, who: &Caller, why: &str) {
    let _ = audit.step(id, "refused", who, Some(why));
}

/// `approve`: see the module documentation.
///
/// # Errors
/// The request does not exist, is expired or denied, the approver may not approve it or
/// already did, the audit log or the state store fails, or the ticket cannot be issued.
pub fn approve(
    ctx: &Context,
    store: &dyn StateStore,
    pdp: &Pdp,
    id: &str,
    approver: &Caller,
    reason: Option<&str>,
) -> anyhow::Result<ApproveOutcome> {
    let audit = Audit::open(ctx)?;
    let issuer = {
        let cfg = &ctx.config.tickets;
        let signer = Signer::load(&cfg.signing_key_path(&ctx.config_base(), &ctx.key_dir))?;
        TicketIssuer::new(signer, cfg)?
    };
    let mut result: Option<ApproveOutcome> = None;
    let mut resolved_now = false;
    let updated = store.update_approval(id, &mut |r| {
        let now = Timestamp::now();
        match r.state_at(now) {
            ApprovalState::Approved => {
                result = Some(ApproveOutcome::Approved(r.clone()));
                return Ok(());
            }
            ApprovalState::Denied => return Err(refused(format!("approval `{id}` was denied"))),
            ApprovalState::Expired => {
                return Err(refused(format!(
                    "approval `{id}` expired at {}",
                    r.expires_at
                )));
            }
            ApprovalState::Pending => {}
        }
        if let Some(why) = refusal(r, approver) {
            return Err(refused(why));
        }
        if r.votes.iter().any(|v| v.approver == approver.id) {
            return Err(refused(format!(
                "`{}` already approved `{id}`; {} of {} approvals so far",
                approver.id,
                r.votes.len(),
                r.required
            )));
        }
        r.votes.push(Vote {
            approver: approver.id.clone(),
            at: now,
            reason: reason.map(str::to_owned),
        });
        audit.step(id, "approved_by", approver, reason)?;
        if u32::try_from(r.votes.len()).unwrap_or(u32::MAX) < r.required {
            result = Some(ApproveOutcome::Counted(r.clone()));
            return Ok(());
        }
        // Enough approvers: decide the stored request again, params exactly as stored.
        let stored = params_digest(&r.request.params).map_err(|e| refused(e.to_string()))?;
        if stored != r.params_digest {
            return Err(refused(format!(
                "approval `{id}`: the stored params do not match the requested digest"
            )));
        }
        let again = pdp.decide(&r.request);
        let digest = params_digest(&again.params).map_err(|e| refused(e.to_string()))?;
        if again.decision == Verdict::Deny || digest != r.params_digest {
            let why = if again.decision == Verdict::Deny {
                format!(
                    "the policy now denies it ({}): {}",
                    again.reason_code, again.reason
                )
            } else {
                "the params changed on re-evaluation".to_owned()
            };
            r.state = ApprovalState::Denied;
            r.resolved_at = Some(now);
            r.denied = Some(Vote {
                approver: "policy".to_owned(),
                at: now,
                reason: Some(why.clone()),
            });
            let sensitive = sensitive(pdp, &again.action);
            audit.append(
                AuditEvent::decision(&again, &sensitive, audit.log.redactor())
                    .with_approval_id(id.to_owned()),
            )?;
            audit.step(id, "denied_on_reevaluation", approver, Some(&why))?;
            resolved_now = true;
            result = Some(ApproveOutcome::DeniedByPolicy(r.clone()));
            return Ok(());
        }
        let approved = approved_decision(again, r);
        let ticket = issuer
            .issue(&approved, now)
            .map_err(|e| refused(format!("cannot issue the ticket: {e}")))?;
        let sensitive = sensitive(pdp, &approved.action);
        audit.append(
            AuditEvent::decision(&approved, &sensitive, audit.log.redactor())
                .with_approval_id(id.to_owned())
                .with_ticket_nonce(ticket.nonce().to_string()),
        )?;
        r.state = ApprovalState::Approved;
        r.resolved_at = Some(now);
        r.ticket_nonce = Some(ticket.nonce().to_string());
        r.approved_decision_id = Some(approved.decision_id.to_string());
        r.ticket = Some(ticket.into_token());
        resolved_now = true;
        result = Some(ApproveOutcome::Approved(r.clone()));
        Ok(())
    });
    let out = match updated {
        Ok(_) => result.ok_or_else(|| anyhow::anyhow!("approval `{id}`: no result")),
        Err(StateError::Refused(why)) => {
            audit_refusal(&audit, id, approver, &why);
            Err(anyhow::anyhow!("{why}"))
        }
        Err(e) => Err(e.into()),
    };
    audit.close();
    if let Ok(ApproveOutcome::Approved(r) | ApproveOutcome::DeniedByPolicy(r)) = &out
        && resolved_now
    {
        notify(ctx, "approval.resolved", r);
    }
    out
}

/// The re-evaluated decision, marked ALLOW by the approval: the one decision a ticket is
/// issued for after approval.
fn approved_decision(mut d: Decision, r: &ApprovalRecord) -> Decision {
    let by: Vec<&str> = r.votes.iter().map(|v| v.approver.as_str()).collect();
    d.diagnostics.push(format!(
        "re-evaluated on approval as {} ({}): {}",
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
    d
}

fn sensitive<'p>(pdp: &'p Pdp, action: &str) -> Vec<&'p str> {
    pdp.registry()
        .get(action)
        .map(|a| a.sensitive_params().collect())
        .unwrap_or_default()
}

/// `deny`: closes a pending request. Same role and requester checks as `approve`.
///
/// # Errors
/// The request does not exist or is not pending, the denier may not act on it, or the
/// audit log or the state store fails.
pub fn deny(
    ctx: &Context,
    store: &dyn StateStore,
    id: &str,
    who: &Caller,
    reason: Option<&str>,
) -> anyhow::Result<ApprovalRecord> {
    let audit = Audit::open(ctx)?;
    let updated = store.update_approval(id, &mut |r| {
        let now = Timestamp::now();
        match r.state_at(now) {
            ApprovalState::Pending => {}
            other => {
                return Err(refused(format!(
                    "approval `{id}` is {}, not pending",
                    other.as_str()
                )));
            }
        }
        if let Some(why) = refusal(r, who) {
            return Err(refused(why));
        }
        r.state = ApprovalState::Denied;
        r.resolved_at = Some(now);
        r.denied = Some(Vote {
            approver: who.id.clone(),
            at: now,
            reason: reason.map(str::to_owned),
        });
        audit.step(id, "denied_by", who, reason)
    });
    let out = match updated {
        Ok(r) => Ok(r),
        Err(StateError::Refused(why)) => {
            audit_refusal(&audit, id, who, &why);
            Err(anyhow::anyhow!("{why}"))
        }
        Err(e) => Err(e.into()),
    };
    audit.close();
    if let Ok(r) = &out {
        notify(ctx, "approval.resolved", r);
    }
    out
}

/// The `[approvals]` section.
#[derive(Debug, Clone, serde::Deserialize)]
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
