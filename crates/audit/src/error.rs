//! The error type of `agentsafe-audit`, and the verification failure it can carry.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while writing, reading, verifying or shipping the audit log.
///
/// # Security
/// No variant ever carries key material: key errors name the file, never its content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The signing key file is missing, unreadable or not an Ed25519 PKCS#8 PEM key.
    #[error("cannot load audit signing key `{path}`: {reason}")]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// Why (never the key itself).
        reason: String,
    },
    /// The public key file is missing, unreadable or not an Ed25519 SPKI PEM key.
    #[error("cannot load audit public key `{path}`: {reason}")]
    PublicKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The signing key sits in the log's folder or in a folder under it (after resolving
    /// symlinks), so whoever can edit the log could re-sign it.
    #[error(
        "audit signing key `{key}` is stored inside the folder of the audit log `{log}`; keep the key outside it (for example in the key folder)"
    )]
    KeyBesideLog {
        /// The key file.
        key: PathBuf,
        /// The log file.
        log: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was being done, such as `append to audit log`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The log (or its checkpoints) is not in a state that can be appended to safely.
    #[error("audit log `{path}` cannot be appended to at seq {seq}: {reason}")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The first sequence number affected.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log, its checkpoints or its state file do not match what holders of the audit key
    /// wrote: entries appear that neither a signed checkpoint nor the authenticated state vouches
    /// for, entries or checkpoints were deleted, or the log differs from its latest checkpoint.
    /// Nothing more is appended (so nothing unproven is ever signed) until someone investigates;
    /// each refusal is counted in [`crate::Counters::tamper_detected`].
    #[error(
        "audit log `{path}` does not match what holders of the audit key wrote, from seq {seq}: {reason}; appends are refused so that nothing unproven gets signed (run `agentsafe audit verify`)"
    )]
    Tampered {
        /// The log file.
        path: PathBuf,
        /// The first sequence number that cannot be vouched for.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// An event could not be encoded as canonical JSON.
    #[error("cannot encode audit event: {0}")]
    Encode(String),
    /// The log was closed, or its writer thread stopped.
    #[error("audit log `{0}` is closed")]
    Closed(PathBuf),
    /// A checkpoint note is malformed or its signature does not verify.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// An inclusion or consistency proof is malformed or does not verify.
    #[error("invalid proof: {0}")]
    Proof(String),
    /// The log failed verification.
    #[error("{0}")]
    Verify(Box<VerifyFailure>),
    /// Shipping to a destination failed.
    #[error("cannot ship audit entries to `{target}`: {reason}")]
    Ship {
        /// The destination.
        target: String,
        /// Why.
        reason: String,
    },
}

impl AuditError {
    /// The first bad sequence number, when this is a verification failure or corruption.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            AuditError::Verify(f) => Some(f.seq),
            AuditError::Corrupt { seq, .. } | AuditError::Tampered { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The verification failure, when this is one.
    pub fn verify_failure(&self) -> Option<&VerifyFailure> {
        match self {
            AuditError::Verify(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AuditError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<VerifyFailure> for AuditError {
    fn from(f: VerifyFailure) -> Self {
        AuditError::Verify(Box::new(f))
    }
}

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TamperKind {
    /// A line is not a well-formed entry.
    Malformed,
    /// The line at this position carries another sequence number: an entry was inserted,
    /// deleted or moved.
    SequenceGap,
    /// The entry's bytes differ from the hash its successor recorded: it was edited.
    EntryEdited,
    /// The final line is incomplete (a crash during a write; reopening the log repairs it).
    TornLine,
    /// The log ends before a signed checkpoint says it should: its tail was deleted.
    Truncated,
    /// The tree recomputed from the log does not match a signed checkpoint.
    CheckpointMismatch,
    /// A checkpoint is not signed by the given key, or is malformed.
    BadCheckpoint,
    /// A checkpoint is smaller than one before it in the checkpoints file.
    CheckpointRegressed,
    /// Entries follow the last checkpoint, so nothing proves them yet.
    UnsignedTail,
}

impl TamperKind {
    /// A stable snake_case name for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            TamperKind::Malformed => "malformed",
            TamperKind::SequenceGap => "sequence_gap",
            TamperKind::EntryEdited => "entry_edited",
            TamperKind::TornLine => "torn_line",
            TamperKind::Truncated => "truncated",
            TamperKind::CheckpointMismatch => "checkpoint_mismatch",
            TamperKind::BadCheckpoint => "bad_checkpoint",
            TamperKind::CheckpointRegressed => "checkpoint_regressed",
            TamperKind::UnsignedTail => "unsigned_tail",
        }
    }
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a log failed verification, naming the first sequence number that can no longer be trusted.
/// Carried by [`AuditError::Verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The first bad (or first unproven) sequence number.
    pub seq: u64,
    /// What kind of damage was found.
    pub kind: TamperKind,
    /// A human-readable explanation.
    pub detail: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit log verification failed at seq {}: {}",
            self.seq, self.detail
        )
    }
}
