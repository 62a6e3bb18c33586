//! The error type of `agentsafe-pdp`: loading problems, each naming file, line, column and key.

use std::path::PathBuf;

/// One problem found in a configuration file: file, line, column, key and message. The
/// same type the registry reports, so every load error of agentsafe reads the same.
pub use agentsafe_registry::Diagnostic;

/// Errors while loading policies, the inventory or policy test cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdpError {
    /// A file or folder could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// One or more files are invalid; every problem is listed, one per line.
    #[error("{}", lines(.0))]
    Invalid(Vec<Diagnostic>),
    /// The action registry failed to load.
    #[error(transparent)]
    Registry(#[from] agentsafe_registry::RegistryError),
}

fn lines(list: &[Diagnostic]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects problems for one file, turning byte offsets into lines and columns.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    /// Byte offsets where lines start, computed on first use: a large policy file
    /// asks for thousands of rule lines, and rescanning from the start each time is quadratic.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Source<'a> {
        Source {
            file,
            text,
            line_starts: std::cell::OnceCell::new(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let line = starts.partition_point(|&s| s <= offset).max(1);
        let start = starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |t| t.chars().count())
            + 1;
        (line, column)
    }

    pub(crate) fn problem(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = span.map_or((1, 1), |s| self.line_col(s.start));
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Turns a TOML parse or shape error into a problem.
    pub(crate) fn toml_problem(&self, err: &toml::de::Error) -> Diagnostic {
        let msg = err.message().trim_end();
        let key = err
            .span()
            .and_then(|s| key_on_line(self.text, s.start))
            .unwrap_or_default();
        self.problem(err.span(), key, msg)
    }
}

/// The innermost key assigned before `offset` on its line: TOML's errors point at a value
/// (`replicas = "x"` gives `replicas`) or at an unknown key inside an inline table
/// (`callers = { role = .. }` gives `callers`, the table that has no such key).
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(start..offset)?;
    let eq = before.rfind('=')?;
    let lhs = before.get(..eq)?.trim_end();
    let key: String = lhs
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}
