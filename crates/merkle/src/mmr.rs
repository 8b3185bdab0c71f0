//! Merkle Mountain Ranges over SHA-256: the append-only accumulator each device stream keeps
//! of its readings, and range proofs over it (docs/formats.md, "Complete-range proofs").
//!
//! A range of `count` leaves is a list of perfect binary trees ("peaks"), one per set bit of
//! `count`, largest (leftmost) first; peak `k` covers the next `2^h` leaves. Leaves and
//! interior nodes hash as in RFC 6962 ([`leaf_hash`](crate::leaf_hash) and
//! [`node_hash`]); the root *bags* the peaks with the count:
//! `SHA-256(0x02 ‖ count as 8 bytes big-endian ‖ peak₀ ‖ peak₁ ‖ …)`.
//!
//! Appending needs only the peaks ([`Peaks`], at most 64 hashes). A proof that leaves
//! `first..=last` are exactly those of the range is the hashes of the subtrees the range does
//! not touch, in the order a left-to-right depth-first walk meets them ([`range_proof`]);
//! [`verify_range`] walks the same way with the leaves given, needs no allocator, and fails
//! if any leaf is left out, added, moved or changed.
//!
//! ```
//! use iotchain_merkle::{leaf_hash, mmr::{Peaks, range_proof, verify_range}};
//! let leaves: Vec<_> = (0u8..11).map(|i| leaf_hash(&[i])).collect();
//! let mut acc = Peaks::default();
//! for l in &leaves {
//!     acc.push(*l);
//! }
//! let proof = range_proof(11, 3, 6, |level, index| {
//!     Ok::<_, ()>(iotchain_merkle::mmr::subtree(&leaves, level, index))
//! })
//! .unwrap();
//! assert!(verify_range(11, 3, 6, leaves[3..=6].iter().copied(), &proof, &acc.root()).is_ok());
//! assert!(verify_range(11, 3, 6, leaves[3..=5].iter().copied(), &proof, &acc.root()).is_err());
//! ```

use sha2::{Digest, Sha256};

use crate::{Hash, node_hash};

/// Why a range proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MmrError {
    /// The range is empty or outside the accumulator, or more or fewer leaves were given.
    #[error("leaves {first}..{end} are not the claimed range of an accumulator of {count} leaves")]
    BadRange {
        /// First leaf claimed.
        first: u64,
        /// One past the last leaf given.
        end: u64,
        /// Leaves in the accumulator.
        count: u64,
    },
    /// The proof holds fewer hashes than the walk needs.
    #[error("the proof is missing hashes")]
    ProofTooShort,
    /// The proof holds more hashes than the walk needs.
    #[error("the proof has {0} hashes too many")]
    ProofTooLong(usize),
    /// The leaves and the proof lead to another root.
    #[error("the leaves and the proof lead to a different root")]
    RootMismatch,
}

/// `SHA-256(0x02 ‖ count (8 bytes, big-endian) ‖ peaks…)`: the root of an accumulator.
pub fn bag<'a>(count: u64, peaks: impl IntoIterator<Item = &'a Hash>) -> Hash {
    let mut h = Sha256::new();
    h.update([2u8]);
    h.update(count.to_be_bytes());
    for p in peaks {
        h.update(p);
    }
    h.finalize().into()
}

/// The peaks of an accumulator of `count` leaves: `(height, first leaf)` of each, left to
/// right.
pub fn peak_layout(count: u64) -> impl Iterator<Item = (u32, u64)> {
    let mut offset = 0u64;
    (0..64u32)
        .rev()
        .filter(move |h| count >> h & 1 == 1)
        .map(move |h| {
            let at = offset;
            offset += 1 << h;
            (h, at)
        })
}

/// An accumulator as appending needs it: the leaf count and the peaks, left to right.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peaks {
    count: u64,
    peaks: alloc::vec::Vec<Hash>,
}

#[cfg(feature = "alloc")]
impl Peaks {
    /// An accumulator from its stored parts; `None` unless there is one peak per set bit of
    /// `count`.
    pub fn from_parts(count: u64, peaks: alloc::vec::Vec<Hash>) -> Option<Self> {
        (peaks.len() == count.count_ones() as usize).then_some(Self { count, peaks })
    }

    /// Leaves appended so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The peaks, left (largest) to right.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends a leaf hash: merges the equal-height peaks it completes (one merge per
    /// trailing one bit of the old count, so one on average).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        for _ in 0..self.count.trailing_ones() {
            let left = self.peaks.pop().expect("one peak per set bit of the count");
            node = node_hash(&left, &node);
        }
        self.peaks.push(node);
        self.count += 1;
    }

    /// The root ([`bag`] of the peaks).
    pub fn root(&self) -> Hash {
        bag(self.count, &self.peaks)
    }
}

/// The hash of the perfect subtree at `level` covering leaves `index·2^level ..
/// (index+1)·2^level` of `leaves` (a reference for tests and small accumulators).
///
/// # Panics
/// If the subtree reaches past the end of `leaves`.
pub fn subtree(leaves: &[Hash], level: u32, index: u64) -> Hash {
    if level == 0 {
        return leaves[index as usize];
    }
    node_hash(
        &subtree(leaves, level - 1, 2 * index),
        &subtree(leaves, level - 1, 2 * index + 1),
    )
}

/// The proof that leaves `first..=last` are in an accumulator of `count` leaves: the hashes
/// of the subtrees the range does not touch, in depth-first, left-to-right order. `node`
/// gives the hash of a complete subtree by `(level, index)` as [`subtree`] numbers them (the
/// store keeps them; level 0 is a leaf).
///
/// # Panics
/// If the range is empty or not within `count`.
#[cfg(feature = "alloc")]
pub fn range_proof<E>(
    count: u64,
    first: u64,
    last: u64,
    mut node: impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<alloc::vec::Vec<Hash>, E> {
    assert!(
        first <= last && last < count,
        "range within the accumulator"
    );
    fn walk<E>(
        level: u32,
        index: u64,
        first: u64,
        last: u64,
        node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
        out: &mut alloc::vec::Vec<Hash>,
    ) -> Result<(), E> {
        let (lo, hi) = (index << level, ((index + 1) << level) - 1);
        if hi < first || lo > last {
            out.push(node(level, index)?);
        } else if level > 0 {
            walk(level - 1, 2 * index, first, last, node, out)?;
            walk(level - 1, 2 * index + 1, first, last, node, out)?;
        }
        Ok(())
    }
    let mut out = alloc::vec::Vec::new();
    for (h, at) in peak_layout(count) {
        walk(h, at >> h, first, last, &mut node, &mut out)?;
    }
    Ok(out)
}

/// Checks that `leaves` (leaf hashes, in order) are exactly leaves `first..=last` of the
/// accumulator of `count` leaves whose root is `root`, with `proof` from [`range_proof`].
/// Needs no allocator: the walk's depth is at most 64.
pub fn verify_range(
    count: u64,
    first: u64,
    last: u64,
    leaves: impl Iterator<Item = Hash>,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MmrError> {
    struct Walk<'p, I> {
        leaves: I,
        taken: u64,
        proof: &'p [Hash],
        used: usize,
        first: u64,
        last: u64,
    }
    impl<I: Iterator<Item = Hash>> Walk<'_, I> {
        fn node(&mut self, level: u32, index: u64) -> Result<Hash, MmrError> {
            let (lo, hi) = (index << level, ((index + 1) << level) - 1);
            if hi < self.first || lo > self.last {
                let h = *self.proof.get(self.used).ok_or(MmrError::ProofTooShort)?;
                self.used += 1;
                return Ok(h);
            }
            if level == 0 {
                let leaf = self.leaves.next().ok_or(MmrError::BadRange {
                    first: self.first,
                    end: self.first + self.taken,
                    count: self.last + 1,
                })?;
                self.taken += 1;
                return Ok(leaf);
            }
            let left = self.node(level - 1, 2 * index)?;
            let right = self.node(level - 1, 2 * index + 1)?;
            Ok(node_hash(&left, &right))
        }
    }
    if first > last || last >= count {
        return Err(MmrError::BadRange {
            first,
            end: last.saturating_add(1),
            count,
        });
    }
    let mut walk = Walk {
        leaves,
        taken: 0,
        proof,
        used: 0,
        first,
        last,
    };
    let mut h = Sha256::new();
    h.update([2u8]);
    h.update(count.to_be_bytes());
    for (level, at) in peak_layout(count) {
        h.update(walk.node(level, at >> level)?);
    }
    let extra = walk.leaves.count() as u64;
    if extra > 0 {
        return Err(MmrError::BadRange {
            first,
            end: last + 1 + extra,
            count,
        });
    }
    if walk.used < proof.len() {
        return Err(MmrError::ProofTooLong(proof.len() - walk.used));
    }
    let computed: Hash = h.finalize().into();
    if &computed == root {
        Ok(())
    } else {
        Err(MmrError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn built(leaves: &[Hash]) -> Peaks {
        let mut p = Peaks::default();
        for l in leaves {
            p.push(*l);
        }
        p
    }

    fn proof(l: &[Hash], first: u64, last: u64) -> Vec<Hash> {
        range_proof(l.len() as u64, first, last, |level, index| {
            Ok::<_, ()>(subtree(l, level, index))
        })
        .unwrap()
    }

    #[test]
    fn peaks_follow_the_bits_of_the_count() {
        assert_eq!(
            peak_layout(11).collect::<Vec<_>>(),
            [(3, 0), (1, 8), (0, 10)]
        );
        let l = leaves(11);
        let p = built(&l);
        assert_eq!(
            p.peaks(),
            [subtree(&l, 3, 0), subtree(&l, 1, 4), subtree(&l, 0, 10)]
        );
        assert_eq!(
            p.root(),
            bag(11, &[subtree(&l, 3, 0), subtree(&l, 1, 4), l[10]])
        );
        assert!(Peaks::from_parts(11, p.peaks().to_vec()).is_some());
        assert!(Peaks::from_parts(12, p.peaks().to_vec()).is_none());
    }

    #[test]
    fn a_range_proof_of_the_whole_accumulator_is_empty() {
        let l = leaves(13);
        assert!(proof(&l, 0, 12).is_empty());
        assert!(verify_range(13, 0, 12, l.iter().copied(), &[], &built(&l).root()).is_ok());
    }

    #[test]
    fn empty_and_outside_ranges_are_refused() {
        let l = leaves(5);
        let root = built(&l).root();
        assert!(matches!(
            verify_range(5, 5, 5, l[..1].iter().copied(), &[], &root),
            Err(MmrError::BadRange { .. })
        ));
        let p = proof(&l, 2, 2);
        assert!(matches!(
            verify_range(5, 2, 2, core::iter::empty(), &p, &root),
            Err(MmrError::BadRange { .. })
        ));
        assert!(verify_range(5, 2, 2, l[2..3].iter().copied(), &p, &root).is_ok());
    }

    proptest! {
        #[test]
        fn honest_ranges_verify_and_any_change_fails(
            n in 1u64..300,
            a in any::<u64>(),
            b in any::<u64>(),
            pick in any::<usize>(),
        ) {
            let l = leaves(n);
            let root = built(&l).root();
            let (mut first, mut last) = (a % n, b % n);
            if first > last {
                core::mem::swap(&mut first, &mut last);
            }
            let p = proof(&l, first, last);
            let range = &l[first as usize..=last as usize];
            prop_assert!(verify_range(n, first, last, range.iter().copied(), &p, &root).is_ok());
            // One leaf left out at either end, or one more.
            if range.len() > 1 {
                prop_assert!(verify_range(n, first, last, range[1..].iter().copied(), &p, &root).is_err());
                prop_assert!(verify_range(n, first, last, range[..range.len() - 1].iter().copied(), &p, &root).is_err());
            }
            if (last as usize) + 1 < l.len() {
                let more = &l[first as usize..=last as usize + 1];
                prop_assert!(verify_range(n, first, last, more.iter().copied(), &p, &root).is_err());
            }
            // One leaf changed, two swapped, the range shifted, the count changed.
            let mut changed = range.to_vec();
            changed[pick % range.len()][0] ^= 1;
            prop_assert!(verify_range(n, first, last, changed.iter().copied(), &p, &root).is_err());
            if range.len() > 1 {
                let mut swapped = range.to_vec();
                swapped.swap(0, range.len() - 1);
                prop_assert!(verify_range(n, first, last, swapped.iter().copied(), &p, &root).is_err());
            }
            if first > 0 {
                prop_assert!(verify_range(n, first - 1, last - 1, range.iter().copied(), &p, &root).is_err());
            }
            prop_assert!(verify_range(n + 1, first, last, range.iter().copied(), &p, &root).is_err());
            // A proof hash changed, dropped or added.
            if !p.is_empty() {
                let mut q = p.clone();
                q[pick % p.len()][31] ^= 1;
                prop_assert!(verify_range(n, first, last, range.iter().copied(), &q, &root).is_err());
                prop_assert!(verify_range(n, first, last, range.iter().copied(), &p[1..], &root).is_err());
            }
            let mut longer = p.clone();
            longer.push([0; 32]);
            prop_assert!(verify_range(n, first, last, range.iter().copied(), &longer, &root).is_err());
        }

        #[test]
        fn appending_matches_the_reference_peaks(n in 0u64..600) {
            let l = leaves(n);
            let p = built(&l);
            let expect: Vec<Hash> = peak_layout(n).map(|(h, at)| subtree(&l, h, at >> h)).collect();
            prop_assert_eq!(p.peaks(), &expect[..]);
            prop_assert_eq!(p.count(), n);
        }
    }
}
