//! The writer's authenticated state file (`<log>.state`): where the log ends (tree size, compact
//! range, byte length and last line) and the last checkpoint, MACed with a key only holders of the
//! audit signing key can derive. It makes opening and appending O(log n), and it is what lets a
//! writer tell the entries it (or another key holder) wrote from lines someone else appended.
//!
//! # Format
//!
//! Two slots of [`SLOT_SIZE`] bytes, at offsets 0 and [`SLOT_SIZE`]. Each holds one record
//!
//! ```text
//! {"v":2,"generation":..,"tree":{..},"base":{..}|null}
//! <hex HMAC-SHA256(state key, the JSON line)>
//! ```
//!
//! where the state key is `HMAC-SHA256(key = the Ed25519 seed, message = "agentsafe/audit-state/v1")`.
//! A write goes to the slot that does not hold the newest record, with a higher `generation`, so a
//! write torn by a crash or a power failure leaves the previous record readable. Bytes after a record
//! (left by a longer earlier one) are ignored.
//!
//! `tree` is where the log ends; `base`, when present, says a write is under way: the writer records
//! `tree` (the log after the batch) and `base` (the log before it) *before* it writes the batch, and
//! drops `base` once the batch is in the log. So every byte a key holder appends is announced in
//! authenticated state first, and a log that ends between `base` and `tree` is a torn write, not
//! an edit.
//!
//! Version 1 state files (a JSON line and its SHA-256, no key) are still recognised, but only as
//! "no authenticated state": anyone could have written them.

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::SigningKey;
use crate::merkle::{CompactRange, Hash};

/// The domain-separation label of the state MAC key.
pub(crate) const STATE_DOMAIN: &str = "agentsafe/audit-state/v1";

/// The size of each of the two record slots. A record holds two compact ranges of at most 64
/// hashes each (hex), far below this.
pub(crate) const SLOT_SIZE: u64 = 16 * 1024;

/// Where the tree and the files stood after a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeState {
    /// Entries in the log (the next sequence number) with their compact range.
    pub range: CompactRange,
    /// Bytes of the log holding those entries.
    pub log_len: u64,
    /// Leaf hash of the last entry.
    pub last_leaf: Option<Hash>,
    /// Length of the last line, newline included.
    pub last_line_len: u64,
    /// Tree size of the last checkpoint.
    pub cp_size: u64,
    /// Bytes of the checkpoints file after the last checkpoint.
    pub cp_len: u64,
}

impl TreeState {
    pub fn empty() -> Self {
        TreeState {
            range: CompactRange::new(),
            log_len: 0,
            last_leaf: None,
            last_line_len: 0,
            cp_size: 0,
            cp_len: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// Records one appended line (`line_len` includes the newline).
    pub fn push(&mut self, leaf: Hash, line_len: u64) {
        self.range.push(leaf);
        self.last_leaf = Some(leaf);
        self.last_line_len = line_len;
        self.log_len += line_len;
    }

    fn to_disk(&self) -> DiskTree {
        DiskTree {
            size: self.range.size(),
            frontier: self.range.hashes().to_vec(),
            log_len: self.log_len,
            last_leaf: self.last_leaf,
            last_line_len: self.last_line_len,
            cp_size: self.cp_size,
            cp_len: self.cp_len,
        }
    }

    fn from_disk(d: DiskTree) -> Option<TreeState> {
        let range = CompactRange::from_parts(d.size, d.frontier)?;
        if (d.size == 0) != d.last_leaf.is_none() || d.last_line_len > d.log_len {
            return None;
        }
        Some(TreeState {
            range,
            log_len: d.log_len,
            last_leaf: d.last_leaf,
            last_line_len: d.last_line_len,
            cp_size: d.cp_size,
            cp_len: d.cp_len,
        })
    }
}

/// An authenticated state record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedState {
    /// Where the log ends (or will end, once the write under way is done).
    pub tree: TreeState,
    /// Where the log ended before the write under way; `None` when no write is under way.
    pub base: Option<TreeState>,
}

/// The MAC key of the state file, derived from the audit signing key.
///
/// # Security
/// `Debug` never prints the key.
#[derive(Clone)]
pub(crate) struct StateKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

impl StateKey {
    pub fn from_signing_key(key: &SigningKey) -> StateKey {
        StateKey {
            mac: crate::event::derived_mac(key, STATE_DOMAIN),
        }
    }

    fn tag(&self, json: &[u8]) -> Vec<u8> {
        let mut m = self.mac.clone();
        m.update(json);
        m.finalize().into_bytes().to_vec()
    }

    /// Checks a tag in constant time.
    fn verify(&self, json: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(json);
        m.verify_slice(tag).is_ok()
    }
}

/// What one slot of the state file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Nothing usable: empty, damaged, or a MAC that does not verify.
    Invalid,
    /// A version 1 record (checksummed but not authenticated).
    Legacy,
    /// An authenticated record and its generation.
    Valid(u64, Box<SavedState>),
}

impl SavedState {
    /// The record for slot generation `generation`, ending in a newline.
    pub fn encode(&self, generation: u64, key: &StateKey) -> Vec<u8> {
        let disk = Disk {
            v: 2,
            generation,
            tree: self.tree.to_disk(),
            base: self.base.as_ref().map(TreeState::to_disk),
        };
        // Serialising plain numbers and hex strings cannot fail; an empty record would only read
        // back as invalid.
        let mut out = serde_json::to_vec(&disk).unwrap_or_default();
        let tag = crate::merkle::hex_encode(&key.tag(&out));
        out.push(b'\n');
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\n');
        out
    }

    /// Reads one slot (trailing bytes after the record are ignored).
    pub fn decode(bytes: &[u8], key: &StateKey) -> Slot {
        let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
            return Slot::Invalid;
        };
        let (json, rest) = bytes.split_at(nl);
        let rest = rest.get(1..).unwrap_or_default();
        let tag_hex = rest
            .iter()
            .position(|&b| b == b'\n')
            .and_then(|end| rest.get(..end))
            .unwrap_or_default();
        if is_legacy(json, tag_hex) {
            return Slot::Legacy;
        }
        let mut tag = [0u8; 32];
        if crate::merkle::decode_hex_into(tag_hex, &mut tag).is_none() || !key.verify(json, &tag) {
            return Slot::Invalid;
        }
        let Ok(disk) = serde_json::from_slice::<Disk>(json) else {
            return Slot::Invalid;
        };
        if disk.v != 2 {
            return Slot::Invalid;
        }
        let Some(tree) = TreeState::from_disk(disk.tree) else {
            return Slot::Invalid;
        };
        let base = match disk.base.map(TreeState::from_disk) {
            None => None,
            Some(Some(b)) if b.size() <= tree.size() && b.log_len <= tree.log_len => Some(b),
            Some(_) => return Slot::Invalid,
        };
        Slot::Valid(disk.generation, Box::new(SavedState { tree, base }))
    }
}

/// Whether a record is a version 1 state: `{"v":1,..}` and the SHA-256 of that JSON.
fn is_legacy(json: &[u8], sum_hex: &[u8]) -> bool {
    use sha2::Digest as _;
    #[derive(Deserialize)]
    struct V {
        v: u32,
    }
    serde_json::from_slice::<V>(json).is_ok_and(|v| v.v == 1)
        && crate::merkle::hex_encode(&Sha256::digest(json)).as_bytes() == sum_hex
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    v: u32,
    generation: u64,
    tree: DiskTree,
    base: Option<DiskTree>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskTree {
    size: u64,
    frontier: Vec<Hash>,
    log_len: u64,
    last_leaf: Option<Hash>,
    last_line_len: u64,
    cp_size: u64,
    cp_len: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u8) -> TreeState {
        let mut st = TreeState::empty();
        for i in 0..n {
            st.push(crate::merkle::leaf_hash(&[i]), 10);
        }
        st.cp_size = 4;
        st.cp_len = 200;
        st
    }

    #[test]
    fn state_round_trips_and_detects_damage() {
        let key = StateKey::from_signing_key(&SigningKey::from_bytes(&[3u8; 32]));
        let saved = SavedState {
            tree: sample(5),
            base: Some(sample(3)),
        };
        let bytes = saved.encode(7, &key);
        assert_eq!(
            SavedState::decode(&bytes, &key),
            Slot::Valid(7, Box::new(saved.clone()))
        );
        for i in [2, 10, bytes.len() - 3] {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1;
            assert_eq!(SavedState::decode(&damaged, &key), Slot::Invalid, "{i}");
        }
        assert_eq!(
            SavedState::decode(&bytes[..bytes.len() / 2], &key),
            Slot::Invalid
        );
        // Trailing bytes from an older, longer record are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"garbage\n");
        assert_eq!(
            SavedState::decode(&longer, &key),
            Slot::Valid(7, Box::new(saved.clone()))
        );
        // Another key (or no key) cannot write a record this one accepts.
        let other = StateKey::from_signing_key(&SigningKey::from_bytes(&[4u8; 32]));
        assert_eq!(
            SavedState::decode(&saved.encode(8, &other), &key),
            Slot::Invalid
        );
    }

    #[test]
    fn version_1_state_files_are_recognised_but_not_trusted() {
        use sha2::Digest as _;
        let key = StateKey::from_signing_key(&SigningKey::from_bytes(&[3u8; 32]));
        let json = br#"{"v":1,"size":0,"frontier":[],"log_len":0,"last_leaf":null,"last_line_len":0,"cp_size":0,"cp_len":0}"#;
        let mut bytes = json.to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(crate::merkle::hex_encode(&Sha256::digest(json)).as_bytes());
        bytes.push(b'\n');
        assert_eq!(SavedState::decode(&bytes, &key), Slot::Legacy);
    }

    #[test]
    fn the_largest_record_fits_its_slot() {
        let key = StateKey::from_signing_key(&SigningKey::from_bytes(&[3u8; 32]));
        let full = |size: u64| TreeState {
            range: CompactRange::from_parts(size, vec![Hash([0xab; 32]); 64]).unwrap_or_default(),
            log_len: u64::MAX,
            last_leaf: Some(Hash([0xcd; 32])),
            last_line_len: u64::MAX,
            cp_size: u64::MAX,
            cp_len: u64::MAX,
        };
        let saved = SavedState {
            tree: full(u64::MAX),
            base: Some(full(u64::MAX)),
        };
        assert_eq!(saved.tree.range.hashes().len(), 64);
        assert!((saved.encode(u64::MAX, &key).len() as u64) < SLOT_SIZE);
    }
}
