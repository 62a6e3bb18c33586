//! The error type of the `agentsafe` facade: configuration that cannot be read or used.

use std::path::PathBuf;

/// What can go wrong while composing agentsafe from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file cannot be read.
    #[error("cannot read config file `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid: `FILE:LINE:COL: message`.
    #[error("{location}: {message}")]
    Config {
        /// `FILE:LINE:COL`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// The gate could not be built (invalid actions, policies or inventory).
    #[error(transparent)]
    Gate(#[from] agentsafe_gate::GateError),
    /// The runner's parts could not be built (keys, ticket store, executor).
    #[error(transparent)]
    Runner(#[from] agentsafe_runner::RunnerError),
    /// Keys could not be loaded.
    #[error(transparent)]
    Key(#[from] agentsafe_tickets::KeyError),
    /// The ticket store could not be opened.
    #[error(transparent)]
    Store(#[from] agentsafe_tickets::StoreError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] agentsafe_audit::AuditError),
}
