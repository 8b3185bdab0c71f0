//! RFC 6962 Merkle trees over SHA-256 for reading batches, no_std.
//!
//! A block's `readings_root` is the RFC 6962 Merkle Tree Hash over its reading ids, and a
//! reading id *is* a leaf hash, `SHA-256(0x00 ‖ canonical message)`. So [`root`] and [`audit_path`]
//! take leaf hashes, and [`verify_inclusion`] (RFC 9162 §2.1.3.2) needs neither an allocator
//! nor the standard library: a microcontroller with SHA-256 hardware can check a proof.
//!
//! ```
//! use iotchain_merkle::{audit_path, leaf_hash, root, verify_inclusion};
//! let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|m| leaf_hash(&m[..])).collect();
//! let r = root(&leaves);
//! let path = audit_path(&leaves, 2);
//! assert!(verify_inclusion(&leaves[2], 2, 3, &path, &r).is_ok());
//! ```
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

use sha2::{Digest, Sha256};

pub mod mmr;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why an inclusion proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The claimed index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The path has more or fewer hashes than a tree of this size needs for this leaf.
    #[error("audit path has {got} hashes, a tree of this size needs {expected}")]
    WrongPathLength {
        /// Hashes given.
        got: usize,
        /// Hashes needed.
        expected: usize,
    },
    /// The path leads to another root.
    #[error("audit path leads to a different root")]
    RootMismatch,
}

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf (and the id of a reading).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x00 ‖ parts[0] ‖ parts[1] ‖ …)`: the hash of a leaf given in pieces, without
/// putting them together first.
pub fn leaf_hash_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle Tree Hash (RFC 6962 §2.1) over already-hashed leaves.
///
/// Computed bottom-up, level by level: pairing neighbours left to right and carrying an odd
/// last node up unchanged gives exactly RFC 6962's split at the largest power of two.
#[cfg(feature = "alloc")]
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => return empty_root(),
        1 => return leaves[0],
        _ => {}
    }
    let mut level: alloc::vec::Vec<Hash> = leaves.chunks(2).map(pair).collect();
    while level.len() > 1 {
        let n = level.len();
        for i in 0..n.div_ceil(2) {
            level[i] = pair(&level[2 * i..(2 * i + 2).min(n)]);
        }
        level.truncate(n.div_ceil(2));
    }
    level[0]
}

#[cfg(feature = "alloc")]
fn pair(chunk: &[Hash]) -> Hash {
    match chunk {
        [l, r] => node_hash(l, r),
        [x] => *x,
        _ => unreachable!("chunks of one or two"),
    }
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), from the leaf up.
///
/// # Panics
/// If `index >= leaves.len()`.
#[cfg(feature = "alloc")]
pub fn audit_path(leaves: &[Hash], index: usize) -> alloc::vec::Vec<Hash> {
    assert!(index < leaves.len(), "leaf index out of range");
    let mut path = alloc::vec::Vec::new();
    let mut level: alloc::vec::Vec<Hash> = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = level.chunks(2).map(pair).collect();
        i /= 2;
    }
    path
}

/// Checks that `leaf` is at `index` of a tree of `tree_size` leaves with root `root`
/// (RFC 9162 §2.1.3.2). Needs no allocator.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for (used, p) in path.iter().enumerate() {
        if sn == 0 {
            return Err(MerkleError::WrongPathLength {
                got: path.len(),
                expected: used,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongPathLength {
            got: path.len(),
            expected: path.len() + 1,
        });
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// RFC 6962 §2.1 written literally: the reference the fast code is checked against.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn known_vectors() {
        // Empty tree and single leaf from RFC 6962 / certificate-transparency test data.
        assert_eq!(
            empty_root(),
            [
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
                0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
                0x78, 0x52, 0xb8, 0x55
            ]
        );
        // The leaf hash of the empty string: 6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d.
        let l = leaf_hash(b"");
        assert_eq!(l[0], 0x6e);
        assert_eq!(l[31], 0x1d);
        assert_eq!(leaf_hash_parts(&[]), l);
        assert_eq!(leaf_hash_parts(&[b"ab", b"", b"c"]), leaf_hash(b"abc"));
        let three = leaves(3);
        assert_eq!(
            root(&three),
            node_hash(&node_hash(&three[0], &three[1]), &three[2])
        );
    }

    #[test]
    fn split_is_at_largest_power_of_two() {
        // n = 5: k = 4.
        let l = leaves(5);
        assert_eq!(root(&l), node_hash(&reference_root(&l[..4]), &l[4]));
        for n in 0..70 {
            assert_eq!(root(&leaves(n)), reference_root(&leaves(n)), "n = {n}");
        }
    }

    #[test]
    fn wrong_lengths_are_named() {
        let l = leaves(6);
        let r = root(&l);
        let mut path = audit_path(&l, 4);
        assert_eq!(
            verify_inclusion(&l[4], 6, 6, &path, &r),
            Err(MerkleError::IndexOutOfRange { index: 6, size: 6 })
        );
        path.push([0; 32]);
        assert!(matches!(
            verify_inclusion(&l[4], 4, 6, &path, &r),
            Err(MerkleError::WrongPathLength { .. })
        ));
        path.truncate(path.len() - 2);
        assert!(matches!(
            verify_inclusion(&l[4], 4, 6, &path, &r),
            Err(MerkleError::WrongPathLength { .. })
        ));
    }

    proptest! {
        #[test]
        fn every_leaf_verifies_and_every_flipped_bit_fails(n in 1usize..200, pick in any::<prop::sample::Index>(), bit in 0usize..256) {
            let l = leaves(n);
            let r = root(&l);
            prop_assert_eq!(r, reference_root(&l));
            for (i, leaf) in l.iter().enumerate() {
                let path = audit_path(&l, i);
                prop_assert!(verify_inclusion(leaf, i as u64, n as u64, &path, &r).is_ok());
            }
            let i = pick.index(n);
            let path = audit_path(&l, i);
            let flip = |h: &Hash| { let mut h = *h; h[bit / 8] ^= 1 << (bit % 8); h };
            prop_assert!(verify_inclusion(&flip(&l[i]), i as u64, n as u64, &path, &r).is_err());
            prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &path, &flip(&r)).is_err());
            for k in 0..path.len() {
                let mut p = path.clone();
                p[k] = flip(&p[k]);
                prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &r).is_err());
            }
            if n > 1 {
                let other = (i + 1) % n;
                prop_assert!(verify_inclusion(&l[i], other as u64, n as u64, &path, &r).is_err());
            }
        }
    }
}
