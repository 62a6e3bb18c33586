//! What gets recorded: event types, the links between records, and keyed redaction of sensitive params.

use std::fmt;
use std::str::FromStr;

use agentsafe_core::Decision;
use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::AuditError;

macro_rules! event_types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The kind of an audit record. The snake_case names are part of the log format.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum EventType {
            $($(#[$doc])* $variant,)*
        }

        impl EventType {
            /// Every event type.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The stable snake_case name written to the log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }
    };
}

event_types! {
    /// A decision (ALLOW, DENY or REQUIRE_APPROVAL).
    Decision => "decision",
    /// An approval was granted or refused.
    Approval => "approval",
    /// An execution ticket was issued.
    TicketIssued => "ticket_issued",
    /// An execution ticket was redeemed.
    TicketRedeemed => "ticket_redeemed",
    /// An action was executed.
    Execution => "execution",
    /// An action was rolled back.
    Rollback => "rollback",
    /// A ticket was previewed (`agentsafe run --dry-run`): prechecks, state and the
    /// backend's dry run, nothing executed, the ticket not redeemed.
    Preview => "preview",
    /// A configuration (policies, registry, inventory) was loaded.
    ConfigLoaded => "config_loaded",
    /// An operator paused or resumed a caller, or reloaded the configuration.
    Operator => "operator",
    /// The log recovered from a crash (a torn final line was truncated, or its state was rebuilt).
    Recovered => "recovered",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| AuditError::Config(format!("unknown audit event type `{s}`")))
    }
}

/// Identifiers that tie a record to others: the decision, plan, ticket, approval and the caller's
/// correlation and W3C trace ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// The decision this record is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// The plan the decision belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The execution ticket's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_nonce: Option<String>,
    /// The approval request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The caller's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The W3C trace id of the request, when it carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Links {
    /// Whether no link is set.
    pub fn is_empty(&self) -> bool {
        *self == Links::default()
    }
}

/// A file that was part of a loaded configuration, with the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedFile {
    /// The path as given.
    pub path: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

impl LoadedFile {
    /// Describes a file from its path and content.
    pub fn new(path: impl Into<String>, content: &[u8]) -> Self {
        use sha2::Digest as _;
        LoadedFile {
            path: path.into(),
            sha256: crate::merkle::hex_encode(&Sha256::digest(content)),
        }
    }
}

/// One thing to record: an event type, a JSON body and its links.
///
/// The sequence number, time and hash chain are added by [`crate::AuditLog::append`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    event_type: EventType,
    body: Map<String, Value>,
    links: Links,
}

impl AuditEvent {
    /// Records a decision with everything needed to replay it: action, target, caller and how it
    /// was authenticated, params, matched rule, reason code, risk, evaluation time and the policy
    /// hash. The decision, plan, correlation and trace ids become links.
    ///
    /// The values of the params named in `sensitive_params` are replaced by a keyed HMAC
    /// ([`Redactor::redact`]), so equal values still compare equal without being readable; their
    /// names are listed in `redacted_params`.
    pub fn decision(
        decision: &Decision,
        sensitive_params: &[&str],
        redactor: &Redactor,
    ) -> AuditEvent {
        let mut body = match serde_json::to_value(decision) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                let mut m = Map::new();
                m.insert(
                    "encode_error".into(),
                    Value::String("decision is not a JSON object".into()),
                );
                m
            }
        };
        let mut take = |key: &str| match body.remove(key) {
            Some(Value::String(s)) => Some(s),
            Some(other) if !other.is_null() => Some(other.to_string()),
            _ => None,
        };
        let links = Links {
            decision_id: take("decision_id"),
            plan_id: take("plan_id"),
            correlation_id: take("correlation_id"),
            trace_id: take("trace_id"),
            ticket_nonce: None,
            approval_id: None,
        };
        let mut redacted: Vec<&str> = Vec::new();
        if let Some(Value::Object(params)) = body.get_mut("params") {
            for name in sensitive_params {
                if let Some(v) = params.get_mut(*name) {
                    *v = redactor.redact(v);
                    redacted.push(name);
                }
            }
        }
        if !redacted.is_empty() {
            redacted.sort_unstable();
            redacted.dedup();
            body.insert(
                "redacted_params".into(),
                Value::Array(
                    redacted
                        .into_iter()
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ),
            );
        }
        AuditEvent {
            event_type: EventType::Decision,
            body,
            links,
        }
    }

    /// Records that a configuration was loaded: the policy hash in force and the files it came from.
    pub fn config_loaded(policy_hash: &str, files: &[LoadedFile]) -> AuditEvent {
        let mut body = Map::new();
        body.insert("policy_hash".into(), Value::String(policy_hash.to_owned()));
        body.insert(
            "files".into(),
            serde_json::to_value(files).unwrap_or_else(|_| Value::Array(Vec::new())),
        );
        AuditEvent {
            event_type: EventType::ConfigLoaded,
            body,
            links: Links::default(),
        }
    }

    /// Any event with a JSON body. A body that is not an object is wrapped as `{"value": body}`.
    pub fn custom(event_type: EventType, body: Value) -> AuditEvent {
        let body = match body {
            Value::Object(map) => map,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        AuditEvent {
            event_type,
            body,
            links: Links::default(),
        }
    }

    /// Links the record to a decision.
    #[must_use]
    pub fn with_decision_id(mut self, id: impl fmt::Display) -> Self {
        self.links.decision_id = Some(id.to_string());
        self
    }

    /// Links the record to a plan.
    #[must_use]
    pub fn with_plan_id(mut self, id: impl fmt::Display) -> Self {
        self.links.plan_id = Some(id.to_string());
        self
    }

    /// Links the record to an execution ticket by its nonce.
    #[must_use]
    pub fn with_ticket_nonce(mut self, nonce: impl Into<String>) -> Self {
        self.links.ticket_nonce = Some(nonce.into());
        self
    }

    /// Links the record to an approval.
    #[must_use]
    pub fn with_approval_id(mut self, id: impl Into<String>) -> Self {
        self.links.approval_id = Some(id.into());
        self
    }

    /// Links the record to the caller's correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.links.correlation_id = Some(id.into());
        self
    }

    /// Links the record to a W3C trace id.
    #[must_use]
    pub fn with_trace_id(mut self, id: impl Into<String>) -> Self {
        self.links.trace_id = Some(id.into());
        self
    }

    /// The event type.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The JSON body.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The links.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Canonical JSON of the parts that do not depend on the log position, computed by the caller's
    /// thread so the writer only concatenates.
    pub(crate) fn prepare(&self) -> Result<PreparedEvent, AuditError> {
        let enc = |e: serde_json::Error| AuditError::Encode(e.to_string());
        let body = agentsafe_core::canonical::to_vec(&self.body).map_err(enc)?;
        let links = if self.links.is_empty() {
            None
        } else {
            Some(agentsafe_core::canonical::to_vec(&self.links).map_err(enc)?)
        };
        Ok(PreparedEvent {
            event_type: self.event_type.as_str(),
            body,
            links,
        })
    }
}

/// An event already encoded as canonical JSON fragments.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    pub event_type: &'static str,
    pub body: Vec<u8>,
    pub links: Option<Vec<u8>>,
}

/// Replaces sensitive values by `hmac-sha256:<hex>`: a keyed MAC over the value's canonical JSON.
///
/// The MAC key is derived from the audit signing key with domain separation,
/// `HMAC-SHA256(key = the 32-byte Ed25519 seed, message = "agentsafe/audit/param-hmac/v1")`,
/// so there is no extra secret to manage, equal values give equal MACs within one log, and
/// nobody without the signing key can test guesses against the log.
///
/// # Security
/// `Debug` never prints the key.
#[derive(Clone)]
pub struct Redactor {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(<redacted>)")
    }
}

impl Redactor {
    /// The domain-separation label of the MAC key derivation.
    pub const DOMAIN: &'static str = "agentsafe/audit/param-hmac/v1";

    /// Derives the redaction key from the audit signing key.
    pub fn from_signing_key(key: &SigningKey) -> Redactor {
        Redactor {
            mac: derived_mac(key, Redactor::DOMAIN),
        }
    }

    /// `hmac-sha256:<64 hex digits>` for `value`.
    pub fn mac(&self, value: &Value) -> String {
        let bytes = agentsafe_core::canonical::to_vec(value)
            .unwrap_or_else(|_| value.to_string().into_bytes());
        let mut m = self.mac.clone();
        m.update(&bytes);
        format!(
            "hmac-sha256:{}",
            crate::merkle::hex_encode(&m.finalize().into_bytes())
        )
    }

    /// The redacted form of `value`: a JSON string holding [`Redactor::mac`].
    pub fn redact(&self, value: &Value) -> Value {
        Value::String(self.mac(value))
    }
}

/// An HMAC-SHA256 keyed with `HMAC-SHA256(key = the 32-byte Ed25519 seed, message = label)`: a
/// key of its own for each use of the audit signing key, separated by `label`.
pub(crate) fn derived_mac(key: &SigningKey, label: &str) -> Hmac<Sha256> {
    let mut kdf = hmac_with_key(key.as_bytes());
    kdf.update(label.as_bytes());
    let mut derived: [u8; 32] = kdf.finalize().into_bytes().into();
    let mac = hmac_with_key(&derived);
    derived.fill(0);
    mac
}

/// HMAC-SHA256 keyed by a 32-byte key. HMAC zero-pads keys shorter than the 64-byte block, so
/// passing the padded block is the same as keying with the 32 bytes, without a fallible API.
fn hmac_with_key(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    for (b, k) in block.iter_mut().zip(key.iter()) {
        *b = *k;
    }
    let mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    block.fill(0);
    mac
}

use hmac::digest::KeyInit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_key_equals_slice_key() {
        let key = [5u8; 32];
        let mut a = hmac_with_key(&key);
        let mut b = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        a.update(b"m");
        b.update(b"m");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn redaction_is_keyed_and_deterministic() {
        let r1 = Redactor::from_signing_key(&SigningKey::from_bytes(&[1u8; 32]));
        let r2 = Redactor::from_signing_key(&SigningKey::from_bytes(&[2u8; 32]));
        let v = serde_json::json!("hunter2");
        assert_eq!(r1.mac(&v), r1.mac(&v));
        assert_ne!(r1.mac(&v), r2.mac(&v));
        assert!(r1.mac(&v).starts_with("hmac-sha256:"));
        assert!(!format!("{r1:?}").contains("01"));
    }
}
