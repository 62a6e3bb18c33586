//! Signed single-use execution tickets: issued for an ALLOW decision, verified by the runner
//! before it executes, redeemed exactly once through a [`crate::store::TicketStore`].
//!
//! **Architecture Invariant:** a [`VerifiedTicket`] exists only as the result of
//! [`TicketVerifier::verify_with`] (or its shorthands); its fields are private and it has no
//! constructor and no `Deserialize`.

use std::fmt;
use std::str::FromStr;

use agentsafe_core::{Caller, Decision, DecisionId, Params, Timestamp, Verdict};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::config::TicketConfig;
use crate::error::TicketError;
use crate::jws::{self, JwsError};
use crate::keys::{KeySet, Signer};

/// The `typ` header of tickets; an identity token (`JWT`) is never accepted as a ticket.
pub const TICKET_TYP: &str = "agentsafe-ticket+jwt";

/// A ticket's unique 128-bit nonce: 48 bits of Unix milliseconds then 80 random bits,
/// printed as 32 lowercase hex digits. Time-ordered, so the store's index grows at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nonce(u128);

impl Nonce {
    /// A fresh nonce for time `now`.
    pub fn generate(now: Timestamp) -> Self {
        let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
        Nonce(DecisionId::from_parts(ms, rand::random::<u128>()).as_u128())
    }

    /// The raw value.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl From<u128> for Nonce {
    fn from(value: u128) -> Self {
        Nonce(value)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The error for text that is not a nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ticket nonce `{0}`, expected 32 lowercase hexadecimal digits")]
pub struct NonceParseError(String);

impl FromStr for Nonce {
    type Err = NonceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(NonceParseError(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(Nonce)
            .map_err(|_| NonceParseError(s.to_owned()))
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The claims of a ticket. Field names are the JSON member names; RFC 8785 sorts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketClaims {
    action: String,
    aud: String,
    /// Signed by the ticket key: the flag is as the gate stated it.
    #[serde(deserialize_with = "agentsafe_core::caller::trusted")]
    caller: Caller,
    decision_id: DecisionId,
    exp: i64,
    iat: i64,
    nonce: Nonce,
    params: Params,
    params_digest: String,
    policy_hash: String,
    target: String,
}

/// `sha256:` followed by the lowercase hex SHA-256 of the RFC 8785 canonical form of `params`.
///
/// # Errors
/// When the params cannot be canonicalized (not expected for JSON values).
pub fn params_digest(params: &Params) -> Result<String, serde_json::Error> {
    let bytes = agentsafe_core::canonical::to_vec(params)?;
    Ok(digest_string(&bytes))
}

fn digest_string(canonical: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(canonical);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A freshly signed ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTicket {
    token: String,
    nonce: Nonce,
    action: String,
    target: String,
    decision_id: DecisionId,
    issued_at: i64,
    expires_at: i64,
}

impl SignedTicket {
    /// The compact JWS to hand to the caller.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The compact JWS, by value.
    pub fn into_token(self) -> String {
        self.token
    }

    /// The ticket's nonce.
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// The action it allows.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The target it allows acting on.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The decision it was issued for.
    pub fn decision_id(&self) -> DecisionId {
        self.decision_id
    }

    /// When it was issued.
    pub fn issued_at(&self) -> Timestamp {
        timestamp(self.issued_at)
    }

    /// When it expires.
    pub fn expires_at(&self) -> Timestamp {
        timestamp(self.expires_at)
    }

    pub(crate) fn expires_at_secs(&self) -> i64 {
        self.expires_at
    }
}

/// Signs tickets for ALLOW decisions with the ticket key.
#[derive(Debug)]
pub struct TicketIssuer {
    signer: Signer,
    header_b64: String,
    audience: String,
    ttl: i64,
}

impl TicketIssuer {
    /// An issuer signing with `signer`, with the audience and lifetime of `config`.
    ///
    /// # Errors
    /// When the header cannot be encoded (not expected for any key).
    pub fn new(signer: Signer, config: &TicketConfig) -> Result<Self, TicketError> {
        let header_b64 = jws::encode_header(signer.kid(), TICKET_TYP)
            .map_err(|e| TicketError::Encode(e.to_string()))?;
        Ok(TicketIssuer {
            signer,
            header_b64,
            audience: config.audience.clone(),
            ttl: config.ttl.as_secs_i64(),
        })
    }

    /// The key id tickets are signed with.
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// Issues a ticket for `decision`, valid from `now` for the configured lifetime.
    ///
    /// # Errors
    /// [`TicketError::NotAllowed`] for any decision but ALLOW; [`TicketError::Encode`] when
    /// the params cannot be encoded.
    pub fn issue(&self, decision: &Decision, now: Timestamp) -> Result<SignedTicket, TicketError> {
        self.issue_with_nonce(decision, now, Nonce::generate(now))
    }

    pub(crate) fn issue_with_nonce(
        &self,
        decision: &Decision,
        now: Timestamp,
        nonce: Nonce,
    ) -> Result<SignedTicket, TicketError> {
        if decision.decision != Verdict::Allow {
            return Err(TicketError::NotAllowed(decision.decision));
        }
        let iat = now.as_second();
        let exp = iat.saturating_add(self.ttl);
        let payload = encode_claims(decision, &self.audience, iat, exp, nonce)?;
        Ok(SignedTicket {
            token: jws::sign(&self.signer, &self.header_b64, &payload),
            nonce,
            action: decision.action.clone(),
            target: decision.target.id.clone(),
            decision_id: decision.decision_id,
            issued_at: iat,
            expires_at: exp,
        })
    }
}

/// The canonical claims bytes of a ticket. The params are canonicalized once: the same bytes
/// feed the digest and are spliced into the claims object, whose members are written in RFC
/// 8785 order (all names are ASCII, so byte order is UTF-16 order). A unit test checks the
/// result against `canonical::to_vec` of the claims struct.
fn encode_claims(
    decision: &Decision,
    audience: &str,
    iat: i64,
    exp: i64,
    nonce: Nonce,
) -> Result<Vec<u8>, TicketError> {
    let enc = |e: serde_json::Error| TicketError::Encode(e.to_string());
    let params = agentsafe_core::canonical::to_vec(&decision.params).map_err(enc)?;
    let digest = digest_string(&params);
    let caller = agentsafe_core::canonical::to_vec(&decision.caller).map_err(enc)?;
    let mut out = Vec::with_capacity(params.len() + caller.len() + 320);
    let string = |out: &mut Vec<u8>, name: &str, value: &str| -> Result<(), TicketError> {
        out.extend_from_slice(name.as_bytes());
        serde_json::to_writer(&mut *out, value).map_err(enc)
    };
    string(&mut out, "{\"action\":", &decision.action)?;
    string(&mut out, ",\"aud\":", audience)?;
    out.extend_from_slice(b",\"caller\":");
    out.extend_from_slice(&caller);
    string(
        &mut out,
        ",\"decision_id\":",
        &decision.decision_id.to_string(),
    )?;
    out.extend_from_slice(format!(",\"exp\":{exp},\"iat\":{iat},\"nonce\":\"{nonce}\"").as_bytes());
    out.extend_from_slice(b",\"params\":");
    out.extend_from_slice(&params);
    string(&mut out, ",\"params_digest\":", &digest)?;
    string(&mut out, ",\"policy_hash\":", &decision.policy_hash)?;
    string(&mut out, ",\"target\":", &decision.target.id)?;
    out.push(b'}');
    Ok(out)
}

/// What the runner expects a ticket to be for; `None` accepts any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TicketExpectation<'a> {
    /// The action about to run.
    pub action: Option<&'a str>,
    /// The target about to be acted on.
    pub target: Option<&'a str>,
}

/// A ticket that passed every check of [`TicketVerifier::verify_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedTicket {
    claims: TicketClaims,
    kid: String,
}

impl VerifiedTicket {
    /// The ticket's nonce: its identity in the redemption store.
    pub fn nonce(&self) -> Nonce {
        self.claims.nonce
    }

    /// The action it allows.
    pub fn action(&self) -> &str {
        &self.claims.action
    }

    /// The target it allows acting on.
    pub fn target(&self) -> &str {
        &self.claims.target
    }

    /// The caller the decision was made for.
    pub fn caller(&self) -> &Caller {
        &self.claims.caller
    }

    /// The params the decision allowed (their digest was checked).
    pub fn params(&self) -> &Params {
        &self.claims.params
    }

    /// `sha256:<hex>` of the canonical params.
    pub fn params_digest(&self) -> &str {
        &self.claims.params_digest
    }

    /// The decision the ticket was issued for.
    pub fn decision_id(&self) -> DecisionId {
        self.claims.decision_id
    }

    /// The hash of the policy set that decided.
    pub fn policy_hash(&self) -> &str {
        &self.claims.policy_hash
    }

    /// The runner it is meant for.
    pub fn audience(&self) -> &str {
        &self.claims.aud
    }

    /// The key id that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When it was issued.
    pub fn issued_at(&self) -> Timestamp {
        timestamp(self.claims.iat)
    }

    /// When it expires.
    pub fn expires_at(&self) -> Timestamp {
        timestamp(self.claims.exp)
    }

    pub(crate) fn expires_at_secs(&self) -> i64 {
        self.claims.exp
    }

    /// The verified claims as JSON (for display).
    pub fn claims_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.claims).unwrap_or(serde_json::Value::Null)
    }
}

/// Verifies tickets against trusted public keys.
#[derive(Debug, Clone)]
pub struct TicketVerifier {
    keys: KeySet,
    audience: String,
    clock_skew: i64,
}

impl TicketVerifier {
    /// A verifier trusting `keys`, with the audience and clock skew of `config`.
    pub fn new(keys: KeySet, config: &TicketConfig) -> Self {
        TicketVerifier {
            keys,
            audience: config.audience.clone(),
            clock_skew: config.clock_skew.as_secs_i64(),
        }
    }

    /// Verifies `token` at `now`, expecting nothing about its action or target.
    ///
    /// # Errors
    /// As [`TicketVerifier::verify_with`].
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedTicket, TicketError> {
        self.verify_with(token, TicketExpectation::default(), now)
    }

    /// Verifies `token` at `now` for running `action` on `target`.
    ///
    /// # Errors
    /// As [`TicketVerifier::verify_with`].
    pub fn verify_for(
        &self,
        token: &str,
        action: &str,
        target: &str,
        now: Timestamp,
    ) -> Result<VerifiedTicket, TicketError> {
        let expect = TicketExpectation {
            action: Some(action),
            target: Some(target),
        };
        self.verify_with(token, expect, now)
    }

    /// Verifies `token` at `now`.
    ///
    /// Checks, in order: the form, `typ` = `agentsafe-ticket+jwt`, `alg` = `EdDSA`, that
    /// `kid` is trusted, the signature, the claims' shape, `aud`, `exp` and `iat` within the
    /// clock skew, the params digest against the params carried, then the expected action
    /// and target.
    ///
    /// # Errors
    /// One [`TicketError`] variant (and [`TicketError::code`]) per failed check.
    pub fn verify_with(
        &self,
        token: &str,
        expect: TicketExpectation<'_>,
        now: Timestamp,
    ) -> Result<VerifiedTicket, TicketError> {
        let verified = jws::verify(token.trim(), TICKET_TYP, &self.keys).map_err(jws_error)?;
        let claims: TicketClaims = serde_json::from_slice(&verified.payload)
            .map_err(|e| TicketError::Malformed(format!("invalid claims: {e}")))?;
        if claims.aud != self.audience {
            return Err(TicketError::WrongAudience(claims.aud));
        }
        let now_s = now.as_second();
        if now_s > claims.exp.saturating_add(self.clock_skew) {
            return Err(TicketError::Expired(timestamp(claims.exp)));
        }
        if claims.iat > now_s.saturating_add(self.clock_skew) {
            return Err(TicketError::NotYetValid(timestamp(claims.iat)));
        }
        let digest = params_digest(&claims.params)
            .map_err(|e| TicketError::Malformed(format!("invalid params: {e}")))?;
        if !constant_time_eq(digest.as_bytes(), claims.params_digest.as_bytes()) {
            return Err(TicketError::ParamsDigestMismatch);
        }
        if let Some(action) = expect.action
            && action != claims.action
        {
            return Err(TicketError::ActionMismatch {
                expected: action.to_owned(),
                actual: claims.action,
            });
        }
        if let Some(target) = expect.target
            && target != claims.target
        {
            return Err(TicketError::TargetMismatch {
                expected: target.to_owned(),
                actual: claims.target,
            });
        }
        Ok(VerifiedTicket {
            claims,
            kid: verified.kid,
        })
    }
}

fn jws_error(e: JwsError) -> TicketError {
    match e {
        JwsError::Malformed(m) => TicketError::Malformed(m),
        JwsError::WrongType(t) => TicketError::WrongType(t),
        JwsError::UnsupportedAlgorithm(a) => TicketError::UnsupportedAlgorithm(a),
        JwsError::UnknownKey(k) => TicketError::UnknownKey(k),
        JwsError::BadSignature => TicketError::BadSignature,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Decoding without verification, for display only.
pub mod danger {
    use crate::error::TicketError;
    use crate::jws;

    /// The header and claims of a compact JWS, decoded WITHOUT checking anything.
    ///
    /// # Security
    /// Nothing returned here may be trusted; it is for showing a token to a human. Use
    /// [`crate::TicketVerifier`] or [`crate::IdentityVerifier`] to act on a token.
    ///
    /// # Errors
    /// When the token is not three base64url parts with JSON header and claims.
    pub fn decode_unverified(
        token: &str,
    ) -> Result<(serde_json::Value, serde_json::Value), TicketError> {
        let header = jws::decode_header(token.trim()).map_err(super::jws_error)?;
        let payload = jws::decode_payload(token.trim()).map_err(super::jws_error)?;
        let claims = serde_json::from_slice(&payload)
            .map_err(|e| TicketError::Malformed(format!("claims are not JSON: {e}")))?;
        let header = serde_json::to_value(header).unwrap_or(serde_json::Value::Null);
        Ok((header, claims))
    }
}

#[cfg(test)]
mod tests;
