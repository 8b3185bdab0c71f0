//! The interior nodes of each indexed stream's accumulator (docs/formats.md, "Complete-range
//! proofs"): what a range proof needs besides the readings it shows.
//!
//! The state keeps only a stream accumulator's peaks; a proof over old readings needs the
//! hashes of the complete subtrees around them. The stream index appends them as it indexes
//! (one interior node per reading on average) under (device ‖ stream id ‖ level ‖ index), as
//! [`iotchain_merkle::mmr::subtree`] numbers them; level 0, a leaf, is not stored: it is
//! the hash of the reading's [`StreamLeaf`], rebuilt from its index entry.

use std::collections::BTreeMap;

use iotchain_merkle::{Hash, node_hash};
use iotchain_reading::StreamLeaf;
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition};

use crate::{
    ProofBound, Result, StorageError,
    streams::{StreamEntry, StreamInfo, entry_at},
};

/// (device ‖ stream id ‖ level ‖ index) → the hash of that complete subtree (level ≥ 1).
pub(crate) const STREAM_MMR: TableDefinition<'_, [u8; 33], [u8; 32]> =
    TableDefinition::new("stream_mmr");

fn node_key(device: &[u8; 20], id: u32, level: u8, index: u64) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..20].copy_from_slice(device);
    k[20..24].copy_from_slice(&id.to_be_bytes());
    k[24] = level;
    k[25..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The last leaf hash appended to each stream in one indexing batch (the left sibling of the
/// next one), by (device, stream id).
pub(crate) type LastLeaves = BTreeMap<([u8; 20], u32), (u64, Hash)>;

/// Appends the leaf at `position` of a stream: stores the interior nodes it completes.
pub(crate) fn append(
    nodes: &mut Table<'_, [u8; 33], [u8; 32]>,
    entries: &impl ReadableTable<[u8; 32], &'static [u8]>,
    last: &mut LastLeaves,
    (device, id): ([u8; 20], u32),
    position: u64,
    leaf: Hash,
) -> Result<()> {
    let previous = last.insert((device, id), (position, leaf));
    let (mut node, mut level, mut index) = (leaf, 0u8, position);
    while index & 1 == 1 {
        let left = if level == 0 {
            match previous {
                Some((p, h)) if p + 1 == position => h,
                _ => {
                    let key = crate::streams::entry_key(&device, id, position - 1);
                    let v = entries.get(key)?.ok_or_else(|| missing(position - 1))?;
                    StreamEntry::decode(position - 1, v.value())?.leaf().hash()
                }
            }
        } else {
            nodes
                .get(node_key(&device, id, level, index - 1))?
                .ok_or_else(|| missing(position))?
                .value()
        };
        node = node_hash(&left, &node);
        level += 1;
        index >>= 1;
        nodes.insert(node_key(&device, id, level, index), node)?;
    }
    Ok(())
}

fn missing(position: u64) -> StorageError {
    StorageError::Corrupt(format!(
        "the stream accumulator's nodes before position {position} are missing"
    ))
}

/// The hash of the complete subtree `(level, index)` of a stream's accumulator.
pub(crate) fn node(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    level: u32,
    index: u64,
) -> Result<Hash> {
    if level == 0 {
        let e = entry_at(r, device, info.id, index)?.ok_or_else(|| missing(index + 1))?;
        return Ok(e.leaf().hash());
    }
    let t = r.open_table(STREAM_MMR)?;
    let v = t
        .get(node_key(device, info.id, level as u8, index))?
        .ok_or_else(|| missing((index + 1) << level))?;
    Ok(v.value())
}

/// What a range proof shows of a stream: the leaves `first..=last` and the proof hashes
/// around them, for an accumulator of `count` leaves (the stream as the state root commits
/// to it: the index may already hold more).
pub(crate) fn window_proof(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    count: u64,
    first: u64,
    last: u64,
) -> Result<(Vec<StreamLeaf>, Vec<Hash>)> {
    if count > info.count || first > last || last >= count {
        return Err(StorageError::Corrupt(format!(
            "no leaves {first}..={last} in the {} indexed readings of stream {:?}",
            info.count, info.stream
        )));
    }
    let mut leaves = Vec::with_capacity((last - first + 1) as usize);
    for p in first..=last {
        let e = entry_at(r, device, info.id, p)?.ok_or_else(|| missing(p + 1))?;
        leaves.push(e.leaf());
    }
    let proof = iotchain_merkle::mmr::range_proof(count, first, last, |level, index| {
        node(r, device, info, level, index)
    })?;
    Ok((leaves, proof))
}

/// The part of a stream a range proof shows: the positions `first..=last` of its
/// accumulator, from just before the range's start to just after its end (or the end of the
/// stream, for a range of `seq` or `ts`: a late reading may follow anywhere), so that the
/// leaves at both ends prove nothing of the range lies outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenWindow {
    /// The stream as the index keeps it.
    pub info: StreamInfo,
    /// First position shown.
    pub first: u64,
    /// The leaves at `first, first+1, …`.
    pub leaves: Vec<StreamLeaf>,
    /// The range proof of those leaves ([`iotchain_merkle::mmr::range_proof`]).
    pub proof: Vec<Hash>,
    /// The index entries of the leaves the range takes, in position order.
    pub entries: Vec<StreamEntry>,
}

/// What [`ChainStore::stream_window`](crate::ChainStore::stream_window) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// The stream has no readings (as of the accumulator's count).
    Empty,
    /// The window would show this many leaves, more than allowed.
    TooLarge(u64),
    /// The window.
    Proven(ProvenWindow),
}

impl crate::ChainStore {
    /// The window of a device stream a range proof shows, for the stream's accumulator of
    /// `count` leaves (as the state root the proof rests on commits to it), over
    /// [`StreamRange::proof_bound`](crate::StreamRange::proof_bound).
    pub fn stream_window(
        &self,
        device: &[u8; 20],
        stream: &str,
        range: &crate::StreamRange,
        count: u64,
        max_leaves: u64,
    ) -> Result<Window> {
        use redb::ReadableDatabase;
        self.index_streams()?;
        let r = self.db.begin_read()?;
        let Some(info) = crate::streams::stream_of(&r, device, stream)? else {
            return Ok(Window::Empty);
        };
        if count == 0 {
            return Ok(Window::Empty);
        }
        let first_where = |pred: &dyn Fn(&StreamEntry) -> bool| {
            crate::streams::first_where(&r, device, &info, pred).map(|p| p.min(count))
        };
        let (start, end) = match range.proof_bound() {
            ProofBound::BlockTime((lo, hi)) => (
                first_where(&|e| e.block_time_ms >= lo)?,
                first_where(&|e| e.block_time_ms > hi)?,
            ),
            ProofBound::Seq((lo, _)) => (first_where(&|e| e.running_max().0 >= lo)?, count),
            ProofBound::Ts((lo, _)) => (first_where(&|e| e.running_max().1 >= lo)?, count),
            ProofBound::All => (0, count),
        };
        // One leaf on each side that the range does not take, where there is one.
        let first = start.saturating_sub(1);
        let last = end.min(count - 1);
        if last - first + 1 > max_leaves {
            return Ok(Window::TooLarge(last - first + 1));
        }
        let (leaves, proof) = window_proof(&r, device, &info, count, first, last)?;
        let mut entries = Vec::new();
        for (p, l) in (first..).zip(&leaves) {
            if range.takes_leaf(l.seq, l.ts, l.block_time_ms) {
                entries.push(entry_at(&r, device, info.id, p)?.ok_or_else(|| missing(p + 1))?);
            }
        }
        Ok(Window::Proven(ProvenWindow {
            info,
            first,
            leaves,
            proof,
            entries,
        }))
    }
}

#[cfg(test)]
mod tests {
    use iotchain_merkle::mmr::{Peaks, verify_range};
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::streams::{NewReading, index, stream_of};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// However the readings are split into indexing batches, the stored interior nodes
        /// make range proofs that verify against the root of the leaves appended in order.
        #[test]
        fn stored_nodes_prove_every_window_against_the_appended_root(
            seqs in proptest::collection::vec(0u64..1_000, 1..150),
            cuts in proptest::collection::vec(0usize..150, 0..6),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let messages: Vec<Vec<u8>> = (0..seqs.len()).map(|i| (i as u32).to_be_bytes().to_vec()).collect();
            let new: Vec<NewReading<'_>> = seqs.iter().enumerate().map(|(i, &seq)| NewReading {
                device: [7; 20],
                stream: "t",
                seq,
                ts: 1_000 + seq,
                height: 1 + i as u64 / 3,
                index: (i % 3) as u32,
                item: (i % 3) as u32,
                block_time_ms: 10 * (1 + i as u64 / 3),
                id: iotchain_reading::reading_id(&messages[i]),
                message: &messages[i],
                value: None,
            }).collect();
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("index.redb")).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % new.len()).collect();
            cuts.push(0);
            cuts.push(new.len());
            cuts.sort_unstable();
            let mut next = 0;
            for w in cuts.windows(2) {
                let tx = db.begin_write().unwrap();
                next = index(&tx, &new[w[0]..w[1]], next).unwrap();
                tx.commit().unwrap();
            }
            let r = db.begin_read().unwrap();
            let info = stream_of(&r, &[7; 20], "t").unwrap().unwrap();
            let n = new.len() as u64;
            let (mut first, mut last) = (a % n, b % n);
            if first > last {
                std::mem::swap(&mut first, &mut last);
            }
            // The proof is of an accumulator of any count the index holds.
            let count = last + 1 + (a ^ b) % (n - last);
            // The reference: the first `count` leaves as the state appends them.
            let mut reference = Peaks::default();
            let mut prev: Option<StreamLeaf> = None;
            for r in &new[..count as usize] {
                let l = StreamLeaf::next(prev.as_ref(), r.id, r.seq, r.ts, r.height, r.block_time_ms);
                reference.push(l.hash());
                prev = Some(l);
            }
            let (leaves, proof) = window_proof(&r, &[7; 20], &info, count, first, last).unwrap();
            prop_assert!(verify_range(count, first, last, leaves.iter().map(StreamLeaf::hash), &proof, &reference.root()).is_ok());
        }
    }
}
