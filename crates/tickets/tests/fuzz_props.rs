//! Fuzz-style property tests of token verification: identity tokens and tickets, on
//! arbitrary strings, on mutations of valid tokens, and on validly signed arbitrary claims.
//! Verification never panics, never accepts a mutated token, and every refusal carries a
//! stable code.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use std::sync::LazyLock;

use agentsafe_core::ReasonCode;
use agentsafe_tickets::bench::sample_decision;
use agentsafe_tickets::danger::TicketIssuer;
use agentsafe_tickets::{
    HumanDuration, IdentityConfig, IdentityError, IdentityIssuer, IdentityRequest,
    IdentityVerifier, KeySet, Signer, TicketConfig, TicketError, TicketVerifier,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

const SEED: [u8; 32] = [7; 32];

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

/// Identity and ticket verifiers trusting the one test key.
static VERIFIERS: LazyLock<(IdentityVerifier, TicketVerifier)> = LazyLock::new(|| {
    let keys = KeySet::from_keys([Signer::from_seed(&SEED).verifying_key()]).unwrap();
    (
        IdentityVerifier::new(keys.clone(), &IdentityConfig::default()),
        TicketVerifier::new(keys, &TicketConfig::default()),
    )
});

/// Valid tokens: a direct identity, a delegated identity, and a ticket.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let config = IdentityConfig::default();
    let issuer = IdentityIssuer::new(Signer::from_seed(&SEED), &config).unwrap();
    let ttl = HumanDuration::from_secs(3600);
    let root = issuer
        .issue(
            &IdentityRequest {
                agent: "deploy-bot".into(),
                roles: vec!["operator".into(), "sre".into()],
                groups: vec!["platform".into()],
            },
            ttl,
            now(),
        )
        .unwrap();
    let parent = VERIFIERS.0.verify(&root.token, now()).unwrap();
    let child = issuer
        .delegate(
            &parent,
            &IdentityRequest {
                agent: "helper".into(),
                roles: vec!["operator".into()],
                groups: vec![],
            },
            None,
            now(),
        )
        .unwrap();
    let ticket = TicketIssuer::new(Signer::from_seed(&SEED), &TicketConfig::default())
        .unwrap()
        .issue(&sample_decision(1), now())
        .unwrap()
        .into_token();
    vec![root.token, child.token, ticket]
});

/// Codes a token can get without the key's signature on its claims.
const UNSIGNED_CODES: &[&str] = &[
    "malformed",
    "wrong_type",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
];

/// Codes verification may give at all.
const VERIFY_CODES: &[&str] = &[
    "malformed",
    "wrong_type",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "delegation_too_deep",
    "invalid_delegation",
    "params_digest_mismatch",
];

fn identity_code(e: &IdentityError) -> &'static str {
    let expected = if e.code() == "delegation_too_deep" {
        ReasonCode::DelegationTooDeep
    } else {
        ReasonCode::InvalidIdentity
    };
    assert_eq!(e.reason_code(), expected, "{e}");
    e.code()
}

fn ticket_code(e: &TicketError) -> &'static str {
    e.code()
}

/// Both verifiers refuse `token` (or accept it only if it is one of the valid tokens, for
/// the verifier of its kind), with a code in `codes`.
fn refused(token: &str, codes: &[&str]) -> Result<(), TestCaseError> {
    let (identities, tickets) = &*VERIFIERS;
    match identities.verify(token, now()) {
        Ok(v) => prop_assert!(
            false,
            "a mutated identity token verified: {:?}",
            v.subject()
        ),
        Err(e) => prop_assert!(codes.contains(&identity_code(&e)), "identity: {e}"),
    }
    match tickets.verify(token, now()) {
        Ok(v) => prop_assert!(false, "a mutated ticket verified: {:?}", v.nonce()),
        Err(e) => prop_assert!(codes.contains(&ticket_code(&e)), "ticket: {e}"),
    }
    Ok(())
}

/// One edit of a compact JWS.
#[derive(Debug, Clone)]
enum Edit {
    /// Replaces a character of part `.0` by `.2`.
    Set(Index, Index, char),
    Insert(Index, Index, char),
    Delete(Index, Index),
    SwapParts(Index, Index),
    DuplicatePart(Index),
    DropPart(Index),
}

/// Characters a token may be mangled with: base64url, the separator, and a few others.
fn token_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .map(char::from)
                .to_vec()
        ),
        1 => prop::sample::select(vec!['.', '=', '+', '/', ' ', '\n', '\0', 'é', '\u{ff0e}']),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<Index>;
    prop_oneof![
        3 => (i(), i(), token_char()).prop_map(|(p, c, x)| Edit::Set(p, c, x)),
        2 => (i(), i(), token_char()).prop_map(|(p, c, x)| Edit::Insert(p, c, x)),
        2 => (i(), i()).prop_map(|(p, c)| Edit::Delete(p, c)),
        1 => (i(), i()).prop_map(|(a, b)| Edit::SwapParts(a, b)),
        1 => i().prop_map(Edit::DuplicatePart),
        1 => i().prop_map(Edit::DropPart),
    ]
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut parts: Vec<Vec<char>> = token.split('.').map(|p| p.chars().collect()).collect();
    for e in edits {
        let n = parts.len();
        if n == 0 {
            parts.push(Vec::new());
            continue;
        }
        match e {
            Edit::Set(p, c, x) => {
                let part = &mut parts[p.index(n)];
                if !part.is_empty() {
                    let k = c.index(part.len());
                    part[k] = *x;
                }
            }
            Edit::Insert(p, c, x) => {
                let part = &mut parts[p.index(n)];
                let k = c.index(part.len() + 1);
                part.insert(k, *x);
            }
            Edit::Delete(p, c) => {
                let part = &mut parts[p.index(n)];
                if !part.is_empty() {
                    let k = c.index(part.len());
                    part.remove(k);
                }
            }
            Edit::SwapParts(a, b) => parts.swap(a.index(n), b.index(n)),
            Edit::DuplicatePart(p) => {
                let k = p.index(n);
                parts.insert(k, parts[k].clone());
            }
            Edit::DropPart(p) => {
                parts.remove(p.index(n));
            }
        }
    }
    parts
        .iter()
        .map(|p| p.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(".")
}

/// A compact JWS over arbitrary claims, validly signed by the trusted key.
fn sign(typ: &str, claims: &[u8]) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let kid = Signer::from_seed(&SEED).kid().to_owned();
    let header = json!({ "alg": "EdDSA", "kid": kid, "typ": typ });
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    token
}

/// The claims of a valid token, as JSON.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![any::<String>(), "[a-z_]{0,8}", Just(String::new())].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A claim edit: replace, remove or add one member, somewhere in the object tree.
fn claim_edits() -> impl Strategy<Value = Vec<(Index, Option<Value>, String)>> {
    prop::collection::vec(
        (
            any::<Index>(),
            prop::option::of(json_value()),
            "[a-z_]{1,6}",
        ),
        1..4,
    )
}

fn edit_claims(value: &mut Value, edits: &[(Index, Option<Value>, String)]) {
    for (at, new, extra) in edits {
        let Value::Object(map) = value else { return };
        let keys: Vec<String> = map.keys().cloned().collect();
        if keys.is_empty() {
            continue;
        }
        let key = &keys[at.index(keys.len())];
        match new {
            Some(v) => {
                if map.get(key).is_some_and(Value::is_object) && at.index(2) == 0 {
                    // Descend into a nested object (an `act` hop, the caller, the params).
                    edit_claims(&mut map[key], &[(*at, Some(v.clone()), extra.clone())]);
                } else {
                    map.insert(key.clone(), v.clone());
                }
            }
            None => {
                map.remove(key);
            }
        }
        if at.index(3) == 0 {
            map.insert(extra.clone(), Value::Null);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_are_refused_with_a_code(token in any::<String>()) {
        refused(&token, UNSIGNED_CODES)?;
    }

    #[test]
    fn jws_shaped_strings_are_refused_with_a_code(token in "[A-Za-z0-9_=.-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,90}") {
        refused(&token, UNSIGNED_CODES)?;
    }

    #[test]
    fn a_mutated_token_never_verifies(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..4)) {
        let token = &TOKENS[which.index(TOKENS.len())];
        let mutated = apply(token, &edits);
        // Surrounding whitespace is trimmed, so a token with only that added is the same token.
        prop_assume!(mutated.trim() != token.as_str());
        refused(&mutated, UNSIGNED_CODES)?;
    }

}

// Signing runs unoptimised in tests (a few milliseconds each), so these take a quarter of the cases.
proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases / 4, ..config() })]

    #[test]
    fn signed_arbitrary_claims_never_panic(claims in json_value(), ticket in any::<bool>()) {
        let typ = if ticket { "agentsafe-ticket+jwt" } else { "JWT" };
        let token = sign(typ, &serde_json::to_vec(&claims).unwrap());
        let (identities, tickets) = &*VERIFIERS;
        if let Err(e) = identities.verify(&token, now()) {
            prop_assert!(VERIFY_CODES.contains(&identity_code(&e)), "{e}");
        }
        if let Err(e) = tickets.verify(&token, now()) {
            prop_assert!(VERIFY_CODES.contains(&ticket_code(&e)), "{e}");
        }
    }

    #[test]
    fn signed_edited_claims_never_panic(which in any::<Index>(), edits in claim_edits()) {
        let original = &TOKENS[which.index(TOKENS.len())];
        let mut c = claims(original);
        edit_claims(&mut c, &edits);
        for typ in ["JWT", "agentsafe-ticket+jwt"] {
            let token = sign(typ, &serde_json::to_vec(&c).unwrap());
            let (identities, tickets) = &*VERIFIERS;
            if let Err(e) = identities.verify(&token, now()) {
                prop_assert!(VERIFY_CODES.contains(&identity_code(&e)), "{e}");
            }
            if let Err(e) = tickets.verify(&token, now()) {
                prop_assert!(VERIFY_CODES.contains(&ticket_code(&e)), "{e}");
            }
        }
    }

    #[test]
    fn signed_raw_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..200)) {
        for typ in ["JWT", "agentsafe-ticket+jwt"] {
            let token = sign(typ, &payload);
            let (identities, tickets) = &*VERIFIERS;
            if let Err(e) = identities.verify(&token, now()) {
                prop_assert!(VERIFY_CODES.contains(&identity_code(&e)), "{e}");
            }
            if let Err(e) = tickets.verify(&token, now()) {
                prop_assert!(VERIFY_CODES.contains(&ticket_code(&e)), "{e}");
            }
        }
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_valid_tokens_verify() {
    let (identities, tickets) = &*VERIFIERS;
    identities.verify(&TOKENS[0], now()).unwrap();
    let child = identities.verify(&TOKENS[1], now()).unwrap();
    assert_eq!(child.delegation_chain(), ["deploy-bot"]);
    tickets.verify(&TOKENS[2], now()).unwrap();
}

#[test]
fn a_deep_signed_actor_chain_is_refused_without_overflowing() {
    // Written as text: building and dropping a deep `Value` recurses in the test itself.
    let base = claims(&TOKENS[0]).to_string();
    let base = base.strip_suffix('}').unwrap();
    for depth in [5usize, 100, 127, 128, 129, 1000] {
        let mut text = format!("{base},\"act\":");
        for i in 0..depth {
            text.push_str(&format!("{{\"sub\":\"a{i}\",\"exp\":1700003600,\"act\":"));
        }
        text.push_str("{\"sub\":\"root\",\"exp\":1700003600}");
        text.push_str(&"}".repeat(depth + 1));
        let token = sign("JWT", text.as_bytes());
        let code = VERIFIERS.0.verify(&token, now()).map(|_| ()).unwrap_err();
        assert!(
            VERIFY_CODES.contains(&identity_code(&code)),
            "{depth}: {code}"
        );
    }
}
