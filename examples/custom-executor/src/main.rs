//! The custom executor in-process: a decision through the gate (identity token, policy,
//! limits, ticket, audit record), then the ticket through the runner, then a replay.
//!
//! `cargo run -p agentsafe-example-custom-executor`

#![allow(
    clippy::print_stdout,
    reason = "an example program prints what it does"
)]

use std::path::Path;
use std::sync::Arc;

use agentsafe_core::{Params, Request, Timestamp};
use agentsafe_example_custom_executor::ReplicaBook;
use agentsafe_gate::{Claimed, Gate, GatePaths, GateSettings};
use agentsafe_runner::{RunKind, Runner, SimulatedProvider};
use agentsafe_tickets::keys::{self, KeyPurpose};
use agentsafe_tickets::{
    HumanDuration, IdentityIssuer, IdentityRequest, KeySet, MemoryTicketStore, Signer,
    TicketVerifier,
};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir()?;
    let key_dir = dir.path().join("keys");
    keys::generate_key_files(&key_dir, &KeyPurpose::ALL, false)?;
    let settings = GateSettings::new(GatePaths {
        actions: root.join("actions"),
        policies: root.join("policies"),
        inventory: root.join("inventory.toml"),
        state_dir: dir.path().join("state"),
        key_dir: key_dir.clone(),
        base: root.clone(),
    });
    let tickets = settings.config.tickets.clone();
    let gate = Arc::new(Gate::open(settings)?);

    // 1. The agent's identity token, and a decision through the gate: audited and ticketed.
    let identity = IdentityIssuer::new(
        Signer::load(&KeyPurpose::Identity.private_key_path(&key_dir))?,
        &Default::default(),
    )?;
    let who = IdentityRequest {
        agent: "example-agent".into(),
        roles: vec!["developer".into()],
        groups: Vec::new(),
    };
    let token = identity.issue(&who, HumanDuration::from_secs(600), Timestamp::now())?;
    let mut params = Params::new();
    params.insert("replicas".into(), 6.into());
    let outcome = gate.check(
        &Claimed::token(token.token),
        Request {
            action: "scale-deployment".into(),
            target: "staging/api-server".into(),
            params,
            ..Request::default()
        },
    );
    println!(
        "decision: {} ({}), audit entry {:?}",
        outcome.decision.decision.label(),
        outcome.decision.reason,
        outcome.audit_seq
    );
    let ticket = outcome
        .ticket
        .ok_or_else(|| anyhow::anyhow!("not allowed: {}", outcome.decision.reason))?;

    // 2. The custom executor, through the pipeline, recording into the gate's audit log.
    let book = Arc::new(ReplicaBook::default());
    book.set("staging/api-server", 2);
    let verifier = TicketVerifier::new(
        KeySet::load(&[KeyPurpose::Ticket.public_key_path(&key_dir)])?,
        &tickets,
    );
    let store = MemoryTicketStore::new();
    let audit = gate.audit_log()?;
    let credentials = SimulatedProvider::new();
    let pdp = gate.pdp();
    let runner = Runner::new(
        pdp.registry(),
        pdp.inventory(),
        &verifier,
        &store,
        &audit,
        &credentials,
    );
    let report = runner.run_blocking(&ticket, book.clone(), &RunKind::Execution)?;
    println!(
        "run: {} ({}): {}",
        report.outcome, report.reason_code, report.message
    );
    println!("state diff: {:?}", report.record.diff);
    println!("credentials still live: {}", credentials.live());

    // 3. The same ticket again is refused: it executes at most once.
    let replay = runner.run_blocking(&ticket, book, &RunKind::Execution)?;
    println!("replay: {} ({})", replay.outcome, replay.reason_code);
    gate.shutdown()?;
    Ok(())
}
