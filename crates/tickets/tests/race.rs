//! Sixteen processes race to redeem one ticket against one SQLite file: exactly one executes.
//!
//! The test binary re-executes itself: with `AGENTSAFE_TICKETS_RACE_DIR` set, the test body
//! acts as one racing child instead of the parent.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use agentsafe_tickets::bench::sample_decision;
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{
    KeySet, Outcome, Redemption, Signer, SqliteTicketStore, TicketConfig, TicketStore,
    TicketVerifier, keys,
};

const CHILD_ENV: &str = "AGENTSAFE_TICKETS_RACE_DIR";
const CHILDREN: usize = 16;

#[test]
fn sixteen_processes_redeem_one_ticket_once() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir)).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate();
    let public = dir.path().join("ticket.pub.pem");
    let private = dir.path().join("ticket.key.pem");
    signer.write_key_files(&private, &public, false).unwrap();
    let config = TicketConfig::default();
    let now = jiff::Timestamp::now();
    let issuer = TicketIssuer::new(signer, &config).unwrap();
    let ticket = issuer.issue(&sample_decision(1), now).unwrap();
    fs::write(dir.path().join("ticket.jwt"), ticket.token()).unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "sixteen_processes_redeem_one_ticket_once",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until every child has opened the store, then release them all at once.
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for reader in &mut readers {
        let mut line = String::new();
        // The harness prints `test NAME ... ` without a newline before the child's output.
        while !line.contains("READY") {
            line.clear();
            assert_ne!(
                reader.read_line(&mut line).unwrap(),
                0,
                "child exited early"
            );
        }
    }
    for child in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }
    let mut results = Vec::new();
    for (child, reader) in children.iter_mut().zip(readers) {
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some((_, result)) = line.split_once("RESULT ") {
                results.push(result.trim().to_owned());
            }
        }
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(results.len(), CHILDREN, "{results:?}");
    let executed = results.iter().filter(|r| *r == "execute").count();
    assert_eq!(executed, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r == "execute" || r == "committed" || r == "blocked"),
        "{results:?}"
    );
    // The side effect happened once.
    let log = fs::read_to_string(dir.path().join("executions")).unwrap();
    assert_eq!(log.lines().count(), 1);

    // And a replay after all of them stopped gets the receipt.
    let verifier = TicketVerifier::new(
        KeySet::from_keys([keys::load_public_key(&public).unwrap()]).unwrap(),
        &config,
    );
    let verified = verifier.verify(ticket.token(), now).unwrap();
    let store = SqliteTicketStore::open(&dir.path().join("agentsafe.db")).unwrap();
    match store.begin(&verified).unwrap() {
        Redemption::AlreadyCommitted(r) => assert_eq!(r.outcome, Outcome::Succeeded),
        other => panic!("expected the receipt, got {other:?}"),
    }
}

/// One racing process: verify the ticket, open the shared store, wait for the start signal,
/// try to redeem, and report the result on stdout.
fn child(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let config = TicketConfig::default();
    let key = keys::load_public_key(&dir.join("ticket.pub.pem"))?;
    let verifier = TicketVerifier::new(KeySet::from_keys([key])?, &config);
    let token = fs::read_to_string(dir.join("ticket.jwt"))?;
    let ticket = verifier.verify(&token, jiff::Timestamp::now())?;
    let store = SqliteTicketStore::open(&dir.join("agentsafe.db"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let result = match store.begin(&ticket)? {
        Redemption::Execute(guard) => {
            // The "action": an append-only side effect the parent can count.
            let mut log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("executions"))?;
            writeln!(log, "executed by {}", std::process::id())?;
            log.sync_all()?;
            guard.commit(
                Outcome::Succeeded,
                serde_json::json!({"pid": std::process::id()}),
            )?;
            "execute"
        }
        Redemption::AlreadyCommitted(_) => "committed",
        Redemption::Blocked { .. } => "blocked",
    };
    writeln!(out, "RESULT {result}")?;
    Ok(())
}
