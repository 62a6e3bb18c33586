//! Compact JWS (RFC 7515) with EdDSA (RFC 8037): the wire format of identities and tickets.
//!
//! Headers and claims are RFC 8785 canonical JSON, so equal inputs give equal tokens byte for
//! byte. Tokens are base64url without padding and verify with any standard JWT library that
//! supports EdDSA. The signature covers `BASE64URL(header) "." BASE64URL(claims)` as JWS
//! requires; the signed `typ` header is what separates identity tokens (`JWT`) from tickets
//! (`agentsafe-ticket+jwt`), on top of their separate keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier as _};
use serde::{Deserialize, Serialize};

use crate::keys::{KeySet, Signer};

/// The only algorithm accepted.
pub(crate) const ALG: &str = "EdDSA";

/// Tokens longer than this are refused before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 64 * 1024;

/// A JOSE header with exactly the members agentsafe writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) alg: String,
    pub(crate) kid: String,
    pub(crate) typ: String,
}

/// The base64url header for `kid` and `typ`, computed once per issuer.
pub(crate) fn encode_header(kid: &str, typ: &str) -> Result<String, serde_json::Error> {
    let header = Header {
        alg: ALG.to_owned(),
        kid: kid.to_owned(),
        typ: typ.to_owned(),
    };
    Ok(URL_SAFE_NO_PAD.encode(agentsafe_core::canonical::to_vec(&header)?))
}

/// Builds `header.payload.signature` from a pre-encoded header and the claims' bytes.
pub(crate) fn sign(signer: &Signer, header_b64: &str, claims: &[u8]) -> String {
    let mut out = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 92);
    out.push_str(header_b64);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut out);
    let signature = signer.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut out);
    out
}

/// Why a compact JWS was refused, before the claims are looked at.
#[derive(Debug)]
pub(crate) enum JwsError {
    Malformed(String),
    WrongType(String),
    UnsupportedAlgorithm(String),
    UnknownKey(String),
    BadSignature,
}

/// A token whose header, key and signature checked out; the claims are still bytes.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) kid: String,
    pub(crate) payload: Vec<u8>,
}

/// Splits a compact JWS into its three base64url parts.
fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::Malformed(format!(
            "token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JwsError::Malformed(
            "expected three base64url parts separated by `.`".to_owned(),
        )),
    }
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed(format!("{what} is not unpadded base64url")))
}

/// Decodes the header only (no verification).
pub(crate) fn decode_header(token: &str) -> Result<Header, JwsError> {
    let (h, _, _) = split(token)?;
    let bytes = decode(h, "header")?;
    serde_json::from_slice(&bytes)
        .map_err(|e| JwsError::Malformed(format!("header is not a valid JOSE header: {e}")))
}

/// Decodes the claims only (no verification).
pub(crate) fn decode_payload(token: &str) -> Result<Vec<u8>, JwsError> {
    let (_, p, _) = split(token)?;
    decode(p, "payload")
}

/// Checks the header (`typ` first, so a token of the other kind is named as such, then
/// `alg` and `kid`) and the signature.
pub(crate) fn verify(token: &str, typ: &str, keys: &KeySet) -> Result<Verified, JwsError> {
    let (h, p, s) = split(token)?;
    let header: Header = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|e| JwsError::Malformed(format!("header is not a valid JOSE header: {e}")))?;
    if header.typ != typ {
        return Err(JwsError::WrongType(header.typ));
    }
    if header.alg != ALG {
        return Err(JwsError::UnsupportedAlgorithm(header.alg));
    }
    let key = keys
        .get(&header.kid)
        .ok_or_else(|| JwsError::UnknownKey(header.kid.clone()))?;
    let sig_bytes: [u8; 64] = decode(s, "signature")?
        .try_into()
        .map_err(|_| JwsError::Malformed("signature is not 64 bytes".to_owned()))?;
    let signature = Signature::from_bytes(&sig_bytes);
    // The signing input is the token up to the second `.`: exactly `h.p`.
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or_else(|| JwsError::Malformed("token is not ASCII".to_owned()))?;
    // RFC 8032 verification (as OpenSSL does it), which rejects a non-canonical `S`. The
    // "strict" variant additionally rejects small-order keys and `R`s; weak keys never get
    // into a `KeySet`, and a malleated signature cannot matter because tokens are identified
    // by the signed nonce/jti in their claims, never by their signature bytes.
    key.verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwsError::BadSignature)?;
    Ok(Verified {
        kid: header.kid,
        payload: decode(p, "payload")?,
    })
}
