//! The policy decision point: binds a request to the inventory, validates its params
//! against the action registry and evaluates priority-ordered policies.
//!
//! Build a [`Pdp`] once from a [`Registry`], a [`PolicySet`] and an [`Inventory`], then
//! call [`Pdp::decide`] from as many threads as you like. Deciding never fails: anything
//! that goes wrong gives a DENY with a reason code (fail closed).
//!
//! # Evaluation
//!
//! 1. An empty action or target id: DENY `invalid_request`.
//! 2. An action not in the registry: DENY `unknown_action`.
//! 3. A known target whose type the action does not support: DENY `target_type_mismatch`.
//!    Unknown targets are evaluated with `critical` sensitivity and keep the requested id.
//! 4. Binding: each param with `target_attr` must equal that attribute of the target
//!    (DENY `param_target_mismatch`); when omitted it is filled from the target.
//!    An unknown target has no attributes to bind to, so an action with target-bound
//!    params is never allowed on one, nor sent for approval: the rules are matched (params
//!    play no part in matching), a deny rule decides as usual, and anything else (an
//!    allow or require_approval rule, or no rule) is DENY `unknown_target`. Params are
//!    not validated then. `Pdp::lint` warns about allow and require_approval rules that
//!    would match such requests ([`WarningKind::UnknownTargetBinding`]).
//! 5. Param validation against the action's types and constraints, defaults applied:
//!    DENY `invalid_params` listing every problem.
//! 6. Rules, highest priority first; among matching rules of equal priority the most
//!    restrictive wins (deny over require_approval over allow), then the smallest id,
//!    so the order of files and rules never changes a decision. No match: DENY `default_deny`.
//!    A change ticket id that is empty or only whitespace is no ticket: it satisfies
//!    neither `require_ticket` nor a `ticket_pattern`, and the decision records none.

mod error;
mod glob;
pub mod inventory;
mod lint;
pub mod policy;
pub mod testing;

use std::path::Path;
use std::sync::Arc;

use agentsafe_core::{
    Decision, DecisionId, Params, ReasonCode, Request, Sensitivity, TargetInfo, Timestamp, Verdict,
    effective_risk,
};
use agentsafe_registry::ActionDef;
pub use agentsafe_registry::Registry;
use sha2::{Digest, Sha256};

pub use crate::error::{Diagnostic, PdpError};
pub use crate::inventory::{Inventory, Target};
pub use crate::lint::{Warning, WarningKind};
use crate::policy::Facts;
pub use crate::policy::{PolicySet, Rule};

/// One registry action and the rules that may apply to it, as positions in evaluation order.
#[derive(Debug)]
struct ActionIndex {
    /// The action's position in the registry (indexes `Target::bound_ok`).
    pos: usize,
    /// The definition, kept here so a decision needs one lookup, not two.
    action: ActionDef,
    /// Rules naming exact agent ids, by agent id.
    by_agent: FastMap<String, Vec<u32>>,
    /// Every other rule that names this action.
    generic: Vec<u32>,
}

/// The maps on the decision path hash request strings on every call: foldhash is several
/// times faster than SipHash there and still seeded per process.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The decision point. Immutable once built; share it behind an `Arc`.
#[derive(Debug)]
pub struct Pdp {
    registry: Registry,
    inventory: Inventory,
    policies: PolicySet,
    index: FastMap<String, ActionIndex>,
    policy_hash: Arc<str>,
}

/// The decisions for the steps of a plan, decided together.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanDecision {
    /// The id linking every step's decision.
    pub plan_id: DecisionId,
    /// The most restrictive verdict among the steps (DENY for an empty plan).
    pub decision: Verdict,
    /// One decision per step, in order.
    pub steps: Vec<Decision>,
}

impl Pdp {
    /// Loads the registry, policies and inventory from their usual places.
    ///
    /// # Errors
    /// When any of them cannot be read or is invalid.
    pub fn load(actions: &Path, policies: &Path, inventory: &Path) -> Result<Pdp, PdpError> {
        let registry = Registry::load(actions)?;
        let policies = PolicySet::load(policies)?;
        let inventory = Inventory::load(inventory)?;
        Ok(Pdp::new(registry, policies, inventory))
    }

    /// Builds the decision point and its rule index.
    pub fn new(registry: Registry, mut policies: PolicySet, mut inventory: Inventory) -> Pdp {
        let mut interner = inventory::Interner::default();
        inventory.intern(&mut interner);
        policies.intern(&mut interner);
        for target in inventory.targets_mut() {
            target.bound_ok = registry
                .actions()
                .map(|a| bound_values_valid(a, target))
                .collect();
        }
        let mut index: FastMap<String, ActionIndex> = FastMap::default();
        for (pos, action) in registry.actions().enumerate() {
            let entry = index
                .entry(action.name().to_owned())
                .or_insert_with(|| ActionIndex {
                    pos,
                    action: action.clone(),
                    by_agent: FastMap::default(),
                    generic: Vec::new(),
                });
            for (pos, rule) in policies.rules.iter().enumerate() {
                if !rule.matches_action(action.name()) {
                    continue;
                }
                let pos = u32::try_from(pos).unwrap_or(u32::MAX);
                let exact: Option<Vec<&str>> = rule
                    .m
                    .agent_ids
                    .as_ref()
                    .and_then(|ids| ids.iter().map(|g| g.exact()).collect());
                match exact {
                    Some(ids) => {
                        for id in ids {
                            entry.by_agent.entry(id.to_owned()).or_default().push(pos);
                        }
                    }
                    None => entry.generic.push(pos),
                }
            }
        }
        let policy_hash = Arc::from(policy_hash(&registry, &policies, &inventory).as_str());
        Pdp {
            registry,
            inventory,
            policies,
            index,
            policy_hash,
        }
    }

    /// The registry in force.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The inventory in force.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// SHA-256 (hex) over the registry, policies and inventory in force.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// Decides `request` at the current time of this machine's clock.
    pub fn decide(&self, request: &Request) -> Decision {
        self.evaluate(request, Timestamp::now(), None)
    }

    /// Decides `request` as if at `now`: for policy tests and replays, never for live
    /// requests (the time of a live decision is always the decision point's clock).
    pub fn decide_at(&self, request: &Request, now: Timestamp) -> Decision {
        self.evaluate(request, now, None)
    }

    /// Decides the steps of a plan together: one decision per step, linked by a plan id.
    pub fn decide_plan(&self, steps: &[Request]) -> PlanDecision {
        self.decide_plan_at(steps, Timestamp::now())
    }

    /// [`Pdp::decide_plan`] as if at `now` (tests and replays only).
    pub fn decide_plan_at(&self, steps: &[Request], now: Timestamp) -> PlanDecision {
        let plan_id = new_id(now);
        let steps: Vec<Decision> = steps
            .iter()
            .map(|r| self.evaluate(r, now, Some(plan_id)))
            .collect();
        let decision = steps
            .iter()
            .map(|d| d.decision)
            .max()
            .unwrap_or(Verdict::Deny);
        PlanDecision {
            plan_id,
            decision,
            steps,
        }
    }

    /// A DENY for `request` that never reached evaluation (an invalid identity, an audit
    /// log that cannot be written): the same decision value as [`Pdp::decide`] gives, with
    /// the target looked up and the action's risk filled in when the action is known.
    pub fn refuse(
        &self,
        request: &Request,
        code: ReasonCode,
        reason: impl Into<String>,
    ) -> Decision {
        let mut d = self.base(request, Timestamp::now(), None);
        if let Some(idx) = self.index.get(&request.action) {
            d.action_risk = Some(idx.action.risk());
            d.effective_risk = Some(effective_risk(idx.action.risk(), d.target.sensitivity));
        }
        d.params = request.params.clone();
        d.reason_code = code;
        d.reason = reason.into();
        d
    }

    /// The decision value before evaluation: DENY `default_deny`, target looked up.
    fn base(&self, req: &Request, now: Timestamp, plan_id: Option<DecisionId>) -> Decision {
        let target = self.inventory.get(&req.target);
        Decision {
            decision_id: new_id(now),
            decision: Verdict::Deny,
            reason_code: ReasonCode::DefaultDeny,
            reason: String::new(),
            rule_id: None,
            action: req.action.clone(),
            target: TargetInfo {
                id: req.target.clone(),
                known: target.is_some(),
                target_type: target.map(Target::type_arc),
                environment: target.map(Target::environment_arc),
                sensitivity: target.map_or(Sensitivity::Critical, Target::sensitivity),
            },
            caller: req.caller.clone(),
            action_risk: None,
            effective_risk: None,
            params: Params::new(),
            change_ticket: change_ticket(req).map(str::to_owned),
            evaluated_at: now,
            policy_hash: Arc::clone(&self.policy_hash),
            plan_id,
            correlation_id: req.correlation_id.clone(),
            trace_id: req.trace_id.clone(),
            diagnostics: Vec::new(),
            approval: None,
            risk_score: None,
            escalated_from: None,
        }
    }

    fn evaluate(&self, req: &Request, now: Timestamp, plan_id: Option<DecisionId>) -> Decision {
        let target = self.inventory.get(&req.target);
        let mut d = self.base(req, now, plan_id);
        let deny = |mut d: Decision, code: ReasonCode, reason: String| {
            d.decision = Verdict::Deny;
            d.reason_code = code;
            d.reason = reason;
            d
        };
        if req.action.is_empty() || req.target.is_empty() || req.caller.id.is_empty() {
            d.params = req.params.clone();
            let missing = [
                ("action", &req.action),
                ("target", &req.target),
                ("caller.id", &req.caller.id),
            ]
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ");
            return deny(
                d,
                ReasonCode::InvalidRequest,
                format!("the request has an empty {missing}"),
            );
        }
        // Ids reach people (audit show, Slack, terminals): a control character could forge
        // whole lines there, so an id carrying one is refused outright.
        let fields = [
            ("action", Some(req.action.as_str())),
            ("target", Some(req.target.as_str())),
            ("caller.id", Some(req.caller.id.as_str())),
            // A blank change ticket (tabs and newlines included) is no ticket at all.
            (
                "change_ticket",
                req.change_ticket
                    .as_deref()
                    .filter(|t| !t.trim().is_empty()),
            ),
            ("correlation_id", req.correlation_id.as_deref()),
        ];
        if let Some((field, _)) = fields
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.chars().any(char::is_control)))
        {
            d.params = req.params.clone();
            return deny(
                d,
                ReasonCode::InvalidRequest,
                format!("the request's {field} contains a control character"),
            );
        }
        let Some(idx) = self.index.get(&req.action) else {
            d.params = req.params.clone();
            let reason = format!("unknown action `{}`", req.action);
            return deny(d, ReasonCode::UnknownAction, reason);
        };
        let action = &idx.action;
        d.action_risk = Some(action.risk());
        let eff = effective_risk(action.risk(), d.target.sensitivity);
        d.effective_risk = Some(eff);

        // Bind target-located params so the policy judges exactly what an executor will act on.
        let mut params = req.params.clone();
        if let Some(t) = target {
            if !action.target_types().iter().any(|ty| ty == t.target_type()) {
                d.params = params;
                let reason = format!(
                    "action `{}` cannot act on a `{}` target (it acts on {})",
                    action.name(),
                    t.target_type(),
                    action.target_types().join(", ")
                );
                return deny(d, ReasonCode::TargetTypeMismatch, reason);
            }
            let mut mismatches = Vec::new();
            for p in action.params() {
                let Some(attr) = p.target_attr() else {
                    continue;
                };
                let Some(expected) = t.attribute(attr) else {
                    mismatches.push(format!(
                        "param `{}` is bound to attribute `{attr}`, which target `{}` does not have",
                        p.name(),
                        t.id()
                    ));
                    continue;
                };
                match params.get(p.name()) {
                    None => {
                        params.insert(p.name().to_owned(), serde_json::Value::from(expected));
                    }
                    Some(serde_json::Value::String(given)) if given == expected => {}
                    Some(given) => mismatches.push(format!(
                        "param `{}` is `{}` but target `{}` has {attr} `{expected}`",
                        p.name(),
                        display_value(given),
                        t.id()
                    )),
                }
            }
            if !mismatches.is_empty() {
                d.params = params;
                let reason = mismatches.join("; ");
                d.diagnostics = mismatches;
                return deny(d, ReasonCode::ParamTargetMismatch, reason);
            }
        } else if let Some(bound) = bound_param_names(action) {
            // An unknown target has no attributes: bound params would name whatever the
            // caller chose, so only a deny rule may decide here.
            d.params = params;
            let facts = facts(req, None, d.target.sensitivity, eff, now);
            let rule = self.first_match(idx, &req.caller.id, &facts);
            if let Some(rule) = rule.filter(|r| r.verdict == Verdict::Deny) {
                return decided(d, rule);
            }
            let why = match rule {
                Some(r) => format!(
                    "although rule `{}` would decide `{}`",
                    r.id,
                    r.verdict.as_str()
                ),
                None => String::from("(no rule matched)"),
            };
            let reason = format!(
                "target `{}` is not in the inventory, so params {bound} of action `{}` have no target attributes to be bound to; denied {why}",
                req.target,
                action.name()
            );
            return deny(d, ReasonCode::UnknownTarget, reason);
        }
        // Values bound from a known target were checked against their params once, in
        // `Pdp::new`; every other param is checked here.
        let bound_checked =
            target.is_some_and(|t| t.bound_ok.get(idx.pos).copied().unwrap_or(false));
        match action.validate_params_bound(params, bound_checked) {
            Ok(valid) => d.params = valid,
            Err((params, errors)) => {
                d.params = params;
                d.diagnostics = errors.iter().map(ToString::to_string).collect();
                let reason = format!("invalid params: {}", d.diagnostics.join("; "));
                return deny(d, ReasonCode::InvalidParams, reason);
            }
        }

        let facts = facts(req, target, d.target.sensitivity, eff, now);
        match self.first_match(idx, &req.caller.id, &facts) {
            Some(rule) => decided(d, rule),
            None => {
                d.reason = String::from("no policy rule matched; everything not allowed is denied");
                d
            }
        }
    }

    /// Walks the caller-specific and the generic rules of the action in evaluation order.
    fn first_match(&self, idx: &ActionIndex, agent: &str, facts: &Facts<'_>) -> Option<&Rule> {
        let specific: &[u32] = idx.by_agent.get(agent).map_or(&[], Vec::as_slice);
        let (mut a, mut b) = (specific.iter().peekable(), idx.generic.iter().peekable());
        loop {
            let (pos, from_bucket) = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => (a.next()?, true),
                (Some(_), Some(_)) | (None, Some(_)) => (b.next()?, false),
                (Some(_), None) => (a.next()?, true),
                (None, None) => return None,
            };
            let rule = self.policies.rules.get(*pos as usize)?;
            if rule.m.matches(facts, from_bucket) {
                return Some(rule);
            }
        }
    }
}

/// What rules are matched against for `req`.
fn facts<'a>(
    req: &'a Request,
    target: Option<&'a Target>,
    sensitivity: Sensitivity,
    effective_risk: agentsafe_core::Risk,
    now: Timestamp,
) -> Facts<'a> {
    Facts {
        target_id: &req.target,
        target,
        sensitivity,
        caller: &req.caller,
        effective_risk,
        has_ticket: change_ticket(req).is_some(),
        change_ticket: change_ticket(req),
        now,
    }
}

/// The request's change ticket id; an empty or whitespace-only id is no ticket, so it
/// never satisfies `require_ticket` or a `ticket_pattern`.
fn change_ticket(req: &Request) -> Option<&str> {
    req.change_ticket
        .as_deref()
        .filter(|t| !t.trim().is_empty())
}

/// `d` as decided by `rule`.
fn decided(mut d: Decision, rule: &Rule) -> Decision {
    d.decision = rule.verdict;
    d.reason_code = ReasonCode::RuleMatched;
    d.reason = rule.reason.to_string();
    d.rule_id = Some(Arc::clone(&rule.id));
    d.approval = rule.approval.clone();
    d
}

/// The params of `action` bound to target attributes, as a list for messages
/// (`` `namespace`, `name` ``), or `None` when it binds none.
fn bound_param_names(action: &ActionDef) -> Option<String> {
    let names: Vec<String> = action
        .params()
        .iter()
        .filter(|p| p.target_attr().is_some())
        .map(|p| format!("`{}`", p.name()))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Whether `target` can be bound for `action`: its type is one the action acts on, and
/// every attribute the action binds exists and is a valid value for its param.
fn bound_values_valid(action: &ActionDef, target: &Target) -> bool {
    action
        .target_types()
        .iter()
        .any(|t| t == target.target_type())
        && action.params().iter().all(|p| match p.target_attr() {
            None => true,
            Some(attr) => target
                .attribute(attr)
                .is_some_and(|v| p.check_value(&serde_json::Value::from(v)).is_ok()),
        })
}

fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A fresh 128-bit id: 48 bits of Unix milliseconds, then 80 random bits.
fn new_id(now: Timestamp) -> DecisionId {
    let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    DecisionId::from_parts(ms, rand::random::<u128>())
}

fn policy_hash(registry: &Registry, policies: &PolicySet, inventory: &Inventory) -> String {
    let mut h = Sha256::new();
    h.update(b"agentsafe/policy-set/v1\n");
    h.update(registry.content_hash().as_bytes());
    let mut sources: Vec<(&str, &str)> = policies
        .sources
        .iter()
        .map(|(n, t)| (base_name(n), t.as_str()))
        .collect();
    sources.sort_unstable();
    for (name, text) in sources {
        for part in [name, text] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    let targets = serde_json::to_vec(&inventory.targets()).unwrap_or_default();
    h.update(&targets);
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests;
