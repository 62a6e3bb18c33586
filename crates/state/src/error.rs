//! Errors of the state store.

use std::path::PathBuf;

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A database call failed.
    #[error("state database: {op}: {source}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or folder could not be created or opened.
    #[error("state store `{}`: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database is not usable (wrong journal mode, newer schema, undecodable row).
    #[error("state store: {0}")]
    Corrupt(String),
    /// No such record.
    #[error("no approval request `{0}`")]
    NotFound(String),
    /// A record with that id exists already.
    #[error("approval request `{0}` exists already")]
    Conflict(String),
    /// An update was refused by its caller; nothing was written.
    #[error("{0}")]
    Refused(String),
}
