//! Who is asking: the caller of a request and its delegation chain.

use serde::{Deserialize, Serialize};

/// The agent on whose behalf a request is made.
///
/// # Security
///
/// `authenticated` must only be set to `true` by an authentication layer that
/// verified a signed identity (for example `agentsafe-tickets`). Policies can
/// require it, and every decision records it.
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
    /// Whether the identity was verified cryptographically.
    #[serde(default)]
    pub authenticated: bool,
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
}
