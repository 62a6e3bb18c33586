//! Inclusion and consistency proofs, against a naive bottom-up recomputation of the tree, for
//! many (size, index) pairs, and end to end on a real log.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use agentsafe_audit::merkle::{
    CompactRange, Hash, consistency_proof, inclusion_proof, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};
use agentsafe_audit::{ConsistencyProof, InclusionProof, SyncPolicy};
use common::{Fixture, cfg_with, event};

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

/// The tree built level by level, pairing neighbours and carrying an unpaired last node up:
/// a different algorithm from the library's recursive split, with the same RFC 6962 shape.
fn levels(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = vec![leaves.to_vec()];
    while out.last().unwrap().len() > 1 {
        let prev = out.last().unwrap();
        let next: Vec<Hash> = prev
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    node_hash(&c[0], &c[1])
                } else {
                    c[0]
                }
            })
            .collect();
        out.push(next);
    }
    out
}

fn naive_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return agentsafe_audit::merkle::empty_root();
    }
    levels(leaves).last().unwrap()[0]
}

fn naive_path(leaves: &[Hash], mut index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    for level in levels(leaves) {
        if level.len() == 1 {
            break;
        }
        let sibling = index ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        index /= 2;
    }
    path
}

const N: usize = 70;

#[test]
fn compact_range_matches_the_naive_tree() {
    let all = leaves(N);
    let mut range = CompactRange::new();
    for n in 1..=N {
        range.push(all[n - 1]);
        assert_eq!(range.root(), naive_root(&all[..n]), "size {n}");
    }
}

#[test]
fn inclusion_proofs_for_every_index_of_every_size() {
    let all = leaves(N);
    let mut checked = 0;
    for n in 1..=N {
        let tree = &all[..n];
        let root = naive_root(tree);
        for i in 0..n {
            let proof = inclusion_proof(tree, i as u64).unwrap();
            assert_eq!(proof, naive_path(tree, i), "path of {i} in {n}");
            verify_inclusion(&tree[i], i as u64, n as u64, &proof, &root).unwrap();
            // Wrong leaf, index, size, root, or a damaged path: all rejected.
            assert!(
                verify_inclusion(&leaf_hash(b"other"), i as u64, n as u64, &proof, &root).is_err()
            );
            if n > 1 {
                assert!(
                    verify_inclusion(&tree[i], ((i + 1) % n) as u64, n as u64, &proof, &root)
                        .is_err()
                );
                let mut bad = proof.clone();
                bad[0].0[0] ^= 1;
                assert!(verify_inclusion(&tree[i], i as u64, n as u64, &bad, &root).is_err());
                assert!(
                    verify_inclusion(&tree[i], i as u64, n as u64, &proof[1..], &root).is_err()
                );
            }
            let mut long = proof.clone();
            long.push(Hash([7; 32]));
            assert!(verify_inclusion(&tree[i], i as u64, n as u64, &long, &root).is_err());
            checked += 1;
        }
        assert!(inclusion_proof(tree, n as u64).is_err());
    }
    assert_eq!(checked, N * (N + 1) / 2);
}

#[test]
fn consistency_proofs_for_every_pair_of_sizes() {
    let all = leaves(N);
    let roots: Vec<Hash> = (0..=N).map(|n| naive_root(&all[..n])).collect();
    let other: Vec<Hash> = all.iter().map(|l| node_hash(l, l)).collect();
    let forked_roots: Vec<Hash> = (0..=N).map(|m| naive_root(&other[..m])).collect();
    for n in 0..=N {
        let tree = &all[..n];
        for m in 0..=n {
            let proof = consistency_proof(tree, m as u64).unwrap();
            verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &proof)
                .unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
            if m > 0 && m < n {
                // A different old tree (a fork) is not consistent.
                assert!(
                    verify_consistency(m as u64, n as u64, &forked_roots[m], &roots[n], &proof)
                        .is_err()
                );
                let mut bad = proof.clone();
                bad[0].0[5] ^= 0x80;
                assert!(
                    verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &bad).is_err()
                );
                assert!(
                    verify_consistency(
                        m as u64,
                        n as u64,
                        &roots[m],
                        &roots[n],
                        &proof[..proof.len() - 1]
                    )
                    .is_err()
                );
                assert!(
                    verify_consistency(n as u64, m as u64, &roots[n], &roots[m], &proof).is_err()
                );
            }
        }
        assert!(consistency_proof(tree, n as u64 + 1).is_err());
    }
}

#[test]
fn inclusion_proofs_from_a_real_log_verify_offline() {
    let fx = Fixture::new();
    fx.write(37, &cfg_with(SyncPolicy::None, 5));
    let vk = fx.key.verifying_key();
    let lines = fx.lines();
    for seq in 0..37u64 {
        let proof = InclusionProof::for_log(&fx.log, seq, &vk).unwrap();
        assert_eq!(proof.tree_size, 37);
        // Through JSON, as `agentsafe audit proof` prints it.
        let text = serde_json::to_string_pretty(&proof).unwrap();
        let back: InclusionProof = serde_json::from_str(&text).unwrap();
        let cp = back
            .verify(&vk, Some(lines[seq as usize].as_bytes()))
            .unwrap();
        assert_eq!(cp.size(), 37);
        back.verify(&vk, None).unwrap();
        // Another entry, another key, or a tampered path is rejected.
        let other = &lines[((seq + 1) % 37) as usize];
        assert!(back.verify(&vk, Some(other.as_bytes())).is_err());
        let mallory = agentsafe_audit::SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(back.verify(&mallory, None).is_err());
        let mut bad = back.clone();
        bad.audit_path[0].0[0] ^= 1;
        assert!(bad.verify(&vk, None).is_err());
    }
    // Entries not yet covered by a checkpoint have no proof.
    let log = fx.open(&cfg_with(SyncPolicy::None, 0));
    log.append(event(99)).unwrap();
    assert!(InclusionProof::for_log(&fx.log, 37, &vk).is_err());
    log.close().unwrap();
    assert_eq!(
        InclusionProof::for_log(&fx.log, 37, &vk).unwrap().tree_size,
        38
    );
}

#[test]
fn consistency_proofs_from_every_old_checkpoint_to_the_latest() {
    let fx = Fixture::new();
    fx.write(23, &cfg_with(SyncPolicy::None, 4));
    let vk = fx.key.verifying_key();
    let cps = agentsafe_audit::read_checkpoints(&fx.log, &vk).unwrap();
    assert_eq!(cps.len(), 6);
    for old in &cps {
        let proof = ConsistencyProof::for_log(&fx.log, old.note(), &vk).unwrap();
        assert_eq!((proof.old_size, proof.new_size), (old.size(), 23));
        let back: ConsistencyProof =
            serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
        back.verify(&vk).unwrap();
    }
    // A checkpoint of a forked history (same key, different entries) is not a prefix.
    let other = Fixture::new();
    let log = other.open(&cfg_with(SyncPolicy::None, 0));
    for i in 0..10 {
        log.append(event(1000 + i)).unwrap();
    }
    let forked = log.checkpoint().unwrap();
    log.close().unwrap();
    let err = ConsistencyProof::for_log(&fx.log, forked.note(), &vk).unwrap_err();
    assert!(err.to_string().contains("consistency"), "{err}");
}
