//! The Merkle tree over record hashes (LEDGER.md §10): RFC 9162 §2.1 in shape, BLAKE3 as
//! the hash, with the RFC's one-byte domain separation of leaves (0x00) and nodes (0x01).
//!
//! Only the pure algorithms live here: the tree hash, inclusion and consistency proofs
//! and their verification. Producing a proof needs the hashes of subtrees; callers hand
//! them in as a function `subtree(start, end)` (the hash of leaves `start..end`), so the
//! server answers from its stored levels and a verifier from an export, with the same
//! proof shapes. Every subtree asked for is *aligned*: `start` is a multiple of the
//! smallest power of two at least `end - start`, and only the tree's right edge is ever
//! incomplete.

use crate::Hash;

/// The byte before a record hash in a leaf hash.
pub const MERKLE_LEAF_PREFIX: u8 = 0x00;
/// The byte before two child hashes in a node hash.
pub const MERKLE_NODE_PREFIX: u8 = 0x01;
/// Tree sizes at most (proof paths have at most 64 hashes; seqs stay below 2^53).
pub const MERKLE_TREE_SIZE_MAX: u64 = 1 << 53;

/// A leaf of the tree: `BLAKE3(0x00 || record_hash)`.
pub fn leaf_hash(record_hash: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[MERKLE_LEAF_PREFIX]);
    hasher.update(&record_hash.0);
    Hash(*hasher.finalize().as_bytes())
}

/// An inner node: `BLAKE3(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[MERKLE_NODE_PREFIX]);
    hasher.update(&left.0);
    hasher.update(&right.0);
    Hash(*hasher.finalize().as_bytes())
}

/// The root of the empty tree: BLAKE3 of no bytes (RFC 9162: `MTH({}) = HASH()`).
pub fn empty_root() -> Hash {
    Hash(*blake3::hash(&[]).as_bytes())
}

/// The largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree.
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "only a tree of two or more leaves splits");
    1 << (63 - (n - 1).leading_zeros())
}

/// The tree hash (RFC 9162 `MTH`) of leaves given as record hashes, computed directly:
/// what the stored levels of a server and the streaming [`Frontier`] must agree with.
pub fn root_of(record_hashes: &[Hash]) -> Hash {
    match record_hashes {
        [] => empty_root(),
        [one] => leaf_hash(one),
        _ => {
            let k = usize::try_from(split_point(record_hashes.len() as u64)).unwrap_or(0);
            node_hash(&root_of(&record_hashes[..k]), &root_of(&record_hashes[k..]))
        }
    }
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Asked about a leaf the tree does not have.
    #[error("leaf {index} is not in a tree of {tree_size} leaves (leaves are numbered from 0)")]
    IndexOutOfRange {
        /// The 0-based leaf index.
        index: u64,
        /// The tree's size.
        tree_size: u64,
    },
    /// The older tree is empty or larger than the newer one.
    #[error(
        "a consistency proof needs 1 <= old size <= new size; got old {old_size}, new {new_size}"
    )]
    SizesOutOfOrder {
        /// The older tree's size.
        old_size: u64,
        /// The newer tree's size.
        new_size: u64,
    },
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("the proof has the wrong number of hashes for these tree sizes")]
    WrongLength,
    /// The proof's hashes do not lead to the root they were checked against.
    #[error("the proof does not lead to the expected root {expected}")]
    RootMismatch {
        /// The root the proof was checked against.
        expected: Hash,
    },
}

/// The audit path of leaf `index` in the tree of `tree_size` leaves (RFC 9162 §2.1.3.1),
/// bottom sibling first.
pub fn inclusion_proof(
    index: u64,
    tree_size: u64,
    mut subtree: impl FnMut(u64, u64) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let (mut start, mut end) = (0, tree_size);
    let mut path = Vec::new();
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            path.push(subtree(start + k, end));
            end = start + k;
        } else {
            path.push(subtree(start, start + k));
            start += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the tree of `old_size` leaves and the tree of
/// `new_size` leaves that extends it (RFC 9162 §2.1.4.1), bottom first. Empty when the
/// sizes are equal.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    mut subtree: impl FnMut(u64, u64) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    let (mut start, mut end, mut old, mut whole) = (0, new_size, old_size, true);
    let mut path = Vec::new();
    while old != end - start {
        let k = split_point(end - start);
        if old <= k {
            path.push(subtree(start + k, end));
            end = start + k;
        } else {
            path.push(subtree(start, start + k));
            start += k;
            old -= k;
            whole = false;
        }
    }
    // The old tree is a subtree of the new one: a verifier that knows its root needs
    // nothing more, otherwise it is the proof's first hash.
    if !whole {
        path.push(subtree(start, end));
    }
    path.reverse();
    Ok(path)
}

/// Checks that the record with `record_hash` is leaf `index` of the tree of `tree_size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    record_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = leaf_hash(record_hash);
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch { expected: *root });
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2): same leaves, in the same
/// order, and more after them.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
            });
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root {
        return Err(ProofError::RootMismatch {
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
        });
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its complete subtrees, largest first.
/// Appending is O(1) amortized hashing and the root O(log n), in O(log n) memory, so a
/// verifier computes the root of an export of any length in one pass.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, hash) of each complete subtree, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf of the record with `record_hash`.
    pub fn push(&mut self, record_hash: &Hash) {
        let mut top = (0, leaf_hash(record_hash));
        while let Some(&(height, left)) = self.stack.last() {
            if height != top.0 {
                break;
            }
            self.stack.pop();
            top = (height + 1, node_hash(&left, &top.1));
        }
        self.stack.push(top);
        self.size += 1;
    }

    /// The tree hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.stack.iter().rev();
        let Some(&(_, last)) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(last, |right, (_, left)| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash(*blake3::hash(&i.to_be_bytes()).as_bytes()))
            .collect()
    }

    /// Tree hashes of ranges of one list of leaves, each computed once (the property tests
    /// below ask for the same ranges at every tree size).
    struct Memo<'a> {
        leaves: &'a [Hash],
        known: std::cell::RefCell<std::collections::HashMap<(u64, u64), Hash>>,
    }

    impl<'a> Memo<'a> {
        fn new(leaves: &'a [Hash]) -> Memo<'a> {
            Memo {
                leaves,
                known: Default::default(),
            }
        }

        /// `MTH(D[start:end])`, by the RFC's recursion.
        fn mth(&self, start: u64, end: u64) -> Hash {
            if let Some(hash) = self.known.borrow().get(&(start, end)) {
                return *hash;
            }
            let hash = match end - start {
                0 => empty_root(),
                1 => leaf_hash(&self.leaves[start as usize]),
                n => {
                    let k = split_point(n);
                    node_hash(&self.mth(start, start + k), &self.mth(start + k, end))
                }
            };
            self.known.borrow_mut().insert((start, end), hash);
            hash
        }

        /// `subtree` for the proof builders, checking their alignment promise.
        fn subtree(&self) -> impl FnMut(u64, u64) -> Hash + '_ {
            move |start, end| {
                assert!(start < end && end <= self.leaves.len() as u64);
                let width = (end - start).next_power_of_two();
                assert_eq!(start % width, 0, "subtree {start}..{end} is not aligned");
                self.mth(start, end)
            }
        }

        /// RFC 9162 §2.1.3.1 `PATH(m, D[start:end])` as written: recursive.
        fn path(&self, m: u64, start: u64, end: u64) -> Vec<Hash> {
            if end - start <= 1 {
                return Vec::new();
            }
            let k = split_point(end - start);
            let (mut path, sibling) = if m < k {
                (self.path(m, start, start + k), self.mth(start + k, end))
            } else {
                (self.path(m - k, start + k, end), self.mth(start, start + k))
            };
            path.push(sibling);
            path
        }

        /// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[start:end], whole)` as written.
        fn subproof(&self, m: u64, start: u64, end: u64, whole: bool) -> Vec<Hash> {
            if m == end - start {
                return if whole {
                    Vec::new()
                } else {
                    vec![self.mth(start, end)]
                };
            }
            let k = split_point(end - start);
            let (mut proof, sibling) = if m <= k {
                (
                    self.subproof(m, start, start + k, whole),
                    self.mth(start + k, end),
                )
            } else {
                (
                    self.subproof(m - k, start + k, end, false),
                    self.mth(start, start + k),
                )
            };
            proof.push(sibling);
            proof
        }
    }

    fn flipped(proof: &[Hash], at: usize) -> Vec<Hash> {
        let mut bad = proof.to_vec();
        bad[at].0[0] ^= 1;
        bad
    }

    #[test]
    fn frontier_root_is_the_tree_hash_at_every_size() {
        let leaves = records(300);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for (i, record) in leaves.iter().enumerate() {
            frontier.push(record);
            assert_eq!(frontier.root(), root_of(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn the_tree_hash_is_rfc_9162_with_blake3() {
        let [a, b, c] = [Hash([1; 32]), Hash([2; 32]), Hash([3; 32])];
        let mut leaf = vec![0u8];
        leaf.extend_from_slice(&a.0);
        assert_eq!(leaf_hash(&a).0, *blake3::hash(&leaf).as_bytes());
        // Three leaves split at two: (a b) c.
        let expected = node_hash(&node_hash(&leaf_hash(&a), &leaf_hash(&b)), &leaf_hash(&c));
        assert_eq!(root_of(&[a, b, c]), expected);
    }

    #[test]
    fn inclusion_proofs_verify_at_every_size_and_leaf_up_to_300() {
        let leaves = records(300);
        let memo = Memo::new(&leaves);
        for size in 1..=300u64 {
            let root = memo.mth(0, size);
            assert_eq!(root, root_of(&leaves[..size as usize]));
            for index in 0..size {
                let proof = inclusion_proof(index, size, memo.subtree())
                    .unwrap_or_else(|err| unreachable!("{err}"));
                assert_eq!(proof, memo.path(index, 0, size), "{index} of {size}");
                let record = &leaves[index as usize];
                assert_eq!(verify_inclusion(index, size, record, &proof, &root), Ok(()));
                let wrong_root = Hash([7; 32]);
                assert!(verify_inclusion(index, size, record, &proof, &wrong_root).is_err());
                let other = &leaves[(index as usize + 1) % leaves.len()];
                assert!(verify_inclusion(index, size, other, &proof, &root).is_err());
                if !proof.is_empty() {
                    let bad = flipped(&proof, index as usize % proof.len());
                    assert!(verify_inclusion(index, size, record, &bad, &root).is_err());
                    let short = &proof[..proof.len() - 1];
                    assert!(verify_inclusion(index, size, record, short, &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(index, size, record, &long, &root).is_err());
                if size > 1 {
                    let moved = (index + 1) % size;
                    assert!(verify_inclusion(moved, size, record, &proof, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_for_every_old_size_up_to_300() {
        let leaves = records(300);
        let memo = Memo::new(&leaves);
        for new_size in 1..=300u64 {
            let new_root = memo.mth(0, new_size);
            for old_size in 1..=new_size {
                let old_root = memo.mth(0, old_size);
                let proof = consistency_proof(old_size, new_size, memo.subtree())
                    .unwrap_or_else(|err| unreachable!("{err}"));
                assert_eq!(proof, memo.subproof(old_size, 0, new_size, true));
                let check = |proof: &[Hash], old: &Hash, new: &Hash| {
                    verify_consistency(old_size, new_size, old, new, proof)
                };
                assert_eq!(check(&proof, &old_root, &new_root), Ok(()));
                let wrong = Hash([7; 32]);
                if old_size < new_size {
                    assert!(check(&proof, &wrong, &new_root).is_err());
                }
                assert!(check(&proof, &old_root, &wrong).is_err());
                if !proof.is_empty() {
                    let bad = flipped(&proof, old_size as usize % proof.len());
                    assert!(check(&bad, &old_root, &new_root).is_err());
                    assert!(check(&proof[1..], &old_root, &new_root).is_err());
                }
                let mut long = proof.clone();
                long.push(new_root);
                assert!(check(&long, &old_root, &new_root).is_err());
            }
        }
    }

    #[test]
    fn a_fork_fails_the_consistency_proof() {
        let original = records(300);
        let mut forked = original.clone();
        forked[149] = Hash([9; 32]);
        let (before, after) = (Memo::new(&original), Memo::new(&forked));
        for old_size in [149u64, 150, 200] {
            let proof = consistency_proof(old_size, 300, after.subtree())
                .unwrap_or_else(|err| unreachable!("{err}"));
            let old_root = before.mth(0, old_size);
            let verdict = verify_consistency(old_size, 300, &old_root, &after.mth(0, 300), &proof);
            // Record 150 is leaf 149: a tree of 149 leaves does not contain it.
            assert_eq!(verdict.is_ok(), old_size == 149, "old size {old_size}");
        }
    }

    #[test]
    fn impossible_sizes_are_refused_not_answered() {
        let leaves = records(4);
        let root = root_of(&leaves);
        let memo = Memo::new(&leaves);
        assert_eq!(
            inclusion_proof(4, 4, memo.subtree()),
            Err(ProofError::IndexOutOfRange {
                index: 4,
                tree_size: 4
            })
        );
        assert!(consistency_proof(0, 4, memo.subtree()).is_err());
        assert!(consistency_proof(5, 4, memo.subtree()).is_err());
        assert!(verify_consistency(5, 4, &root, &root, &[]).is_err());
        assert!(verify_consistency(4, 4, &root, &root, &[root]).is_err());
        assert_eq!(verify_consistency(4, 4, &root, &root, &[]), Ok(()));
        assert!(verify_inclusion(0, 0, &leaves[0], &[], &root).is_err());
    }
}
