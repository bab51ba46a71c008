//! The server's Merkle tree over the ledger's record hashes (LEDGER.md §10): enough
//! stored hashes to answer the root at any size and any proof with O(log n) lookups,
//! updated by the sequencer after each durable append.
//!
//! What is kept: every leaf hash (level 0), and every complete node from level
//! `LEVEL_STORED_MIN` (a subtree of 16 leaves) up. Nodes of levels 1 to 3 are recomputed
//! from at most 8 leaves when a proof needs one (at most 7 hashes), which saves 28 of
//! the 64 bytes a record would cost if every level were kept: 36 bytes a record, about
//! 360 MB at 10 million records. Appending is O(1) amortized hashing: one leaf hash, and
//! per 16 leaves 15 hashes for their level-4 node plus about one more above it.
//!
//! The proof shapes themselves are `writ_schemas`' (`inclusion_proof`,
//! `consistency_proof`); this module only answers their `subtree(start, end)` questions.
//!
//! Architecture Invariant: the tree holds only durable records. The sequencer appends to
//! it after storage's `append` returned, so no root or proof ever covers a record that a
//! crash could undo.

use writ_schemas::{
    Hash, ProofError, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash,
    split_point,
};

use super::storage::{Storage, StorageError};

/// The lowest level above the leaves whose nodes are stored (a node there covers
/// `2^LEVEL_STORED_MIN` leaves).
const LEVEL_STORED_MIN: u32 = 4;
/// Hashes per allocation, so growth never copies a large vector (2 MiB chunks).
const CHUNK_HASHES: usize = 1 << 16;

/// An append-only list of hashes in fixed-size chunks.
#[derive(Debug, Default, Clone)]
struct Hashes {
    chunks: Vec<Vec<Hash>>,
    len: u64,
}

impl Hashes {
    fn push(&mut self, hash: Hash) {
        if self
            .chunks
            .last()
            .is_none_or(|chunk| chunk.len() == CHUNK_HASHES)
        {
            self.chunks.push(Vec::with_capacity(CHUNK_HASHES));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(hash);
        }
        self.len += 1;
    }

    fn get(&self, index: u64) -> Hash {
        assert!(index < self.len, "hash {index} of {} asked for", self.len);
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        self.chunks[index / CHUNK_HASHES][index % CHUNK_HASHES]
    }
}

/// The tree over records 1 to `size()` (leaf `i` is record `i + 1`).
#[derive(Debug, Default, Clone)]
pub struct MerkleTree {
    leaves: Hashes,
    /// `upper[j]`: the complete nodes of level `LEVEL_STORED_MIN + j`, left to right.
    upper: Vec<Hashes>,
    /// The hash of the last record, so a head read with the tree is of the same size.
    last_record: Hash,
}

impl MerkleTree {
    /// Builds the tree over every record in `storage` up to `seq_max`.
    pub fn rebuild(storage: &dyn Storage, seq_max: u64) -> Result<MerkleTree, StorageError> {
        let mut tree = MerkleTree::default();
        storage.record_hashes(1, seq_max, &mut |seq, hash| {
            assert_eq!(seq, tree.size() + 1, "record hashes arrive in seq order");
            tree.push_leaf(leaf_hash(hash), *hash);
        })?;
        if tree.size() != seq_max {
            return Err(StorageError::Corrupt(format!(
                "the Merkle tree found {} records where the ledger has {seq_max}",
                tree.size()
            )));
        }
        Ok(tree)
    }

    /// Records in the tree.
    pub fn size(&self) -> u64 {
        self.leaves.len
    }

    /// The hash of the last record in the tree (zero when empty).
    pub fn last_record_hash(&self) -> Hash {
        self.last_record
    }

    /// Appends the next record, given its leaf hash (computed by the caller, outside any
    /// lock) and its record hash.
    pub fn push_leaf(&mut self, leaf: Hash, record_hash: Hash) {
        self.leaves.push(leaf);
        self.last_record = record_hash;
        let size = self.leaves.len;
        let block = 1u64 << LEVEL_STORED_MIN;
        if !size.is_multiple_of(block) {
            return;
        }
        let mut node = self.computed(LEVEL_STORED_MIN, size / block - 1);
        for level in 0.. {
            if self.upper.len() == level {
                self.upper.push(Hashes::default());
            }
            let nodes = &mut self.upper[level];
            nodes.push(node);
            if !nodes.len.is_multiple_of(2) {
                break;
            }
            node = node_hash(&nodes.get(nodes.len - 2), &node);
        }
    }

    /// The root of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// The inclusion proof of record `seq` in the tree of `size` records.
    pub fn inclusion(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if seq == 0 {
            return Err(ProofError::IndexOutOfRange {
                index: 0,
                tree_size: size,
            });
        }
        inclusion_proof(seq - 1, size, |start, end| self.subtree(start, end))
    }

    /// The consistency proof from the tree of `old_size` records to that of `new_size`.
    pub fn consistency(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new_size)?;
        consistency_proof(old_size, new_size, |start, end| self.subtree(start, end))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            // Asking past the head is asking about a leaf the tree does not have.
            return Err(ProofError::IndexOutOfRange {
                index: size - 1,
                tree_size: self.size(),
            });
        }
        Ok(())
    }

    /// The hash of leaves `start..end`, an aligned range (see `writ_schemas::merkle`).
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let width = end - start;
        assert!(
            width > 0 && end <= self.size(),
            "subtree {start}..{end} asked for"
        );
        if width.is_power_of_two() {
            let level = width.trailing_zeros();
            return self.node(level, start >> level);
        }
        let k = split_point(width);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The complete node `index` of `level`, looked up or (levels 1 to 3) recomputed.
    fn node(&self, level: u32, index: u64) -> Hash {
        match level {
            0 => self.leaves.get(index),
            level if level >= LEVEL_STORED_MIN => {
                self.upper[(level - LEVEL_STORED_MIN) as usize].get(index)
            }
            level => self.computed(level, index),
        }
    }

    /// The complete node `index` of `level`, from its leaves.
    fn computed(&self, level: u32, index: u64) -> Hash {
        let mut row: Vec<Hash> = (index << level..(index + 1) << level)
            .map(|leaf| self.leaves.get(leaf))
            .collect();
        while row.len() > 1 {
            row = row
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
        }
        row[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_schemas::{root_of, verify_consistency, verify_inclusion};

    fn records(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect()
    }

    #[test]
    fn stored_levels_give_the_same_roots_and_proofs_as_the_definition() {
        let hashes = records(300);
        let mut tree = MerkleTree::default();
        for hash in &hashes {
            tree.push_leaf(leaf_hash(hash), *hash);
        }
        let from_leaves = |start: u64, end: u64| root_of(&hashes[start as usize..end as usize]);
        for size in 1..=300u64 {
            let root = root_of(&hashes[..size as usize]);
            assert_eq!(tree.root(size), Ok(root), "size {size}");
            for seq in (1..=size).step_by(7) {
                let proof = tree.inclusion(seq, size).unwrap_or_default();
                assert_eq!(
                    Ok(proof.clone()),
                    inclusion_proof(seq - 1, size, from_leaves)
                );
                let record = &hashes[seq as usize - 1];
                assert_eq!(
                    verify_inclusion(seq - 1, size, record, &proof, &root),
                    Ok(())
                );
            }
            for old in (1..=size).step_by(11) {
                let proof = tree.consistency(old, size).unwrap_or_default();
                assert_eq!(Ok(proof.clone()), consistency_proof(old, size, from_leaves));
                let old_root = root_of(&hashes[..old as usize]);
                assert_eq!(
                    verify_consistency(old, size, &old_root, &root, &proof),
                    Ok(())
                );
            }
        }
        assert_eq!(tree.last_record_hash(), hashes[299]);
        assert_eq!(tree.root(0), Ok(empty_root()));
    }

    #[test]
    fn sizes_past_the_head_and_record_zero_are_refused() {
        let mut tree = MerkleTree::default();
        for hash in records(20) {
            tree.push_leaf(leaf_hash(&hash), hash);
        }
        assert!(tree.root(21).is_err());
        assert!(tree.inclusion(21, 20).is_err());
        assert!(tree.inclusion(0, 20).is_err());
        assert!(tree.inclusion(5, 21).is_err());
        assert!(tree.consistency(5, 21).is_err());
        assert!(tree.consistency(0, 20).is_err());
        assert!(tree.consistency(20, 5).is_err());
    }
}
