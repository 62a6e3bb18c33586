//! Policy files (`policies/*.toml`): rules with an id, a priority, match conditions and a decision.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use agentsafe_core::{Caller, Risk, Sensitivity, Timestamp, Verdict};
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Diagnostic, PdpError, Source};
use crate::glob::Glob;
use crate::inventory::Target;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<RuleToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    priority: i64,
    #[serde(rename = "match")]
    matcher: MatchToml,
    decision: Verdict,
    reason: String,
    /// Roles that may approve (require_approval rules only; default `["approver"]`).
    approvers: Option<Spanned<Vec<String>>>,
    /// Distinct approvers needed (require_approval rules only; default 1).
    required_approvals: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchToml {
    actions: Option<Spanned<Vec<String>>>,
    targets: Option<TargetMatchToml>,
    callers: Option<CallerMatchToml>,
    effective_risk: Option<Spanned<Vec<Risk>>>,
    time: Option<TimeToml>,
    require_ticket: Option<bool>,
    ticket_pattern: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetMatchToml {
    ids: Option<Spanned<Vec<String>>>,
    environments: Option<Spanned<Vec<String>>>,
    sensitivities: Option<Spanned<Vec<Sensitivity>>>,
    types: Option<Spanned<Vec<String>>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    known: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerMatchToml {
    agent_ids: Option<Spanned<Vec<String>>>,
    roles: Option<Spanned<Vec<String>>>,
    groups: Option<Spanned<Vec<String>>>,
    delegated_from: Option<Spanned<Vec<String>>>,
    max_delegation_depth: Option<u32>,
    require_delegation: Option<bool>,
    authenticated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeToml {
    #[serde(default)]
    days: Option<Spanned<Vec<String>>>,
    start: Spanned<String>,
    end: Spanned<String>,
    timezone: Spanned<String>,
}

/// A weekly time window in an explicit IANA time zone.
#[derive(Debug, Clone)]
pub(crate) struct TimeWindow {
    /// Bit `n` set: weekday `n` (Monday = 0) is in the window.
    days: u8,
    start: u16,
    end: u16,
    tz: TimeZone,
    text: String,
}

impl PartialEq for TimeWindow {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TimeWindow {
    /// Whether `now` falls in the window. `start` is inclusive, `end` exclusive; when
    /// `end <= start` the window runs past midnight, and `days` names the local day
    /// the current minute falls on.
    fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset();
        if self.days & (1u8 << day) == 0 {
            return false;
        }
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute()))
            .unwrap_or(u16::MAX);
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// One compiled policy rule.
///
/// `#[repr(C)]` keeps the match conditions (and their presence mask) at the start of the
/// rule: evaluation reads only that cache line for conditions a rule does not set.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Rule {
    pub(crate) m: Conditions,
    pub(crate) id: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) priority: i64,
    pub(crate) verdict: Verdict,
    pub(crate) reason: Arc<str>,
    pub(crate) file: String,
    pub(crate) line: usize,
    /// Who must approve, for a require_approval rule.
    pub(crate) approval: Option<Arc<agentsafe_core::ApprovalPolicy>>,
}

/// Bits of [`Conditions::present`]: which conditions a rule sets.
mod has {
    pub(super) const TICKET: u32 = 1;
    pub(super) const RISKS: u32 = 1 << 1;
    pub(super) const KNOWN: u32 = 1 << 2;
    pub(super) const SENSITIVITIES: u32 = 1 << 3;
    pub(super) const TARGET_IDS: u32 = 1 << 4;
    pub(super) const ENVIRONMENTS: u32 = 1 << 5;
    pub(super) const TYPES: u32 = 1 << 6;
    pub(super) const LABELS: u32 = 1 << 7;
    pub(super) const AUTHENTICATED: u32 = 1 << 8;
    pub(super) const DELEGATED: u32 = 1 << 9;
    pub(super) const MAX_DEPTH: u32 = 1 << 10;
    pub(super) const AGENT_IDS: u32 = 1 << 11;
    pub(super) const ROLES: u32 = 1 << 12;
    pub(super) const GROUPS: u32 = 1 << 13;
    pub(super) const DELEGATED_FROM: u32 = 1 << 14;
    pub(super) const TIME: u32 = 1 << 15;
    pub(super) const TICKET_PATTERN: u32 = 1 << 16;
    /// Conditions on the target's own properties, which unknown targets lack.
    pub(super) const TARGET_PROPS: u32 = ENVIRONMENTS | TYPES | LABELS;
    /// Any condition on the target.
    pub(super) const ANY_TARGET: u32 = TARGET_PROPS | KNOWN | SENSITIVITIES | TARGET_IDS;
}

/// The match conditions of a rule; `None` means "any".
///
/// `#[repr(C)]` with the presence mask and the small conditions first: evaluation checks
/// only the conditions a rule sets, without reading (and missing the cache on) the rest.
#[derive(Debug, Clone, Default, PartialEq)]
#[repr(C)]
pub(crate) struct Conditions {
    /// Which conditions are set: bits of `has`, computed by [`Conditions::seal`].
    pub(crate) present: u32,
    pub(crate) known: Option<bool>,
    pub(crate) has_ticket: Option<bool>,
    pub(crate) authenticated: Option<bool>,
    pub(crate) delegated: Option<bool>,
    pub(crate) max_depth: Option<u32>,
    /// Interned by [`crate::Pdp::new`] together with the inventory's: compared by pointer.
    pub(crate) environments: Option<Vec<Arc<str>>>,
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) risks: Option<Vec<Risk>>,
    pub(crate) sensitivities: Option<Vec<Sensitivity>>,
    /// Interned like `environments`.
    pub(crate) types: Option<Vec<Arc<str>>>,
    pub(crate) agent_ids: Option<Vec<Glob>>,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) actions: Option<Vec<Glob>>,
    pub(crate) target_ids: Option<Vec<Glob>>,
    pub(crate) labels: Option<Vec<(String, Glob)>>,
    pub(crate) delegated_from: Option<Vec<Glob>>,
    pub(crate) time: Option<TimeWindow>,
    pub(crate) ticket_pattern: Option<TicketPattern>,
}

/// A change-ticket id pattern, matched against the whole id.
#[derive(Debug, Clone)]
pub(crate) struct TicketPattern {
    source: String,
    regex: regex::Regex,
}

impl PartialEq for TicketPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// What a rule is matched against (everything but the action, which the index handles).
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    pub(crate) target_id: &'a str,
    pub(crate) target: Option<&'a Target>,
    pub(crate) sensitivity: Sensitivity,
    pub(crate) caller: &'a Caller,
    pub(crate) effective_risk: Risk,
    pub(crate) has_ticket: bool,
    pub(crate) change_ticket: Option<&'a str>,
    pub(crate) now: Timestamp,
}

fn any_glob(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.matches(text))
}

impl Conditions {
    /// Whether every given condition holds (the action is checked by the caller).
    ///
    /// `agent_checked`: the rule was found in the caller's agent bucket, so its exact
    /// `agent_ids` already matched.
    pub(crate) fn matches(&self, f: &Facts<'_>, agent_checked: bool) -> bool {
        let on = |bit: u32| self.present & bit != 0;
        (!on(has::TICKET) || self.has_ticket == Some(f.has_ticket))
            && (!on(has::RISKS) || opt_contains(&self.risks, &f.effective_risk))
            && self.matches_target(f.target_id, f.target, f.sensitivity)
            && self.matches_caller(f.caller, agent_checked)
            && (!on(has::TIME) || self.time.as_ref().is_none_or(|w| w.contains(f.now)))
            && (!on(has::TICKET_PATTERN)
                || self
                    .ticket_pattern
                    .as_ref()
                    .is_none_or(|p| f.change_ticket.is_some_and(|t| p.regex.is_match(t))))
    }

    /// Computes `present` from the conditions; every compiled rule is sealed.
    pub(crate) fn seal(mut self) -> Conditions {
        let bits = [
            (self.has_ticket.is_some(), has::TICKET),
            (self.risks.is_some(), has::RISKS),
            (self.known.is_some(), has::KNOWN),
            (self.sensitivities.is_some(), has::SENSITIVITIES),
            (self.target_ids.is_some(), has::TARGET_IDS),
            (self.environments.is_some(), has::ENVIRONMENTS),
            (self.types.is_some(), has::TYPES),
            (self.labels.is_some(), has::LABELS),
            (self.authenticated.is_some(), has::AUTHENTICATED),
            (self.delegated.is_some(), has::DELEGATED),
            (self.max_depth.is_some(), has::MAX_DEPTH),
            (self.agent_ids.is_some(), has::AGENT_IDS),
            (self.roles.is_some(), has::ROLES),
            (self.groups.is_some(), has::GROUPS),
            (self.delegated_from.is_some(), has::DELEGATED_FROM),
            (self.time.is_some(), has::TIME),
            (self.ticket_pattern.is_some(), has::TICKET_PATTERN),
        ];
        self.present = bits
            .iter()
            .filter(|(set, _)| *set)
            .fold(0, |acc, (_, bit)| acc | bit);
        self
    }

    /// Whether a rule has any condition on the target.
    pub(crate) fn has_target_conditions(&self) -> bool {
        self.present & has::ANY_TARGET != 0
    }

    /// The target conditions alone.
    pub(crate) fn matches_target(
        &self,
        target_id: &str,
        target: Option<&Target>,
        sensitivity: Sensitivity,
    ) -> bool {
        let on = |bit: u32| self.present & bit != 0;
        if on(has::KNOWN) && self.known != Some(target.is_some())
            || on(has::SENSITIVITIES) && !opt_contains(&self.sensitivities, &sensitivity)
            || on(has::TARGET_IDS)
                && !self
                    .target_ids
                    .as_ref()
                    .is_none_or(|ids| any_glob(ids, target_id))
        {
            return false;
        }
        if !on(has::TARGET_PROPS) {
            return true;
        }
        // Unknown targets have no environment, type or labels: such conditions never hold.
        let Some(t) = target else { return false };
        // Both sides were interned by `Pdp::new`: equal strings are the same allocation,
        // so comparing pointers never reads the (often cold) string bytes.
        let env_ok = || {
            self.environments.as_ref().is_none_or(|envs| {
                envs.iter()
                    .any(|e| Arc::ptr_eq(e, t.environment_interned()))
            })
        };
        let type_ok = || {
            self.types
                .as_ref()
                .is_none_or(|types| types.iter().any(|e| Arc::ptr_eq(e, t.type_interned())))
        };
        let labels_ok = || {
            self.labels.as_ref().is_none_or(|labels| {
                labels
                    .iter()
                    .all(|(k, g)| t.labels().get(k).is_some_and(|v| g.matches(v)))
            })
        };
        (!on(has::ENVIRONMENTS) || env_ok())
            && (!on(has::TYPES) || type_ok())
            && (!on(has::LABELS) || labels_ok())
    }

    fn matches_caller(&self, c: &Caller, agent_checked: bool) -> bool {
        let on = |bit: u32| self.present & bit != 0;
        (!on(has::AUTHENTICATED) || self.authenticated == Some(c.authenticated))
            && (!on(has::DELEGATED) || self.delegated == Some(c.depth() > 0))
            && (!on(has::MAX_DEPTH) || self.max_depth.is_none_or(|m| c.depth() <= m as usize))
            && (!on(has::AGENT_IDS)
                || agent_checked
                || self
                    .agent_ids
                    .as_ref()
                    .is_none_or(|ids| any_glob(ids, &c.id)))
            && (!on(has::ROLES)
                || self
                    .roles
                    .as_ref()
                    .is_none_or(|roles| roles.iter().any(|r| c.roles.contains(r))))
            && (!on(has::GROUPS)
                || self
                    .groups
                    .as_ref()
                    .is_none_or(|groups| groups.iter().any(|g| c.groups.contains(g))))
            && (!on(has::DELEGATED_FROM)
                || self
                    .delegated_from
                    .as_ref()
                    .is_none_or(|from| c.delegation_chain.iter().any(|a| any_glob(from, a))))
    }
}

/// `None` (no condition) or a list containing `value`.
fn opt_contains<T: PartialEq>(list: &Option<Vec<T>>, value: &T) -> bool {
    list.as_ref().is_none_or(|l| l.contains(value))
}

impl Rule {
    /// The rule id, unique across all policy files.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The rule's description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Higher priorities are evaluated first.
    pub fn priority(&self) -> i64 {
        self.priority
    }
    /// What the rule decides when it matches.
    pub fn decision(&self) -> Verdict {
        self.verdict
    }
    /// The human-readable reason given with the decision.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// Who must approve, for a require_approval rule.
    pub fn approval(&self) -> Option<&agentsafe_core::ApprovalPolicy> {
        self.approval.as_deref()
    }
    /// The file the rule came from.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The line of the rule's `id` key.
    pub fn line(&self) -> usize {
        self.line
    }
    /// Whether the rule names this action (or has no action condition).
    pub fn matches_action(&self, action: &str) -> bool {
        self.m.actions.as_ref().is_none_or(|a| any_glob(a, action))
    }
    /// Evaluation order: higher priority first; within a priority the most
    /// restrictive first; then by id, so file and rule order never matter.
    pub(crate) fn order_key(
        &self,
    ) -> (std::cmp::Reverse<i64>, std::cmp::Reverse<Verdict>, Arc<str>) {
        (
            std::cmp::Reverse(self.priority),
            std::cmp::Reverse(self.verdict),
            Arc::clone(&self.id),
        )
    }
}

/// All rules of all policy files, in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) sources: Vec<(String, String)>,
}

impl PolicySet {
    /// Replaces the environment and type names of every rule by the interned ones, so
    /// they compare by pointer with the inventory's. Names no target has stay distinct
    /// allocations, which correctly never compare equal.
    pub(crate) fn intern(&mut self, interner: &mut crate::inventory::Interner) {
        for rule in &mut self.rules {
            for list in [&mut rule.m.environments, &mut rule.m.types]
                .into_iter()
                .flatten()
            {
                for name in list.iter_mut() {
                    *name = interner.get(name);
                }
            }
        }
    }

    /// Reads every `*.toml` file directly in `dir` (sorted by name).
    ///
    /// # Errors
    /// When the folder or a file cannot be read, or any rule is invalid; every problem is listed.
    pub fn load(dir: &Path) -> Result<PolicySet, PdpError> {
        let sources = read_toml_dir(dir)?;
        PolicySet::from_sources(&sources)
    }

    /// Parses policies from `(file name, text)` pairs.
    ///
    /// # Errors
    /// When any rule is invalid; every problem in every file is listed.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<PolicySet, PdpError> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut ids: HashMap<String, (String, usize)> = HashMap::new();
        for (name, text) in sources {
            let src = Source::new(name.as_ref(), text.as_ref());
            let parsed: PolicyFile = match toml::from_str(src.text) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(src.toml_problem(&e));
                    continue;
                }
            };
            for (i, r) in parsed.rules.into_iter().enumerate() {
                let line = src.line_col(r.id.span().start).0;
                let id = r.id.get_ref().clone();
                if id.is_empty() {
                    problems.push(src.problem(
                        Some(r.id.span()),
                        format!("rules[{i}].id"),
                        "rule id must not be empty",
                    ));
                }
                if let Some((file, first_line)) = ids.get(&id) {
                    problems.push(src.problem(
                        Some(r.id.span()),
                        format!("rules[{i}].id"),
                        format!("duplicate rule id `{id}` (first defined at {file}:{first_line})"),
                    ));
                    continue;
                }
                ids.insert(id.clone(), (src.file.to_owned(), line));
                let approval =
                    match approval_policy(&src, i, r.decision, r.approvers, r.required_approvals) {
                        Ok(a) => a,
                        Err(mut e) => {
                            problems.append(&mut e);
                            continue;
                        }
                    };
                match compile(&src, i, r.matcher) {
                    Ok(m) => rules.push(Rule {
                        approval,
                        id: Arc::from(id.as_str()),
                        description: r.description,
                        priority: r.priority,
                        verdict: r.decision,
                        reason: Arc::from(r.reason.as_str()),
                        file: src.file.to_owned(),
                        line,
                        m,
                    }),
                    Err(mut p) => problems.append(&mut p),
                }
            }
        }
        if !problems.is_empty() {
            return Err(PdpError::Invalid(problems));
        }
        rules.sort_by_key(Rule::order_key);
        Ok(PolicySet {
            rules,
            sources: sources
                .iter()
                .map(|(n, t)| (n.as_ref().to_owned(), t.as_ref().to_owned()))
                .collect(),
        })
    }

    /// Every rule in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Reads every `*.toml` file directly in `dir`, sorted by file name.
pub(crate) fn read_toml_dir(dir: &Path) -> Result<Vec<(String, String)>, PdpError> {
    let io = |source| PdpError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(&p)
                .map(|t| (p.display().to_string(), t))
                .map_err(|source| PdpError::Io { path: p, source })
        })
        .collect()
}

/// The approvers of a require_approval rule; `approvers` and `required_approvals` on any
/// other rule are errors rather than silently ignored.
fn approval_policy(
    src: &Source<'_>,
    i: usize,
    decision: Verdict,
    approvers: Option<Spanned<Vec<String>>>,
    required: Option<Spanned<u32>>,
) -> Result<Option<Arc<agentsafe_core::ApprovalPolicy>>, Vec<Diagnostic>> {
    let mut p = Vec::new();
    if decision != Verdict::RequireApproval {
        for (given, key) in [
            (approvers.as_ref().map(Spanned::span), "approvers"),
            (required.as_ref().map(Spanned::span), "required_approvals"),
        ] {
            if let Some(span) = given {
                p.push(src.problem(
                    Some(span),
                    format!("rules[{i}].{key}"),
                    format!("`{key}` only applies to rules whose decision is `require_approval`"),
                ));
            }
        }
        return if p.is_empty() { Ok(None) } else { Err(p) };
    }
    let roles = match approvers {
        Some(list) if list.get_ref().is_empty() || list.get_ref().iter().any(String::is_empty) => {
            p.push(src.problem(
                Some(list.span()),
                format!("rules[{i}].approvers"),
                "approvers must name at least one role, none of them empty",
            ));
            Vec::new()
        }
        Some(list) => list.into_inner(),
        None => vec![String::from("approver")],
    };
    let count = match required {
        Some(n) if *n.get_ref() == 0 => {
            p.push(src.problem(
                Some(n.span()),
                format!("rules[{i}].required_approvals"),
                "`required_approvals` must be at least 1",
            ));
            1
        }
        Some(n) => *n.get_ref(),
        None => 1,
    };
    if p.is_empty() {
        Ok(Some(Arc::new(agentsafe_core::ApprovalPolicy {
            approvers: roles,
            required: count,
        })))
    } else {
        Err(p)
    }
}

fn non_empty<T>(
    src: &Source<'_>,
    problems: &mut Vec<Diagnostic>,
    key: String,
    list: Option<Spanned<Vec<T>>>,
) -> Option<Vec<T>> {
    let list = list?;
    if list.get_ref().is_empty() {
        problems.push(src.problem(
            Some(list.span()),
            key,
            "an empty list matches nothing; remove the key to match anything",
        ));
        return None;
    }
    Some(list.into_inner())
}

fn arcs(v: Option<Vec<String>>) -> Option<Vec<Arc<str>>> {
    v.map(|v| v.into_iter().map(Arc::from).collect())
}

fn globs(v: Option<Vec<String>>) -> Option<Vec<Glob>> {
    v.map(|v| v.iter().map(|s| Glob::new(s)).collect())
}

fn compile(src: &Source<'_>, i: usize, m: MatchToml) -> Result<Conditions, Vec<Diagnostic>> {
    let mut p = Vec::new();
    let k = |s: &str| format!("rules[{i}].match.{s}");
    let t = m.targets.unwrap_or_default();
    let c = m.callers.unwrap_or_default();
    let mut cond = Conditions {
        present: 0,
        actions: globs(non_empty(src, &mut p, k("actions"), m.actions)),
        target_ids: globs(non_empty(src, &mut p, k("targets.ids"), t.ids)),
        environments: arcs(non_empty(
            src,
            &mut p,
            k("targets.environments"),
            t.environments,
        )),
        sensitivities: non_empty(src, &mut p, k("targets.sensitivities"), t.sensitivities),
        types: arcs(non_empty(src, &mut p, k("targets.types"), t.types)),
        labels: None,
        known: t.known,
        agent_ids: globs(non_empty(src, &mut p, k("callers.agent_ids"), c.agent_ids)),
        roles: non_empty(src, &mut p, k("callers.roles"), c.roles),
        groups: non_empty(src, &mut p, k("callers.groups"), c.groups),
        delegated_from: globs(non_empty(
            src,
            &mut p,
            k("callers.delegated_from"),
            c.delegated_from,
        )),
        max_depth: c.max_delegation_depth,
        delegated: c.require_delegation,
        authenticated: c.authenticated,
        risks: non_empty(src, &mut p, k("effective_risk"), m.effective_risk),
        time: None,
        ticket_pattern: None,
        has_ticket: m.require_ticket,
    };
    if let Some(labels) = t.labels {
        if labels.get_ref().is_empty() {
            p.push(src.problem(
                Some(labels.span()),
                k("targets.labels"),
                "an empty label table matches anything; remove it",
            ));
        }
        cond.labels = Some(
            labels
                .into_inner()
                .into_iter()
                .map(|(k, v)| (k, Glob::new(&v)))
                .collect(),
        );
    }
    if cond.known == Some(false)
        && (cond.environments.is_some() || cond.types.is_some() || cond.labels.is_some())
    {
        p.push(src.problem(
            None,
            k("targets.known"),
            "`known = false` with environments, types or labels can never match: unknown targets have none",
        ));
    }
    if let Some(pattern) = m.ticket_pattern {
        let source = pattern.get_ref().clone();
        match regex::Regex::new(&format!("^(?:{source})$")) {
            Ok(regex) => cond.ticket_pattern = Some(TicketPattern { source, regex }),
            Err(e) => p.push(src.problem(
                Some(pattern.span()),
                k("ticket_pattern"),
                format!(
                    "invalid regex `{source}`: {}",
                    e.to_string().lines().last().unwrap_or_default().trim_start_matches("error: ")
                ),
            )),
        }
        if cond.has_ticket == Some(false) {
            p.push(src.problem(
                Some(pattern.span()),
                k("ticket_pattern"),
                "`ticket_pattern` with `require_ticket = false` can never match",
            ));
        }
    }
    if let Some(w) = m.time {
        match time_window(src, &k("time"), w) {
            Ok(w) => cond.time = Some(w),
            Err(mut e) => p.append(&mut e),
        }
    }
    if p.is_empty() {
        Ok(cond.seal())
    } else {
        Err(p)
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    // "24:00" is allowed as an end-of-day marker.
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn time_window(src: &Source<'_>, key: &str, w: TimeToml) -> Result<TimeWindow, Vec<Diagnostic>> {
    let mut p = Vec::new();
    let tz = match TimeZone::get(w.timezone.get_ref()) {
        Ok(tz) => Some(tz),
        Err(_) => {
            p.push(src.problem(
                Some(w.timezone.span()),
                format!("{key}.timezone"),
                format!("unknown IANA time zone `{}`", w.timezone.get_ref()),
            ));
            None
        }
    };
    let mut bound = |s: &Spanned<String>, name: &str| {
        let v = parse_hhmm(s.get_ref());
        if v.is_none() {
            p.push(src.problem(
                Some(s.span()),
                format!("{key}.{name}"),
                format!(
                    "invalid time `{}`, expected HH:MM (00:00 to 24:00)",
                    s.get_ref()
                ),
            ));
        }
        v
    };
    let start = bound(&w.start, "start");
    let end = bound(&w.end, "end");
    let mut days = 0u8;
    match &w.days {
        None => days = 0x7f,
        Some(list) if list.get_ref().is_empty() => p.push(src.problem(
            Some(list.span()),
            format!("{key}.days"),
            "an empty list matches nothing; remove the key to match every day",
        )),
        Some(list) => {
            for d in list.get_ref() {
                let bit = match d.to_ascii_lowercase().as_str() {
                    "mon" | "monday" => Some(Weekday::Monday),
                    "tue" | "tuesday" => Some(Weekday::Tuesday),
                    "wed" | "wednesday" => Some(Weekday::Wednesday),
                    "thu" | "thursday" => Some(Weekday::Thursday),
                    "fri" | "friday" => Some(Weekday::Friday),
                    "sat" | "saturday" => Some(Weekday::Saturday),
                    "sun" | "sunday" => Some(Weekday::Sunday),
                    _ => None,
                };
                match bit {
                    Some(day) => days |= 1 << day.to_monday_zero_offset(),
                    None => p.push(src.problem(
                        Some(list.span()),
                        format!("{key}.days"),
                        format!("unknown day `{d}`, expected mon, tue, wed, thu, fri, sat or sun"),
                    )),
                }
            }
        }
    }
    if start.is_some() && start == end {
        p.push(src.problem(
            Some(w.end.span()),
            format!("{key}.end"),
            "an empty window (start equals end) matches nothing",
        ));
    }
    match (tz, start, end, p.is_empty()) {
        (Some(tz), Some(start), Some(end), true) => Ok(TimeWindow {
            days,
            start,
            end,
            text: format!("{:07b} {start}-{end} {}", days, w.timezone.get_ref()),
            tz,
        }),
        _ => Err(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<PolicySet, String> {
        PolicySet::from_sources(&[("p.toml", text)]).map_err(|e| e.to_string())
    }

    #[test]
    fn typo_in_a_match_key_is_an_error_not_a_wider_rule() {
        let e = load(
            "[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\nmatch.callers.role = [\"sre\"]\n",
        )
        .unwrap_err();
        assert!(e.starts_with("p.toml:6:"), "{e}");
        assert!(e.contains("unknown field `role`"), "{e}");
    }

    #[test]
    fn missing_match_is_an_error() {
        let e = load("[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\n")
            .unwrap_err();
        assert!(e.contains("missing field `match`"), "{e}");
    }

    #[test]
    fn duplicate_ids_across_files() {
        let r = "[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"deny\"\nreason = \"r\"\nmatch = {}\n";
        let e = PolicySet::from_sources(&[("one.toml", r), ("two.toml", r)])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "two.toml:2:6: rules[0].id: duplicate rule id `a` (first defined at one.toml:2)"
        );
    }

    #[test]
    fn bad_time_window_parts_are_all_reported() {
        let e = load(
            "[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"deny\"\nreason = \"r\"\nmatch.time = { days = [\"funday\"], start = \"25:00\", end = \"9\", timezone = \"Mars/Olympus\" }\n",
        )
        .unwrap_err();
        for needle in [
            "unknown IANA time zone `Mars/Olympus`",
            "invalid time `25:00`",
            "invalid time `9`",
            "unknown day `funday`",
        ] {
            assert!(e.contains(needle), "{needle} in {e}");
        }
        assert!(e.contains("rules[0].match.time.timezone"), "{e}");
    }

    #[test]
    fn empty_lists_are_errors() {
        let e = load("[[rules]]\nid = \"a\"\npriority = 1\ndecision = \"allow\"\nreason = \"r\"\nmatch.callers.roles = []\n").unwrap_err();
        assert!(
            e.contains("rules[0].match.callers.roles: an empty list matches nothing"),
            "{e}"
        );
    }

    #[test]
    fn window_wraps_midnight() {
        let w = TimeWindow {
            days: 0x7f,
            start: 22 * 60,
            end: 6 * 60,
            tz: TimeZone::UTC,
            text: String::new(),
        };
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(w.contains(at("2026-01-05T23:00:00Z")));
        assert!(w.contains(at("2026-01-05T05:59:00Z")));
        assert!(!w.contains(at("2026-01-05T06:00:00Z")));
        assert!(!w.contains(at("2026-01-05T12:00:00Z")));
    }

    #[test]
    fn window_uses_its_time_zone() {
        let w = TimeWindow {
            days: 1, // Monday only
            start: 9 * 60,
            end: 17 * 60,
            tz: TimeZone::get("Asia/Tokyo").unwrap(),
            text: String::new(),
        };
        // 2026-01-05 is a Monday; 01:00 UTC is 10:00 in Tokyo.
        assert!(w.contains("2026-01-05T01:00:00Z".parse().unwrap()));
        // 10:00 UTC Monday is 19:00 in Tokyo: outside.
        assert!(!w.contains("2026-01-05T10:00:00Z".parse().unwrap()));
    }
}
