//! Tests of ticket issuance and verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::bench::sample_decision;
use crate::config::IdentityConfig;
use crate::duration::HumanDuration;
use crate::identity::{IdentityIssuer, IdentityRequest, IdentityVerifier};

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn seed_signer() -> Signer {
    Signer::from_seed(&[2; 32])
}

fn setup_with(config: &TicketConfig) -> (TicketIssuer, TicketVerifier) {
    let signer = seed_signer();
    let keys = KeySet::from_keys([signer.verifying_key()]).unwrap();
    (
        TicketIssuer::new(signer, config).unwrap(),
        TicketVerifier::new(keys, config),
    )
}

fn setup() -> (TicketIssuer, TicketVerifier) {
    setup_with(&TicketConfig::default())
}

fn forge(signer: &Signer, kid: &str, typ: &str, claims: &serde_json::Value) -> String {
    let header = jws::encode_header(kid, typ).unwrap();
    jws::sign(
        signer,
        &header,
        &agentsafe_core::canonical::to_vec(claims).unwrap(),
    )
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn issue_and_verify_round_trip() {
    let (issuer, verifier) = setup();
    let decision = sample_decision(1);
    let signed = issuer.issue(&decision, at(T0)).unwrap();
    assert_eq!(signed.expires_at(), at(T0 + 300));
    let t = verifier
        .verify_for(
            signed.token(),
            "scale-deployment",
            "prod/payments",
            at(T0 + 1),
        )
        .unwrap();
    assert_eq!(t.nonce(), signed.nonce());
    assert_eq!(t.action(), "scale-deployment");
    assert_eq!(t.target(), "prod/payments");
    assert_eq!(t.caller(), &decision.caller);
    assert_eq!(t.params(), &decision.params);
    assert_eq!(t.params_digest(), params_digest(&decision.params).unwrap());
    assert_eq!(t.decision_id(), decision.decision_id);
    assert_eq!(t.policy_hash(), &*decision.policy_hash);
    assert_eq!(t.audience(), "agentsafe-runner");
    assert_eq!(t.kid(), issuer.kid());
    // The nonce starts with the issuance time in milliseconds.
    assert_eq!(signed.nonce().as_u128() >> 80, u128::from(T0 as u64 * 1000));
    assert_ne!(
        issuer.issue(&decision, at(T0)).unwrap().nonce(),
        signed.nonce()
    );
}

#[test]
fn params_digest_is_sha256_of_canonical_params() {
    let params: Params = serde_json::from_str(r#"{"b":1,"a":"x"}"#).unwrap();
    // sha256 of `{"a":"x","b":1}`.
    assert_eq!(
        params_digest(&params).unwrap(),
        format!("sha256:{}", hex(&Sha256::digest(br#"{"a":"x","b":1}"#)))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hand-assembled claims are exactly the RFC 8785 form of the claims struct.
#[test]
fn fast_claims_encoding_is_canonical() {
    let mut decision = sample_decision(7);
    decision.action = "a\"ction\u{e9}\u{1f600}".into();
    decision.target.id = "t/\\x\n".into();
    decision.params.insert(
        "nested".into(),
        serde_json::json!({"z": [1.5, null, "é"], "a": 1e21}),
    );
    decision.caller.delegation_chain.clear();
    for decision in [decision, sample_decision(8)] {
        let nonce = Nonce::from(0x018b_cfe5_6800_0000_0000_0000_0000_0042);
        let fast = encode_claims(&decision, "aud\u{2028}", T0, T0 + 300, nonce).unwrap();
        let claims = TicketClaims {
            action: decision.action.clone(),
            aud: "aud\u{2028}".into(),
            caller: decision.caller.clone(),
            decision_id: decision.decision_id,
            exp: T0 + 300,
            iat: T0,
            nonce,
            params: decision.params.clone(),
            params_digest: params_digest(&decision.params).unwrap(),
            policy_hash: decision.policy_hash.to_string(),
            target: decision.target.id.clone(),
        };
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            agentsafe_core::canonical::to_string(&claims).unwrap()
        );
    }
}

/// A fixed seed, fixed decision, time and nonce give exactly these bytes.
#[test]
fn known_answer_ticket() {
    let (issuer, verifier) = setup();
    let nonce = Nonce::from(0x018b_cfe5_6800_0000_0000_0000_0000_0001);
    let signed = issuer
        .issue_with_nonce(&sample_decision(1), at(T0), nonce)
        .unwrap();
    assert_eq!(signed.token(), KAT_TICKET);
    crate::identity::tests::standard_jwt_check(
        signed.token(),
        &seed_signer().verifying_key(),
        TICKET_TYP,
    );
    assert!(verifier.verify(KAT_TICKET, at(T0)).is_ok());
}

/// Also checked outside Rust: OpenSSL 3 (`openssl pkeyutl -verify -rawin`) accepts the
/// signature over `header.payload` with the public key of the fixed seed.
const KAT_TICKET: &str = concat!(
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImFWQnRhcExkMTFTVVZLSU1HSmZQek9FRHVOMHNYY216SlFOVlQtX3NLRVUiLCJ0eXAiOiJhZ2VudHNhZmUtdGlja2V0K2p3dCJ9.",
    "eyJhY3Rpb24iOiJzY2FsZS1kZXBsb3ltZW50IiwiYXVkIjoiYWdlbnRzYWZlLXJ1bm5lciIsImNhbGxlciI6eyJhdXRoZW50aWNhdGVkIjp0cnVlLCJkZWxlZ2F0aW9uX2NoYWluIjpbImFsaWNlIl0sImdyb3VwcyI6WyJzcmUiXSwiaWQiOiJkZXBsb3ktYm90Iiwicm9sZXMiOlsib3BlcmF0b3IiXX0sImRlY2lzaW9uX2lkIjoiMDE4YmNmZTU2ODAxMDAwMDAwMDAwMDAwMDAwMDAwMDEiLCJleHAiOjE3MDAwMDAzMDAsImlhdCI6MTcwMDAwMDAwMCwibm9uY2UiOiIwMThiY2ZlNTY4MDAwMDAwMDAwMDAwMDAwMDAwMDAwMSIsInBhcmFtcyI6eyJkZXBsb3ltZW50IjoiYXBpIiwibmFtZXNwYWNlIjoicGF5bWVudHMiLCJyZXBsaWNhcyI6NH0sInBhcmFtc19kaWdlc3QiOiJzaGEyNTY6NTY1YWI2YmZlNDAwMDk2MWZhZTNjZjkzYmFjYzFmZjc4ZWEwYmFmOGI5YTI5M2JlY2YxZTM5ZmFlYzc4ODhkYyIsInBvbGljeV9oYXNoIjoic2hhMjU2OjBmMWUyZDNjNGI1YTY5Nzg4Nzk2YTViNGMzZDJlMWYwMGYxZTJkM2M0YjVhNjk3ODg3OTZhNWI0YzNkMmUxZjAiLCJ0YXJnZXQiOiJwcm9kL3BheW1lbnRzIn0.",
    "zwsaZw9aTbTZqVOiDBxkILBr0DPNua3XeUJC7KQxRMbLUEZi4nIm13O-M3vfaELCnE9NOlf-bDMnFhFPWvL6AQ"
);

#[test]
fn only_allow_decisions_get_tickets() {
    let (issuer, _) = setup();
    for verdict in [Verdict::Deny, Verdict::RequireApproval] {
        let mut decision = sample_decision(1);
        decision.decision = verdict;
        let err = issuer.issue(&decision, at(T0)).unwrap_err();
        assert!(
            matches!(err, TicketError::NotAllowed(v) if v == verdict),
            "{err}"
        );
    }
}

#[test]
fn each_failure_has_its_own_reason() {
    let (issuer, verifier) = setup();
    let good = issuer
        .issue(&sample_decision(1), at(T0))
        .unwrap()
        .into_token();
    let code = |token: &str, now: i64| verifier.verify(token, at(now)).unwrap_err().code();
    let parts: Vec<&str> = good.split('.').collect();

    // Tampered params: payload edited and re-encoded.
    let mut claims = claims_of(&good);
    claims["params"]["replicas"] = serde_json::json!(300);
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(agentsafe_core::canonical::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(code(&edited, T0), "bad_signature");

    // Tampered params with a recomputed signature by the right key but a stale digest: only
    // a buggy or compromised issuer could do this, and the digest still catches it.
    let digest_off = forge(&seed_signer(), issuer.kid(), TICKET_TYP, &claims);
    assert_eq!(code(&digest_off, T0), "params_digest_mismatch");

    // Wrong key claiming the trusted key id; unknown key id.
    let other = Signer::from_seed(&[3; 32]);
    assert_eq!(
        code(
            &forge(&other, issuer.kid(), TICKET_TYP, &claims_of(&good)),
            T0
        ),
        "bad_signature"
    );
    assert_eq!(
        code(
            &forge(&other, other.kid(), TICKET_TYP, &claims_of(&good)),
            T0
        ),
        "unknown_key"
    );

    // Audience.
    let cfg = TicketConfig {
        audience: "other-runner".into(),
        ..TicketConfig::default()
    };
    let (other_issuer, _) = setup_with(&cfg);
    let t = other_issuer
        .issue(&sample_decision(1), at(T0))
        .unwrap()
        .into_token();
    assert_eq!(code(&t, T0), "wrong_audience");

    // Expiry and issuance time, with the 30 s skew allowance.
    assert!(verifier.verify(&good, at(T0 + 300 + 30)).is_ok());
    assert_eq!(code(&good, T0 + 300 + 31), "expired");
    assert!(verifier.verify(&good, at(T0 - 30)).is_ok());
    assert_eq!(code(&good, T0 - 31), "not_yet_valid");

    // Expected action and target.
    let err = verifier
        .verify_for(&good, "delete-deployment", "prod/payments", at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "action_mismatch");
    let err = verifier
        .verify_for(&good, "scale-deployment", "prod/ledger", at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "target_mismatch");
    assert!(err.to_string().contains("`prod/ledger`"));

    // Malformed.
    for bad in ["", "x", "a.b.c", &format!("{}.{}", parts[0], parts[1])] {
        assert_eq!(code(bad, T0), "malformed", "{bad:?}");
    }
    let mut extra = claims_of(&good);
    extra["admin"] = serde_json::json!(true);
    assert_eq!(
        code(&forge(&seed_signer(), issuer.kid(), TICKET_TYP, &extra), T0),
        "malformed"
    );
}

/// A second encoding of the same signature (`S + L`, the group order added) is refused:
/// only canonical signatures verify.
#[test]
fn non_canonical_signature_is_refused() {
    let (issuer, verifier) = setup();
    let good = issuer
        .issue(&sample_decision(1), at(T0))
        .unwrap()
        .into_token();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let malleated = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_ne!(malleated, good);
    assert_eq!(
        verifier.verify(&malleated, at(T0)).unwrap_err().code(),
        "bad_signature"
    );
}

/// An identity token is never a ticket and a ticket is never an identity token, even when
/// both are signed by the same key.
#[test]
fn identity_and_ticket_cannot_be_confused() {
    let signer = seed_signer();
    let keys = KeySet::from_keys([signer.verifying_key()]).unwrap();
    let id_cfg = IdentityConfig::default();
    let identity_issuer = IdentityIssuer::new(Signer::from_seed(&[2; 32]), &id_cfg).unwrap();
    let identity_verifier = IdentityVerifier::new(keys.clone(), &id_cfg);
    let (ticket_issuer, ticket_verifier) = setup();

    let identity = identity_issuer
        .issue(
            &IdentityRequest {
                agent: "bot".into(),
                ..IdentityRequest::default()
            },
            HumanDuration::from_secs(60),
            at(T0),
        )
        .unwrap()
        .token;
    let ticket = ticket_issuer
        .issue(&sample_decision(1), at(T0))
        .unwrap()
        .into_token();

    let err = ticket_verifier.verify(&identity, at(T0)).unwrap_err();
    assert_eq!(err.code(), "wrong_type", "{err}");
    let err = identity_verifier.verify(&ticket, at(T0)).unwrap_err();
    assert_eq!(err.code(), "wrong_type", "{err}");
}

#[test]
fn unverified_decoding_for_display() {
    let (issuer, _) = setup();
    let token = issuer
        .issue(&sample_decision(1), at(T0))
        .unwrap()
        .into_token();
    let (header, claims) = danger::decode_unverified(&token).unwrap();
    assert_eq!(header["typ"], TICKET_TYP);
    assert_eq!(claims["action"], "scale-deployment");
    assert!(danger::decode_unverified("nope").is_err());
}

#[test]
fn nonce_text_round_trip() {
    let n = Nonce::from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    assert_eq!(n.to_string(), "0123456789abcdef0123456789abcdef");
    assert_eq!(n.to_string().parse::<Nonce>().unwrap(), n);
    assert!("0123456789ABCDEF0123456789abcdef".parse::<Nonce>().is_err());
    assert!("+123456789abcdef0123456789abcdef".parse::<Nonce>().is_err());
    assert!("12".parse::<Nonce>().is_err());
}
