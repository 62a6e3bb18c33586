//! Who is asking: the caller of a request and its delegation chain.

use serde::{Deserialize, Serialize};

/// The agent on whose behalf a request is made.
///
/// # Security
///
/// `authenticated` must only be set to `true` by an authentication layer that
/// verified a signed identity (for example `agentsafe-tickets`). Policies can
/// require it, and every decision records it. Deserialising never produces an
/// authenticated caller: the field is written out (so records show it) but read back
/// as `false`, so a request, a plan file or a stored record cannot claim it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    /// The agent id (the `sub` of its identity token).
    pub id: String,
    /// Roles granted to the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Groups the caller belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The agents that delegated to this caller, root first. Empty for a direct caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation_chain: Vec<String>,
    /// Whether the identity was verified cryptographically. Always `false` when read
    /// from JSON or TOML: only identity verification sets it.
    #[serde(default, deserialize_with = "never_authenticated")]
    pub authenticated: bool,
}

/// Reads (and checks the type of) a serialised `authenticated` flag, and drops it.
fn never_authenticated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let _claimed = bool::deserialize(d)?;
    Ok(false)
}

/// Deserialises a caller *with* its `authenticated` flag, for bytes that are trusted to
/// state it: the claims of a ticket whose signature was verified, a policy test case
/// stating a hypothetical caller. Use as `#[serde(deserialize_with = "agentsafe_core::caller::trusted")]`.
///
/// # Security
/// Never use it on a request, a plan file or anything else an agent writes.
///
/// # Errors
/// As the derived deserialiser of [`Caller`].
pub fn trusted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Caller, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stated {
        id: String,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        delegation_chain: Vec<String>,
        #[serde(default)]
        authenticated: bool,
    }
    let s = Stated::deserialize(d)?;
    Ok(Caller {
        id: s.id,
        roles: s.roles,
        groups: s.groups,
        delegation_chain: s.delegation_chain,
        authenticated: s.authenticated,
    })
}

impl Caller {
    /// A caller known only by a plain, unverified id.
    pub fn unauthenticated(id: impl Into<String>) -> Self {
        Caller {
            id: id.into(),
            ..Caller::default()
        }
    }

    /// How many delegation hops separate this caller from the root of its chain.
    pub fn depth(&self) -> usize {
        self.delegation_chain.len()
    }

    /// The agent at the root of the delegation chain: the one limits are charged to.
    pub fn root(&self) -> &str {
        self.delegation_chain
            .first()
            .map_or(self.id.as_str(), String::as_str)
    }

    /// Whether `role` was granted to the caller.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_depth() {
        let direct = Caller::unauthenticated("a");
        assert_eq!((direct.root(), direct.depth()), ("a", 0));
        let delegated = Caller {
            id: "c".into(),
            delegation_chain: vec!["a".into(), "b".into()],
            ..Caller::default()
        };
        assert_eq!((delegated.root(), delegated.depth()), ("a", 2));
    }

    #[test]
    fn deserialising_never_yields_an_authenticated_caller() {
        let json = r#"{"id":"mallory","roles":["admin"],"authenticated":true}"#;
        let c: Caller = serde_json::from_str(json).unwrap_or_default();
        assert_eq!(c.id, "mallory");
        assert!(!c.authenticated);
        let wrong_type = serde_json::from_str::<Caller>(r#"{"id":"a","authenticated":"yes"}"#);
        assert!(wrong_type.is_err());
        let written = Caller {
            authenticated: true,
            ..Caller::unauthenticated("a")
        };
        let text = serde_json::to_string(&written).unwrap_or_default();
        assert!(text.contains("\"authenticated\":true"), "{text}");
    }
}
