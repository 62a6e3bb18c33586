//! Static checks behind `agentsafe validate`: rules that can never fire, rules that
//! match no action in the registry, rules that match no target in the inventory and
//! allow or require_approval rules that match unknown targets for actions with
//! target-bound params (which the decision point denies `unknown_target`).

use std::fmt;

use agentsafe_core::{Sensitivity, Verdict, effective_risk};

use crate::Pdp;
use crate::glob::Glob;
use crate::policy::{Conditions, Rule};

/// What kind of problem a warning reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// An earlier rule matches everything this one matches, so this one never decides.
    Shadowed,
    /// No action in the registry matches the rule's `actions`.
    NoAction,
    /// No target in the inventory satisfies the rule's target conditions.
    NoTarget,
    /// An allow or require_approval rule matches unknown targets for actions whose params
    /// are bound to target attributes: there the decision point denies `unknown_target`.
    UnknownTargetBinding,
}

/// A rule that is probably not doing what its author meant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The kind of problem.
    pub kind: WarningKind,
    /// The rule concerned.
    pub rule_id: String,
    /// The file and line of the rule.
    pub file: String,
    /// 1-based line of the rule's `id`.
    pub line: usize,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule `{}`: {}",
            self.file, self.line, self.rule_id, self.message
        )
    }
}

fn covers_list<T: PartialEq>(h: &Option<Vec<T>>, r: &Option<Vec<T>>) -> bool {
    match (h, r) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(h), Some(r)) => r.iter().all(|x| h.contains(x)),
    }
}

fn covers_globs(h: &Option<Vec<Glob>>, r: &Option<Vec<Glob>>) -> bool {
    match (h, r) {
        (None, _) => true,
        (Some(h), _) if h.contains(&Glob::Any) => true,
        (Some(_), None) => false,
        (Some(h), Some(r)) => r.iter().all(|x| {
            h.contains(x)
                || x.exact()
                    .is_some_and(|text| h.iter().any(|g| g.matches(text)))
        }),
    }
}

fn covers_flag<T: PartialEq>(h: &Option<T>, r: &Option<T>) -> bool {
    h.is_none() || h == r
}

/// Whether every request matched by `r` is also matched by `h` (the action aside).
/// Conservative: `false` whenever it cannot tell.
fn covers(h: &Conditions, r: &Conditions) -> bool {
    let labels = match (&h.labels, &r.labels) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(hl), Some(rl)) => hl.iter().all(|x| rl.contains(x)),
    };
    let depth = match (h.max_depth, r.max_depth) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(hd), Some(rd)) => rd <= hd,
    };
    labels
        && depth
        && covers_globs(&h.target_ids, &r.target_ids)
        && covers_list(&h.environments, &r.environments)
        && covers_list(&h.sensitivities, &r.sensitivities)
        && covers_list(&h.types, &r.types)
        && covers_flag(&h.known, &r.known)
        && covers_globs(&h.agent_ids, &r.agent_ids)
        && covers_list(&h.roles, &r.roles)
        && covers_list(&h.groups, &r.groups)
        && covers_globs(&h.delegated_from, &r.delegated_from)
        && covers_flag(&h.delegated, &r.delegated)
        && covers_flag(&h.authenticated, &r.authenticated)
        && covers_list(&h.risks, &r.risks)
        && covers_flag(&h.time, &r.time)
        && covers_flag(&h.has_ticket, &r.has_ticket)
        && covers_flag(&h.ticket_pattern, &r.ticket_pattern)
}

impl Pdp {
    /// Finds rules that never fire, match no registry action, match no inventory target,
    /// or would allow (or send for approval) actions with target-bound params on unknown
    /// targets.
    pub fn lint(&self) -> Vec<Warning> {
        let actions: Vec<&str> = self.registry().actions().map(|a| a.name()).collect();
        let rules = self.policies().rules();
        let action_sets: Vec<Vec<bool>> = rules
            .iter()
            .map(|r| actions.iter().map(|a| r.matches_action(a)).collect())
            .collect();
        let warn = |rule: &Rule, kind, message: String| Warning {
            kind,
            rule_id: rule.id().to_owned(),
            file: rule.file().to_owned(),
            line: rule.line(),
            message,
        };
        let mut out = Vec::new();
        for (j, rule) in rules.iter().enumerate() {
            let Some(mine) = action_sets.get(j) else {
                continue;
            };
            if !mine.iter().any(|m| *m) {
                out.push(warn(
                    rule,
                    WarningKind::NoAction,
                    String::from("matches no action in the registry"),
                ));
                continue;
            }
            if rule.m.has_target_conditions() && rule.m.known != Some(false) {
                let any = self
                    .inventory()
                    .targets()
                    .into_iter()
                    .any(|t| rule.m.matches_target(t.id(), Some(t), t.sensitivity()));
                if !any {
                    out.push(warn(
                        rule,
                        WarningKind::NoTarget,
                        String::from("matches no target in the inventory"),
                    ));
                }
            }
            let shadow = rules.iter().zip(&action_sets).take(j).find(|(h, hs)| {
                mine.iter().zip(hs.iter()).all(|(m, hm)| !m || *hm) && covers(&h.m, &rule.m)
            });
            if shadow.is_none() {
                let unbound = self.unknown_target_bindings(rules, j, rule);
                if !unbound.is_empty() {
                    out.push(warn(
                        rule,
                        WarningKind::UnknownTargetBinding,
                        format!(
                            "matches unknown targets for actions whose params are bound to target attributes ({}): there it is denied `unknown_target`, never `{}`",
                            name_list(&unbound),
                            rule.decision().as_str()
                        ),
                    ));
                }
            }
            if let Some((h, _)) = shadow {
                out.push(warn(
                    rule,
                    WarningKind::Shadowed,
                    format!(
                        "can never fire: rule `{}` ({}:{}, priority {}, {}) matches everything it matches and is evaluated first",
                        h.id(),
                        h.file(),
                        h.line(),
                        h.priority(),
                        h.decision().as_str()
                    ),
                ));
            }
        }
        out
    }
    /// The actions with target-bound params on which `rule` (the `j`-th, an allow or
    /// require_approval rule) would decide for an unknown target, had the decision point
    /// not denied `unknown_target` there; actions for which an earlier deny rule already
    /// decides every such request are left out.
    fn unknown_target_bindings<'a>(
        &'a self,
        rules: &[Rule],
        j: usize,
        rule: &Rule,
    ) -> Vec<&'a str> {
        let m = &rule.m;
        let could_be_unknown = rule.decision() != Verdict::Deny
            && m.known != Some(true)
            && m.environments.is_none()
            && m.types.is_none()
            && m.labels.is_none()
            && m.sensitivities
                .as_ref()
                .is_none_or(|s| s.contains(&Sensitivity::Critical))
            && m.target_ids.as_ref().is_none_or(|ids| {
                ids.iter().any(|g| {
                    g.exact()
                        .is_none_or(|id| self.inventory().get(id).is_none())
                })
            });
        if !could_be_unknown {
            return Vec::new();
        }
        // The requests of `rule` that reach an unknown target: always critical.
        let mut unknown = m.clone();
        unknown.known = Some(false);
        unknown.sensitivities = Some(vec![Sensitivity::Critical]);
        let unknown = unknown.seal();
        self.registry()
            .actions()
            .filter(|a| {
                rule.matches_action(a.name())
                    && a.params().iter().any(|p| p.target_attr().is_some())
                    && m.risks.as_ref().is_none_or(|r| {
                        r.contains(&effective_risk(a.risk(), Sensitivity::Critical))
                    })
                    && !rules.iter().take(j).any(|h| {
                        h.decision() == Verdict::Deny
                            && h.matches_action(a.name())
                            && covers(&h.m, &unknown)
                    })
            })
            .map(|a| a.name())
            .collect()
    }
}

/// `` `a`, `b`, `c` `` for a few names, `` `a`, ... `e` and 7 more `` for many.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
