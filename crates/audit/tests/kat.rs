//! Known-answer vectors, checked byte for byte: RFC 6962 tree heads and proofs (the Certificate
//! Transparency reference vectors), the Go `sumdb/note` signed-note example, and agentsafe's own
//! entries, leaf hashes, root and checkpoint for a fixed key and fixed events (values
//! cross-checked with an independent Python implementation: `hashlib`, `cryptography`).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use agentsafe_audit::keys::key_id;
use agentsafe_audit::merkle::{
    self, Hash, consistency_proof, empty_root, inclusion_proof, leaf_hash, root_of,
    verify_consistency, verify_inclusion,
};
use agentsafe_audit::note::sign_note;
use agentsafe_audit::{
    AuditEvent, Checkpoint, EventType, LoadedFile, Redactor, SigningKey, encode_entry,
};
use agentsafe_core::{
    Caller, Decision, DecisionId, ReasonCode, Risk, Sensitivity, TargetInfo, Timestamp, Verdict,
};

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_leaves() -> Vec<Hash> {
    CT_LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
}

#[test]
fn rfc6962_empty_and_small_tree_roots() {
    assert_eq!(empty_root(), h(CT_ROOTS[0]));
    let leaves = ct_leaves();
    for n in 0..=8 {
        assert_eq!(root_of(&leaves[..n]), h(CT_ROOTS[n]), "tree of {n} leaves");
    }
}

#[test]
fn rfc6962_reference_inclusion_and_consistency_proofs() {
    let leaves = ct_leaves();
    let cases: [(u64, [&str; 3]); 2] = [
        (
            0,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, path) in cases {
        let expected: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        assert_eq!(
            inclusion_proof(&leaves, index).unwrap(),
            expected,
            "inclusion of {index}"
        );
        verify_inclusion(
            &leaves[index as usize],
            index,
            8,
            &expected,
            &h(CT_ROOTS[8]),
        )
        .unwrap();
    }
    let expected = vec![
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ];
    assert_eq!(consistency_proof(&leaves, 2).unwrap(), expected);
    verify_consistency(2, 8, &h(CT_ROOTS[2]), &h(CT_ROOTS[8]), &expected).unwrap();
}

#[test]
fn signed_note_matches_the_go_reference_example() {
    // golang.org/x/mod/sumdb/note: PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
    use base64::Engine as _;
    let skey = base64::engine::general_purpose::STANDARD
        .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    assert_eq!(skey[0], 1, "algorithm byte: Ed25519");
    let key = SigningKey::from_bytes(&skey[1..].try_into().unwrap());
    assert_eq!(
        key_id("PeterNeumann", &key.verifying_key()),
        [0xc7, 0x4f, 0x20, 0xa3]
    );
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    assert_eq!(
        sign_note(text, "PeterNeumann", &key).unwrap(),
        format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        )
    );
}

/// The fixed key of the agentsafe vectors: seed bytes 0x00..0x1f.
fn kat_key() -> SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    SigningKey::from_bytes(&seed)
}

fn kat_decision() -> Decision {
    let mut params = agentsafe_core::Params::new();
    params.insert("replicas".into(), 3.into());
    params.insert("password".into(), "hunter2".into());
    Decision {
        decision_id: DecisionId::from_parts(1_735_787_045_000, 0xabcdef),
        decision: Verdict::Deny,
        reason_code: ReasonCode::DefaultDeny,
        reason: "no rule matched".into(),
        rule_id: None,
        action: "scale-deployment".into(),
        target: TargetInfo {
            id: "prod/payments".into(),
            known: true,
            target_type: Some("k8s-deployment".into()),
            environment: Some("prod".into()),
            sensitivity: Sensitivity::Critical,
        },
        caller: Caller {
            id: "agent-1".into(),
            authenticated: true,
            ..Caller::default()
        },
        action_risk: Some(Risk::Medium),
        effective_risk: Some(Risk::Critical),
        params,
        change_ticket: None,
        evaluated_at: "2025-01-02T03:04:05Z".parse().unwrap(),
        policy_hash: "sha256:0f0e".into(),
        plan_id: None,
        correlation_id: None,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        diagnostics: Vec::new(),
        approval: None,
        risk_score: None,
        escalated_from: None,
    }
}

fn kat_events(key: &SigningKey) -> Vec<(Timestamp, AuditEvent)> {
    let redactor = Redactor::from_signing_key(key);
    vec![
        (
            "2025-01-02T03:04:05Z".parse().unwrap(),
            AuditEvent::config_loaded(
                "sha256:0f0e",
                &[LoadedFile::new("policies/base.toml", b"rule = 1\n")],
            ),
        ),
        (
            "2025-01-02T03:04:05.5Z".parse().unwrap(),
            AuditEvent::decision(&kat_decision(), &["password"], &redactor),
        ),
        (
            "2025-01-02T03:04:06.000001Z".parse().unwrap(),
            AuditEvent::custom(
                EventType::TicketRedeemed,
                serde_json::json!({"action": "scale-deployment"}),
            )
            .with_ticket_nonce("bm9uY2U")
            .with_decision_id("0194263e2c8800000000000000abcdef"),
        ),
    ]
}

const KAT_ENTRIES: [&str; 3] = [
    r#"{"body":{"files":[{"path":"policies/base.toml","sha256":"8e914a85d7c6ea6b3e1d917796a7ef8f0f774d685be343af928c3ca65975a45a"}],"policy_hash":"sha256:0f0e"},"event":"config_loaded","seq":0,"time":"2025-01-02T03:04:05Z","v":1}"#,
    r#"{"body":{"action":"scale-deployment","action_risk":"medium","caller":{"authenticated":true,"id":"agent-1"},"decision":"deny","effective_risk":"critical","evaluated_at":"2025-01-02T03:04:05Z","params":{"password":"hmac-sha256:2b5c736b264bc82cb697bd412d27d6ad5ecfdd0fe44e6370c159135cd8210789","replicas":3},"policy_hash":"sha256:0f0e","reason":"no rule matched","reason_code":"default_deny","redacted_params":["password"],"target":{"environment":"prod","id":"prod/payments","known":true,"sensitivity":"critical","type":"k8s-deployment"}},"event":"decision","links":{"decision_id":"019424f8608800000000000000abcdef","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"prev":"9159dce9249f81d85f52d7d6e6e66a39f543b881aa59b9dfcfb8b5d5f86fbae5","seq":1,"time":"2025-01-02T03:04:05.5Z","v":1}"#,
    r#"{"body":{"action":"scale-deployment"},"event":"ticket_redeemed","links":{"decision_id":"0194263e2c8800000000000000abcdef","ticket_nonce":"bm9uY2U"},"prev":"9e56d0a098dfafc8dca11edd5246496479da61d00995740c66adcc6140a05be8","seq":2,"time":"2025-01-02T03:04:06.000001Z","v":1}"#,
];
const KAT_LEAVES: [&str; 3] = [
    "9159dce9249f81d85f52d7d6e6e66a39f543b881aa59b9dfcfb8b5d5f86fbae5",
    "9e56d0a098dfafc8dca11edd5246496479da61d00995740c66adcc6140a05be8",
    "03bba34f5b72a48d57273293398733e9af14fb81e2299c14c0b61a3a8f88f06d",
];
const KAT_ROOT: &str = "e258a127bc72d1461c65a6a23f802c22e1f3ef0f68fd9f9004bc091779d04759";
const KAT_HMAC: &str =
    "hmac-sha256:2b5c736b264bc82cb697bd412d27d6ad5ecfdd0fe44e6370c159135cd8210789";
/// C2SP tlog-checkpoint without extension lines (regenerated when the `agentsafe/audit/v1`
/// extension line was dropped; signature cross-checked with Python `cryptography`).
const KAT_CHECKPOINT: &str = "agentsafe.local/audit\n3\n4lihJ7xy0UYcZaaiP4AsIuHz7w9o/Z+QBLwJF3nQR1k=\n\n\u{2014} agentsafe.local/audit PqRaJK84gtrx77nOFuvx841YoVBgfIo0OsiXVcvcZ4wSOuAGLtoYpHcRyoLxOq8rmURqRmDs9Ps7i0D9GHVIsu+N9wk=\n";

#[test]
fn agentsafe_entries_leaves_root_and_checkpoint() {
    let key = kat_key();
    let mut prev: Option<Hash> = None;
    let mut leaves = Vec::new();
    for (seq, (time, event)) in kat_events(&key).iter().enumerate() {
        let bytes = encode_entry(seq as u64, *time, prev.as_ref(), event).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        println!("entry {seq}: {text}");
        // The fast concatenation is exactly RFC 8785 canonical JSON of the whole entry.
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            agentsafe_core::canonical::to_vec(&value).unwrap(),
            bytes,
            "entry {seq} is not canonical"
        );
        let leaf = leaf_hash(&bytes);
        println!("leaf {seq}: {leaf}");
        assert_eq!(text, KAT_ENTRIES[seq], "entry {seq}");
        assert_eq!(leaf.to_hex(), KAT_LEAVES[seq], "leaf {seq}");
        prev = Some(leaf);
        leaves.push(leaf);
    }
    let root = merkle::root_of(&leaves);
    println!("root: {root}");
    assert_eq!(root.to_hex(), KAT_ROOT);
    let mac = Redactor::from_signing_key(&key).mac(&serde_json::json!("hunter2"));
    println!("hmac: {mac}");
    assert_eq!(mac, KAT_HMAC);
    let cp = Checkpoint::sign("agentsafe.local/audit", 3, root, &key).unwrap();
    println!("checkpoint:\n{}", cp.note());
    assert_eq!(cp.note(), KAT_CHECKPOINT);
    assert_eq!(
        Checkpoint::from_note(KAT_CHECKPOINT, &key.verifying_key()).unwrap(),
        cp
    );
}

#[test]
fn entries_written_by_the_log_are_canonical_and_chained() {
    let fx = common::Fixture::new();
    fx.write(5, &common::cfg());
    let mut prev: Option<Hash> = None;
    for line in fx.lines() {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(agentsafe_core::canonical::to_string(&value).unwrap(), line);
        assert_eq!(value["prev"].as_str().map(h), prev);
        prev = Some(leaf_hash(line.as_bytes()));
    }
}

/// The checkpoint agentsafe wrote before it dropped the `agentsafe/audit/v1` extension line (for
/// the same key and tree as [`KAT_CHECKPOINT`]): old logs carry such checkpoints, so they must
/// still verify.
const KAT_CHECKPOINT_WITH_EXTENSION: &str = "agentsafe.local/audit\n3\n4lihJ7xy0UYcZaaiP4AsIuHz7w9o/Z+QBLwJF3nQR1k=\nagentsafe/audit/v1\n\n\u{2014} agentsafe.local/audit PqRaJIjYlexWXUief363Hi+oedL3LAnbmPZxiVzszlgble6ECLy1YVgNOVnQd5ShF6sfKe9BYTJNH1sGwtk2r+1suAs=\n";

#[test]
fn checkpoints_are_plain_c2sp_tlog_checkpoints_without_extension_lines() {
    let key = kat_key();
    let cp = Checkpoint::sign("agentsafe.local/audit", 3, h(KAT_ROOT), &key).unwrap();
    let (text, sigs) = cp.note().split_once("\n\n").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "agentsafe.local/audit",
            "3",
            "4lihJ7xy0UYcZaaiP4AsIuHz7w9o/Z+QBLwJF3nQR1k="
        ],
        "origin, tree size and root hash, nothing else"
    );
    assert!(
        sigs.starts_with("\u{2014} agentsafe.local/audit "),
        "{sigs}"
    );
}

#[test]
fn old_checkpoints_with_the_extension_line_still_verify() {
    let key = kat_key();
    let old = Checkpoint::from_note(KAT_CHECKPOINT_WITH_EXTENSION, &key.verifying_key()).unwrap();
    assert_eq!((old.size(), old.root()), (3, h(KAT_ROOT)));
    assert_eq!(old.note(), KAT_CHECKPOINT_WITH_EXTENSION);
    // The signature still covers the extension line: changing it breaks the checkpoint.
    let edited = KAT_CHECKPOINT_WITH_EXTENSION.replace("agentsafe/audit/v1", "agentsafe/audit/v2");
    assert!(Checkpoint::from_note(&edited, &key.verifying_key()).is_err());
}
