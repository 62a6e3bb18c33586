//! The error type of the `agentsafe-runner` library: the execution pipeline, credentials
//! and rollback planning.

/// What can go wrong around an execution. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// A credential could not be issued or revoked.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A param value cannot be placed in a credential scope.
    #[error("param `{param}` cannot be used in the credential scope field `{field}`: {why}")]
    Scope {
        /// The param.
        param: String,
        /// The credentials field.
        field: String,
        /// Why.
        why: String,
    },
    /// The dry-run world file is unreadable or invalid.
    #[error("dry-run world `{path}`: {message}")]
    World {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// No execution record for a decision, or one that cannot be rolled back.
    #[error("{0}")]
    Rollback(String),
    /// The audit log could not be read or written.
    #[error(transparent)]
    Audit(#[from] agentsafe_audit::AuditError),
    /// An executor is not available or its configuration cannot be used.
    #[error("{0}")]
    Executor(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}
