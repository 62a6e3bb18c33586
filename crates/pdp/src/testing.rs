//! Policy tests (`agentsafe test PATH`): TOML cases with an expected decision, run against a [`Pdp`].
//!
//! ```toml
//! [[case]]
//! name = "an SRE may scale staging"
//! action = "scale-deployment"
//! target = "staging/web"
//! caller = { id = "agent-7", roles = ["sre"], delegation_chain = ["orchestrator"], authenticated = true }
//! params = { replicas = 3 }
//! time = "2026-11-23T10:00:00Z"   # optional: when the decision is evaluated (default: now)
//! ticket_id = "CHG-1234"          # optional change ticket
//! expect = "allow"                # allow | deny | require_approval
//! expect_rule = "sre-scale-staging"   # optional
//! expect_reason = "rule_matched"      # optional
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use agentsafe_core::{Caller, Decision, Params, ReasonCode, Request, Timestamp, Verdict};
use serde::Deserialize;
use toml::Spanned;

use crate::Pdp;
use crate::error::{PdpError, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<CaseToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseToml {
    name: Spanned<String>,
    action: String,
    target: String,
    /// A test case states a hypothetical caller, `authenticated` included.
    #[serde(deserialize_with = "agentsafe_core::caller::trusted")]
    caller: Caller,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    time: Option<Spanned<String>>,
    #[serde(default)]
    ticket_id: Option<String>,
    expect: Verdict,
    #[serde(default)]
    expect_rule: Option<String>,
    #[serde(default)]
    expect_reason: Option<ReasonCode>,
}

/// One policy test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The case name.
    pub name: String,
    /// Where it was defined (`file:line`).
    pub location: String,
    /// The request it makes.
    pub request: Request,
    /// When it is evaluated (`None`: now).
    pub time: Option<Timestamp>,
    /// The expected decision.
    pub expect: Verdict,
    /// The rule expected to decide, if given.
    pub expect_rule: Option<String>,
    /// The reason code expected, if given.
    pub expect_reason: Option<ReasonCode>,
}

/// The outcome of one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Where it was defined.
    pub location: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// What differed.
    pub failures: Vec<String>,
    /// The decision it got.
    pub decision: Decision,
}

/// The outcome of a test run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    /// One result per case, in order.
    pub results: Vec<CaseResult>,
    /// Rules that decided no case.
    pub uncovered_rules: Vec<String>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
    /// A run succeeds when at least one case ran and none failed.
    pub fn success(&self) -> bool {
        !self.results.is_empty() && self.failed() == 0
    }
}

/// Reads cases from a file, or from every `*.toml` file in a folder (recursively, sorted).
///
/// # Errors
/// When a file cannot be read or is invalid; every problem is listed.
pub fn load_cases(path: &Path) -> Result<Vec<TestCase>, PdpError> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    files.sort();
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| PdpError::Io {
            path: file.clone(),
            source,
        })?;
        match parse_cases(&file.display().to_string(), &text) {
            Ok(mut c) => cases.append(&mut c),
            Err(PdpError::Invalid(mut p)) => problems.append(&mut p),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(PdpError::Invalid(problems))
    }
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), PdpError> {
    let io = |source| PdpError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if p.is_dir() || p.extension().is_some_and(|e| e == "toml") {
                collect(&p, out)?;
            }
        }
        Ok(())
    } else {
        std::fs::metadata(path).map_err(io)?;
        out.push(path.to_path_buf());
        Ok(())
    }
}

/// Parses the cases of one file.
///
/// # Errors
/// When the text is invalid; every problem is listed.
pub fn parse_cases(file: &str, text: &str) -> Result<Vec<TestCase>, PdpError> {
    let src = Source::new(file, text);
    let parsed: CaseFile =
        toml::from_str(text).map_err(|e| PdpError::Invalid(vec![src.toml_problem(&e)]))?;
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for (i, c) in parsed.case.into_iter().enumerate() {
        let time = match &c.time {
            None => None,
            Some(t) => match t.get_ref().parse::<Timestamp>() {
                Ok(ts) => Some(ts),
                Err(_) => {
                    problems.push(src.problem(
                        Some(t.span()),
                        format!("case[{i}].time"),
                        format!(
                            "invalid time `{}`, expected RFC 3339 such as 2026-11-23T10:00:00Z",
                            t.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let line = src.line_col(c.name.span().start).0;
        cases.push(TestCase {
            name: c.name.into_inner(),
            location: format!("{file}:{line}"),
            request: Request {
                action: c.action,
                target: c.target,
                caller: c.caller,
                params: c.params,
                change_ticket: c.ticket_id,
                correlation_id: None,
                trace_id: None,
            },
            time,
            expect: c.expect,
            expect_rule: c.expect_rule,
            expect_reason: c.expect_reason,
        });
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(PdpError::Invalid(problems))
    }
}

/// Runs every case and reports which rules no case exercised.
pub fn run(pdp: &Pdp, cases: &[TestCase]) -> TestReport {
    let mut covered = BTreeSet::new();
    let results = cases
        .iter()
        .map(|c| {
            let decision = match c.time {
                Some(t) => pdp.decide_at(&c.request, t),
                None => pdp.decide(&c.request),
            };
            if let Some(rule) = &decision.rule_id {
                covered.insert(rule.to_string());
            }
            let mut failures = Vec::new();
            if decision.decision != c.expect {
                failures.push(format!(
                    "expected {}, got {} ({}: {})",
                    c.expect.label(),
                    decision.decision.label(),
                    decision.reason_code,
                    decision.reason
                ));
            }
            if let Some(rule) = &c.expect_rule
                && decision.rule_id.as_deref() != Some(rule.as_str())
            {
                {
                    failures.push(format!(
                        "expected rule `{rule}`, got {}",
                        decision
                            .rule_id
                            .as_deref()
                            .map_or_else(|| String::from("no rule"), |r| format!("`{r}`"))
                    ));
                }
            }
            if let Some(code) = c.expect_reason
                && decision.reason_code != code
            {
                failures.push(format!(
                    "expected reason code `{code}`, got `{}`",
                    decision.reason_code
                ));
            }
            CaseResult {
                name: c.name.clone(),
                location: c.location.clone(),
                passed: failures.is_empty(),
                failures,
                decision,
            }
        })
        .collect();
    let uncovered_rules = pdp
        .policies()
        .rules()
        .iter()
        .map(|r| r.id().to_owned())
        .filter(|id| !covered.contains(id))
        .collect();
    TestReport {
        results,
        uncovered_rules,
    }
}
