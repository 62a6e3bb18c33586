//! Commands about the project's configuration: `init`, `validate`, `list-actions`, `show-action`, `test`.

use std::path::PathBuf;
use std::process::ExitCode;

use agentsafe_core::Risk;
use agentsafe_pdp::testing;
use agentsafe_tickets::KeyPurpose;

use crate::context::Context;
use crate::exit;

/// Arguments of `agentsafe init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to scaffold (created when missing).
    pub dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `agentsafe validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Exit non-zero when there are warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Arguments of `agentsafe list-actions`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only actions with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only actions of this risk class.
    #[arg(long, value_parser = parse_risk)]
    pub risk: Option<Risk>,
}

fn parse_risk(s: &str) -> Result<Risk, String> {
    s.parse()
        .map_err(|e: agentsafe_core::CoreError| e.to_string())
}

/// Arguments of `agentsafe show-action`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The action name.
    pub name: String,
}

/// Arguments of `agentsafe test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A case file, or a folder of them (default: `policies/tests` beside the policies).
    pub path: Option<PathBuf>,
}

/// `agentsafe init DIR`.
pub fn init(args: InitArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let written = crate::embedded::write_to(&args.dir, args.force)?;
    // Signing keys go to the key folder (outside the project by default), once.
    let missing: Vec<KeyPurpose> = KeyPurpose::ALL
        .into_iter()
        .filter(|p| !p.private_key_path(&ctx.key_dir).exists())
        .collect();
    let keys = agentsafe_tickets::keys::generate_key_files(&ctx.key_dir, &missing, false)?;
    if ctx.json() {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| serde_json::json!({"purpose": k.purpose.as_str(), "kid": k.kid, "private_key": k.private_key}))
            .collect();
        out!(
            "{}",
            serde_json::json!({ "dir": args.dir, "files": written, "keys": keys })
        );
    } else {
        out!(
            "scaffolded {} files in {}",
            written.len(),
            args.dir.display()
        );
        for k in &keys {
            out!(
                "generated the {} signing key {} in {}",
                k.purpose.as_str(),
                k.kid,
                ctx.key_dir.display()
            );
        }
        out!(
            "next: cd {} && agentsafe validate && agentsafe test",
            args.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentsafe validate`.
pub fn validate(args: ValidateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let pdp = ctx.load_pdp()?;
    let warnings = pdp.lint();
    if ctx.json() {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "valid": true,
                "actions": pdp.registry().len(),
                "rules": pdp.policies().len(),
                "targets": pdp.inventory().len(),
                "policy_hash": pdp.policy_hash(),
                "warnings": warnings,
            }))?
        );
    } else {
        for w in &warnings {
            out!("warning: {w}");
        }
        out!(
            "ok: {} actions, {} rules, {} targets ({} warning{}); policy hash {}",
            pdp.registry().len(),
            pdp.policies().len(),
            pdp.inventory().len(),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" },
            pdp.policy_hash()
        );
    }
    let code = if args.deny_warnings && !warnings.is_empty() {
        exit::ERROR
    } else {
        exit::ALLOW
    };
    Ok(ExitCode::from(code))
}

/// `agentsafe list-actions`.
pub fn list_actions(args: ListArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let registry =
        agentsafe_registry::Registry::load(&ctx.actions_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let actions: Vec<_> = registry
        .actions()
        .filter(|a| args.tag.as_ref().is_none_or(|t| a.tags().contains(t)))
        .filter(|a| args.risk.is_none_or(|r| a.risk() == r))
        .collect();
    if ctx.json() {
        let list: Vec<serde_json::Value> = actions.iter().map(|a| a.to_json()).collect();
        out!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let width = actions.iter().map(|a| a.name().len()).max().unwrap_or(0);
        for a in &actions {
            out!(
                "{:width$}  {:8}  {:28}  {}",
                a.name(),
                a.risk().as_str(),
                a.target_types().join(","),
                a.description()
            );
        }
        out!(
            "{} action{}",
            actions.len(),
            if actions.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentsafe show-action NAME`.
pub fn show_action(args: ShowArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let registry =
        agentsafe_registry::Registry::load(&ctx.actions_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(a) = registry.get(&args.name) else {
        anyhow::bail!(
            "unknown action `{}`; `agentsafe list-actions` lists them",
            args.name
        );
    };
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&a.to_json())?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("{} {} ({} risk)", a.name(), a.version(), a.risk());
    out!("  {}", a.description());
    out!("  targets:    {}", a.target_types().join(", "));
    match a.rollback_action() {
        Some(r) => out!("  reversible: yes, by {r}"),
        None => out!(
            "  reversible: {}",
            if a.reversible() { "yes" } else { "no" }
        ),
    }
    if !a.tags().is_empty() {
        out!("  tags:       {}", a.tags().join(", "));
    }
    if !a.required_privileges().is_empty() {
        out!("  privileges: {}", a.required_privileges().join(", "));
    }
    out!("  params:");
    for p in a.params() {
        let mut notes = Vec::new();
        notes.push(if p.required() {
            String::from("required")
        } else {
            String::from("optional")
        });
        if let Some(d) = p.default() {
            notes.push(format!("default {d}"));
        }
        if let Some(attr) = p.target_attr() {
            notes.push(format!("bound to target {attr}"));
        }
        if p.sensitive() {
            notes.push(String::from("sensitive"));
        }
        if let Ok(serde_json::Value::Object(c)) = serde_json::to_value(p.constraints())
            && !c.is_empty()
        {
            notes.push(serde_json::Value::Object(c).to_string());
        }
        out!(
            "    {:22} {:10} {}  {}",
            p.name(),
            p.param_type().to_string(),
            notes.join(", "),
            p.description().unwrap_or_default()
        );
    }
    if !a.prechecks().is_empty() {
        out!("  prechecks:");
        for c in a.prechecks() {
            let adv = if c.advisory() { " (advisory)" } else { "" };
            out!("    {}{adv}  {}", c.name(), c.description());
        }
    }
    if !a.state_fields().is_empty() {
        out!(
            "  state:      {}",
            a.state_fields()
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentsafe test [PATH]`.
pub fn test(args: TestArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let pdp = ctx.load_pdp()?;
    let path = args.path.unwrap_or_else(|| ctx.policies_dir.join("tests"));
    let cases = testing::load_cases(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = testing::run(&pdp, &cases);
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in &report.results {
            if r.passed {
                out!("PASS  {}", r.name);
            } else {
                out!("FAIL  {}  ({})", r.name, r.location);
                for f in &r.failures {
                    out!("        {f}");
                }
            }
        }
        let total = pdp.policies().len();
        let covered = total - report.uncovered_rules.len();
        if report.uncovered_rules.is_empty() {
            out!("coverage: {covered}/{total} rules exercised");
        } else {
            out!(
                "coverage: {covered}/{total} rules exercised; not exercised: {}",
                report.uncovered_rules.join(", ")
            );
        }
        if report.results.is_empty() {
            out!("no test case found in `{}`", path.display());
        }
        out!("{} passed, {} failed", report.passed(), report.failed());
    }
    Ok(ExitCode::from(if report.success() {
        exit::ALLOW
    } else {
        exit::ERROR
    }))
}
