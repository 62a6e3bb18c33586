//! Benchmark hooks for `cargo xtask bench`: ticket issuance, verification and durable
//! redemption throughput. Run them in a release build (`cargo run --release -p
//! agentsafe-tickets --example bench`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentsafe_core::{
    Caller, Decision, DecisionId, Params, ReasonCode, Sensitivity, TargetInfo, Timestamp, Verdict,
};

use crate::config::TicketConfig;
use crate::keys::{KeySet, Signer};
use crate::store::{Outcome, Redemption, SqliteTicketStore, StoreOptions, TicketStore};
use crate::ticket::{TicketIssuer, TicketVerifier, VerifiedTicket};

/// Any error of a benchmark run.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// How many operations ran in how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    /// What was measured.
    pub name: &'static str,
    /// Operations completed.
    pub ops: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl BenchResult {
    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            f64::INFINITY
        }
    }
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} {:>9} ops in {:>8.3} s = {:>10.0} /s",
            self.name,
            self.ops,
            self.elapsed.as_secs_f64(),
            self.per_sec()
        )
    }
}

/// A typical ALLOW decision, as the decision point would produce it.
pub fn sample_decision(i: u64) -> Decision {
    let mut params = Params::new();
    params.insert("namespace".into(), "payments".into());
    params.insert("deployment".into(), "api".into());
    params.insert("replicas".into(), serde_json::Value::from(3 + i % 5));
    Decision {
        decision_id: DecisionId::from_parts(1_700_000_000_000 + i, u128::from(i)),
        decision: Verdict::Allow,
        reason_code: ReasonCode::RuleMatched,
        reason: "rule `ops-may-scale` allows it".to_owned(),
        rule_id: Some("ops-may-scale".into()),
        action: "scale-deployment".to_owned(),
        target: TargetInfo {
            id: "prod/payments".to_owned(),
            known: true,
            target_type: Some("k8s-deployment".into()),
            environment: Some("prod".into()),
            sensitivity: Sensitivity::Critical,
        },
        caller: Caller {
            id: "deploy-bot".to_owned(),
            roles: vec!["operator".to_owned()],
            groups: vec!["sre".to_owned()],
            delegation_chain: vec!["alice".to_owned()],
            authenticated: true,
        },
        action_risk: None,
        effective_risk: None,
        params,
        change_ticket: None,
        evaluated_at: Timestamp::UNIX_EPOCH,
        policy_hash: "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
            .into(),
        plan_id: None,
        correlation_id: None,
        trace_id: None,
        diagnostics: Vec::new(),
        approval: None,
        risk_score: None,
        escalated_from: None,
    }
}

fn setup() -> Result<(TicketIssuer, TicketVerifier), BenchError> {
    let signer = Signer::from_seed(&[42; 32]);
    let config = TicketConfig::default();
    let keys = KeySet::from_keys([signer.verifying_key()])?;
    Ok((
        TicketIssuer::new(signer, &config)?,
        TicketVerifier::new(keys, &config),
    ))
}

/// Issues and signs `n` tickets on the calling thread.
///
/// # Errors
/// When issuance fails.
pub fn issue(n: u64) -> Result<BenchResult, BenchError> {
    let (issuer, _) = setup()?;
    let decisions: Vec<Decision> = (0..64).map(sample_decision).collect();
    let now = Timestamp::now();
    let start = Instant::now();
    let mut bytes = 0usize;
    for (_, decision) in (0..n).zip(decisions.iter().cycle()) {
        bytes = bytes.wrapping_add(issuer.issue(decision, now)?.token().len());
    }
    let elapsed = start.elapsed();
    std::hint::black_box(bytes);
    Ok(BenchResult {
        name: "ticket issue+sign (1 core)",
        ops: n,
        elapsed,
    })
}

/// Verifies `n` tickets on the calling thread.
///
/// # Errors
/// When issuance or verification fails.
pub fn verify(n: u64) -> Result<BenchResult, BenchError> {
    let (issuer, verifier) = setup()?;
    let now = Timestamp::now();
    let tokens = (0..256)
        .map(|i| {
            issuer
                .issue(&sample_decision(i), now)
                .map(|t| t.into_token())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for (_, token) in (0..n).zip(tokens.iter().cycle()) {
        let ticket = verifier.verify_for(token, "scale-deployment", "prod/payments", now)?;
        std::hint::black_box(ticket);
    }
    Ok(BenchResult {
        name: "ticket verify (1 core)",
        ops: n,
        elapsed: start.elapsed(),
    })
}

/// Redeems `total` distinct tickets (begin + commit, durable) from `threads` concurrent
/// redeemers against a fresh SQLite file in `dir`. Tickets are issued and verified before
/// the clock starts.
///
/// # Errors
/// When the store cannot be opened, or a redemption fails or does not get `Execute`.
pub fn redeem(dir: &Path, total: u64, threads: usize) -> Result<BenchResult, BenchError> {
    let (issuer, verifier) = setup()?;
    let now = Timestamp::now();
    let tickets: Vec<VerifiedTicket> = (0..total)
        .map(|i| -> Result<VerifiedTicket, BenchError> {
            let signed = issuer.issue(&sample_decision(i), now)?;
            Ok(verifier.verify(signed.token(), now)?)
        })
        .collect::<Result<_, _>>()?;
    let path = dir.join(format!("bench-{}.db", rand::random::<u64>()));
    let store = Arc::new(SqliteTicketStore::open_with(
        &path,
        &StoreOptions::default(),
    )?);
    let tickets = Arc::new(tickets);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (store, tickets, next) = (store.clone(), tickets.clone(), next.clone());
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ticket) = tickets.get(i) else {
                        return Ok(());
                    };
                    match store.begin(ticket).map_err(|e| e.to_string())? {
                        Redemption::Execute(guard) => {
                            guard
                                .commit(Outcome::Succeeded, serde_json::json!({"ok": true}))
                                .map_err(|e| e.to_string())?;
                        }
                        other => return Err(format!("fresh ticket not executable: {other:?}")),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "redeemer thread panicked")??;
    }
    let elapsed = start.elapsed();
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(BenchResult {
        name: "durable redemption (SQLite)",
        ops: total,
        elapsed,
    })
}

/// Baseline: `n` bare Ed25519 signatures over a ticket-sized message, for comparison with
/// [`issue`] on the same machine.
pub fn raw_sign(n: u64) -> BenchResult {
    let signer = Signer::from_seed(&[42; 32]);
    let message = [0x5a_u8; 900];
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(signer.sign(std::hint::black_box(&message)));
    }
    BenchResult {
        name: "baseline: ed25519 sign",
        ops: n,
        elapsed: start.elapsed(),
    }
}

/// Baseline: `n` bare Ed25519 verifications (RFC 8032, as tickets use), for comparison with
/// [`verify`] on the same machine.
///
/// # Errors
/// When the signature does not verify (not expected).
pub fn raw_verify(n: u64) -> Result<BenchResult, BenchError> {
    let signer = Signer::from_seed(&[42; 32]);
    let key = signer.verifying_key();
    let message = [0x5a_u8; 900];
    let signature = signer.sign(&message);
    let start = Instant::now();
    for _ in 0..n {
        ed25519_dalek::Verifier::verify(&key, std::hint::black_box(&message), &signature)?;
    }
    Ok(BenchResult {
        name: "baseline: ed25519 verify",
        ops: n,
        elapsed: start.elapsed(),
    })
}

/// Runs every benchmark with default sizes; `dir` holds the SQLite file (use a real disk).
///
/// # Errors
/// As the individual benchmarks.
pub fn run_all(dir: &Path) -> Result<Vec<BenchResult>, BenchError> {
    Ok(vec![
        raw_sign(20_000),
        issue(50_000)?,
        raw_verify(20_000)?,
        verify(30_000)?,
        redeem(dir, 20_000, 64)?,
    ])
}
