//! Tests of identity tokens, delegation and caller resolution.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::keys::KeySet;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn config() -> IdentityConfig {
    IdentityConfig::default()
}

fn setup_with(config: &IdentityConfig) -> (IdentityIssuer, IdentityVerifier) {
    let signer = Signer::from_seed(&[1; 32]);
    let keys = KeySet::from_keys([signer.verifying_key()]).unwrap();
    (
        IdentityIssuer::new(signer, config).unwrap(),
        IdentityVerifier::new(keys, config),
    )
}

fn setup() -> (IdentityIssuer, IdentityVerifier) {
    setup_with(&config())
}

fn req(agent: &str, roles: &[&str], groups: &[&str]) -> IdentityRequest {
    IdentityRequest {
        agent: agent.to_owned(),
        roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn hour() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

/// Signs arbitrary claims with `signer` under header `kid`/`typ`, for forged-token tests.
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
    let issued = issuer
        .issue(&req("deploy-bot", &["operator"], &["sre"]), hour(), at(T0))
        .unwrap();
    assert_eq!(issued.expires_at, at(T0 + 3600));
    let identity = verifier.verify(&issued.token, at(T0 + 10)).unwrap();
    assert_eq!(identity.subject(), "deploy-bot");
    assert_eq!(identity.jti(), issued.jti);
    assert_eq!(identity.kid(), issuer.kid());
    let caller = identity.caller();
    assert_eq!(
        caller,
        Caller {
            id: "deploy-bot".into(),
            roles: vec!["operator".into()],
            groups: vec!["sre".into()],
            delegation_chain: vec![],
            authenticated: true,
        }
    );
}

/// A fixed seed and fixed claims give exactly these bytes.
#[test]
fn known_answer_identity_token() {
    let (issuer, _) = setup();
    let token = issuer
        .sign_claims(
            &req("deploy-bot", &["operator"], &["sre"]),
            T0,
            T0 + 3600,
            "018bcfe5680000000000000000000001".to_owned(),
            None,
        )
        .unwrap()
        .token;
    assert_eq!(token, KAT_IDENTITY);
    standard_jwt_check(&token, &Signer::from_seed(&[1; 32]).verifying_key(), "JWT");
}

/// Also checked outside Rust: OpenSSL 3 (`openssl pkeyutl -verify -rawin`) accepts the
/// signature over `header.payload` with the public key of the fixed seed.
const KAT_IDENTITY: &str = concat!(
    "eyJhbGciOiJFZERTQSIsImtpZCI6IlVERFJlT1psMWlwWEFmcDl3WXNtMTNzREJNSzVvZy0tUVdkQmp6dWY2bzQiLCJ0eXAiOiJKV1QifQ.",
    "eyJhdWQiOiJhZ2VudHNhZmUiLCJleHAiOjE3MDAwMDM2MDAsImdyb3VwcyI6WyJzcmUiXSwiaWF0IjoxNzAwMDAwMDAwLCJpc3MiOiJhZ2VudHNhZmUiLCJqdGkiOiIwMThiY2ZlNTY4MDAwMDAwMDAwMDAwMDAwMDAwMDAwMSIsIm5iZiI6MTcwMDAwMDAwMCwicm9sZXMiOlsib3BlcmF0b3IiXSwic3ViIjoiZGVwbG95LWJvdCJ9.",
    "BocW9K3bWvUrHXcT5WMzNLR4d1e6w45wRcqm_qcUqrSN4dOJG4QRXxPaAR8BZ-oxB8oaeGrAfASPzlbv6EywCA"
);

/// What a standard JWT library (PyJWT, jose) does with an EdDSA token: split on `.`, decode
/// unpadded base64url, read `alg`, verify Ed25519 over the ASCII `header.payload`.
pub(crate) fn standard_jwt_check(token: &str, key: &ed25519_dalek::VerifyingKey, typ: &str) {
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
        "only base64url characters and dots, no padding"
    );
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], typ);
    assert_eq!(header["kid"], crate::keys::key_id(key));
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap()
        .try_into()
        .unwrap();
    let message = format!("{}.{}", parts[0], parts[1]);
    key.verify_strict(
        message.as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .unwrap();
}

#[test]
fn each_failure_has_its_own_error() {
    let (issuer, verifier) = setup();
    let good = issuer
        .issue(&req("a", &[], &[]), hour(), at(T0))
        .unwrap()
        .token;
    let code = |token: &str, now: i64| verifier.verify(token, at(now)).unwrap_err().code();

    // Expiry and not-before, with the 30 s skew allowance on both sides.
    assert!(verifier.verify(&good, at(T0 + 3600 + 30)).is_ok());
    assert_eq!(code(&good, T0 + 3600 + 31), "expired");
    assert!(verifier.verify(&good, at(T0 - 30)).is_ok());
    assert_eq!(code(&good, T0 - 31), "not_yet_valid");

    // Payload edited and re-encoded: the signature no longer matches.
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = claims_of(&good);
    claims["roles"] = serde_json::json!(["admin"]);
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(code(&edited, T0), "bad_signature");

    // Signed by another key that claims the trusted key's id.
    let other = Signer::from_seed(&[9; 32]);
    let forged = forge(&other, issuer.kid(), "JWT", &claims_of(&good));
    assert_eq!(code(&forged, T0), "bad_signature");

    // Signed by a key nobody trusts, under its own id.
    let unknown = forge(&other, other.kid(), "JWT", &claims_of(&good));
    assert_eq!(code(&unknown, T0), "unknown_key");

    // A ticket (other typ) is not an identity, even if signed by the identity key.
    let ticket_typ = forge(
        &Signer::from_seed(&[1; 32]),
        issuer.kid(),
        crate::ticket::TICKET_TYP,
        &claims_of(&good),
    );
    assert_eq!(code(&ticket_typ, T0), "wrong_type");

    // Issuer and audience.
    let mut other_cfg = config();
    other_cfg.audience = "elsewhere".into();
    let (aud_issuer, _) = setup_with(&other_cfg);
    let t = aud_issuer
        .issue(&req("a", &[], &[]), hour(), at(T0))
        .unwrap()
        .token;
    assert_eq!(code(&t, T0), "wrong_audience");
    let mut other_cfg = config();
    other_cfg.issuer = "mallory".into();
    let (iss_issuer, _) = setup_with(&other_cfg);
    let t = iss_issuer
        .issue(&req("a", &[], &[]), hour(), at(T0))
        .unwrap()
        .token;
    assert_eq!(code(&t, T0), "wrong_issuer");

    // alg other than EdDSA.
    let header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"none","kid":"{}","typ":"JWT"}}"#,
        issuer.kid()
    ));
    let none = format!("{header}.{}.", parts[1]);
    assert_eq!(code(&none, T0), "unsupported_algorithm");

    // Garbage.
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.x.y",
        &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        assert_eq!(code(bad, T0), "malformed", "{bad:?}");
    }
    // Extra claims are refused (nobody can slip in a `max_depth`).
    let mut extra = claims_of(&good);
    extra["max_delegation_depth"] = serde_json::json!(99);
    let t = forge(&Signer::from_seed(&[1; 32]), issuer.kid(), "JWT", &extra);
    assert_eq!(code(&t, T0), "malformed");

    for e in [
        verifier.verify(&good, at(T0 + 4000)).unwrap_err(),
        verifier.verify(&forged, at(T0)).unwrap_err(),
    ] {
        assert_eq!(e.reason_code(), agentsafe_core::ReasonCode::InvalidIdentity);
    }
}

#[test]
fn delegation_narrows_and_reports_the_chain_root_first() {
    let (issuer, verifier) = setup();
    let alice = issuer
        .issue(
            &req("alice", &["operator", "viewer"], &["sre", "oncall"]),
            hour(),
            at(T0),
        )
        .unwrap();
    let alice_v = verifier.verify(&alice.token, at(T0)).unwrap();
    let bot = issuer
        .delegate(
            &alice_v,
            &req("deploy-bot", &["operator"], &["sre"]),
            Some(HumanDuration::from_secs(600)),
            at(T0 + 5),
        )
        .unwrap();
    assert_eq!(bot.expires_at, at(T0 + 5 + 600));
    let bot_v = verifier.verify(&bot.token, at(T0 + 6)).unwrap();
    let helper = issuer
        .delegate(&bot_v, &req("helper", &[], &["sre"]), None, at(T0 + 7))
        .unwrap();
    // Without a ttl, the child lives exactly as long as its parent.
    assert_eq!(helper.expires_at, bot.expires_at);
    let helper_v = verifier.verify(&helper.token, at(T0 + 8)).unwrap();
    assert_eq!(helper_v.delegation_chain(), ["alice", "deploy-bot"]);
    let caller = helper_v.caller();
    assert_eq!(caller.delegation_chain, vec!["alice", "deploy-bot"]);
    assert_eq!(caller.root(), "alice");
    assert!(caller.authenticated);
    // RFC 8693 nesting: the outermost `act` is the immediate parent.
    let claims = claims_of(&helper.token);
    assert_eq!(claims["act"]["sub"], "deploy-bot");
    assert_eq!(claims["act"]["act"]["sub"], "alice");
}

#[test]
fn delegation_cannot_widen_or_outlive() {
    let (issuer, verifier) = setup();
    let alice = issuer
        .issue(&req("alice", &["viewer"], &["sre"]), hour(), at(T0))
        .unwrap();
    let alice_v = verifier.verify(&alice.token, at(T0)).unwrap();

    let err = issuer
        .delegate(
            &alice_v,
            &req("bot", &["viewer", "admin"], &[]),
            None,
            at(T0),
        )
        .unwrap_err();
    assert!(
        matches!(&err, IdentityError::RoleNotHeld { role, .. } if role == "admin"),
        "{err}"
    );
    assert!(err.to_string().contains("`admin`"));

    let err = issuer
        .delegate(&alice_v, &req("bot", &[], &["finance"]), None, at(T0))
        .unwrap_err();
    assert!(
        matches!(&err, IdentityError::GroupNotHeld { group, .. } if group == "finance"),
        "{err}"
    );

    // Asking to outlive the parent is refused, not silently shortened.
    let err = issuer
        .delegate(
            &alice_v,
            &req("bot", &[], &[]),
            Some(HumanDuration::from_secs(7200)),
            at(T0 + 100),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::OutlivesParent {
                remaining_secs: 3500,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        issuer
            .delegate(
                &alice_v,
                &req("bot", &[], &[]),
                Some(HumanDuration::from_secs(3500)),
                at(T0 + 100)
            )
            .is_ok()
    );

    // No cycles, no delegating to oneself.
    let err = issuer
        .delegate(&alice_v, &req("alice", &[], &[]), None, at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[test]
fn depth_comes_from_config_only() {
    let mut deep_cfg = config();
    deep_cfg.max_delegation_depth = 5;
    let (deep_issuer, deep_verifier) = setup_with(&deep_cfg);
    let mut token = deep_issuer
        .issue(&req("a0", &["r"], &[]), hour(), at(T0))
        .unwrap()
        .token;
    for i in 1..=3 {
        let parent = deep_verifier.verify(&token, at(T0)).unwrap();
        token = deep_issuer
            .delegate(&parent, &req(&format!("a{i}"), &["r"], &[]), None, at(T0))
            .unwrap()
            .token;
    }
    assert_eq!(
        deep_verifier
            .verify(&token, at(T0))
            .unwrap()
            .delegation_chain()
            .len(),
        3
    );

    // The same, validly signed token is refused by a verifier configured for depth 2.
    let mut strict_cfg = config();
    strict_cfg.max_delegation_depth = 2;
    let (strict_issuer, strict_verifier) = setup_with(&strict_cfg);
    let err = strict_verifier.verify(&token, at(T0)).unwrap_err();
    assert!(
        matches!(err, IdentityError::DelegationTooDeep { depth: 3, max: 2 }),
        "{err}"
    );
    assert_eq!(
        err.reason_code(),
        agentsafe_core::ReasonCode::DelegationTooDeep
    );

    // And an issuer configured for depth 2 refuses to create depth 3.
    let mut token = strict_issuer
        .issue(&req("a0", &[], &[]), hour(), at(T0))
        .unwrap()
        .token;
    for i in 1..=2 {
        let parent = strict_verifier.verify(&token, at(T0)).unwrap();
        token = strict_issuer
            .delegate(&parent, &req(&format!("a{i}"), &[], &[]), None, at(T0))
            .unwrap()
            .token;
    }
    let parent = strict_verifier.verify(&token, at(T0)).unwrap();
    let err = strict_issuer
        .delegate(&parent, &req("a3", &[], &[]), None, at(T0))
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::DelegationTooDeep { depth: 3, max: 2 }),
        "{err}"
    );
}

#[test]
fn hop_constraints_are_checked_at_verification() {
    let (issuer, verifier) = setup();
    let signer = Signer::from_seed(&[1; 32]);
    let base = serde_json::json!({
        "aud": "agentsafe", "iss": "agentsafe", "iat": T0, "nbf": T0, "exp": T0 + 60,
        "jti": "x", "sub": "bot", "roles": ["admin"], "groups": [],
        "act": { "sub": "alice", "roles": ["viewer"], "groups": [], "exp": T0 + 600 }
    });
    let wider = forge(&signer, issuer.kid(), "JWT", &base);
    let err = verifier.verify(&wider, at(T0)).unwrap_err();
    assert_eq!(err.code(), "invalid_delegation", "{err}");
    assert!(err.to_string().contains("`admin`"));

    let mut longer = base.clone();
    longer["roles"] = serde_json::json!([]);
    longer["act"]["exp"] = serde_json::json!(T0 + 10);
    let err = verifier
        .verify(&forge(&signer, issuer.kid(), "JWT", &longer), at(T0))
        .unwrap_err();
    assert!(err.to_string().contains("outlives"), "{err}");

    let mut cycle = base;
    cycle["roles"] = serde_json::json!([]);
    cycle["act"]["sub"] = serde_json::json!("bot");
    let err = verifier
        .verify(&forge(&signer, issuer.kid(), "JWT", &cycle), at(T0))
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn resolve_caller_never_falls_back_to_a_plain_id() {
    let (issuer, verifier) = setup();
    let token = issuer
        .issue(&req("bot", &["operator"], &[]), hour(), at(T0))
        .unwrap()
        .token;
    let plain = Caller {
        id: "bot".into(),
        roles: vec!["admin".into()],
        ..Caller::default()
    };
    let strict = config();
    let mut lax = config();
    lax.allow_unauthenticated = true;

    // A valid token wins and is authenticated.
    let c = strict
        .resolve_caller(Some(&token), Some(&plain), &verifier, at(T0))
        .unwrap();
    assert!(c.authenticated);
    assert_eq!(c.roles, vec!["operator"]);

    // An invalid token is an error even when plain ids are allowed.
    for cfg in [&strict, &lax] {
        let err = cfg
            .resolve_caller(Some(&token), Some(&plain), &verifier, at(T0 + 7200))
            .unwrap_err();
        assert_eq!(err.code(), "expired");
        assert_eq!(
            err.reason_code(),
            agentsafe_core::ReasonCode::InvalidIdentity
        );
    }

    // A plain id only where configuration allows it, and never authenticated.
    let err = strict
        .resolve_caller(None, Some(&plain), &verifier, at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "unauthenticated");
    let claimed = Caller {
        authenticated: true,
        ..plain.clone()
    };
    let c = lax
        .resolve_caller(None, Some(&claimed), &verifier, at(T0))
        .unwrap();
    assert!(!c.authenticated);
    assert_eq!(c.id, "bot");

    // Depth limits apply to plain callers too.
    let deep = Caller {
        delegation_chain: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        ..plain.clone()
    };
    let err = lax
        .resolve_caller(None, Some(&deep), &verifier, at(T0))
        .unwrap_err();
    assert_eq!(
        err.reason_code(),
        agentsafe_core::ReasonCode::DelegationTooDeep
    );

    // A token for someone else than the claimed id.
    let other = Caller::unauthenticated("mallory");
    let err = strict
        .resolve_caller(Some(&token), Some(&other), &verifier, at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "caller_mismatch");

    let err = lax
        .resolve_caller(None, None, &verifier, at(T0))
        .unwrap_err();
    assert_eq!(err.code(), "missing_identity");
}
