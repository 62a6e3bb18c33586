//! The error type of `agentsafe-gate`. Deciding never fails (a problem is a DENY with its
//! reason code); these are the errors of building a gate, reloading it and of the
//! operator and approver calls around it.

use std::path::PathBuf;

/// What can go wrong around the gate. Messages never contain key material or the values
/// of sensitive params.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// A configuration file or folder is missing or unreadable.
    #[error("{what} `{}`: {message}", path.display())]
    Config {
        /// What it is (`actions folder`, `policies folder`, `inventory`).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What went wrong, with a hint.
        message: String,
    },
    /// The actions, policies or inventory are invalid: every problem, with file, line and key.
    #[error(transparent)]
    Pdp(#[from] agentsafe_pdp::PdpError),
    /// The audit log cannot be opened or written.
    #[error("the audit log cannot be written: {0}")]
    Audit(#[from] agentsafe_audit::AuditError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] agentsafe_state::StateError),
    /// A token did not verify, or keys could not be loaded to verify it.
    #[error("{0}")]
    Identity(String),
    /// A ticket could not be signed.
    #[error("cannot issue a ticket: {0}")]
    Ticket(String),
    /// An approval request, an approver's answer or a claim was refused; the message says why.
    #[error("{0}")]
    Refused(String),
    /// No approval request with this id.
    #[error("no approval request `{0}`")]
    NoSuchApproval(String),
}
