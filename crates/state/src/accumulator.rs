//! Stream accumulators: the append-only Merkle Mountain Range of each device stream's
//! readings, committed by the state root (docs/formats.md, "Complete-range proofs").
//!
//! The trie holds, under `keccak256(0x03 ‖ device address ‖ stream name)`, the RLP list
//! `[count, root]`; the peaks (what appending needs) and the last leaf (whose running maxima
//! the next one carries on) are kept beside it, in the stored records.

use alloy_primitives::B256;
use iotchain_merkle::mmr::Peaks;
use iotchain_reading::{DeviceAddress, STREAM_LEAF_LEN, StreamLeaf};

/// The accumulator of one device stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAccumulator {
    /// The stream name.
    pub stream: String,
    /// Leaf count and peaks.
    pub peaks: Peaks,
    /// The stream's latest leaf.
    pub last: StreamLeaf,
}

impl StreamAccumulator {
    /// The accumulator's root.
    pub fn root(&self) -> B256 {
        B256::from(self.peaks.root())
    }

    /// What the trie holds for it: RLP `[count, root]`.
    pub fn trie_value(&self) -> Vec<u8> {
        #[derive(alloy_rlp::RlpEncodable)]
        struct Value {
            count: u64,
            root: B256,
        }
        alloy_rlp::encode(Value {
            count: self.peaks.count(),
            root: self.root(),
        })
    }

    /// Encodes a device's accumulators for the store: per accumulator, the name's length (one
    /// byte) and bytes, the count (8 bytes), the last leaf and the peaks.
    pub fn encode_all(accs: &[StreamAccumulator]) -> Vec<u8> {
        let mut out = Vec::new();
        for a in accs {
            out.push(a.stream.len() as u8);
            out.extend_from_slice(a.stream.as_bytes());
            out.extend_from_slice(&a.peaks.count().to_be_bytes());
            out.extend_from_slice(&a.last.encode());
            for p in a.peaks.peaks() {
                out.extend_from_slice(p);
            }
        }
        out
    }

    /// Decodes what [`StreamAccumulator::encode_all`] wrote; `None` if it is damaged.
    pub fn decode_all(mut b: &[u8]) -> Option<Vec<StreamAccumulator>> {
        let mut out = Vec::new();
        let take = |n: usize, b: &mut &[u8]| -> Option<Vec<u8>> {
            let (head, rest) = b.split_at_checked(n)?;
            *b = rest;
            Some(head.to_vec())
        };
        while !b.is_empty() {
            let len = take(1, &mut b)?[0] as usize;
            let stream = String::from_utf8(take(len, &mut b)?).ok()?;
            let count = u64::from_be_bytes(take(8, &mut b)?.try_into().ok()?);
            let last = StreamLeaf::decode(&take(STREAM_LEAF_LEN, &mut b)?.try_into().ok()?);
            let peaks = (0..count.count_ones())
                .map(|_| take(32, &mut b).map(|p| <[u8; 32]>::try_from(p).expect("32")))
                .collect::<Option<Vec<_>>>()?;
            out.push(StreamAccumulator {
                stream,
                peaks: Peaks::from_parts(count, peaks)?,
                last,
            });
        }
        Some(out)
    }
}

/// The trie key of a device stream's accumulator (the light client's, which checks it):
/// `keccak256(0x03 ‖ device ‖ stream)`.
pub fn accumulator_key(device: &DeviceAddress, stream: &str) -> B256 {
    B256::from(iotchain_light::accumulator_key(device, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulators_round_trip_and_damage_is_noticed() {
        let mut accs = Vec::new();
        for (name, n) in [("temp", 5u64), ("humidity", 0), ("x", 64)] {
            let mut peaks = Peaks::default();
            let mut last = StreamLeaf::default();
            for i in 0..n {
                last = StreamLeaf::next(Some(&last), [i as u8; 32], i, i * 10, i, i * 100);
                peaks.push(last.hash());
            }
            accs.push(StreamAccumulator {
                stream: name.into(),
                peaks,
                last,
            });
        }
        let bytes = StreamAccumulator::encode_all(&accs);
        assert_eq!(StreamAccumulator::decode_all(&bytes), Some(accs));
        assert_eq!(
            StreamAccumulator::decode_all(&bytes[..bytes.len() - 1]),
            None
        );
    }
}
