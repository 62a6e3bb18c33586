//! `cargo xtask bench`: decision latency on the shipped and a generated 10,000-rule config,
//! config load time, whole-process `agentsafe check` time, and the same generated workload
//! through the `cedar-policy` crate, printed side by side.

#![allow(
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "a benchmark binary prints its figures; every index is taken modulo its slice length"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentsafe_core::{Caller, Request};
use agentsafe_pdp::{Inventory, Pdp, PolicySet, Registry};
use anyhow::Context as _;
use rand::{Rng, SeedableRng};

const RULES: usize = 10_000;
const TARGETS: usize = 1_000;
const AGENTS: usize = 1_000;
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const ROLES: [&str; 3] = ["sre", "developer", "agent"];
const SENS: [&str; 4] = ["public", "internal", "restricted", "critical"];
const ACTIONS: [&str; 3] = ["scale-deployment", "restart-deployment", "rollout-status"];
const VERDICTS: [&str; 3] = ["allow", "deny", "require_approval"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Latency percentiles over individually timed calls.
struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(n: usize, mut f: impl FnMut(usize)) -> Stats {
    for i in 0..n / 10 {
        f(i);
    }
    let mut samples: Vec<u64> = Vec::with_capacity(n);
    let total = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i);
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let mean = total.elapsed() / u32::try_from(n).unwrap_or(1);
    samples.sort_unstable();
    let pick = |q: f64| {
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_nanos(samples.get(idx).copied().unwrap_or(0))
    };
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        mean,
    }
}

/// Like `measure`, on a clone of each request made (untimed) right before the call.
fn measure_fresh(n: usize, reqs: &[Request], mut f: impl FnMut(&Request)) -> Stats {
    let mut samples: Vec<u64> = Vec::with_capacity(n);
    let mut total = Duration::ZERO;
    for i in 0..n + n / 10 {
        let r = reqs[i % reqs.len()].clone();
        let t = Instant::now();
        f(&r);
        let e = t.elapsed();
        drop(r);
        if i >= n / 10 {
            total += e;
            samples.push(u64::try_from(e.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    samples.sort_unstable();
    let pick = |q: f64| {
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_nanos(samples.get(idx).copied().unwrap_or(0))
    };
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        mean: total / u32::try_from(n).unwrap_or(1),
    }
}

fn show(label: &str, s: &Stats) {
    println!(
        "{label:58} p50 {:>9.3} µs   p99 {:>9.3} µs   mean {:>9.3} µs",
        s.p50.as_nanos() as f64 / 1000.0,
        s.p99.as_nanos() as f64 / 1000.0,
        s.mean.as_nanos() as f64 / 1000.0
    );
}

fn request(action: &str, target: &str, agent: &str, role: &str) -> Request {
    let mut params = agentsafe_core::Params::new();
    if action == "scale-deployment" {
        params.insert("replicas".into(), serde_json::json!(3));
    }
    Request {
        action: action.into(),
        target: target.into(),
        caller: Caller {
            id: agent.into(),
            roles: vec![role.into()],
            authenticated: true,
            ..Caller::default()
        },
        params,
        ..Request::default()
    }
}

fn generated_inventory() -> String {
    let mut s = String::new();
    for i in 0..TARGETS {
        s.push_str(&format!(
            "[[targets]]\nid = \"gen/t{i}\"\ntype = \"k8s-deployment\"\nenvironment = \"{}\"\nsensitivity = \"{}\"\nattributes = {{ cluster = \"c1\", namespace = \"ns{}\", name = \"app{i}\" }}\n\n",
            ENVS[i % 3],
            SENS[i % 4],
            i % 50
        ));
    }
    s
}

fn generated_policies() -> String {
    let mut s = String::new();
    for i in 0..RULES {
        s.push_str(&format!(
            "[[rules]]\nid = \"r{i}\"\npriority = {}\ndecision = \"{}\"\nreason = \"generated\"\nmatch.actions = [\"{}\"]\nmatch.targets.environments = [\"{}\"]\nmatch.callers.agent_ids = [\"agent-{}\"]\nmatch.callers.roles = [\"{}\"]\n\n",
            i % 7,
            VERDICTS[(i / 7) % 3],
            ACTIONS[i % 3],
            ENVS[(i / 3) % 3],
            i % AGENTS,
            ROLES[(i / 11) % 3],
        ));
    }
    // A few generic rules every request must also consider.
    s.push_str("[[rules]]\nid = \"g-unknown\"\npriority = 100\ndecision = \"deny\"\nreason = \"unknown\"\nmatch.targets.known = false\n\n");
    s.push_str("[[rules]]\nid = \"g-critical\"\npriority = 50\ndecision = \"require_approval\"\nreason = \"critical\"\nmatch.effective_risk = [\"critical\"]\nmatch.callers.roles = [\"agent\"]\n\n");
    s
}

fn cedar_policies() -> String {
    let mut s = String::new();
    for i in 0..RULES {
        let effect = if VERDICTS[(i / 7) % 3] == "deny" {
            "forbid"
        } else {
            "permit"
        };
        s.push_str(&format!(
            "@id(\"r{i}\")\n{effect}(principal == Agent::\"agent-{}\", action == Action::\"{}\", resource)\nwhen {{ resource.environment == \"{}\" && principal.roles.contains(\"{}\") }};\n",
            i % AGENTS,
            ACTIONS[i % 3],
            ENVS[(i / 3) % 3],
            ROLES[(i / 11) % 3],
        ));
    }
    s
}

fn cedar_entities() -> String {
    let mut list = Vec::new();
    for a in 0..AGENTS {
        list.push(serde_json::json!({
            "uid": {"type": "Agent", "id": format!("agent-{a}")},
            "attrs": {"roles": [ROLES[a % 3]]},
            "parents": []
        }));
    }
    for t in 0..TARGETS {
        list.push(serde_json::json!({
            "uid": {"type": "Target", "id": format!("gen/t{t}")},
            "attrs": {"environment": ENVS[t % 3]},
            "parents": []
        }));
    }
    serde_json::Value::Array(list).to_string()
}

fn main() -> anyhow::Result<()> {
    let root = root();
    println!("agentsafe benchmarks (release build, one thread unless stated)\n");
    if std::env::args().any(|a| a == "--gate-only") {
        gate_throughput(&root)?;
        return check_process(&root);
    }

    // --- shipped config ------------------------------------------------------
    let started = Instant::now();
    let pdp = Pdp::load(
        &root.join("actions"),
        &root.join("policies"),
        &root.join("inventory.toml"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "load shipped config ({} actions, {} rules, {} targets): {:.2} ms",
        pdp.registry().len(),
        pdp.policies().len(),
        pdp.inventory().len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let time_it = |label: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {label:40} median {:.2} ms",
            times.get(10).copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
        Ok(())
    };
    time_it("load actions/ (registry)", &mut || {
        Registry::load(&root.join("actions"))
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    time_it("load policies/", &mut || {
        PolicySet::load(&root.join("policies"))
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    time_it("load inventory.toml", &mut || {
        Inventory::load(&root.join("inventory.toml"))
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    if std::env::args().any(|a| a == "--load-only") {
        for _ in 0..200 {
            Registry::load(&root.join("actions"))
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        return Ok(());
    }
    let shipped: Vec<Request> = vec![
        request(
            "scale-deployment",
            "staging/api-server",
            "agent-1",
            "developer",
        ),
        request("scale-deployment", "prod/payments", "agent-2", "sre"),
        request("restart-deployment", "prod/api-server", "agent-3", "sre"),
        request("rollout-status", "dev/sandbox", "agent-4", "agent"),
        request("scale-deployment", "prod/unknown", "agent-5", "sre"),
        request("drain-node", "staging/node-1", "agent-6", "sre"),
    ];
    let s = measure(300_000, |i| {
        black_box(pdp.decide(black_box(&shipped[i % shipped.len()])));
    });
    show("decide, shipped config", &s);

    // --- generated 10,000-rule config ------------------------------------------
    let registry_sources = read_dir(&root.join("actions"))?;
    let inv_text = generated_inventory();
    let pol_text = generated_policies();
    let mut loads = Vec::new();
    let mut generated = None;
    for _ in 0..5 {
        let t = Instant::now();
        let registry =
            Registry::from_sources(&registry_sources).map_err(|e| anyhow::anyhow!("{e}"))?;
        let policies = PolicySet::from_sources(&[("generated.toml", pol_text.as_str())])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let inventory = Inventory::parse("generated-inventory.toml", &inv_text)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let pdp = Pdp::new(registry, policies, inventory);
        loads.push(t.elapsed());
        generated = Some(pdp);
    }
    loads.sort();
    let generated = generated.context("no generated config")?;
    println!(
        "load generated config ({} rules, {} targets, {:.1} MiB of TOML): median {:.1} ms",
        generated.policies().len(),
        generated.inventory().len(),
        (pol_text.len() + inv_text.len()) as f64 / (1024.0 * 1024.0),
        loads.get(2).copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let reqs: Vec<Request> = (0..4096)
        .map(|_| {
            let agent = rng.random_range(0..AGENTS);
            request(
                ACTIONS[rng.random_range(0..3)],
                &format!("gen/t{}", rng.random_range(0..TARGETS)),
                &format!("agent-{agent}"),
                ROLES[agent % 3],
            )
        })
        .collect();
    let allowed = reqs
        .iter()
        .filter(|r| generated.decide(r).is_allow())
        .count();
    // A live decision point decides on a request it has just parsed, so the request's
    // memory is hot: `measure_fresh` clones each request, untimed, right before deciding.
    // The cold figure (requests built long before, evicted from cache) is printed too.
    let s_gen = measure_fresh(300_000, &reqs, |r| {
        black_box(generated.decide(black_box(r)));
    });
    show(
        &format!("decide, generated {RULES}-rule config ({allowed}/4096 allowed)"),
        &s_gen,
    );
    let s_cold = measure(300_000, |i| {
        black_box(generated.decide(black_box(&reqs[i % reqs.len()])));
    });
    show("  same, requests cold in cache", &s_cold);

    if std::env::args().any(|a| a == "--decide-only") {
        for i in 0..3_000_000 {
            black_box(generated.decide(black_box(&reqs[i % reqs.len()])));
        }
        return Ok(());
    }

    // Threads: the PDP is shared, decisions scale across cores.
    let shared = std::sync::Arc::new(generated);
    let per = 200_000usize;
    let t = Instant::now();
    std::thread::scope(|scope| {
        for k in 0..2 {
            let pdp = std::sync::Arc::clone(&shared);
            let reqs = &reqs;
            scope.spawn(move || {
                for i in 0..per {
                    black_box(pdp.decide(&reqs[(i + k * 7) % reqs.len()]));
                }
            });
        }
    });
    println!(
        "decide, generated config, 2 threads: {:.0} decisions/s",
        (2 * per) as f64 / t.elapsed().as_secs_f64()
    );

    if std::env::args().any(|a| a == "--pdp-only") {
        return Ok(());
    }

    // --- Cedar on the equivalent workload ----------------------------------------
    cedar(&reqs, &s_gen)?;

    // --- tickets and audit ---------------------------------------------------------
    tickets_and_audit()?;

    // --- the gate in process ------------------------------------------------------
    gate_throughput(&root)?;

    // --- whole process ---------------------------------------------------------
    check_process(&root)?;
    Ok(())
}

/// Writes the generated workload for Cedar and runs `agentsafe-bench-cedar` on it: a
/// separate binary, so Cedar's dependency features do not change agentsafe's build.
fn cedar(reqs: &[Request], ours: &Stats) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?.with_file_name("agentsafe-bench-cedar");
    if !exe.is_file() {
        println!(
            "cedar: skipped, {} not built (cargo xtask bench builds it)",
            exe.display()
        );
        return Ok(());
    }
    let requests: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| serde_json::json!([r.caller.id, r.action, r.target]))
        .collect();
    let workload = serde_json::json!({
        "policies": cedar_policies(),
        "entities": serde_json::from_str::<serde_json::Value>(&cedar_entities())?,
        "requests": requests,
    });
    let path = std::env::temp_dir().join(format!(
        "agentsafe-cedar-workload-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, workload.to_string())?;
    let out = std::process::Command::new(&exe).arg(&path).output()?;
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(
        out.status.success(),
        "cedar bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ns = |k: &str| r[k].as_u64().unwrap_or(0);
    println!(
        "cedar: load {RULES} policies + entities: {:.1} ms",
        r["load_ms"].as_f64().unwrap_or(0.0)
    );
    println!(
        "{:58} p50 {:>9.3} µs   p99 {:>9.3} µs   ({} of {} allowed)",
        format!("cedar is_authorized, same {RULES}-rule workload"),
        ns("p50_ns") as f64 / 1000.0,
        ns("p99_ns") as f64 / 1000.0,
        r["allowed"],
        r["n"]
    );
    println!(
        "ratio cedar/agentsafe at p50: {:.0}x   at p99: {:.0}x",
        ns("p50_ns") as f64 / ours.p50.as_nanos().max(1) as f64,
        ns("p99_ns") as f64 / ours.p99.as_nanos().max(1) as f64
    );
    Ok(())
}

/// Ticket issuance, verification and durable redemption; audited appends with group
/// commit; verification; one short-lived process's open + append + close. Real files in a
/// temporary folder, real fdatasync.
fn tickets_and_audit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for r in agentsafe_tickets::bench::run_all(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))? {
        println!("tickets: {:50} {:>10.0} /s", r.name, r.per_sec());
    }
    for threads in [1usize, 16, 64, 128] {
        let n = (threads * 40).max(400);
        let rate = agentsafe_audit::bench::appends_per_sec(dir.path(), threads, n)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "audit: appends with group commit, {threads:>3} concurrent callers {rate:>10.0} /s"
        );
    }
    let rate = agentsafe_audit::bench::verify_entries_per_sec(dir.path(), 200_000)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("audit: verify                                           {rate:>10.0} entries/s");
    let us = agentsafe_audit::bench::open_append_close_micros(dir.path(), 100_000)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "audit: open + append + close on a 100,000-entry log       {:>10.2} ms",
        us / 1000.0
    );
    Ok(())
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p)?));
        }
    }
    out.sort();
    Ok(out)
}

fn check_process(root: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("agentsafe");
    if !bin.is_file() {
        println!(
            "agentsafe check (whole process): skipped, {} not built (cargo xtask bench builds it)",
            bin.display()
        );
        return Ok(());
    }
    // A private state and key folder: the check is audited and its ALLOW carries a ticket.
    let scratch = tempfile::tempdir()?;
    let keys = scratch.path().join("keys");
    let generated = std::process::Command::new(&bin)
        .args(["keys", "generate", "--out"])
        .arg(&keys)
        .output()?;
    anyhow::ensure!(
        generated.status.success(),
        "keys generate failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let run = || {
        std::process::Command::new(&bin)
            .current_dir(root)
            .args([
                "check",
                "scale-deployment",
                "--target",
                "staging/api-server",
                "--caller",
                "agent-1",
                "--role",
                "developer",
                "--params",
                "{\"replicas\":3}",
            ])
            .env("AGENTSAFE_STATE_DIR", scratch.path().join("state"))
            .env("AGENTSAFE_KEY_DIR", &keys)
            .output()
    };
    for _ in 0..3 {
        run()?;
    }
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let out = run()?;
        times.push(t.elapsed());
        if out.status.code() != Some(0) {
            anyhow::bail!(
                "agentsafe check failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    times.sort();
    println!(
        "agentsafe check (whole process: decide, sign a ticket, append to the audit log with fdatasync, checkpoint; 50 runs): median {:.2} ms, p90 {:.2} ms",
        times.get(25).copied().unwrap_or_default().as_secs_f64() * 1000.0,
        times.get(45).copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// The gate shared by `threads` callers, each with its own identity token: every call
/// verifies the token, decides, reads the caller's standing in SQLite, signs a ticket and
/// appends the decision to the audit log (fdatasync with group commit, or `sync = "none"`).
fn gate_throughput(root: &Path) -> anyhow::Result<()> {
    use agentsafe_gate::{Claimed, Gate, GatePaths, GateSettings};
    use agentsafe_tickets::keys::{self, KeyPurpose};
    use agentsafe_tickets::{HumanDuration, IdentityIssuer, IdentityRequest, Signer};
    for sync in ["group", "none"] {
        for threads in [1usize, 16, 128] {
            let dir = tempfile::tempdir()?;
            let key_dir = dir.path().join("keys");
            keys::generate_key_files(&key_dir, &KeyPurpose::ALL, false)?;
            let mut settings = GateSettings::new(GatePaths {
                actions: root.join("actions"),
                policies: root.join("policies"),
                inventory: root.join("inventory.toml"),
                state_dir: dir.path().join("state"),
                key_dir: key_dir.clone(),
                base: root.to_owned(),
            });
            settings.config.audit = serde_json::from_value(serde_json::json!({ "sync": sync }))?;
            let gate = std::sync::Arc::new(Gate::open(settings)?);
            let issuer = IdentityIssuer::new(
                Signer::load(&KeyPurpose::Identity.private_key_path(&key_dir))?,
                &Default::default(),
            )?;
            let tokens: Vec<String> = (0..threads)
                .map(|i| {
                    let who = IdentityRequest {
                        agent: format!("agent-{i}"),
                        roles: vec!["developer".into()],
                        groups: Vec::new(),
                    };
                    issuer
                        .issue(
                            &who,
                            HumanDuration::from_secs(3600),
                            agentsafe_core::Timestamp::now(),
                        )
                        .map(|t| t.token)
                })
                .collect::<Result<_, _>>()?;
            let req = request("scale-deployment", "staging/api-server", "", "");
            // Warm up: config_loaded, the log and the store are open.
            let warm = gate.check(&Claimed::token(tokens[0].clone()), req.clone());
            anyhow::ensure!(
                warm.ticket.is_some(),
                "not allowed: {}",
                warm.decision.reason
            );
            let per = (20_000 / threads).max(200);
            let t = Instant::now();
            let mut lat: Vec<Duration> = std::thread::scope(|scope| {
                let hs: Vec<_> = tokens
                    .iter()
                    .map(|tok| {
                        let gate = &gate;
                        let req = &req;
                        scope.spawn(move || {
                            let claimed = Claimed::token(tok.clone());
                            let mut v = Vec::with_capacity(per);
                            for _ in 0..per {
                                let s = Instant::now();
                                let o = gate.check(&claimed, req.clone());
                                v.push(s.elapsed());
                                black_box(o);
                            }
                            v
                        })
                    })
                    .collect();
                hs.into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let secs = t.elapsed().as_secs_f64();
            lat.sort();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64) * p) as usize)
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e6
            };
            println!(
                "gate: check with token, ticket and audit (sync = {sync:5}), {threads:>3} callers: {:>8.0} decisions/s, p50 {:>7.1} µs, p99 {:>8.1} µs",
                lat.len() as f64 / secs,
                pct(0.50),
                pct(0.99)
            );
            gate.shutdown()?;
        }
    }
    Ok(())
}
