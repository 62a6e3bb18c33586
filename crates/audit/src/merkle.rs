//! RFC 6962 Merkle tree hashing: leaf and node hashes, the compact range kept by the writer,
//! and inclusion and consistency proofs (generation and verification, RFC 9162 section 2.1).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::AuditError;

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hexadecimal, as used in entries, proofs and JSON output.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 64 hexadecimal digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        decode_hex_into(s.as_bytes(), &mut out)?;
        Some(Hash(out))
    }

    /// Standard base64, as used in checkpoints.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Option<Hash> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Hash)
    }

    /// Compares in constant time (no early exit on the first differing byte).
    pub fn ct_eq(&self, other: &Hash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hexadecimal digits"))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    hex_extend(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the lowercase hex digits of `bytes` to `out`.
pub(crate) fn hex_extend(out: &mut Vec<u8>, bytes: &[u8]) {
    let digit = |n: u8| HEX.get(usize::from(n)).copied().unwrap_or(b'0');
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn decode_hex_into(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (pair, o) in s.chunks_exact(2).zip(out.iter_mut()) {
        if let [hi, lo] = pair {
            *o = (hex_val(*hi)? << 4) | hex_val(*lo)?;
        }
    }
    Some(())
}

/// The hash of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// `SHA-256(0x00 || entry)`: the hash of a leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The compact range of a tree: the roots of its perfect subtrees, largest (leftmost) first.
///
/// This is everything needed to append a leaf or compute the root in O(log n), so the writer
/// keeps it in a small state file instead of re-reading the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        CompactRange::default()
    }

    /// Rebuilds a compact range from its parts; `None` when the number of hashes does not match
    /// the number of perfect subtrees of a tree of `size` leaves.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(CompactRange { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let Some(left) = self.hashes.pop() else { break };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The RFC 6962 root of the tree.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The RFC 6962 root (`MTH`) of a list of leaf hashes.
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for l in leaves {
        range.push(*l);
    }
    range.root()
}

fn halves(leaves: &[Hash], k: u64) -> (&[Hash], &[Hash]) {
    let k = usize::try_from(k).unwrap_or(usize::MAX).min(leaves.len());
    leaves.split_at(k)
}

fn path(m: u64, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len() as u64;
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    let (left, right) = halves(leaves, k);
    if m < k {
        path(m, left, out);
        out.push(root_of(right));
    } else {
        path(m - k, right, out);
        out.push(root_of(left));
    }
}

/// The audit path (`PATH(m, D[n])`, RFC 6962 section 2.1.1) of leaf `index` in the tree made of
/// `leaves`, siblings nearest the leaf first.
///
/// # Errors
/// When `index` is not a leaf of the tree.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, AuditError> {
    if index >= leaves.len() as u64 {
        return Err(AuditError::Proof(format!(
            "leaf index {index} is outside a tree of {} leaves",
            leaves.len()
        )));
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Ok(out)
}

fn subproof(m: u64, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len() as u64;
    if m == n {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    if n < 2 {
        return;
    }
    let k = split_point(n);
    let (left, right) = halves(leaves, k);
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root_of(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root_of(left));
    }
}

/// The consistency proof (`PROOF(m, D[n])`, RFC 6962 section 2.1.2) from the tree of the first
/// `old_size` leaves to the tree made of all `leaves`. Empty when `old_size` is 0 or equals the
/// new size.
///
/// # Errors
/// When `old_size` is larger than the tree.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, AuditError> {
    let n = leaves.len() as u64;
    if old_size > n {
        return Err(AuditError::Proof(format!(
            "old tree size {old_size} is larger than the new tree size {n}"
        )));
    }
    let mut out = Vec::new();
    if old_size > 0 && old_size < n {
        subproof(old_size, leaves, true, &mut out);
    }
    Ok(out)
}

/// Checks an inclusion proof (RFC 9162 section 2.1.3.2): that `leaf` is leaf `index` of the tree
/// of `size` leaves whose root is `root`.
///
/// # Errors
/// When the proof does not verify.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    let fail = |why: &str| {
        Err(AuditError::Proof(format!(
            "inclusion of leaf {index} in a tree of {size}: {why}"
        )))
    };
    if index >= size {
        return fail("the leaf index is outside the tree");
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return fail("the proof is too long");
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return fail("the proof is too short");
    }
    if !r.ct_eq(root) {
        return fail("the computed root does not match");
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2): that the tree of `old_size` leaves with
/// root `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`.
///
/// # Errors
/// When the proof does not verify.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    let fail = |why: &str| {
        Err(AuditError::Proof(format!(
            "consistency from tree size {old_size} to {new_size}: {why}"
        )))
    };
    if old_size > new_size {
        return fail("the old tree is larger than the new one");
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return fail("a proof between equal sizes must be empty");
        }
        return if old_root.ct_eq(new_root) {
            Ok(())
        } else {
            fail("equal sizes with different roots")
        };
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return fail("a proof from the empty tree must be empty");
        }
        return if old_root.ct_eq(&empty_root()) {
            Ok(())
        } else {
            fail("the old root is not the empty-tree root")
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return fail("the proof is empty");
    };
    // When the old tree is a perfect subtree, the proof omits its root: start from it.
    let (start, rest): (Hash, &[Hash]) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = start;
    let mut sr = start;
    for c in rest {
        if snode == 0 {
            return fail("the proof is too long");
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return fail("the proof is too short");
    }
    if !fr.ct_eq(old_root) {
        return fail("the old root does not match");
    }
    if !sr.ct_eq(new_root) {
        return fail("the new root does not match");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn compact_range_root_matches_naive_recursion() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        assert_eq!(range.root(), naive_root(&[]));
        for (i, l) in leaves.iter().enumerate() {
            range.push(*l);
            assert_eq!(range.root(), naive_root(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(range.hashes().len(), (i + 1).count_ones() as usize);
        }
        let rebuilt = CompactRange::from_parts(range.size(), range.hashes().to_vec()).unwrap();
        assert_eq!(rebuilt, range);
        assert!(CompactRange::from_parts(3, vec![Hash::default()]).is_none());
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [
            (2u64, 1u64),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1000, 512),
        ] {
            assert_eq!(split_point(n), k, "n={n}");
        }
    }

    #[test]
    fn hex_and_base64_round_trip() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert!(h.ct_eq(&h));
        assert!(!h.ct_eq(&Hash::default()));
    }
}
