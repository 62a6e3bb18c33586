//! The writer's small state file (`<log>.state`): tree size, compact range, byte length and last
//! line of the log, and the last checkpoint. It makes opening and appending O(log n).
//!
//! The state is only a cache: it carries a checksum, and before it is trusted it is cross-checked
//! against the log's length and last line. A missing, stale or damaged state is rebuilt from the log.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{CompactRange, Hash};

/// Where the tree and the files stood after the last write.
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

    pub fn encode(&self) -> Vec<u8> {
        let disk = Disk {
            v: 1,
            size: self.range.size(),
            frontier: self.range.hashes().to_vec(),
            log_len: self.log_len,
            last_leaf: self.last_leaf,
            last_line_len: self.last_line_len,
            cp_size: self.cp_size,
            cp_len: self.cp_len,
        };
        let mut json = serde_json::to_vec(&disk).unwrap_or_default();
        let sum = crate::merkle::hex_encode(&Sha256::digest(&json));
        json.push(b'\n');
        json.extend_from_slice(sum.as_bytes());
        json.push(b'\n');
        json
    }

    /// Parses a state file; `None` when it is damaged in any way.
    pub fn decode(bytes: &[u8]) -> Option<TreeState> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let json = lines.next()?;
        let sum = lines.next()?;
        if crate::merkle::hex_encode(&Sha256::digest(json.as_bytes())) != sum {
            return None;
        }
        let disk: Disk = serde_json::from_str(json).ok()?;
        if disk.v != 1 {
            return None;
        }
        let range = CompactRange::from_parts(disk.size, disk.frontier)?;
        if (disk.size == 0) != disk.last_leaf.is_none() {
            return None;
        }
        Some(TreeState {
            range,
            log_len: disk.log_len,
            last_leaf: disk.last_leaf,
            last_line_len: disk.last_line_len,
            cp_size: disk.cp_size,
            cp_len: disk.cp_len,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    v: u32,
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

    #[test]
    fn state_round_trips_and_detects_damage() {
        let mut st = TreeState::empty();
        for i in 0u8..5 {
            st.push(crate::merkle::leaf_hash(&[i]), 10);
        }
        st.cp_size = 4;
        st.cp_len = 200;
        let bytes = st.encode();
        assert_eq!(TreeState::decode(&bytes), Some(st.clone()));
        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        assert_eq!(TreeState::decode(&damaged), None);
        assert_eq!(TreeState::decode(&bytes[..bytes.len() / 2]), None);
        // Trailing bytes from an older, longer state are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"garbage");
        assert_eq!(TreeState::decode(&longer), Some(st));
    }
}
