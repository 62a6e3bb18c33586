//! The error type of `agentsafe-core`.

/// Errors raised while parsing core values from text, and the shared error of executors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A risk class name that is not one of `low`, `medium`, `high`, `critical`.
    #[error("unknown risk class `{0}`, expected one of low, medium, high, critical")]
    UnknownRisk(String),
    /// A sensitivity name that is not one of `public`, `internal`, `restricted`, `critical`.
    #[error("unknown sensitivity `{0}`, expected one of public, internal, restricted, critical")]
    UnknownSensitivity(String),
    /// A verdict name that is not one of `allow`, `deny`, `require_approval`.
    #[error("unknown decision `{0}`, expected one of allow, deny, require_approval")]
    UnknownVerdict(String),
    /// A reason code that is not in the documented list.
    #[error("unknown reason code `{0}`")]
    UnknownReasonCode(String),
    /// A decision id that is not 32 lowercase hexadecimal digits.
    #[error("invalid decision id `{0}`, expected 32 hexadecimal digits")]
    InvalidDecisionId(String),
    /// An executor was asked for an action it does not run.
    #[error("executor `{executor}` does not support action `{action}`")]
    ExecutorUnsupported {
        /// The executor's name.
        executor: String,
        /// The action.
        action: String,
    },
    /// The backend object an action acts on does not exist.
    #[error("{0} not found")]
    ExecutorNotFound(String),
    /// The backend refused or failed the call. The message never contains credentials.
    #[error("{executor}: {message}")]
    ExecutorBackend {
        /// The executor's name.
        executor: String,
        /// What went wrong.
        message: String,
    },
    /// The ticket is for a place the executor does not act in: a Kubernetes cluster not
    /// mapped to a connection of its own, an AWS account other than the one its credentials
    /// belong to, or no place at all. The executor refused before sending anything that
    /// reads or changes the target. The message names both places and the setting to change.
    #[error("{executor}: {message}")]
    ExecutorWrongLocation {
        /// The executor's name.
        executor: String,
        /// Where the ticket is for and where the executor is connected.
        message: String,
    },
    /// The executor stopped because the run was cancelled (its timeout fired).
    #[error("cancelled")]
    ExecutorCancelled,
}
