//! Static checks behind `agentsafe validate`: rules that can never fire, rules that
//! match no action in the registry and rules that match no target in the inventory.

use std::fmt;

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
    /// Finds rules that never fire, match no registry action, or match no inventory target.
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
}
