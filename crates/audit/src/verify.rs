//! Offline verification with nothing but the public key: every leaf, the hash chain, every
//! checkpoint (and checkpoints saved elsewhere), inclusion proofs and consistency proofs.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::entry::EntryHead;
use crate::error::{TamperKind, VerifyFailure};
use crate::merkle::{self, CompactRange, Hash, empty_root, leaf_hash};
use crate::note::{Checkpoint, checkpoints_text, split_notes, unverified_size};
use crate::{AuditError, sibling};

/// Format tag of inclusion proofs.
pub const INCLUSION_PROOF_FORMAT: &str = "agentsafe/audit/inclusion-proof/v1";
/// Format tag of consistency proofs.
pub const CONSISTENCY_PROOF_FORMAT: &str = "agentsafe/audit/consistency-proof/v1";

/// The checkpoints file of a log (`<log>.checkpoints`).
pub fn checkpoints_path(log: &Path) -> PathBuf {
    sibling(log, "checkpoints")
}

/// Options for [`verify_log_with`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Checkpoints saved elsewhere earlier (signed notes), to catch a log whose tail was deleted
    /// together with the tail of its checkpoints file.
    pub external_checkpoints: Vec<PathBuf>,
    /// Accept entries after the last checkpoint (a log still being written) with a warning,
    /// instead of failing.
    pub allow_unsigned_tail: bool,
}

/// A summary of a checkpoint for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// The origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash (hex).
    pub root: Hash,
}

impl From<&Checkpoint> for CheckpointSummary {
    fn from(cp: &Checkpoint) -> Self {
        CheckpointSummary {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: cp.root(),
        }
    }
}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Entries in the log, all hashed and chained.
    pub entries: u64,
    /// The root of the whole log.
    pub root: Hash,
    /// Checkpoints in the checkpoints file, all verified.
    pub checkpoints: u64,
    /// Checkpoints given from elsewhere, all verified.
    pub external_checkpoints: u64,
    /// The largest verified checkpoint.
    pub latest_checkpoint: Option<CheckpointSummary>,
    /// Entries after the latest checkpoint (only non-zero when allowed).
    pub unsigned_tail: u64,
    /// Things worth knowing that are not failures.
    pub warnings: Vec<String>,
}

/// Verifies a log against `key`, with the latest checkpoint of its checkpoints file and,
/// optionally, one checkpoint saved elsewhere. Entries after the last checkpoint are a failure.
///
/// # Errors
/// [`AuditError::Verify`] naming the first bad sequence number when the log was edited,
/// reordered, had entries inserted or deleted, or lost its tail, or when a checkpoint is forged;
/// other variants when a file cannot be read.
pub fn verify_log(
    log: &Path,
    key: &VerifyingKey,
    external_checkpoint: Option<&Path>,
) -> Result<VerifyReport, AuditError> {
    verify_log_with(
        log,
        key,
        &VerifyOptions {
            external_checkpoints: external_checkpoint
                .map(Path::to_path_buf)
                .into_iter()
                .collect(),
            allow_unsigned_tail: false,
        },
    )
}

struct Candidate {
    seq: u64,
    rank: u8,
    kind: TamperKind,
    detail: String,
}

/// A verified checkpoint and where it came from (for messages).
struct Known {
    cp: Checkpoint,
    from: String,
}

/// [`verify_log`] with options.
///
/// # Errors
/// As [`verify_log`].
pub fn verify_log_with(
    log: &Path,
    key: &VerifyingKey,
    opts: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut warnings = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut known: Vec<Known> = Vec::new();

    // 1. The checkpoints file: every note must verify, and sizes must not shrink.
    let cp_path = checkpoints_path(log);
    // A consistent snapshot of a log that may be in use: its length and its checkpoints are read
    // under a shared lock (writers hold the exclusive one while writing), so no half-written line
    // or checkpoint is seen. The entries themselves are read afterwards, without holding the lock.
    let file = crate::read::open_log(log)?;
    file.lock_shared()
        .map_err(|e| AuditError::io("lock audit log", log, e))?;
    let snapshot = file.metadata().map(|m| m.len());
    let cp_read = std::fs::read(&cp_path);
    let _ = file.unlock();
    let log_len = snapshot.map_err(|e| AuditError::io("read audit log metadata", log, e))?;
    let cp_bytes = match cp_read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(AuditError::io("read audit checkpoints file", cp_path, e)),
    };
    let cp_text = checkpoints_text(&cp_bytes).ok_or_else(|| {
        AuditError::Checkpoint(format!("`{}` is damaged (not UTF-8)", cp_path.display()))
    })?;
    let spans = split_notes(cp_text);
    if spans.torn_at.is_some() || cp_text.len() < cp_bytes.len() {
        warnings.push("the checkpoints file ends with an incomplete checkpoint (ignored; reopening the log repairs it)".into());
    }
    let mut good_size = 0u64;
    let mut origin: Option<String> = None;
    let mut file_checkpoints = 0u64;
    for (i, (_, _, note)) in spans.notes.iter().enumerate() {
        let n = i + 1;
        match Checkpoint::from_note(note, key) {
            Ok(cp) => {
                if let Some(o) = &origin
                    && o != cp.origin()
                {
                    candidates.push(Candidate {
                        seq: good_size,
                        rank: 1,
                        kind: TamperKind::BadCheckpoint,
                        detail: format!(
                            "checkpoint #{n} has origin `{}` but earlier ones have `{o}`",
                            cp.origin()
                        ),
                    });
                    continue;
                }
                origin.get_or_insert_with(|| cp.origin().to_owned());
                if cp.size() < good_size {
                    candidates.push(Candidate {
                        seq: cp.size(),
                        rank: 1,
                        kind: TamperKind::CheckpointRegressed,
                        detail: format!(
                            "checkpoint #{n} covers {} entries, fewer than the {good_size} an earlier checkpoint covers",
                            cp.size()
                        ),
                    });
                }
                good_size = good_size.max(cp.size());
                file_checkpoints += 1;
                known.push(Known {
                    cp,
                    from: format!("checkpoint #{n} in `{}`", cp_path.display()),
                });
            }
            Err(e) => {
                let claimed = unverified_size(note)
                    .map_or_else(String::new, |s| format!(" (claiming {s} entries)"));
                candidates.push(Candidate {
                    seq: good_size,
                    rank: 1,
                    kind: TamperKind::BadCheckpoint,
                    detail: format!(
                        "checkpoint #{n}{claimed} in `{}` is not valid for this key ({e}); entries from seq {good_size} on are not proven",
                        cp_path.display()
                    ),
                });
            }
        }
    }

    // 2. Checkpoints saved elsewhere: a bad one is an error of its own, not a finding about the log.
    let mut external = 0u64;
    for path in &opts.external_checkpoints {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::io("read checkpoint", path, e))?;
        let cp = Checkpoint::from_note(&text, key)
            .map_err(|e| AuditError::Checkpoint(format!("`{}`: {e}", path.display())))?;
        if let Some(o) = &origin
            && o != cp.origin()
        {
            return Err(AuditError::Checkpoint(format!(
                "`{}` is a checkpoint of `{}`, not of this log (`{o}`)",
                path.display(),
                cp.origin()
            )));
        }
        external += 1;
        known.push(Known {
            cp,
            from: format!("the checkpoint saved in `{}`", path.display()),
        });
    }
    let mut by_size: Vec<&Known> = known.iter().collect();
    by_size.sort_by_key(|k| k.cp.size());

    // 3. Stream the log: every line an entry, seq = position, chained, matching each checkpoint.
    let mut reader = BufReader::with_capacity(1 << 18, file.take(log_len));
    let mut line: Vec<u8> = Vec::with_capacity(4096);
    let mut range = CompactRange::new();
    let mut prev: Option<Hash> = None;
    let mut prev2: Option<Hash> = None;
    let mut next_cp = 0usize;
    let mut matched_size = 0u64;
    // The first checkpoint the recomputed tree does not match, with the size it covers. The stream
    // goes on after it, because the hash chain may still name the exact entry that was edited.
    let check = |range: &CompactRange,
                 next_cp: &mut usize,
                 matched_size: &mut u64|
     -> Option<(Candidate, u64)> {
        let size = range.size();
        while let Some(k) = by_size.get(*next_cp).filter(|k| k.cp.size() == size) {
            let root = if size == 0 {
                empty_root()
            } else {
                range.root()
            };
            if !root.ct_eq(&k.cp.root()) {
                let first = *matched_size;
                let last = size.saturating_sub(1);
                let candidate = Candidate {
                    seq: first,
                    rank: 0,
                    kind: TamperKind::CheckpointMismatch,
                    detail: format!(
                        "entries {first}..={last} do not match {} (tree size {size}): one of them was altered \
                         (the hash chain is intact, so the last one, seq {last}, was edited or the chain was rewritten)",
                        k.from
                    ),
                };
                return Some((candidate, size));
            }
            *matched_size = size;
            *next_cp += 1;
        }
        None
    };
    let mut mismatch = check(&range, &mut next_cp, &mut matched_size);
    let mut stream_error: Option<Candidate> = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read audit log", log, e))?;
        if n == 0 {
            break;
        }
        let seq = range.size();
        let Some(body) = line.strip_suffix(b"\n") else {
            stream_error = Some(Candidate {
                seq,
                rank: 0,
                kind: TamperKind::TornLine,
                detail: format!(
                    "the final line (seq {seq}) is incomplete: a write was interrupted; opening the log repairs it"
                ),
            });
            break;
        };
        let head = match EntryHead::parse(body) {
            Ok(h) => h,
            Err(e) => {
                stream_error = Some(Candidate {
                    seq,
                    rank: 0,
                    kind: TamperKind::Malformed,
                    detail: format!("line {} is not an audit entry ({e})", seq + 1),
                });
                break;
            }
        };
        let linked = head.prev_matches(prev.as_ref());
        if head.seq != seq || !linked {
            stream_error = Some(classify(
                seq,
                head.seq,
                linked,
                head.prev_matches(prev2.as_ref()),
            ));
            break;
        }
        let leaf = leaf_hash(body);
        range.push(leaf);
        prev2 = prev;
        prev = Some(leaf);
        if mismatch.is_none() {
            mismatch = check(&range, &mut next_cp, &mut matched_size);
        }
    }
    let entries = range.size();
    let stream_ok = stream_error.is_none() && mismatch.is_none();
    match (stream_error, mismatch) {
        // The chain names the entry inside the range the checkpoint no longer proves.
        (Some(mut e), Some((m, end))) if e.seq < end => {
            e.detail = format!(
                "{}; entries from seq {} on are not proven by a checkpoint",
                e.detail, m.seq
            );
            candidates.push(e);
        }
        (_, Some((m, _))) => candidates.push(m),
        (Some(e), None) => candidates.push(e),
        (None, None) => {}
    }

    // 4. Checkpoints beyond the end of the log: its tail was deleted.
    if stream_ok && let Some(k) = by_size.iter().rev().find(|k| k.cp.size() > entries) {
        candidates.push(Candidate {
            seq: entries,
            rank: 0,
            kind: TamperKind::Truncated,
            detail: format!(
                "the log ends after {entries} entries but {} covers {}: entries {entries}..={} were deleted",
                k.from,
                k.cp.size(),
                k.cp.size() - 1
            ),
        });
    }
    let latest = by_size.last().map(|k| &k.cp);
    let covered = latest.map_or(0, Checkpoint::size);
    let mut unsigned_tail = 0;
    if stream_ok && entries > covered {
        if opts.allow_unsigned_tail {
            unsigned_tail = entries - covered;
            warnings.push(format!(
                "entries {covered}..={} are not covered by a signed checkpoint yet",
                entries - 1
            ));
        } else {
            candidates.push(Candidate {
                seq: covered,
                rank: 2,
                kind: TamperKind::UnsignedTail,
                detail: format!(
                    "entries {covered}..={} are not covered by any signed checkpoint: they may have been appended by anyone \
                     (close the log to write a checkpoint, or allow an unsigned tail for a log still being written)",
                    entries - 1
                ),
            });
        }
    }

    if let Some(c) = candidates.into_iter().min_by_key(|c| (c.seq, c.rank)) {
        return Err(VerifyFailure {
            seq: c.seq,
            kind: c.kind,
            detail: c.detail,
        }
        .into());
    }
    Ok(VerifyReport {
        entries,
        root: range.root(),
        checkpoints: file_checkpoints,
        external_checkpoints: external,
        latest_checkpoint: latest.map(CheckpointSummary::from),
        unsigned_tail,
        warnings,
    })
}

/// Names the first bad entry when the line at position `pos` carries seq `found`, and is or is not
/// `linked` to the line before it (its `prev` is that line's leaf hash), or to the one before that
/// (`skips_one`).
fn classify(pos: u64, found: u64, linked: bool, skips_one: bool) -> Candidate {
    let (seq, kind, detail) = if found == pos {
        let before = pos.saturating_sub(1);
        if skips_one {
            (
                before,
                TamperKind::SequenceGap,
                format!(
                    "entry {before} was inserted: entry {pos} links to entry {}",
                    pos.saturating_sub(2)
                ),
            )
        } else {
            (
                before,
                TamperKind::EntryEdited,
                format!(
                    "entry {before} does not match the hash recorded in entry {pos}: entry {before} was edited"
                ),
            )
        }
    } else if linked {
        (
            pos,
            TamperKind::SequenceGap,
            format!("entry {pos} carries seq {found}: its sequence number was edited"),
        )
    } else if found + 1 == pos && skips_one {
        let before = pos.saturating_sub(1);
        (
            before,
            TamperKind::SequenceGap,
            format!(
                "entry {before} was inserted: the next entry carries seq {found} and links to entry {}",
                pos.saturating_sub(2)
            ),
        )
    } else if found > pos {
        (
            pos,
            TamperKind::SequenceGap,
            format!(
                "the entry at position {pos} carries seq {found}: entries {pos}..={} were deleted or moved",
                found - 1
            ),
        )
    } else {
        (
            pos,
            TamperKind::SequenceGap,
            format!(
                "the entry at position {pos} carries seq {found}: an entry was inserted or moved here"
            ),
        )
    };
    Candidate {
        seq,
        rank: 0,
        kind,
        detail,
    }
}

/// The verified checkpoints of a log's checkpoints file, in file order.
///
/// # Errors
/// When the file cannot be read or a checkpoint does not verify with `key`.
pub fn read_checkpoints(log: &Path, key: &VerifyingKey) -> Result<Vec<Checkpoint>, AuditError> {
    let path = checkpoints_path(log);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io("read audit checkpoints file", path, e)),
    };
    let text = checkpoints_text(&bytes).ok_or_else(|| {
        AuditError::Checkpoint(format!("`{}` is damaged (not UTF-8)", path.display()))
    })?;
    split_notes(text)
        .notes
        .iter()
        .map(|(_, _, note)| Checkpoint::from_note(note, key))
        .collect()
}

/// The leaf hashes of the first complete entries of a log (all of them when `limit` is `None`).
///
/// # Errors
/// When the log cannot be read.
pub fn read_leaf_hashes(log: &Path, limit: Option<u64>) -> Result<Vec<Hash>, AuditError> {
    let mut out = Vec::new();
    for_each_line(log, |_, body| {
        if limit.is_some_and(|l| out.len() as u64 >= l) {
            return false;
        }
        out.push(leaf_hash(body));
        true
    })?;
    Ok(out)
}

/// Calls `f(seq, line)` for each complete line until it returns `false`.
pub(crate) fn for_each_line(
    log: &Path,
    mut f: impl FnMut(u64, &[u8]) -> bool,
) -> Result<(), AuditError> {
    let file = crate::read::open_log(log)?;
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let mut line = Vec::with_capacity(4096);
    let mut seq = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read audit log", log, e))?;
        let Some(body) = line.strip_suffix(b"\n").filter(|_| n > 0) else {
            return Ok(());
        };
        if !f(seq, body) {
            return Ok(());
        }
        seq += 1;
    }
}

/// Proof that one entry is in the log, checkable offline against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always [`INCLUSION_PROOF_FORMAT`].
    pub format: String,
    /// The entry's sequence number.
    pub leaf_index: u64,
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// Sibling hashes from the leaf up to the root.
    pub audit_path: Vec<Hash>,
    /// The entry line itself, when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The signed checkpoint (note text) the proof leads to.
    pub checkpoint: String,
}

impl InclusionProof {
    /// Builds the inclusion proof of entry `seq` against the latest checkpoint of the log that
    /// covers it (checked with `key`, and checked to match the log).
    ///
    /// # Errors
    /// When `seq` is not covered by a checkpoint yet, or the log does not match its checkpoint.
    pub fn for_log(log: &Path, seq: u64, key: &VerifyingKey) -> Result<InclusionProof, AuditError> {
        let cps = read_checkpoints(log, key)?;
        let cp = cps
            .iter()
            .filter(|c| c.size() > seq)
            .max_by_key(|c| c.size())
            .ok_or_else(|| {
                AuditError::Proof(format!("seq {seq} is not covered by a checkpoint yet"))
            })?;
        let leaves = read_leaf_hashes(log, Some(cp.size()))?;
        if (leaves.len() as u64) < cp.size() || !merkle::root_of(&leaves).ct_eq(&cp.root()) {
            return Err(AuditError::Proof(format!(
                "the log does not match its checkpoint for tree size {}; run `agentsafe audit verify`",
                cp.size()
            )));
        }
        let audit_path = merkle::inclusion_proof(&leaves, seq)?;
        let mut entry = None;
        for_each_line(log, |i, body| {
            if i == seq {
                entry = Some(String::from_utf8_lossy(body).into_owned());
                return false;
            }
            true
        })?;
        Ok(InclusionProof {
            format: INCLUSION_PROOF_FORMAT.into(),
            leaf_index: seq,
            tree_size: cp.size(),
            leaf_hash: leaves
                .get(usize::try_from(seq).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or_default(),
            audit_path,
            entry,
            checkpoint: cp.note().to_owned(),
        })
    }

    /// Checks the proof: the checkpoint's signature, that its size matches, that the entry (the
    /// given bytes, else the embedded entry) hashes to the leaf, and the audit path to the root.
    /// Returns the checkpoint.
    ///
    /// # Errors
    /// When anything does not verify.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        entry: Option<&[u8]>,
    ) -> Result<Checkpoint, AuditError> {
        if self.format != INCLUSION_PROOF_FORMAT {
            return Err(AuditError::Proof(format!(
                "unknown proof format `{}`",
                self.format
            )));
        }
        let cp = Checkpoint::from_note(&self.checkpoint, key)?;
        if cp.size() != self.tree_size {
            return Err(AuditError::Proof(format!(
                "the proof is for tree size {} but its checkpoint is for {}",
                self.tree_size,
                cp.size()
            )));
        }
        let entry = entry.or(self.entry.as_deref().map(str::as_bytes));
        if let Some(bytes) = entry {
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            if !leaf_hash(bytes).ct_eq(&self.leaf_hash) {
                return Err(AuditError::Proof(format!(
                    "the entry does not hash to the leaf hash of seq {}",
                    self.leaf_index
                )));
            }
            if let Ok(head) = EntryHead::parse(bytes)
                && head.seq != self.leaf_index
            {
                return Err(AuditError::Proof(format!(
                    "the entry carries seq {} but the proof is for seq {}",
                    head.seq, self.leaf_index
                )));
            }
        }
        merkle::verify_inclusion(
            &self.leaf_hash,
            self.leaf_index,
            self.tree_size,
            &self.audit_path,
            &cp.root(),
        )?;
        Ok(cp)
    }
}

/// Proof that the log only grew between two checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Always [`CONSISTENCY_PROOF_FORMAT`].
    pub format: String,
    /// The old tree size.
    pub old_size: u64,
    /// The new tree size.
    pub new_size: u64,
    /// The proof hashes (RFC 6962 `PROOF(m, D[n])`).
    pub proof: Vec<Hash>,
    /// The old signed checkpoint.
    pub old_checkpoint: String,
    /// The new signed checkpoint.
    pub new_checkpoint: String,
}

impl ConsistencyProof {
    /// Builds the consistency proof from `old_checkpoint` (a signed note) to the latest checkpoint
    /// of the log.
    ///
    /// # Errors
    /// When a checkpoint does not verify, the old one is larger than the latest, or the log does
    /// not match them.
    pub fn for_log(
        log: &Path,
        old_checkpoint: &str,
        key: &VerifyingKey,
    ) -> Result<ConsistencyProof, AuditError> {
        let old = Checkpoint::from_note(old_checkpoint, key)?;
        let cps = read_checkpoints(log, key)?;
        let new = cps
            .iter()
            .max_by_key(|c| c.size())
            .ok_or_else(|| AuditError::Proof("the log has no checkpoint yet".into()))?;
        if old.origin() != new.origin() {
            return Err(AuditError::Proof(format!(
                "the old checkpoint is for `{}`, the log is `{}`",
                old.origin(),
                new.origin()
            )));
        }
        if old.size() > new.size() {
            return Err(AuditError::Proof(format!(
                "the old checkpoint covers {} entries but the latest covers only {}: the log was truncated",
                old.size(),
                new.size()
            )));
        }
        let leaves = read_leaf_hashes(log, Some(new.size()))?;
        if (leaves.len() as u64) < new.size() || !merkle::root_of(&leaves).ct_eq(&new.root()) {
            return Err(AuditError::Proof(format!(
                "the log does not match its latest checkpoint (tree size {}); run `agentsafe audit verify`",
                new.size()
            )));
        }
        let proof = merkle::consistency_proof(&leaves, old.size())?;
        let built = ConsistencyProof {
            format: CONSISTENCY_PROOF_FORMAT.into(),
            old_size: old.size(),
            new_size: new.size(),
            proof,
            old_checkpoint: old.note().to_owned(),
            new_checkpoint: new.note().to_owned(),
        };
        built.verify(key)?;
        Ok(built)
    }

    /// Checks both checkpoints' signatures and the proof between them.
    ///
    /// # Errors
    /// When anything does not verify: the old tree is then not a prefix of the new one.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(Checkpoint, Checkpoint), AuditError> {
        if self.format != CONSISTENCY_PROOF_FORMAT {
            return Err(AuditError::Proof(format!(
                "unknown proof format `{}`",
                self.format
            )));
        }
        let old = Checkpoint::from_note(&self.old_checkpoint, key)?;
        let new = Checkpoint::from_note(&self.new_checkpoint, key)?;
        if old.size() != self.old_size || new.size() != self.new_size {
            return Err(AuditError::Proof(
                "the sizes do not match the checkpoints".into(),
            ));
        }
        merkle::verify_consistency(
            old.size(),
            new.size(),
            &old.root(),
            &new.root(),
            &self.proof,
        )?;
        Ok((old, new))
    }
}
