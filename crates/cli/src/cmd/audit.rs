//! `agentsafe audit ...`: verify the tamper-evident audit log, prove inclusion and consistency,
//! read it, and ship it elsewhere.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agentsafe_audit::read::{Follower, for_each_entry, offset_of_last_lines};
use agentsafe_audit::{
    ConsistencyProof, Destination, Entry, HumanDuration, InclusionProof, ShipTarget, VerifyOptions,
    VerifyingKey,
};
use agentsafe_core::{Timestamp, Verdict};
use anyhow::Context as _;

use crate::context::Context;
use crate::exit;

/// The `agentsafe audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every entry and every checkpoint; exit 0 only when the whole log verifies
    Verify {
        /// The log (default: the configured log, `<state_dir>/audit.jsonl`)
        log: Option<PathBuf>,
        /// The public key (SPKI PEM; default `<key_dir>/audit.pub.pem`)
        #[arg(long)]
        key: Option<PathBuf>,
        /// A checkpoint saved elsewhere earlier, to catch a deleted tail (repeatable)
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// Accept entries after the last checkpoint (a log still being written), with a warning
        #[arg(long)]
        allow_unsigned_tail: bool,
    },
    /// Print the inclusion proof of entry SEQ against the latest checkpoint (JSON, checkable offline)
    Proof {
        /// The entry's sequence number
        seq: u64,
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
        /// The public key that checks the checkpoint (default `<key_dir>/audit.pub.pem`)
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Check an inclusion proof offline, with the public key only
    VerifyProof {
        /// The proof printed by `agentsafe audit proof`
        proof: PathBuf,
        /// The public key (default `<key_dir>/audit.pub.pem`)
        #[arg(long)]
        key: Option<PathBuf>,
        /// Your own copy of the entry (one line); default: the entry inside the proof
        #[arg(long)]
        entry: Option<PathBuf>,
    },
    /// Prove that the log only grew since OLD_CHECKPOINT (prints an RFC 6962 consistency proof)
    Consistency {
        /// A checkpoint (signed note) saved earlier
        old_checkpoint: PathBuf,
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
        /// The public key (default `<key_dir>/audit.pub.pem`)
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Show entries, optionally filtered
    Show {
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
        /// Only the last N matching entries
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// Only entries at or after T: an RFC 3339 time, or a duration ago such as `10m`
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only entries about this action
        #[arg(long, value_name = "A")]
        action: Option<String>,
        /// Only decisions with this verdict (`allow`, `deny`, `require_approval`)
        #[arg(long, value_name = "D")]
        decision: Option<String>,
        /// Only entries by this caller id
        #[arg(long, value_name = "C")]
        caller: Option<String>,
        /// Only entries of this event type (`decision`, `approval`, ...)
        #[arg(long, value_name = "E")]
        event: Option<String>,
    },
    /// Print the last entries; with --follow, keep printing new ones until interrupted
    Tail {
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
        /// How many entries to print first
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Keep watching the log for new entries (stop with Ctrl-C)
        #[arg(short, long)]
        follow: bool,
        /// Stop after printing this many entries in total
        #[arg(long, value_name = "N")]
        max: Option<u64>,
        /// How often --follow looks for new entries
        #[arg(long, default_value = "250ms")]
        interval: HumanDuration,
    },
    /// Entries, checkpoints, counts by event and decision, failures, shipped and dropped entries
    Stats {
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// Ship entries to a file, an HTTP endpoint (CloudEvents) or S3 (one object per batch), resuming where the last run stopped
    Ship {
        /// `file:PATH`, `http://URL`, `https://URL` or `s3://BUCKET/PREFIX` (S3: region, endpoint and credentials from a matching `[[audit.ship]]` target or the AWS_* environment)
        #[arg(long, value_name = "DEST")]
        to: Destination,
        /// Start at this sequence number instead of the saved cursor
        #[arg(long, value_name = "N")]
        since_seq: Option<u64>,
        /// The log (default: the configured log)
        #[arg(long)]
        log: Option<PathBuf>,
        /// Entries per batch
        #[arg(long)]
        batch_size: Option<usize>,
    },
}

/// Runs an `agentsafe audit` subcommand.
///
/// # Errors
/// When a file cannot be read or a proof does not verify; a log that fails verification is
/// reported and gives exit code 1 rather than an error.
pub fn run(cmd: AuditCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            log,
            key,
            checkpoints,
            allow_unsigned_tail,
        } => verify(
            ctx,
            &log_path(ctx, log),
            key,
            checkpoints,
            allow_unsigned_tail,
        ),
        AuditCommand::Proof { seq, log, key } => {
            let vk = public_key(ctx, key)?;
            let proof = InclusionProof::for_log(&log_path(ctx, log), seq, &vk)?;
            out!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyProof { proof, key, entry } => verify_proof(ctx, &proof, key, entry),
        AuditCommand::Consistency {
            old_checkpoint,
            log,
            key,
        } => {
            let vk = public_key(ctx, key)?;
            let old = std::fs::read_to_string(&old_checkpoint).with_context(|| {
                format!("cannot read checkpoint `{}`", old_checkpoint.display())
            })?;
            let proof =
                ConsistencyProof::for_log(&log_path(ctx, log), &old, &vk).with_context(|| {
                    format!(
                        "the log is not consistent with `{}`",
                        old_checkpoint.display()
                    )
                })?;
            out!("{}", serde_json::to_string_pretty(&proof)?);
            if !ctx.json() {
                eprintln!(
                    "ok: the log only grew: its tree of {} entries is a prefix of the latest checkpoint's {}",
                    proof.old_size, proof.new_size
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show {
            log,
            last,
            since,
            action,
            decision,
            caller,
            event,
        } => {
            let filter = Filter::new(since, action, decision, caller, event)?;
            show(ctx, &log_path(ctx, log), &filter, last)
        }
        AuditCommand::Tail {
            log,
            lines,
            follow,
            max,
            interval,
        } => tail(ctx, &log_path(ctx, log), lines, follow, max, interval.get()),
        AuditCommand::Stats { log } => stats(ctx, &log_path(ctx, log)),
        AuditCommand::Ship {
            to,
            since_seq,
            log,
            batch_size,
        } => ship(ctx, &log_path(ctx, log), to, since_seq, batch_size),
    }
}

fn log_path(ctx: &Context, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| ctx.config.audit.log_path(&ctx.state_dir))
}

fn public_key(ctx: &Context, given: Option<PathBuf>) -> anyhow::Result<VerifyingKey> {
    let path = given.unwrap_or_else(|| ctx.config.audit.public_key_path(&ctx.key_dir));
    Ok(agentsafe_audit::load_verifying_key(&path)?)
}

fn verify(
    ctx: &Context,
    log: &Path,
    key: Option<PathBuf>,
    checkpoints: Vec<PathBuf>,
    allow_unsigned_tail: bool,
) -> anyhow::Result<ExitCode> {
    let vk = public_key(ctx, key)?;
    let opts = VerifyOptions {
        external_checkpoints: checkpoints,
        allow_unsigned_tail,
    };
    match agentsafe_audit::verify_log_with(log, &vk, &opts) {
        Ok(report) => {
            if ctx.json() {
                let mut v = serde_json::to_value(&report)?;
                if let Some(map) = v.as_object_mut() {
                    map.insert("ok".into(), true.into());
                    map.insert("log".into(), log.display().to_string().into());
                }
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for w in &report.warnings {
                    eprintln!("warning: {w}");
                }
                let latest = report.latest_checkpoint.as_ref().map_or_else(
                    || "no checkpoint".to_owned(),
                    |c| {
                        format!(
                            "latest checkpoint covers {} entries, root {}",
                            c.size, c.root
                        )
                    },
                );
                let external = if report.external_checkpoints > 0 {
                    format!(" and {} saved elsewhere", report.external_checkpoints)
                } else {
                    String::new()
                };
                out!(
                    "ok: `{}` verified: {} entries, {} checkpoints{external}; {latest}",
                    log.display(),
                    report.entries,
                    report.checkpoints
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(agentsafe_audit::AuditError::Verify(f)) => {
            if ctx.json() {
                let v = serde_json::json!({
                    "ok": false,
                    "log": log.display().to_string(),
                    "seq": f.seq,
                    "kind": f.kind.as_str(),
                    "error": f.detail,
                });
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                eprintln!(
                    "error: `{}` failed verification at seq {}: {}",
                    log.display(),
                    f.seq,
                    f.detail
                );
            }
            Ok(ExitCode::from(exit::ERROR))
        }
        Err(e) => Err(e.into()),
    }
}

fn verify_proof(
    ctx: &Context,
    proof: &Path,
    key: Option<PathBuf>,
    entry: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let vk = public_key(ctx, key)?;
    let text = std::fs::read_to_string(proof)
        .with_context(|| format!("cannot read proof `{}`", proof.display()))?;
    let parsed: InclusionProof = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not an inclusion proof: {e}",
            proof.display(),
            e.line().max(1),
            e.column().max(1)
        )
    })?;
    let entry_bytes = match &entry {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("cannot read entry `{}`", p.display()))?)
        }
        None => None,
    };
    let cp = parsed
        .verify(&vk, entry_bytes.as_deref())
        .with_context(|| format!("`{}` does not verify", proof.display()))?;
    if ctx.json() {
        let v = serde_json::json!({
            "ok": true,
            "leaf_index": parsed.leaf_index,
            "tree_size": parsed.tree_size,
            "origin": cp.origin(),
            "root": cp.root(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let what = if entry.is_some() {
            "the given entry"
        } else {
            "the entry"
        };
        out!(
            "ok: {what} is seq {} of `{}`, proven against its signed checkpoint for {} entries (root {})",
            parsed.leaf_index,
            cp.origin(),
            parsed.tree_size,
            cp.root()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `show` keeps.
#[derive(Debug, Default)]
struct Filter {
    since: Option<Timestamp>,
    action: Option<String>,
    decision: Option<&'static str>,
    caller: Option<String>,
    event: Option<String>,
}

impl Filter {
    fn new(
        since: Option<String>,
        action: Option<String>,
        decision: Option<String>,
        caller: Option<String>,
        event: Option<String>,
    ) -> anyhow::Result<Filter> {
        let since = since.map(|s| parse_since(&s)).transpose()?;
        let decision = decision
            .map(|d| {
                d.parse::<Verdict>()
                    .or_else(|_| d.to_ascii_lowercase().parse::<Verdict>())
                    .map(Verdict::as_str)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--decision `{d}`: expected allow, deny or require_approval"
                        )
                    })
            })
            .transpose()?;
        Ok(Filter {
            since,
            action,
            decision,
            caller,
            event,
        })
    }

    fn keeps(&self, e: &Entry) -> bool {
        self.since.is_none_or(|t| e.time >= t)
            && self.action.as_deref().is_none_or(|a| e.action() == Some(a))
            && self
                .decision
                .is_none_or(|d| e.event == "decision" && e.decision() == Some(d))
            && self
                .caller
                .as_deref()
                .is_none_or(|c| e.caller_id() == Some(c))
            && self.event.as_deref().is_none_or(|ev| e.event == ev)
    }
}

fn parse_since(s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let ago: HumanDuration = s.parse().map_err(|_| {
        anyhow::anyhow!("--since `{s}`: expected an RFC 3339 time or a duration such as `10m`")
    })?;
    Timestamp::now()
        .checked_sub(ago.get())
        .map_err(|_| anyhow::anyhow!("--since `{s}` is too long ago"))
}

/// `text` with every control character shown escaped (`\n`, `\u{1b}`), so a value an
/// agent chose can never start a line of its own or drive the terminal.
pub(crate) fn visible(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// One line of text for an entry.
fn summary(e: &Entry) -> String {
    let mut s = format!("{:>6}  {}  {:<15}", e.seq, e.time, e.event);
    if e.event == "decision" {
        let verdict = e
            .decision()
            .and_then(|d| d.parse::<Verdict>().ok())
            .map_or("?", Verdict::label);
        s.push_str(&format!(
            " {verdict} {} on {} by {}",
            visible(e.action().unwrap_or("?")),
            visible(e.target_id().unwrap_or("?")),
            visible(e.caller_id().unwrap_or("?"))
        ));
        if let Some(code) = e.reason_code() {
            s.push_str(&format!(" ({code})"));
        }
    } else {
        let mut body = e.body.to_string();
        if body.len() > 120 {
            let cut = (0..=117)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push_str("...");
        }
        s.push(' ');
        s.push_str(&body);
    }
    s
}

fn print_entry(ctx: &Context, line: &[u8], entry: &Entry) {
    if ctx.json() {
        out!("{}", String::from_utf8_lossy(line));
    } else {
        out!("{}", summary(entry));
    }
}

fn show(
    ctx: &Context,
    log: &Path,
    filter: &Filter,
    last: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let mut kept: VecDeque<(Vec<u8>, Entry)> = VecDeque::new();
    let mut unreadable = 0u64;
    for_each_entry(log, |entry, line| match entry {
        Ok(e) if filter.keeps(&e) => {
            if let Some(n) = last {
                if n == 0 {
                    return;
                }
                if kept.len() == n {
                    kept.pop_front();
                }
                kept.push_back((line.to_vec(), e));
            } else {
                print_entry(ctx, line, &e);
            }
        }
        Ok(_) => {}
        Err(_) => unreadable += 1,
    })?;
    for (line, e) in &kept {
        print_entry(ctx, line, e);
    }
    if unreadable > 0 {
        eprintln!(
            "warning: {unreadable} lines are not audit entries; run `agentsafe audit verify`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(
    ctx: &Context,
    log: &Path,
    lines: u64,
    follow: bool,
    max: Option<u64>,
    interval: Duration,
) -> anyhow::Result<ExitCode> {
    let start = offset_of_last_lines(log, lines)?;
    let mut follower = Follower::open(log, start)?;
    let mut printed = 0u64;
    loop {
        for line in follower.poll()? {
            if max.is_some_and(|m| printed >= m) {
                return Ok(ExitCode::SUCCESS);
            }
            match Entry::parse(&line) {
                Ok(e) => print_entry(ctx, &line, &e),
                Err(_) => out!("{}", visible(&String::from_utf8_lossy(&line))),
            }
            printed += 1;
        }
        if !follow || max.is_some_and(|m| printed >= m) {
            return Ok(ExitCode::SUCCESS);
        }
        // Polling keeps this portable and needs no signal handling: Ctrl-C ends the process.
        std::thread::sleep(interval);
    }
}

fn stats(ctx: &Context, log: &Path) -> anyhow::Result<ExitCode> {
    let s = agentsafe_audit::stats(log)?;
    if ctx.json() {
        let mut v = serde_json::to_value(&s)?;
        if let Some(map) = v.as_object_mut() {
            map.insert("log".into(), log.display().to_string().into());
        }
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    out!(
        "log:          `{}` ({} entries, {} bytes)",
        log.display(),
        s.entries,
        s.bytes
    );
    if let (Some(first), Some(last)) = (&s.first_time, &s.last_time) {
        out!("entries from: {first} to {last}");
    }
    match &s.last_checkpoint {
        Some(cp) => out!(
            "checkpoints:  {} (the last covers {} entries, root {}; `agentsafe audit verify` checks them)",
            s.checkpoints,
            cp.size,
            cp.root.map_or_else(|| "?".to_owned(), |r| r.to_hex())
        ),
        None => out!("checkpoints:  none"),
    }
    out!("events:       {}", join(&s.by_event));
    out!("decisions:    {}", join(&s.by_decision));
    if s.unreadable > 0 {
        out!("unreadable:   {} lines", s.unreadable);
    }
    let c = &s.counters;
    match (&c.last_failure, &c.last_failure_at) {
        (Some(msg), Some(at)) => out!("failures:     {} (last at {at}: {msg})", c.failures),
        _ => out!("failures:     {}", c.failures),
    }
    match (&c.last_tamper, &c.last_tamper_at) {
        _ if c.tamper_detected == 0 => out!("tamper:       none"),
        (Some(msg), Some(at)) => out!(
            "tamper:       {} appends refused (last at {at}: {msg}); run `agentsafe audit verify`",
            c.tamper_detected
        ),
        _ => out!(
            "tamper:       {} appends refused; run `agentsafe audit verify`",
            c.tamper_detected
        ),
    }
    let mut dests: Vec<&String> = c.shipped.keys().chain(c.dropped.keys()).collect();
    dests.sort();
    dests.dedup();
    if dests.is_empty() {
        out!("shipping:     none");
    }
    for d in dests {
        out!(
            "shipping:     {d}: {} shipped, {} dropped",
            c.shipped.get(d).copied().unwrap_or(0),
            c.dropped.get(d).copied().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ship(
    ctx: &Context,
    log: &Path,
    to: Destination,
    since_seq: Option<u64>,
    batch_size: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let audit = &ctx.config.audit;
    // Settings of a configured target with the same destination apply here too.
    let mut target = audit
        .ship
        .iter()
        .find(|t| t.to == to)
        .cloned()
        .unwrap_or_else(|| ShipTarget::new(to));
    if let Some(b) = batch_size {
        anyhow::ensure!(b > 0, "--batch-size must be at least 1");
        target.batch_size = b;
    }
    let report = agentsafe_audit::ship_log(log, &target, &audit.origin, since_seq)?;
    let witness = report
        .checkpoint
        .as_ref()
        .map(|c| format!("; sent the signed checkpoint for tree size {}", c.size))
        .unwrap_or_default();
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.shipped == 0 && report.skipped > 0 {
        out!(
            "nothing to ship to {}: {} entries were already there; up to date at seq {}{witness}",
            report.destination,
            report.skipped,
            report.next_seq
        );
    } else if report.shipped == 0 {
        out!(
            "nothing to ship to {}: up to date at seq {}{witness}",
            report.destination,
            report.next_seq
        );
    } else {
        out!(
            "shipped {} entries (seq {}..={}) to {}; the next run starts at seq {}{witness}",
            report.shipped,
            report.from_seq,
            report.next_seq - 1,
            report.destination,
            report.next_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: serde_json::Value) -> Entry {
        serde_json::from_value(json).unwrap()
    }

    fn decision(seq: u64, verdict: &str, caller: &str) -> Entry {
        entry(serde_json::json!({
            "v": 1, "seq": seq, "time": "2025-01-02T03:04:05Z", "event": "decision",
            "body": {"decision": verdict, "action": "scale", "target": {"id": "prod/x"},
                     "caller": {"id": caller}, "reason_code": "rule_matched"}
        }))
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let t = parse_since("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(t.to_string(), "2025-01-02T03:04:05Z");
        let ago = parse_since("10m").unwrap();
        assert!(ago < Timestamp::now());
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn filters_match_decision_caller_action_event_and_time() {
        let f = Filter::new(
            None,
            Some("scale".into()),
            Some("DENY".into()),
            Some("a1".into()),
            None,
        )
        .unwrap();
        assert!(f.keeps(&decision(0, "deny", "a1")));
        assert!(!f.keeps(&decision(1, "allow", "a1")));
        assert!(!f.keeps(&decision(2, "deny", "a2")));
        let later =
            Filter::new(Some("2025-01-02T03:04:06Z".into()), None, None, None, None).unwrap();
        assert!(!later.keeps(&decision(0, "deny", "a1")));
        let ev = Filter::new(None, None, None, None, Some("execution".into())).unwrap();
        assert!(!ev.keeps(&decision(0, "deny", "a1")));
        assert!(Filter::new(None, None, Some("maybe".into()), None, None).is_err());
    }

    #[test]
    fn summaries_are_one_line() {
        let s = summary(&decision(7, "require_approval", "a1"));
        assert_eq!(
            s,
            "     7  2025-01-02T03:04:05Z  decision        REQUIRE_APPROVAL scale on prod/x by a1 (rule_matched)"
        );
        let long = entry(serde_json::json!({
            "v": 1, "seq": 8, "time": "2025-01-02T03:04:05Z", "event": "execution",
            "body": {"output": "é".repeat(200)}
        }));
        let s = summary(&long);
        assert!(s.ends_with("..."), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn agent_chosen_text_cannot_forge_lines() {
        assert_eq!(super::visible("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(super::visible("plain/id"), "plain/id");
    }
}
