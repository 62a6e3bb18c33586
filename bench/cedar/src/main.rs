//! Runs a generated workload through `cedar-policy` and prints its latency as one JSON line.
//!
//! Usage: `agentsafe-bench-cedar WORKLOAD.json`, where the workload (written by
//! `agentsafe-bench`) holds `policies` (Cedar text), `entities` (Cedar JSON) and `requests`
//! (`[principal, action, resource]` ids).

#![allow(
    clippy::indexing_slicing,
    reason = "benchmark binary: every index is taken modulo its slice length"
)]

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context as _;

fn uid(ty: &str, id: &str) -> anyhow::Result<cedar_policy::EntityUid> {
    let tn: cedar_policy::EntityTypeName = ty.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let id: cedar_policy::EntityId = id.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(cedar_policy::EntityUid::from_type_name_and_id(tn, id))
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: agentsafe-bench-cedar WORKLOAD.json")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let w: serde_json::Value = serde_json::from_str(&text)?;
    let started = Instant::now();
    let policies: cedar_policy::PolicySet = w["policies"]
        .as_str()
        .context("policies")?
        .parse()
        .map_err(|e| anyhow::anyhow!("cedar policies: {e}"))?;
    let entities = cedar_policy::Entities::from_json_value(w["entities"].clone(), None)
        .map_err(|e| anyhow::anyhow!("cedar entities: {e}"))?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let requests: Vec<cedar_policy::Request> = w["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .map(|r| {
            let s = |i: usize| {
                r.get(i)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
            };
            cedar_policy::Request::new(
                uid("Agent", s(0))?,
                uid("Action", s(1))?,
                uid("Target", s(2))?,
                cedar_policy::Context::empty(),
                None,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!requests.is_empty(), "no requests");
    let authorizer = cedar_policy::Authorizer::new();
    let n = 20_000usize;
    for i in 0..n / 10 {
        black_box(authorizer.is_authorized(&requests[i % requests.len()], &policies, &entities));
    }
    let mut samples: Vec<u64> = Vec::with_capacity(n);
    let mut allowed = 0usize;
    for i in 0..n {
        let t = Instant::now();
        let resp = authorizer.is_authorized(
            black_box(&requests[i % requests.len()]),
            &policies,
            &entities,
        );
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if resp.decision() == cedar_policy::Decision::Allow {
            allowed += 1;
        }
    }
    samples.sort_unstable();
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let out = serde_json::json!({"load_ms": load_ms, "p50_ns": pick(0.5), "p99_ns": pick(0.99), "allowed": allowed, "n": n});
    std::io::Write::write_all(&mut std::io::stdout(), format!("{out}\n").as_bytes())?;
    Ok(())
}
