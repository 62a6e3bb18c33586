//! `agentsafe check` and `agentsafe plan`: ask for decisions.

use std::path::PathBuf;
use std::process::ExitCode;

use agentsafe_core::{Caller, Decision, Params, Request, Verdict};
use anyhow::Context as _;
use serde::Deserialize;

use crate::context::Context;
use crate::exit;
use agentsafe_gate::{Claimed, Outcome};

/// Who is asking, from flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CallerArgs {
    /// The caller's identity token (`agentsafe token issue`); `-` reads it from stdin.
    #[arg(long, env = "AGENTSAFE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A plain, unauthenticated agent id: accepted only with `[identity] allow_unauthenticated = true`.
    #[arg(long)]
    pub caller: Option<String>,
    /// A role of the caller (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A group of the caller (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
}

/// Arguments of `agentsafe check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The action name, such as `scale-deployment`.
    pub action: String,
    /// The target id from the inventory.
    #[arg(long)]
    pub target: String,
    #[command(flatten)]
    pub who: CallerArgs,
    /// Params as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// An external change-ticket id.
    #[arg(long = "ticket-id", value_name = "ID")]
    pub ticket_id: Option<String>,
    /// A correlation id to record with the decision.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// The W3C trace id of the caller's trace (32 lowercase hex digits), or a whole
    /// `traceparent` header: recorded with the decision.
    #[arg(long, value_parser = parse_trace_id)]
    pub trace_id: Option<String>,
}

/// Accepts a W3C trace id or a `traceparent` (`00-<trace id>-<parent id>-<flags>`).
fn parse_trace_id(s: &str) -> Result<String, String> {
    let id = match s.split('-').collect::<Vec<_>>().as_slice() {
        [_, trace, _, _] => *trace,
        _ => s,
    };
    let hex = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex || id.bytes().all(|b| b == b'0') {
        return Err(format!(
            "`{s}` is not a W3C trace id (32 lowercase hex digits, not all zero) or traceparent"
        ));
    }
    Ok(id.to_owned())
}

/// Arguments of `agentsafe plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A plan file (TOML, or JSON when it ends in `.json`).
    pub file: PathBuf,
    #[command(flatten)]
    pub who: CallerArgs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    caller: Option<Caller>,
    #[serde(default)]
    steps: Vec<PlanStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanStep {
    action: String,
    target: String,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    ticket_id: Option<String>,
}

pub(crate) fn claimed(who: &CallerArgs, plain: Option<Caller>) -> anyhow::Result<Claimed> {
    let token = match &who.token {
        Some(t) => Some(crate::cmd::token::read_token(t)?),
        None => None,
    };
    if token.is_none() && plain.is_none() {
        anyhow::bail!(
            "who is asking? pass --token TOKEN (or AGENTSAFE_TOKEN), or --caller ID where plain ids are allowed"
        );
    }
    Ok(Claimed { token, plain })
}

pub(crate) fn caller_from(who: &CallerArgs) -> Option<Caller> {
    who.caller.as_ref().map(|id| Caller {
        id: id.clone(),
        roles: who.roles.clone(),
        groups: who.groups.clone(),
        delegation_chain: Vec::new(),
        authenticated: false,
    })
}

/// Parses `--params`: a JSON object, with an error that says where it broke.
pub(crate) fn parse_params(text: Option<&str>) -> anyhow::Result<Params> {
    let Some(text) = text else {
        return Ok(Params::new());
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "--params: invalid JSON at line {}, column {}: {e}",
            e.line().max(1),
            e.column().max(1)
        )
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => anyhow::bail!("--params: expected a JSON object, got `{other}`"),
    }
}

/// The exit code for a verdict.
pub fn verdict_code(v: Verdict) -> ExitCode {
    ExitCode::from(match v {
        Verdict::Allow => exit::ALLOW,
        Verdict::Deny => exit::DENY,
        Verdict::RequireApproval => exit::REQUIRE_APPROVAL,
    })
}

/// Prints a decision as text.
pub fn print_decision(d: &Decision) {
    let rule = d
        .rule_id
        .as_deref()
        .map(|r| format!(" [rule {r}]"))
        .unwrap_or_default();
    out!(
        "{}  {} on {}{}",
        d.decision.label(),
        d.action,
        d.target.id,
        rule
    );
    out!("  reason:      {} ({})", d.reason, d.reason_code);
    for diag in d
        .diagnostics
        .iter()
        .filter(|x| !d.reason.contains(x.as_str()))
    {
        out!("    - {diag}");
    }
    let risk = match (d.action_risk, d.effective_risk) {
        (Some(a), Some(e)) => {
            let s = d.target.sensitivity;
            let article = if s == agentsafe_core::Sensitivity::Internal {
                "an"
            } else {
                "a"
            };
            format!("{a} action on {article} {s} target: effective {e}")
        }
        _ => String::from("unknown"),
    };
    out!("  risk:        {risk}");
    if !d.target.known {
        out!(
            "  target:      `{}` is not in the inventory (evaluated as critical)",
            d.target.id
        );
    }
    let auth = if d.caller.authenticated {
        "authenticated"
    } else {
        "unauthenticated"
    };
    out!("  caller:      {} ({auth})", d.caller.id);
    if !d.params.is_empty() {
        out!(
            "  params:      {}",
            serde_json::Value::Object(d.params.clone())
        );
    }
    out!("  decision id: {}", d.decision_id);
}

/// Prints an outcome: the decision, then its audit record and ticket.
pub fn print_outcome(o: &Outcome) {
    print_decision(&o.decision);
    if let Some(seq) = o.audit_seq {
        out!("  audit:       recorded as entry {seq}");
    }
    if let Some(t) = &o.ticket {
        out!("  ticket:      {t}");
    }
    if let Some(id) = &o.approval_id {
        out!("  approval:    {id} (agentsafe approval show {id})");
    }
    if let Some(score) = o.decision.risk_score {
        out!("  risk score:  {score}");
    }
}

/// `agentsafe check`.
pub fn check(args: CheckArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let gate = ctx.gate()?;
    let params = parse_params(args.params.as_deref())?;
    let claimed = claimed(&args.who, caller_from(&args.who))?;
    let request = Request {
        action: args.action,
        target: args.target,
        caller: Caller::default(),
        params,
        change_ticket: args.ticket_id,
        correlation_id: args.correlation_id,
        trace_id: args.trace_id,
    };
    let outcome = gate.check(&claimed, request);
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&outcome.to_json()?)?);
    } else {
        print_outcome(&outcome);
    }
    Ok(verdict_code(outcome.decision.decision))
}

/// Parses a plan file: JSON when its name ends in `.json`, else TOML; errors are
/// `FILE:LINE:COL: message`.
fn parse_plan(path: &std::path::Path, text: &str) -> anyhow::Result<PlanFile> {
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text)
            // serde_json counts columns from 0 at a line's start; people count from 1.
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: {e}",
                    path.display(),
                    e.line().max(1),
                    e.column().max(1)
                )
            })
    } else {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!(agentsafe::config::toml_error(path, text, &e)))
    }
}

/// `agentsafe plan`.
pub fn plan(args: PlanArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let gate = ctx.gate()?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read plan `{}`", args.file.display()))?;
    let file = parse_plan(&args.file, &text)?;
    let plain = caller_from(&args.who).or(file.caller);
    let claimed = claimed(&args.who, plain)?;
    if file.steps.is_empty() {
        anyhow::bail!("{}: the plan has no steps", args.file.display());
    }
    let requests: Vec<Request> = file
        .steps
        .into_iter()
        .map(|s| Request {
            action: s.action,
            target: s.target,
            caller: Caller::default(),
            params: s.params,
            change_ticket: s.ticket_id,
            correlation_id: None,
            trace_id: None,
        })
        .collect();
    let steps = gate.plan(&claimed, requests);
    let decision = steps
        .iter()
        .map(|o| o.decision.decision)
        .max()
        .unwrap_or(Verdict::Deny);
    let plan_id = steps
        .first()
        .and_then(|o| o.decision.plan_id)
        .map(|p| p.to_string());
    if ctx.json() {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(Outcome::to_json)
            .collect::<Result<_, _>>()?;
        let v = serde_json::json!({ "plan_id": plan_id, "decision": decision, "steps": steps });
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("plan {}: {}", plan_id.unwrap_or_default(), decision.label());
        for (i, o) in steps.iter().enumerate() {
            out_inline!("step {}: ", i + 1);
            print_outcome(o);
        }
    }
    Ok(verdict_code(decision))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::path::Path;

    use proptest::prelude::*;

    use super::{parse_params, parse_plan};

    const PLAN: &str = "[[steps]]\naction = \"scale-deployment\"\ntarget = \"staging/api-server\"\nparams = { replicas = 3 }\n\n[[steps]]\naction = \"restart-deployment\"\ntarget = \"staging/api-server\"\n";

    fn located(err: &str, file: &str) -> bool {
        let Some(rest) = err.strip_prefix(&format!("{file}:")) else {
            return false;
        };
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|l| l.parse::<usize>().ok());
        let col = parts.next().and_then(|c| c.parse::<usize>().ok());
        line.is_some_and(|l| l >= 1) && col.is_some_and(|c| c >= 1)
    }

    #[test]
    fn the_sample_plan_parses() {
        let p = parse_plan(Path::new("plan.toml"), PLAN).unwrap();
        assert_eq!(p.steps.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn params_never_panic_and_errors_name_the_flag(text in ".{0,200}") {
            if let Err(e) = parse_params(Some(&text)) {
                prop_assert!(e.to_string().starts_with("--params:"), "{e}");
            }
        }

        #[test]
        fn plans_never_panic_and_errors_are_located(
            cut in 0usize..PLAN.len(),
            junk in "[\\[\\]={}\"a-z0-9 ,.\n]{0,12}",
            json in any::<bool>(),
        ) {
            let mut text = PLAN.to_owned();
            let at = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.insert_str(at, &junk);
            let name = if json { "plan.json" } else { "plan.toml" };
            if let Err(e) = parse_plan(Path::new(name), &text) {
                prop_assert!(located(&e.to_string(), name), "{e}");
            }
        }
    }
}
