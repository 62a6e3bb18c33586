//! Signed checkpoints in the C2SP signed-note and tlog-checkpoint formats.
//!
//! A checkpoint body is exactly the three lines C2SP tlog-checkpoint requires, with no extension
//! lines:
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//! ```
//!
//! followed by a blank line and one signature line `— <origin> base64(key id || Ed25519 signature)`,
//! so independent tlog tooling (witnesses, the Go `sumdb/note` and `tlog` packages) parses them.
//!
//! Domain separation lives where C2SP puts it: in the origin line, which names the log (by
//! default `agentsafe.local/audit`: agentsafe's audit log), and in the signature's key name (the
//! origin again) and key id, `SHA-256(key name || 0x0A || 0x01 || public key)[..4]`, which bind
//! every signature to this log's name and key. The audit key signs nothing but these notes (the
//! keys it derives for redaction and the state file are HMAC keys, each under its own label), so
//! a checkpoint signature cannot be replayed as any other kind of signed statement.
//!
//! Checkpoints written before this format carried a fourth line, the extension
//! [`LEGACY_AUDIT_EXTENSION`] (`agentsafe/audit/v1`); C2SP marks extension lines NOT RECOMMENDED
//! and some verifiers refuse them, so they are no longer written, but verification still accepts
//! that one extension line (it is covered by the signature like the rest), so old logs verify.
//! Any other extension line is refused.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

use crate::AuditError;
use crate::keys::key_id;
use crate::merkle::Hash;

/// The extension line that checkpoints written by earlier versions carry (and that verification
/// still accepts); new checkpoints have none.
pub const LEGACY_AUDIT_EXTENSION: &str = "agentsafe/audit/v1";

const EM_DASH_PREFIX: &str = "\u{2014} ";

/// A signed tree head: origin, tree size and root hash, with the signed note it came from.
///
/// Values only come from signing ([`Checkpoint::sign`]) or from a verified note
/// ([`Checkpoint::from_note`]), so holding one means its signature was checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    note: String,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("origin", &self.origin)
            .field("size", &self.size)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// The checkpoint body (note text) for a tree head: origin, tree size and root, one per line.
    pub fn body(origin: &str, size: u64, root: &Hash) -> String {
        format!("{origin}\n{size}\n{}\n", root.to_base64())
    }

    /// Signs a tree head with `key`, using `origin` as the key name.
    ///
    /// # Errors
    /// When `origin` is not a valid origin / key name.
    pub fn sign(
        origin: &str,
        size: u64,
        root: Hash,
        key: &SigningKey,
    ) -> Result<Checkpoint, AuditError> {
        check_origin(origin)?;
        let note = sign_note(&Checkpoint::body(origin, size, &root), origin, key)?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            note,
        })
    }

    /// Parses a signed note and checks that it is a checkpoint signed by `key` under the key name
    /// equal to its origin. Checkpoints with the legacy `agentsafe/audit/v1` extension line are
    /// accepted too.
    ///
    /// # Errors
    /// When the note is malformed, is not an audit checkpoint, or carries no valid signature by `key`.
    pub fn from_note(note: &str, key: &VerifyingKey) -> Result<Checkpoint, AuditError> {
        let (text, sigs) = split_note(note)?;
        if text.contains("\n\n") {
            return Err(AuditError::Checkpoint(
                "a checkpoint has no empty lines in its text".into(),
            ));
        }
        let mut lines = text.lines();
        let origin = lines.next().unwrap_or_default();
        let size_line = lines.next().unwrap_or_default();
        let root_line = lines.next().unwrap_or_default();
        let extensions: Vec<&str> = lines.collect();
        check_origin(origin)?;
        let size = parse_size(size_line)
            .ok_or_else(|| AuditError::Checkpoint(format!("invalid tree size `{size_line}`")))?;
        let root = Hash::from_base64(root_line)
            .ok_or_else(|| AuditError::Checkpoint(format!("invalid root hash `{root_line}`")))?;
        match extensions.as_slice() {
            [] | [LEGACY_AUDIT_EXTENSION] => {}
            _ => {
                return Err(AuditError::Checkpoint(format!(
                    "unexpected extension lines in the checkpoint for tree size {size} (only the legacy `{LEGACY_AUDIT_EXTENSION}` line is accepted)"
                )));
            }
        }
        let id = key_id(origin, key);
        let mut found = false;
        for (name, blob) in &sigs {
            let Some((sig_id, sig)) = blob.split_first_chunk::<4>() else {
                continue;
            };
            if name != origin || *sig_id != id {
                // Signatures by other keys (witnesses, rotated keys) are ignored, as the spec requires.
                continue;
            }
            let sig = Signature::from_slice(sig)
                .map_err(|_| AuditError::Checkpoint("malformed Ed25519 signature".into()))?;
            key.verify(text.as_bytes(), &sig).map_err(|_| {
                AuditError::Checkpoint(format!(
                    "the signature on the checkpoint for tree size {size} does not verify"
                ))
            })?;
            found = true;
        }
        if !found {
            return Err(AuditError::Checkpoint(format!(
                "the checkpoint for tree size {size} carries no signature by the given key for `{origin}`"
            )));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            note: note.to_owned(),
        })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of entries the checkpoint covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root of the first `size` entries.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The full signed note text.
    pub fn note(&self) -> &str {
        &self.note
    }
}

/// Signs a note text (which must end in a newline) with `key` under `key_name`, returning the
/// complete signed note.
///
/// # Errors
/// When the text or key name is not allowed by the signed-note format.
pub fn sign_note(text: &str, key_name: &str, key: &SigningKey) -> Result<String, AuditError> {
    if !text.ends_with('\n') || text.contains("\n\n") || text.starts_with('\n') {
        return Err(AuditError::Checkpoint(
            "note text must be non-empty lines, each ending in a newline".into(),
        ));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(AuditError::Checkpoint(
            "note text contains control characters".into(),
        ));
    }
    check_key_name(key_name)?;
    let sig = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&key_id(key_name, &key.verifying_key()));
    blob.extend_from_slice(&sig.to_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    Ok(format!("{text}\n{EM_DASH_PREFIX}{key_name} {b64}\n"))
}

type NoteSignatures = Vec<(String, Vec<u8>)>;

/// Splits a signed note into its text and its signatures (name, decoded blob).
fn split_note(note: &str) -> Result<(&str, NoteSignatures), AuditError> {
    let bad = |why: &str| AuditError::Checkpoint(format!("malformed signed note: {why}"));
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad("control characters"));
    }
    if !note.ends_with('\n') {
        return Err(bad("it does not end in a newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let text = note.get(..=split).ok_or_else(|| bad("no text"))?;
    let sig_block = note.get(split + 2..).ok_or_else(|| bad("no signatures"))?;
    let mut sigs = Vec::new();
    for line in sig_block.lines() {
        let rest = line
            .strip_prefix(EM_DASH_PREFIX)
            .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("a signature line has no signature"))?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("a signature is too short"));
        }
        sigs.push((name.to_owned(), blob));
    }
    if sigs.is_empty() {
        return Err(bad("no signatures"));
    }
    Ok((text, sigs))
}

fn check_key_name(name: &str) -> Result<(), AuditError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c < ' ')
    {
        return Err(AuditError::Checkpoint(format!(
            "key name `{name}` must be non-empty, without spaces or `+`"
        )));
    }
    Ok(())
}

pub(crate) fn check_origin(origin: &str) -> Result<(), AuditError> {
    check_key_name(origin)
}

fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Where each signed note of a checkpoints file starts and ends.
#[derive(Debug, Default)]
pub(crate) struct NoteSpans<'a> {
    /// Complete notes with their byte offsets (start, end).
    pub notes: Vec<(usize, usize, &'a str)>,
    /// Where an incomplete final note starts (a torn write), if there is one.
    pub torn_at: Option<usize>,
}

/// Splits the text of a checkpoints file (concatenated signed notes) into notes.
pub(crate) fn split_notes(data: &str) -> NoteSpans<'_> {
    let mut spans = NoteSpans::default();
    let mut pos = 0usize;
    let len = data.len();
    let next_line = |from: usize| {
        data.get(from..)
            .and_then(|s| s.find('\n'))
            .map(|i| from + i)
    };
    while pos < len {
        // Blank lines between notes are tolerated.
        if data.get(pos..).is_some_and(|s| s.starts_with('\n')) {
            pos += 1;
            continue;
        }
        let start = pos;
        let mut torn = false;
        // The note text: lines up to the first empty line.
        loop {
            let Some(nl) = next_line(pos) else {
                torn = true;
                break;
            };
            let empty = nl == pos;
            pos = nl + 1;
            if empty {
                break;
            }
            if pos >= len {
                torn = true;
                break;
            }
        }
        let mut sig_lines = 0;
        while !torn
            && data
                .get(pos..)
                .is_some_and(|s| s.starts_with(EM_DASH_PREFIX))
        {
            match next_line(pos) {
                Some(nl) => {
                    pos = nl + 1;
                    sig_lines += 1;
                }
                None => torn = true,
            }
        }
        if torn || sig_lines == 0 {
            spans.torn_at = Some(start);
            return spans;
        }
        if let Some(text) = data.get(start..pos) {
            spans.notes.push((start, pos, text));
        }
    }
    spans
}

/// The text of a checkpoints file: all of it when it is UTF-8, or the prefix before an incomplete
/// UTF-8 sequence at the very end (a torn write). `None` when invalid bytes sit elsewhere.
pub(crate) fn checkpoints_text(data: &[u8]) -> Option<&str> {
    match std::str::from_utf8(data) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(data.get(..e.valid_up_to())?).ok(),
        Err(_) => None,
    }
}

/// Reads the tree size from a note without checking its signature (for the writer's bookkeeping).
pub(crate) fn unverified_size(note: &str) -> Option<u64> {
    note.lines().nth(1).and_then(parse_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_notes_finds_complete_notes_and_torn_tail() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let a = Checkpoint::sign("o.example/log", 1, Hash::default(), &key).unwrap();
        let b = Checkpoint::sign("o.example/log", 2, Hash::default(), &key).unwrap();
        let mut data = format!("{}{}", a.note(), b.note());
        let spans = split_notes(&data);
        assert_eq!(spans.notes.len(), 2);
        assert_eq!(spans.torn_at, None);
        let full = data.len();
        data.push_str(&b.note()[..20]);
        let spans = split_notes(&data);
        assert_eq!(spans.notes.len(), 2);
        assert_eq!(spans.torn_at, Some(full));
        for cut in 1..b.note().len() {
            if !b.note().is_char_boundary(cut) {
                continue;
            }
            let d = format!("{}{}", a.note(), &b.note()[..cut]);
            let s = split_notes(&d);
            assert_eq!(s.notes.len(), 1, "cut {cut}");
            assert_eq!(s.torn_at, Some(a.note().len()), "cut {cut}");
        }
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_other_keys() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let other = SigningKey::from_bytes(&[10u8; 32]);
        let cp =
            Checkpoint::sign("o.example/log", 42, crate::merkle::leaf_hash(b"x"), &key).unwrap();
        let back = Checkpoint::from_note(cp.note(), &key.verifying_key()).unwrap();
        assert_eq!(back, cp);
        assert!(Checkpoint::from_note(cp.note(), &other.verifying_key()).is_err());
        let tampered = cp.note().replace("\n42\n", "\n43\n");
        assert!(Checkpoint::from_note(&tampered, &key.verifying_key()).is_err());
        assert!(Checkpoint::sign("bad origin", 1, Hash::default(), &key).is_err());
    }
}
