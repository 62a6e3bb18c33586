//! The log record format: one canonical JSON object per line.
//!
//! ```text
//! {"body":{..},"event":"decision","links":{..},"prev":"<hex>","seq":7,"time":"2025-01-02T03:04:05Z","v":1}
//! ```
//!
//! `prev` is the leaf hash of entry `seq - 1` (absent for entry 0): it lets verification name the
//! exact entry that was edited. The Merkle leaf is the line without its final newline.

use std::io::Write as _;

use agentsafe_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuditError;
use crate::event::{AuditEvent, Links, PreparedEvent};
use crate::merkle::Hash;

/// The version written in every entry's `v` field.
pub const ENTRY_VERSION: u32 = 1;

/// Encodes the entry for `event` at position `seq` as canonical JSON (RFC 8785), without the
/// final newline. These are the exact bytes that are hashed into the Merkle tree.
///
/// # Errors
/// When the event body cannot be encoded.
pub fn encode_entry(
    seq: u64,
    time: Timestamp,
    prev: Option<&Hash>,
    event: &AuditEvent,
) -> Result<Vec<u8>, AuditError> {
    let prepared = event.prepare()?;
    Ok(assemble(seq, &time_json(time), prev, &prepared))
}

/// The canonical JSON string for a timestamp (RFC 3339, UTC).
pub(crate) fn time_json(time: Timestamp) -> String {
    // RFC 3339 timestamps are plain ASCII, so quoting is their canonical JSON form.
    format!("\"{time}\"")
}

/// Concatenates canonical fragments in RFC 8785 key order (`body`, `event`, `links`, `prev`,
/// `seq`, `time`, `v`); every fragment is itself canonical, so the result is too (the known-answer
/// tests compare it with a full canonicalisation).
pub(crate) fn assemble(
    seq: u64,
    time_json: &str,
    prev: Option<&Hash>,
    p: &PreparedEvent,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.body.len() + p.links.as_ref().map_or(0, Vec::len) + 160);
    out.extend_from_slice(b"{\"body\":");
    out.extend_from_slice(&p.body);
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(p.event_type.as_bytes());
    out.push(b'"');
    if let Some(links) = &p.links {
        out.extend_from_slice(b",\"links\":");
        out.extend_from_slice(links);
    }
    if let Some(prev) = prev {
        out.extend_from_slice(b",\"prev\":\"");
        crate::merkle::hex_extend(&mut out, prev.as_bytes());
        out.push(b'"');
    }
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        ",\"seq\":{seq},\"time\":{time_json},\"v\":{ENTRY_VERSION}}}"
    );
    out
}

/// A parsed log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Format version.
    pub v: u32,
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// When the entry was written.
    pub time: Timestamp,
    /// The event type name (`decision`, `approval`, ...). A string, so logs written by newer
    /// versions with more event types still read.
    pub event: String,
    /// Leaf hash of the previous entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Hash>,
    /// The event body.
    pub body: Value,
    /// Links to decisions, plans, tickets, approvals and traces.
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub links: Links,
}

impl Entry {
    /// Parses one line (with or without its final newline).
    ///
    /// # Errors
    /// When the line is not a well-formed entry.
    pub fn parse(line: &[u8]) -> Result<Entry, AuditError> {
        serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(line))
            .map_err(|e| AuditError::Encode(format!("not an audit entry: {e}")))
    }

    fn body_str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// The verdict of a decision entry (`allow`, `deny`, `require_approval`).
    pub fn decision(&self) -> Option<&str> {
        self.body_str("decision")
    }

    /// The action the entry is about, when it has one.
    pub fn action(&self) -> Option<&str> {
        self.body_str("action")
    }

    /// The caller id, when the entry has one.
    pub fn caller_id(&self) -> Option<&str> {
        self.body
            .get("caller")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
    }

    /// The target id, when the entry has one.
    pub fn target_id(&self) -> Option<&str> {
        match self.body.get("target") {
            Some(Value::String(s)) => Some(s),
            Some(t) => t.get("id").and_then(Value::as_str),
            None => None,
        }
    }

    /// The reason code, when the entry has one.
    pub fn reason_code(&self) -> Option<&str> {
        self.body_str("reason_code")
    }
}

/// The fields verification needs, parsed without building the whole body.
#[derive(Deserialize)]
pub(crate) struct EntryHead<'a> {
    pub seq: u64,
    #[serde(default, borrow)]
    pub prev: Option<&'a str>,
}

impl<'a> EntryHead<'a> {
    pub(crate) fn parse(line: &'a [u8]) -> Result<EntryHead<'a>, String> {
        if line.first() != Some(&b'{') {
            return Err("not a JSON object".into());
        }
        serde_json::from_slice(line).map_err(|e| e.to_string())
    }

    /// Whether `prev` matches the expected previous leaf hash (absent for entry 0).
    pub(crate) fn prev_matches(&self, expected: Option<&Hash>) -> bool {
        match (self.prev, expected) {
            (None, None) => true,
            (Some(p), Some(e)) => Hash::from_hex(p).is_some_and(|h| h.ct_eq(e)),
            _ => false,
        }
    }
}
