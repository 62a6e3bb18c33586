//! Agent identity tokens (EdDSA JWTs), delegation through nested `act` claims, and the
//! policy that turns a token or a plain id into a [`Caller`].
//!
//! **Architecture Invariant:** a [`VerifiedIdentity`] exists only as the result of
//! [`IdentityVerifier::verify`]; its fields are private and it has no constructor and no
//! `Deserialize`. A token that fails any check is an [`IdentityError`], never a plain id.
//!
//! **Architecture Invariant:** the maximum delegation depth comes from configuration only;
//! a token can make its chain shorter than allowed, never longer.

use agentsafe_core::{Caller, DecisionId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::config::IdentityConfig;
use crate::duration::HumanDuration;
use crate::error::IdentityError;
use crate::jws::{self, JwsError};
use crate::keys::{KeySet, Signer};

/// The `typ` header of identity tokens.
pub const IDENTITY_TYP: &str = "JWT";

/// The claims of an identity token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Actor>,
    aud: String,
    exp: i64,
    groups: Vec<String>,
    iat: i64,
    iss: String,
    jti: String,
    nbf: i64,
    roles: Vec<String>,
    sub: String,
}

/// One hop of an RFC 8693 actor chain. Besides `sub` it records what the actor held (its
/// roles, groups and expiry) so a verifier can check that each hop only narrowed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    act: Option<Box<Actor>>,
    exp: i64,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    sub: String,
}

/// Who a token is for: the agent id and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRequest {
    /// The agent id (`sub`).
    pub agent: String,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups the agent belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A freshly signed identity token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedIdentity {
    /// The compact JWS.
    pub token: String,
    /// Its unique id.
    pub jti: String,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// Signs identity tokens and delegated tokens with the identity key.
#[derive(Debug)]
pub struct IdentityIssuer {
    signer: Signer,
    header_b64: String,
    issuer: String,
    audience: String,
    max_depth: usize,
}

impl IdentityIssuer {
    /// An issuer signing with `signer`, writing `iss`/`aud` from `config` and refusing
    /// delegation deeper than `config.max_delegation_depth`.
    ///
    /// # Errors
    /// When the header cannot be encoded (not expected for any key).
    pub fn new(signer: Signer, config: &IdentityConfig) -> Result<Self, IdentityError> {
        let header_b64 = jws::encode_header(signer.kid(), IDENTITY_TYP)
            .map_err(|e| IdentityError::Encode(e.to_string()))?;
        Ok(IdentityIssuer {
            signer,
            header_b64,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            max_depth: config.max_delegation_depth,
        })
    }

    /// The key id tokens are signed with.
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// Issues a token for `request`, valid from `now` for `ttl`.
    ///
    /// # Errors
    /// When the agent id is empty or the lifetime is zero.
    pub fn issue(
        &self,
        request: &IdentityRequest,
        ttl: HumanDuration,
        now: Timestamp,
    ) -> Result<IssuedIdentity, IdentityError> {
        check_request(request)?;
        if ttl.as_secs() == 0 {
            return Err(IdentityError::InvalidRequest(
                "the lifetime must be longer than zero".to_owned(),
            ));
        }
        let iat = now.as_second();
        let exp = iat.saturating_add(ttl.as_secs_i64());
        self.sign_claims(request, iat, exp, new_jti(now), None)
    }

    /// Issues a token for `child`, delegated by the verified `parent`.
    ///
    /// The child's roles and groups must be a subset of the parent's; the chain (parent
    /// first, then the parent's own actors) travels as nested `act` claims; the new depth
    /// must not exceed the configured maximum. The token expires at `now + ttl`, or at the
    /// parent's expiry when `ttl` is `None`.
    ///
    /// # Errors
    /// [`IdentityError::RoleNotHeld`] / [`IdentityError::GroupNotHeld`] naming the extra
    /// role or group; [`IdentityError::OutlivesParent`] when `now + ttl` is after the parent's
    /// expiry (refused rather than silently shortened, so nobody relies on a lifetime they
    /// do not get); [`IdentityError::DelegationTooDeep`]; and
    /// [`IdentityError::InvalidRequest`] for an empty id, a cycle or an expired parent.
    pub fn delegate(
        &self,
        parent: &VerifiedIdentity,
        child: &IdentityRequest,
        ttl: Option<HumanDuration>,
        now: Timestamp,
    ) -> Result<IssuedIdentity, IdentityError> {
        check_request(child)?;
        let p = &parent.claims;
        if let Some(role) = child.roles.iter().find(|r| !p.roles.contains(r)) {
            return Err(IdentityError::RoleNotHeld {
                role: role.clone(),
                parent: p.sub.clone(),
            });
        }
        if let Some(group) = child.groups.iter().find(|g| !p.groups.contains(g)) {
            return Err(IdentityError::GroupNotHeld {
                group: group.clone(),
                parent: p.sub.clone(),
            });
        }
        let depth = parent.chain.len().saturating_add(1);
        if depth > self.max_depth {
            return Err(IdentityError::DelegationTooDeep {
                depth,
                max: self.max_depth,
            });
        }
        if child.agent == p.sub || parent.chain.contains(&child.agent) {
            return Err(IdentityError::InvalidRequest(format!(
                "agent `{}` already appears in the delegation chain",
                child.agent
            )));
        }
        let iat = now.as_second();
        if p.exp <= iat {
            return Err(IdentityError::InvalidRequest(
                "the parent token has expired".to_owned(),
            ));
        }
        let exp = match ttl {
            None => p.exp,
            Some(ttl) if ttl.as_secs() == 0 => {
                return Err(IdentityError::InvalidRequest(
                    "the lifetime must be longer than zero".to_owned(),
                ));
            }
            Some(ttl) => {
                let requested = iat.saturating_add(ttl.as_secs_i64());
                if requested > p.exp {
                    return Err(IdentityError::OutlivesParent {
                        requested: timestamp(requested),
                        parent_exp: timestamp(p.exp),
                        remaining_secs: p.exp.saturating_sub(iat),
                    });
                }
                requested
            }
        };
        let act = Actor {
            act: p.act.clone().map(Box::new),
            exp: p.exp,
            groups: p.groups.clone(),
            roles: p.roles.clone(),
            sub: p.sub.clone(),
        };
        self.sign_claims(child, iat, exp, new_jti(now), Some(act))
    }

    fn sign_claims(
        &self,
        request: &IdentityRequest,
        iat: i64,
        exp: i64,
        jti: String,
        act: Option<Actor>,
    ) -> Result<IssuedIdentity, IdentityError> {
        let claims = IdentityClaims {
            act,
            aud: self.audience.clone(),
            exp,
            groups: request.groups.clone(),
            iat,
            iss: self.issuer.clone(),
            jti: jti.clone(),
            nbf: iat,
            roles: request.roles.clone(),
            sub: request.agent.clone(),
        };
        let bytes = agentsafe_core::canonical::to_vec(&claims)
            .map_err(|e| IdentityError::Encode(e.to_string()))?;
        Ok(IssuedIdentity {
            token: jws::sign(&self.signer, &self.header_b64, &bytes),
            jti,
            expires_at: timestamp(exp),
        })
    }
}

fn check_request(request: &IdentityRequest) -> Result<(), IdentityError> {
    if request.agent.trim().is_empty() {
        return Err(IdentityError::InvalidRequest(
            "the agent id must not be empty".to_owned(),
        ));
    }
    if request
        .roles
        .iter()
        .chain(&request.groups)
        .any(|s| s.is_empty())
    {
        return Err(IdentityError::InvalidRequest(
            "roles and groups must not be empty strings".to_owned(),
        ));
    }
    Ok(())
}

fn new_jti(now: Timestamp) -> String {
    let ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    DecisionId::from_parts(ms, rand::random::<u128>()).to_string()
}

fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// An identity that passed every check of [`IdentityVerifier::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    claims: IdentityClaims,
    kid: String,
    /// Root first.
    chain: Vec<String>,
}

impl VerifiedIdentity {
    /// The agent id (`sub`).
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// The roles granted.
    pub fn roles(&self) -> &[String] {
        &self.claims.roles
    }

    /// The groups.
    pub fn groups(&self) -> &[String] {
        &self.claims.groups
    }

    /// The agents that delegated to this one, root first (empty for a direct token).
    pub fn delegation_chain(&self) -> &[String] {
        &self.chain
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.claims.iss
    }

    /// The token id (`jti`).
    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    /// The key id that signed the token.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the token was issued.
    pub fn issued_at(&self) -> Timestamp {
        timestamp(self.claims.iat)
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Timestamp {
        timestamp(self.claims.exp)
    }

    /// The caller this identity stands for: `authenticated: true`, chain root first.
    pub fn caller(&self) -> Caller {
        Caller {
            id: self.claims.sub.clone(),
            roles: self.claims.roles.clone(),
            groups: self.claims.groups.clone(),
            delegation_chain: self.chain.clone(),
            authenticated: true,
        }
    }

    /// The verified claims as JSON (for display).
    pub fn claims_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.claims).unwrap_or(serde_json::Value::Null)
    }
}

/// Verifies identity tokens against trusted public keys and configuration.
#[derive(Debug, Clone)]
pub struct IdentityVerifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    clock_skew: i64,
    max_depth: usize,
}

impl IdentityVerifier {
    /// A verifier trusting `keys` with the issuer, audience, clock skew and maximum
    /// delegation depth of `config`.
    pub fn new(keys: KeySet, config: &IdentityConfig) -> Self {
        IdentityVerifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            clock_skew: config.clock_skew.as_secs_i64(),
            max_depth: config.max_delegation_depth,
        }
    }

    /// Verifies `token` at time `now`.
    ///
    /// Checks, in order: the form, `typ` = `JWT`, `alg` = `EdDSA`, that `kid` is trusted,
    /// the signature, `iss`, `aud`, `exp` and `nbf`/`iat` within the clock skew, and the
    /// delegation chain: its depth against configuration and, for each hop, a non-empty
    /// distinct id, roles and groups no wider and an expiry no later than the hop's.
    ///
    /// # Errors
    /// One [`IdentityError`] variant per failed check.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedIdentity, IdentityError> {
        let verified =
            jws::verify(token.trim(), IDENTITY_TYP, &self.keys).map_err(|e| match e {
                JwsError::Malformed(m) => IdentityError::Malformed(m),
                JwsError::WrongType(t) => IdentityError::WrongType(t),
                JwsError::UnsupportedAlgorithm(a) => IdentityError::UnsupportedAlgorithm(a),
                JwsError::UnknownKey(k) => IdentityError::UnknownKey(k),
                JwsError::BadSignature => IdentityError::BadSignature,
            })?;
        let claims: IdentityClaims = serde_json::from_slice(&verified.payload)
            .map_err(|e| IdentityError::Malformed(format!("invalid claims: {e}")))?;
        if claims.iss != self.issuer {
            return Err(IdentityError::WrongIssuer(claims.iss));
        }
        if claims.aud != self.audience {
            return Err(IdentityError::WrongAudience(claims.aud));
        }
        let now_s = now.as_second();
        if now_s > claims.exp.saturating_add(self.clock_skew) {
            return Err(IdentityError::Expired(timestamp(claims.exp)));
        }
        let not_before = claims.nbf.max(claims.iat);
        if not_before > now_s.saturating_add(self.clock_skew) {
            return Err(IdentityError::NotYetValid(timestamp(not_before)));
        }
        if claims.sub.trim().is_empty() {
            return Err(IdentityError::Malformed("empty subject".to_owned()));
        }
        let chain = self.check_chain(&claims)?;
        Ok(VerifiedIdentity {
            claims,
            kid: verified.kid,
            chain,
        })
    }

    /// Walks the `act` chain from the immediate parent to the root, checking each hop, and
    /// returns the chain root first.
    fn check_chain(&self, claims: &IdentityClaims) -> Result<Vec<String>, IdentityError> {
        let mut depth = 0usize;
        let mut hop = claims.act.as_ref();
        while let Some(actor) = hop {
            depth = depth.saturating_add(1);
            hop = actor.act.as_deref();
        }
        if depth > self.max_depth {
            return Err(IdentityError::DelegationTooDeep {
                depth,
                max: self.max_depth,
            });
        }
        let mut chain: Vec<String> = Vec::with_capacity(depth);
        let (mut sub, mut roles, mut groups, mut exp) =
            (&claims.sub, &claims.roles, &claims.groups, claims.exp);
        let mut hop = claims.act.as_ref();
        while let Some(actor) = hop {
            let bad = |what: String| Err(IdentityError::InvalidDelegation(what));
            if actor.sub.trim().is_empty() {
                return bad("an actor has an empty id".to_owned());
            }
            if actor.sub == claims.sub || chain.contains(&actor.sub) {
                return bad(format!("agent `{}` appears twice", actor.sub));
            }
            if let Some(role) = roles.iter().find(|r| !actor.roles.contains(r)) {
                return bad(format!(
                    "`{sub}` holds role `{role}` that its delegator `{}` does not",
                    actor.sub
                ));
            }
            if let Some(group) = groups.iter().find(|g| !actor.groups.contains(g)) {
                return bad(format!(
                    "`{sub}` is in group `{group}` that its delegator `{}` is not",
                    actor.sub
                ));
            }
            if exp > actor.exp {
                return bad(format!("`{sub}` outlives its delegator `{}`", actor.sub));
            }
            chain.push(actor.sub.clone());
            (sub, roles, groups, exp) = (&actor.sub, &actor.roles, &actor.groups, actor.exp);
            hop = actor.act.as_deref();
        }
        // The outermost `act` is the immediate parent: reverse to get the root first.
        chain.reverse();
        Ok(chain)
    }
}

impl IdentityConfig {
    /// Decides who the caller is: the policy the runner applies to every request.
    ///
    /// * With a token, the token must verify; the result is authenticated. A plain caller id
    ///   given beside it must name the token's subject (or be empty).
    /// * Without a token, a plain caller is accepted only when `allow_unauthenticated` is
    ///   true; it is marked unauthenticated and its delegation depth is still limited.
    ///
    /// # Errors
    /// Any verification failure of the token, [`IdentityError::Unauthenticated`] for a plain
    /// id that configuration does not accept, [`IdentityError::MissingIdentity`] when neither
    /// is given. Turn any of them into DENY with [`IdentityError::reason_code`].
    pub fn resolve_caller(
        &self,
        token: Option<&str>,
        plain: Option<&Caller>,
        verifier: &IdentityVerifier,
        now: Timestamp,
    ) -> Result<Caller, IdentityError> {
        match (token, plain) {
            (Some(token), plain) => {
                let identity = verifier.verify(token, now)?;
                if let Some(p) = plain
                    && !p.id.is_empty()
                    && p.id != identity.subject()
                {
                    return Err(IdentityError::CallerMismatch {
                        given: p.id.clone(),
                        subject: identity.subject().to_owned(),
                    });
                }
                Ok(identity.caller())
            }
            (None, Some(p)) if !p.id.trim().is_empty() => {
                if !self.allow_unauthenticated {
                    return Err(IdentityError::Unauthenticated(p.id.clone()));
                }
                if p.delegation_chain.len() > self.max_delegation_depth {
                    return Err(IdentityError::DelegationTooDeep {
                        depth: p.delegation_chain.len(),
                        max: self.max_delegation_depth,
                    });
                }
                Ok(Caller {
                    authenticated: false,
                    ..p.clone()
                })
            }
            (None, _) => Err(IdentityError::MissingIdentity),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
