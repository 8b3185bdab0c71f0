//! The receipts of one block stored as one value, framed for lookup by hash.
//!
//! A block's receipts (of its Ethereum transactions and its hook calls) are written together
//! under the block's height instead of one row per transaction hash: the rows of a random-key
//! table land on a fresh B-tree page each, so a block of thousands of transactions rewrote
//! thousands of pages. The framing is:
//!
//! ```text
//! count: u32 BE
//! count × (hash: 32 bytes, offset: u32 BE, len: u32 BE)   sorted by hash, no duplicates
//! data                                                     the values, at their offsets
//! ```
//!
//! Offsets are relative to the start of the data. Lookup is a binary search; a value that is
//! damaged or truncated reads as absent, never as a panic.

use alloy_primitives::B256;

/// Bytes of one entry of the table of contents.
const ENTRY: usize = 32 + 4 + 4;

/// Frames `entries` (hash, value) for [`lookup`]; a hash given twice keeps its last value.
pub(crate) fn encode(entries: &[(B256, Vec<u8>)]) -> Vec<u8> {
    let mut sorted: Vec<&(B256, Vec<u8>)> = entries.iter().collect();
    // Stable: equal hashes keep their order, so the last one wins below.
    sorted.sort_by_key(|(hash, _)| *hash);
    let mut unique: Vec<&(B256, Vec<u8>)> = Vec::with_capacity(sorted.len());
    for e in sorted {
        match unique.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => unique.push(e),
        }
    }
    let data_len: usize = unique.iter().map(|(_, v)| v.len()).sum();
    let mut out = Vec::with_capacity(4 + unique.len() * ENTRY + data_len);
    out.extend_from_slice(&(unique.len() as u32).to_be_bytes());
    let mut offset = 0u32;
    for (hash, value) in &unique {
        out.extend_from_slice(hash.as_slice());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        offset += value.len() as u32;
    }
    for (_, value) in &unique {
        out.extend_from_slice(value);
    }
    out
}

/// The value framed under `hash` in `blob`, if any.
pub(crate) fn lookup<'a>(blob: &'a [u8], hash: &B256) -> Option<&'a [u8]> {
    let count = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let toc = blob.get(4..4 + count.checked_mul(ENTRY)?)?;
    let data = &blob[4 + toc.len()..];
    let entry = |i: usize| &toc[i * ENTRY..(i + 1) * ENTRY];
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = entry(mid);
        match e[..32].cmp(hash.as_slice()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let offset = u32::from_be_bytes(e[32..36].try_into().ok()?) as usize;
                let len = u32::from_be_bytes(e[36..40].try_into().ok()?) as usize;
                return data.get(offset..offset.checked_add(len)?);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_value_is_found_and_nothing_else(
            entries in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
            absent in any::<[u8; 32]>(),
        ) {
            let entries: Vec<(B256, Vec<u8>)> = entries.into_iter().map(|(h, v)| (B256::from(h), v)).collect();
            let blob = encode(&entries);
            for (hash, _) in &entries {
                // The last value given for a hash is the one kept.
                let want = &entries.iter().rev().find(|(h, _)| h == hash).unwrap().1;
                prop_assert_eq!(lookup(&blob, hash), Some(want.as_slice()));
            }
            let absent = B256::from(absent);
            if !entries.iter().any(|(h, _)| *h == absent) {
                prop_assert_eq!(lookup(&blob, &absent), None);
            }
        }

        #[test]
        fn damaged_blobs_never_panic(
            entries in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(any::<u8>(), 0..32)), 1..10),
            cut in any::<usize>(),
            flip in any::<(usize, u8)>(),
        ) {
            let entries: Vec<(B256, Vec<u8>)> = entries.into_iter().map(|(h, v)| (B256::from(h), v)).collect();
            let mut blob = encode(&entries);
            let at = flip.0 % blob.len();
            blob[at] ^= flip.1 | 1;
            let truncated = &blob[..cut % (blob.len() + 1)];
            for (hash, _) in &entries {
                let _ = lookup(&blob, hash);
                let _ = lookup(truncated, hash);
            }
            prop_assert_eq!(lookup(&[], &entries[0].0), None);
        }
    }
}
