//! The leaf a reading adds to its device stream's accumulator (docs/formats.md,
//! "Complete-range proofs"): what a range proof shows of each reading.

/// Encoded length of a [`StreamLeaf`].
pub const STREAM_LEAF_LEN: usize = 80;

/// One reading as its stream's accumulator commits to it: its id and the figures a range is
/// decided by. The running maxima make the start of a `seq` or `ts` range provable: every
/// leaf before one whose `max_seq` is below `a` has a `seq` below `a`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StreamLeaf {
    /// The reading id.
    pub id: [u8; 32],
    /// The reading's `seq`.
    pub seq: u64,
    /// The reading's device time, ms.
    pub ts: u64,
    /// Height of the block holding it.
    pub height: u64,
    /// That block's time (header `timestamp_ms`): never decreases along a stream.
    pub block_time_ms: u64,
    /// Highest `seq` of the stream up to and including this reading.
    pub max_seq: u64,
    /// Highest `ts` of the stream up to and including this reading.
    pub max_ts: u64,
}

impl StreamLeaf {
    /// `id ‖ seq ‖ ts ‖ height ‖ block_time_ms ‖ max_seq ‖ max_ts`, integers as 8 bytes
    /// big-endian.
    pub fn encode(&self) -> [u8; STREAM_LEAF_LEN] {
        let mut out = [0u8; STREAM_LEAF_LEN];
        out[..32].copy_from_slice(&self.id);
        for (i, v) in [
            self.seq,
            self.ts,
            self.height,
            self.block_time_ms,
            self.max_seq,
            self.max_ts,
        ]
        .into_iter()
        .enumerate()
        {
            out[32 + 8 * i..40 + 8 * i].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// The leaf [`StreamLeaf::encode`] wrote.
    pub fn decode(b: &[u8; STREAM_LEAF_LEN]) -> Self {
        let n = |i: usize| u64::from_be_bytes(b[32 + 8 * i..40 + 8 * i].try_into().expect("8"));
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        Self {
            id,
            seq: n(0),
            ts: n(1),
            height: n(2),
            block_time_ms: n(3),
            max_seq: n(4),
            max_ts: n(5),
        }
    }

    /// The leaf hash the accumulator holds: `SHA-256(0x00 ‖ encode())`.
    pub fn hash(&self) -> [u8; 32] {
        iotchain_merkle::leaf_hash(&self.encode())
    }

    /// The next leaf of the same stream: its running maxima carried on from `prev` (the
    /// stream's previous leaf, `None` for its first reading).
    pub fn next(
        prev: Option<&StreamLeaf>,
        id: [u8; 32],
        seq: u64,
        ts: u64,
        height: u64,
        block_time_ms: u64,
    ) -> Self {
        let (max_seq, max_ts) = prev.map_or((seq, ts), |p| (p.max_seq.max(seq), p.max_ts.max(ts)));
        Self {
            id,
            seq,
            ts,
            height,
            block_time_ms,
            max_seq,
            max_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_round_trips_and_carries_the_maxima() {
        let a = StreamLeaf::next(None, [1; 32], 5, 1_000, 3, 9_000);
        assert_eq!((a.max_seq, a.max_ts), (5, 1_000));
        let b = StreamLeaf::next(Some(&a), [2; 32], 4, 2_000, 4, 9_500);
        assert_eq!((b.max_seq, b.max_ts), (5, 2_000));
        assert_eq!(StreamLeaf::decode(&b.encode()), b);
        assert_ne!(a.hash(), b.hash());
    }
}
