//! Reading the log for people: iterating entries, following a growing log, and statistics.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::counters::{Counters, read_counters};
use crate::entry::Entry;
use crate::merkle::Hash;
use crate::note::split_notes;
use crate::verify::checkpoints_path;

/// Calls `f` with each complete entry of the log, in order, with its raw line (no newline).
/// Lines that do not parse are passed as errors; the iteration goes on.
///
/// # Errors
/// When the log cannot be read.
pub fn for_each_entry(
    log: &Path,
    mut f: impl FnMut(Result<Entry, AuditError>, &[u8]),
) -> Result<(), AuditError> {
    crate::verify::for_each_line(log, |_, line| {
        f(Entry::parse(line), line);
        true
    })
}

/// Follows a log as it grows: each [`Follower::poll`] returns the complete lines appended since.
#[derive(Debug)]
pub struct Follower {
    file: File,
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts following `log` at byte `offset` (0 for the beginning, or [`Follower::end_offset`]).
    ///
    /// # Errors
    /// When the log cannot be opened.
    pub fn open(log: &Path, offset: u64) -> Result<Follower, AuditError> {
        let file = open_log(log)?;
        Ok(Follower {
            file,
            path: log.to_path_buf(),
            offset,
            partial: Vec::new(),
        })
    }

    /// The current length of the log.
    ///
    /// # Errors
    /// When the log's metadata cannot be read.
    pub fn end_offset(log: &Path) -> Result<u64, AuditError> {
        std::fs::metadata(log)
            .map(|m| m.len())
            .map_err(|e| AuditError::io("read audit log metadata", log, e))
    }

    /// The complete lines (without newline) appended since the last poll.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn poll(&mut self) -> Result<Vec<Vec<u8>>, AuditError> {
        let io = |e| AuditError::io("read audit log", self.path.clone(), e);
        let len = self.file.metadata().map_err(io)?.len();
        if len < self.offset {
            // Truncated under us (a torn line was repaired): continue from the new end.
            self.offset = len;
            self.partial.clear();
        }
        let mut out = Vec::new();
        if len == self.offset {
            return Ok(out);
        }
        self.file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut buf = Vec::new();
        (&mut self.file)
            .take(len - self.offset)
            .read_to_end(&mut buf)
            .map_err(io)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(nl) = self
            .partial
            .get(start..)
            .and_then(|s| s.iter().position(|&b| b == b'\n'))
        {
            out.push(
                self.partial
                    .get(start..start + nl)
                    .unwrap_or_default()
                    .to_vec(),
            );
            start += nl + 1;
        }
        self.partial.drain(..start);
        Ok(out)
    }
}

/// The byte offset where the last `n` complete lines of the log start (reads only the tail).
///
/// # Errors
/// When the log cannot be read.
pub fn offset_of_last_lines(log: &Path, n: u64) -> Result<u64, AuditError> {
    let io = |e| AuditError::io("read audit log", log, e);
    let mut f = open_log(log)?;
    let len = f.metadata().map_err(io)?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut buf = Vec::new();
        (&mut f)
            .take(len - start)
            .read_to_end(&mut buf)
            .map_err(io)?;
        // Ignore an incomplete final line.
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut seen = 0u64;
        let mut i = end;
        while i > 0 {
            i -= 1;
            if i > 0 && buf.get(i - 1) == Some(&b'\n') {
                seen += 1;
                if seen == n {
                    return Ok(start + i as u64);
                }
            }
        }
        if start == 0 {
            return Ok(0);
        }
        window = window.saturating_mul(4);
    }
}

/// An unverified summary of a checkpoint (read without a key, for statistics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Option<Hash>,
}

/// What `agentsafe audit stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Complete entries.
    pub entries: u64,
    /// Bytes in the log.
    pub bytes: u64,
    /// Entries per event type.
    pub by_event: BTreeMap<String, u64>,
    /// Decision entries per verdict.
    pub by_decision: BTreeMap<String, u64>,
    /// Lines that are not entries.
    pub unreadable: u64,
    /// Time of the first entry.
    pub first_time: Option<String>,
    /// Time of the last entry.
    pub last_time: Option<String>,
    /// Checkpoints in the checkpoints file.
    pub checkpoints: u64,
    /// The last checkpoint (not verified: use `verify` for that).
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Failures, shipped and dropped counts.
    pub counters: Counters,
}

/// Counts entries by event type and decision, checkpoints, and reads the persisted counters.
///
/// # Errors
/// When the log cannot be read.
pub fn stats(log: &Path) -> Result<LogStats, AuditError> {
    let mut s = LogStats {
        bytes: std::fs::metadata(log).map(|m| m.len()).unwrap_or(0),
        ..LogStats::default()
    };
    let file = open_log(log)?;
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let mut line = Vec::new();
    let mut last_time = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read audit log", log, e))?;
        let Some(body) = line.strip_suffix(b"\n").filter(|_| n > 0) else {
            break;
        };
        #[derive(Deserialize)]
        struct Brief<'a> {
            event: &'a str,
            time: &'a str,
            #[serde(default)]
            body: Option<BriefBody<'a>>,
        }
        #[derive(Deserialize)]
        struct BriefBody<'a> {
            #[serde(default, borrow)]
            decision: Option<&'a str>,
        }
        match serde_json::from_slice::<Brief<'_>>(body) {
            Ok(b) => {
                s.entries += 1;
                *s.by_event.entry(b.event.to_owned()).or_default() += 1;
                if let Some(d) = b.body.and_then(|x| x.decision)
                    && b.event == "decision"
                {
                    *s.by_decision.entry(d.to_owned()).or_default() += 1;
                }
                if s.first_time.is_none() {
                    s.first_time = Some(b.time.to_owned());
                }
                last_time = Some(b.time.to_owned());
            }
            Err(_) => s.unreadable += 1,
        }
    }
    s.last_time = last_time;
    if let Ok(bytes) = std::fs::read(checkpoints_path(log))
        && let Some(text) = crate::note::checkpoints_text(&bytes)
    {
        let spans = split_notes(text);
        s.checkpoints = spans.notes.len() as u64;
        s.last_checkpoint = spans.notes.last().map(|(_, _, note)| {
            let mut lines = note.lines();
            CheckpointInfo {
                origin: lines.next().unwrap_or_default().to_owned(),
                size: lines.next().and_then(|l| l.parse().ok()).unwrap_or(0),
                root: lines.next().and_then(Hash::from_base64),
            }
        });
    }
    s.counters = read_counters(log)?;
    Ok(s)
}

/// Opens a log for reading. Only regular files are logs: reading a device (a log path
/// pointing at `/dev/full` or `/dev/zero`) would never end.
pub(crate) fn open_log(log: &Path) -> Result<File, AuditError> {
    let file = File::open(log).map_err(|e| AuditError::io("open audit log", log, e))?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("open audit log", log, e))?;
    if !meta.is_file() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
        return Err(AuditError::io("open audit log", log, e));
    }
    Ok(file)
}
