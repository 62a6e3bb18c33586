//! The error type of `agentsafe-registry`: I/O failures and located load diagnostics.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One problem found while loading action files, with its location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given to the loader (`actions/foo.toml`).
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
    /// The dotted key path, such as `params[1].constraints.pattern` (array indexes
    /// from 0); empty for a problem of the file as a whole.
    pub key: String,
    /// What is wrong: lowercase, user input in backticks.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why the registry could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A directory or file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// One or more action files are invalid; every problem found is listed, one per line.
    #[error("{}", DiagnosticList(.0))]
    Invalid(Vec<Diagnostic>),
}

impl RegistryError {
    /// The located problems (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            RegistryError::Invalid(diagnostics) => diagnostics,
            RegistryError::Io { .. } => &[],
        }
    }
}

struct DiagnosticList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
