//! The tamper-evident audit log of agentsafe: every decision, approval, ticket, execution,
//! rollback and configuration load, provable to an auditor who holds only a public key.
//!
//! # Format
//!
//! * `audit.jsonl`: one canonical JSON (RFC 8785) entry per line with a gap-free `seq`, `time`,
//!   `event`, `body`, `links` and `prev` (the leaf hash of the entry before). See [`entry`].
//! * The entries are the leaves of an RFC 6962 Merkle tree: leaf `SHA-256(0x00 || line)`,
//!   node `SHA-256(0x01 || left || right)`. See [`merkle`].
//! * `audit.jsonl.checkpoints`: Ed25519-signed checkpoints (C2SP signed-note / tlog-checkpoint
//!   format: origin, size and root, no extension line), written every
//!   `checkpoint_every` entries, every `checkpoint_interval` and on close. See [`note`].
//! * `audit.jsonl.state`: the writer's state (compact range, next seq, tail position, and a batch
//!   being written), MACed with a key derived from the signing key, so that opening and appending
//!   cost O(log n) and a writer can tell what holders of the key wrote from lines someone appended
//!   by hand: it never signs those (see [`log`]).
//! * `audit.jsonl.counters`: failures allowed by `on_audit_failure = "allow"`, tamper alarms
//!   (appends refused over entries nobody with the key vouches for), shipped and dropped counts.
//!
//! Values of params marked sensitive are replaced by `hmac-sha256:<hex>`, keyed with
//! `HMAC-SHA256(seed of the signing key, "agentsafe/audit/param-hmac/v1")`: no extra secret to
//! manage, and equal values still compare equal. See [`Redactor`].
//!
//! Whoever can edit the log cannot also re-sign it: the writer signs only entries it, or another
//! holder of the key, wrote. A rewrite of the log together with its checkpoints and state is
//! caught only by a checkpoint kept elsewhere (`agentsafe audit verify --checkpoint`, or a
//! shipped copy); see [`log`].
//!
//! The signing key is never stored beside the log: [`AuditLog::open`] refuses a key in the log's
//! folder or anywhere under it (symlinks resolved). Verification ([`verify_log`]) needs only the public key, and names the first bad
//! sequence number of an edited, inserted, deleted, reordered or truncated log.
//!
//! # Shipping
//!
//! Committed entries can be copied elsewhere, live by a [`Shipper`] attached to the open log
//! (`[[audit.ship]]`) or on demand by [`ship_log`] (`agentsafe audit ship`, resumable from a
//! cursor): to a file (`file:PATH`), to an HTTP endpoint as CloudEvents batches
//! (`http(s)://URL`), or to S3 (`s3://BUCKET/PREFIX`), one object per batch named
//! `<prefix>/<first seq:020>-<last seq:020>.jsonl` and never overwritten. S3 requests are signed
//! with AWS Signature Version 4 by this crate (no AWS SDK); see [`s3`]. The latest signed
//! checkpoint goes along (`PATH.checkpoints`, a `dev.agentsafe.audit.checkpoint` CloudEvent
//! ending each batch, `<prefix>/checkpoints/<size:020>-<root>.checkpoint`), so the destination
//! is a witness for the log; see [`ship`].
//!
//! # Concurrency
//!
//! Threads share one [`AuditLog`] (group commit through a writer thread); processes serialise on
//! an exclusive lock of the log file and re-read the tail state under it.

pub mod bench;
pub mod config;
pub mod counters;
pub mod entry;
pub mod error;
pub mod event;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod note;
pub mod read;
pub mod s3;
pub mod ship;
mod sigv4;
mod state;
pub mod verify;

use std::path::{Path, PathBuf};

pub use config::{AuditConfig, Destination, FailureMode, HumanDuration, ShipTarget, SyncPolicy};
pub use counters::{Counters, read_counters, record_failure};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use entry::{Entry, encode_entry};
pub use error::{AuditError, TamperKind, VerifyFailure};
pub use event::{AuditEvent, EventType, Links, LoadedFile, Redactor};
pub use keys::{SigningKeySource, load_signing_key, load_verifying_key};
pub use log::{Appended, AuditLog};
pub use merkle::{Hash, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};
pub use note::Checkpoint;
pub use read::{LogStats, stats};
pub use s3::{PutOutcome, S3Client, S3Credentials, S3Location};
pub use ship::{ShipReport, ShipStats, Shipper, ship_log};
pub use verify::{
    ConsistencyProof, InclusionProof, VerifyOptions, VerifyReport, checkpoints_path,
    read_checkpoints, verify_log, verify_log_with,
};

/// `<log>.<suffix>`: the files kept beside a log.
pub(crate) fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}
