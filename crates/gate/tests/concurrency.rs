//! One gate shared by many threads, and reloaded while they decide: every decision is
//! recorded exactly once in a gap-free log that verifies, every ALLOW carries its own
//! ticket, and every decision is made under one whole configuration that the log
//! recorded before it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use agentsafe_core::{Params, Request, Timestamp, Verdict};
use agentsafe_gate::{Claimed, Gate, GatePaths, GateSettings};
use agentsafe_tickets::keys::{self, KeyPurpose};
use agentsafe_tickets::{HumanDuration, IdentityIssuer, IdentityRequest, Signer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    dir: tempfile::TempDir,
    gate: Arc<Gate>,
}

impl Fixture {
    /// A project whose actions and inventory are the shipped ones and whose policies live
    /// in the temporary folder, so a test can rewrite them.
    fn new(policies: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        std::fs::write(pol.join("p.toml"), policies).unwrap();
        keys::generate_key_files(&dir.path().join("keys"), &KeyPurpose::ALL, false).unwrap();
        let paths = GatePaths {
            actions: repo().join("actions"),
            policies: pol,
            inventory: repo().join("inventory.toml"),
            state_dir: dir.path().join("state"),
            key_dir: dir.path().join("keys"),
            base: dir.path().to_owned(),
        };
        let gate = Arc::new(Gate::open(GateSettings::new(paths)).unwrap());
        Fixture { dir, gate }
    }

    fn token(&self, agent: &str) -> String {
        let signer =
            Signer::load(&KeyPurpose::Identity.private_key_path(&self.dir.path().join("keys")))
                .unwrap();
        let issuer = IdentityIssuer::new(signer, &Default::default()).unwrap();
        let who = IdentityRequest {
            agent: agent.into(),
            roles: vec!["developer".into()],
            groups: Vec::new(),
        };
        issuer
            .issue(&who, HumanDuration::from_secs(600), Timestamp::now())
            .unwrap()
            .token
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("state").join("audit.jsonl")
    }

    /// Every entry: (seq, event, body).
    fn entries(&self) -> Vec<(u64, String, serde_json::Value, Option<String>)> {
        let mut out = Vec::new();
        agentsafe_audit::read::for_each_entry(&self.log(), |e, _| {
            let e = e.unwrap();
            let body = serde_json::to_value(&e.body).unwrap();
            out.push((e.seq, e.event.clone(), body, e.links.ticket_nonce.clone()));
        })
        .unwrap();
        out
    }

    fn verify(&self) -> u64 {
        let key = agentsafe_audit::keys::load_verifying_key(
            &KeyPurpose::Audit.public_key_path(&self.dir.path().join("keys")),
        )
        .unwrap();
        agentsafe_audit::verify_log(&self.log(), &key, None)
            .unwrap()
            .entries
    }
}

const ALLOW_STAGING: &str = r#"
[[rules]]
id = "allow-staging-scaling"
priority = 10
decision = "allow"
reason = "staging scaling is fine"
match.actions = ["scale-deployment"]
match.targets.environments = ["staging"]
"#;

const DENY_STAGING: &str = r#"
[[rules]]
id = "deny-staging-scaling"
priority = 10
decision = "deny"
reason = "staging is frozen"
match.actions = ["scale-deployment"]
match.targets.environments = ["staging"]
"#;

fn scale(replicas: u64) -> Request {
    let mut params = Params::new();
    params.insert("replicas".into(), replicas.into());
    Request {
        action: "scale-deployment".into(),
        target: "staging/api-server".into(),
        params,
        ..Request::default()
    }
}

#[test]
fn sixty_four_threads_share_one_gate_and_every_decision_is_recorded_once() {
    const THREADS: usize = 64;
    const EACH: usize = 20;
    let f = Fixture::new(ALLOW_STAGING);
    let tokens: Vec<String> = (0..THREADS)
        .map(|i| f.token(&format!("agent-{i}")))
        .collect();
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let gate = Arc::clone(&f.gate);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let claimed = Claimed::token(token);
                (0..EACH)
                    .map(|n| gate.check(&claimed, scale(((i * EACH + n) % 9 + 1) as u64)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    f.gate.shutdown().unwrap();
    assert_eq!(outcomes.len(), THREADS * EACH);
    let mut nonces = BTreeSet::new();
    let mut seqs = BTreeSet::new();
    for o in &outcomes {
        assert_eq!(o.decision.decision, Verdict::Allow, "{:?}", o.decision);
        assert!(o.ticket.is_some());
        assert!(
            nonces.insert(o.nonce.clone().unwrap()),
            "a nonce issued twice"
        );
        assert!(
            seqs.insert(o.audit_seq.unwrap()),
            "two decisions at one position"
        );
    }
    let entries = f.entries();
    let decisions: Vec<_> = entries.iter().filter(|e| e.1 == "decision").collect();
    assert_eq!(
        decisions.len(),
        THREADS * EACH,
        "each decision recorded exactly once"
    );
    let recorded: BTreeSet<String> = decisions.iter().filter_map(|e| e.3.clone()).collect();
    assert_eq!(
        recorded, nonces,
        "the log names exactly the tickets handed out"
    );
    let positions: Vec<u64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(
        positions,
        (0..entries.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    assert_eq!(f.verify(), entries.len() as u64);
}

#[test]
fn a_reload_under_load_swaps_whole_configurations_recorded_before_their_decisions() {
    const THREADS: usize = 8;
    let f = Fixture::new(ALLOW_STAGING);
    let first_hash = f.gate.pdp().policy_hash().to_owned();
    let token = f.token("agent-r");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (gate, stop, token) = (Arc::clone(&f.gate), Arc::clone(&stop), token.clone());
            std::thread::spawn(move || {
                let claimed = Claimed::token(token);
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    out.push(gate.check(&claimed, scale(2)));
                }
                out
            })
        })
        .collect();
    let policy = f.dir.path().join("policies").join("p.toml");
    let mut hashes = BTreeMap::from([(first_hash.clone(), Verdict::Allow)]);
    for round in 0..6 {
        let (text, verdict) = if round % 2 == 0 {
            (DENY_STAGING, Verdict::Deny)
        } else {
            (ALLOW_STAGING, Verdict::Allow)
        };
        std::fs::write(&policy, text).unwrap();
        let r = f.gate.reload().unwrap();
        hashes.insert(r.policy_hash, verdict);
        // A broken configuration is refused and the one in force keeps deciding.
        std::fs::write(&policy, "[[rules]]\nid = \"x\"\ndecison = \"allow\"\n").unwrap();
        let before = f.gate.pdp().policy_hash().to_owned();
        let err = f.gate.reload().unwrap_err().to_string();
        assert!(err.contains("decison"), "{err}");
        assert_eq!(f.gate.pdp().policy_hash(), before);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<_> = workers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    f.gate.shutdown().unwrap();
    assert!(outcomes.len() > THREADS, "the workers decided");
    // Every decision was made under one whole configuration, and says so.
    for o in &outcomes {
        let hash = o.decision.policy_hash.as_ref();
        let expected = hashes
            .get(hash)
            .unwrap_or_else(|| panic!("unknown configuration {hash}"));
        assert_eq!(o.decision.decision, *expected, "{:?}", o.decision);
    }
    // The log recorded each configuration before the first decision under it.
    let mut loaded = BTreeSet::new();
    let mut refused_reloads = 0;
    for (seq, event, body, _) in f.entries() {
        match event.as_str() {
            "config_loaded" => {
                loaded.insert(body["policy_hash"].as_str().unwrap().to_owned());
            }
            "decision" => {
                let hash = body["policy_hash"].as_str().unwrap();
                assert!(
                    loaded.contains(hash),
                    "decision {seq} under {hash} before its config_loaded"
                );
            }
            "operator" if body["result"] == "refused" => refused_reloads += 1,
            _ => {}
        }
    }
    assert_eq!(refused_reloads, 6, "every refused reload is recorded");
    f.verify();
}
