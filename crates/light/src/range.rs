//! Checking a complete-range proof (docs/formats.md, "Complete-range proofs"): that an answer
//! holds exactly the readings of a device stream in a range — none left out, none added, in
//! order, each the message its device signed — and that the stream is as a finalized state
//! root commits to it. No allocator.

use core::fmt;

use iotchain_merkle::mmr::{MmrError, verify_range};
use iotchain_reading::{DeviceAddress, ReadingError, STREAM_LEAF_LEN, StreamLeaf};
use sha3::{Digest as _, Keccak256};

use crate::{
    Certificate, CertificateError, Hash, Header, HeaderError, certifies, follow,
    mpt::{MptError, rlp_item, rlp_list, verify_mpt},
    verify_certificate,
};

/// Trie key prefix of stream accumulators (the state's `0x03`).
pub const ACCUMULATOR_PREFIX: u8 = 0x03;

/// The trie key of a device stream's accumulator: `keccak256(0x03 ‖ device ‖ stream)`.
pub fn accumulator_key(device: &DeviceAddress, stream: &str) -> Hash {
    let mut h = Keccak256::new();
    h.update([ACCUMULATOR_PREFIX]);
    h.update(device.0);
    h.update(stream.as_bytes());
    h.finalize().into()
}

/// What a range is over (all bounds inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// The whole stream.
    All,
    /// Device `seq`.
    Seq,
    /// Device time, ms.
    Ts,
    /// Block time, ms.
    BlockTime,
}

/// A range of a device stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// What it is over.
    pub kind: RangeKind,
    /// Lowest value taken (ignored for [`RangeKind::All`]).
    pub from: u64,
    /// Highest value taken (ignored for [`RangeKind::All`]).
    pub to: u64,
}

impl Range {
    /// Whether the range takes this leaf's reading.
    pub fn takes(&self, l: &StreamLeaf) -> bool {
        let v = match self.kind {
            RangeKind::All => return true,
            RangeKind::Seq => l.seq,
            RangeKind::Ts => l.ts,
            RangeKind::BlockTime => l.block_time_ms,
        };
        self.from <= v && v <= self.to
    }

    /// Whether this leaf and every one before it lie before the range.
    fn all_before(&self, l: &StreamLeaf) -> bool {
        match self.kind {
            RangeKind::All => false,
            RangeKind::Seq => l.max_seq < self.from,
            RangeKind::Ts => l.max_ts < self.from,
            RangeKind::BlockTime => l.block_time_ms < self.from,
        }
    }

    /// Whether this leaf and every one after it lie after the range (block time only: a
    /// late `seq` or `ts` may come at any point).
    fn all_after(&self, l: &StreamLeaf) -> bool {
        self.kind == RangeKind::BlockTime && l.block_time_ms > self.to
    }
}

/// A complete-range proof, borrowed from wherever it was parsed.
#[derive(Debug, Clone, Copy)]
pub struct RangeProof<'a> {
    /// The device.
    pub device: DeviceAddress,
    /// The stream.
    pub stream: &'a str,
    /// The range the answer claims to hold completely.
    pub range: Range,
    /// The final header whose state root commits to the stream's accumulator.
    pub header: Header,
    /// Headers after `header` up to the certified one (empty: `header` is certified).
    pub descendants: &'a [Header],
    /// Its finality certificate.
    pub certificate: Certificate<'a>,
    /// Trie nodes from the state root to the accumulator (or to where it would be).
    pub state_proof: &'a [&'a [u8]],
    /// Leaves in the accumulator (its count, as the state commits to it).
    pub count: u64,
    /// Position of the first leaf shown.
    pub first: u64,
    /// The leaves shown: from just before the range to just after it (or to the stream's
    /// end), encoded ([`StreamLeaf::encode`]).
    pub leaves: &'a [[u8; STREAM_LEAF_LEN]],
    /// The accumulator range proof of those leaves.
    pub mmr_proof: &'a [Hash],
    /// The answer's readings (their messages), in the answer's order.
    pub readings: &'a [&'a [u8]],
    /// Whether the answer lists them newest first.
    pub descending: bool,
}

/// Which part of a range proof fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeProofError {
    /// The header is not of this chain or not the certified one.
    Header(HeaderError),
    /// The finality certificate does not check against the validator set.
    Certificate(CertificateError),
    /// The trie nodes do not lead from the header's state root to the accumulator.
    StateProof(MptError),
    /// The state holds no accumulator for the stream, or another count than claimed.
    AccumulatorCount {
        /// What the state commits to (0: no accumulator).
        committed: u64,
        /// What the proof claims.
        claimed: u64,
    },
    /// The state's accumulator record is malformed.
    AccumulatorRecord,
    /// The leaves shown and the proof do not give the committed accumulator root: a reading
    /// was left out, added, moved or changed.
    Accumulator(MmrError),
    /// The first leaf shown is neither the stream's first nor before the range: readings
    /// before it may be in the range.
    WindowStart {
        /// Its position.
        position: u64,
    },
    /// The last leaf shown is neither the stream's last nor after the range.
    WindowEnd {
        /// Its position.
        position: u64,
    },
    /// A reading of the range is not in the answer.
    Missing {
        /// Its position in the stream.
        position: u64,
    },
    /// The answer holds a reading the range does not (more readings than the range has).
    Extra {
        /// Its place in the answer.
        index: usize,
    },
    /// An answer's reading is not the one at its place in the stream.
    Mismatch {
        /// Its place in the answer.
        index: usize,
        /// What differs.
        what: &'static str,
    },
    /// An answer's reading is not a well-formed reading.
    Message {
        /// Its place in the answer.
        index: usize,
        /// Why.
        error: ReadingError,
    },
}

impl fmt::Display for RangeProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(e) => write!(f, "header: {e}"),
            Self::Certificate(e) => write!(f, "finality certificate: {e}"),
            Self::StateProof(e) => write!(f, "state proof: {e}"),
            Self::AccumulatorCount { committed, claimed } => write!(
                f,
                "accumulator: the state commits to {committed} readings of the stream, the \
                 proof claims {claimed}"
            ),
            Self::AccumulatorRecord => f.write_str("accumulator: the state's record is malformed"),
            Self::Accumulator(e) => write!(
                f,
                "accumulator: the readings shown are not the stream's ({e}): one was left \
                 out, added, moved or changed"
            ),
            Self::WindowStart { position } => write!(
                f,
                "boundary: the first reading shown (position {position}) is neither the \
                 stream's first nor before the range"
            ),
            Self::WindowEnd { position } => write!(
                f,
                "boundary: the last reading shown (position {position}) is neither the \
                 stream's last nor after the range"
            ),
            Self::Missing { position } => write!(
                f,
                "completeness: the reading at position {position} of the stream is in the \
                 range and not in the answer"
            ),
            Self::Extra { index } => write!(
                f,
                "completeness: reading {index} of the answer is not a reading of the range"
            ),
            Self::Mismatch { index, what } => write!(
                f,
                "reading {index} of the answer is not the stream's reading at its place: \
                 {what} differs"
            ),
            Self::Message { index, error } => write!(f, "reading {index} of the answer: {error}"),
        }
    }
}

/// What a valid range proof establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedRange {
    /// Readings of the range (all of them are in the answer).
    pub readings: u64,
    /// Readings of the stream as of the certified header.
    pub stream_count: u64,
    /// Height of the certified header.
    pub height: u64,
    /// Its hash.
    pub header_hash: Hash,
}

/// Checks every part of a range proof against a chain (its id and validator set).
pub fn verify_range_proof(
    p: &RangeProof<'_>,
    chain_id: u64,
    validators: &[Hash],
) -> Result<VerifiedRange, RangeProofError> {
    let tip = follow(chain_id, &p.header, p.descendants).map_err(RangeProofError::Header)?;
    certifies(&p.certificate, tip).map_err(RangeProofError::Header)?;
    verify_certificate(&p.certificate, validators).map_err(RangeProofError::Certificate)?;
    let key = accumulator_key(&p.device, p.stream);
    let value = verify_mpt(&p.header.state_root, &key, p.state_proof)
        .map_err(RangeProofError::StateProof)?;
    let verified = |readings| VerifiedRange {
        readings,
        stream_count: p.count,
        height: p.header.height,
        header_hash: p.header.hash(),
    };
    let Some(value) = value else {
        // No accumulator: the stream has no readings, and neither has the answer.
        if p.count != 0 {
            return Err(RangeProofError::AccumulatorCount {
                committed: 0,
                claimed: p.count,
            });
        }
        if !p.readings.is_empty() {
            return Err(RangeProofError::Extra { index: 0 });
        }
        return Ok(verified(0));
    };
    let (count, root) = decode_accumulator(value)
        .filter(|(count, _)| *count > 0)
        .ok_or(RangeProofError::AccumulatorRecord)?;
    if count != p.count {
        return Err(RangeProofError::AccumulatorCount {
            committed: count,
            claimed: p.count,
        });
    }
    let shown = p.leaves.len() as u64;
    if shown == 0 {
        return Err(RangeProofError::Accumulator(MmrError::BadRange {
            first: p.first,
            end: p.first,
            count,
        }));
    }
    let last = p.first.saturating_add(shown - 1);
    verify_range(
        count,
        p.first,
        last,
        p.leaves.iter().map(|l| iotchain_merkle::leaf_hash(l)),
        p.mmr_proof,
        &root,
    )
    .map_err(RangeProofError::Accumulator)?;
    let leaf = |i: usize| StreamLeaf::decode(&p.leaves[i]);
    if p.first != 0 && !p.range.all_before(&leaf(0)) {
        return Err(RangeProofError::WindowStart { position: p.first });
    }
    if last != count - 1 && !p.range.all_after(&leaf(p.leaves.len() - 1)) {
        return Err(RangeProofError::WindowEnd { position: last });
    }
    let n = p.readings.len();
    let mut taken = 0usize;
    for (i, position) in (0..p.leaves.len()).zip(p.first..) {
        let l = leaf(i);
        if !p.range.takes(&l) {
            continue;
        }
        if taken == n {
            return Err(RangeProofError::Missing { position });
        }
        let at = |k: usize| if p.descending { n - 1 - k } else { k };
        let index = at(taken);
        if let Err(e) = check_reading(p, index, &l) {
            return Err(explain(p, e, index, &l, position));
        }
        taken += 1;
    }
    if taken < n {
        let index = if p.descending { n - 1 - taken } else { taken };
        return Err(RangeProofError::Extra { index });
    }
    Ok(verified(taken as u64))
}

/// Says why the answer's reading `index` is not the range's reading at
/// `position`: the leaf's reading is missing (the answer goes on with later ones), the two
/// are out of order (both in the answer), the answer's reading is not of the range (an
/// addition), or it was changed.
fn explain(
    p: &RangeProof<'_>,
    e: RangeProofError,
    index: usize,
    leaf: &StreamLeaf,
    position: u64,
) -> RangeProofError {
    let RangeProofError::Mismatch {
        what: "the message (its id)",
        ..
    } = e
    else {
        return e;
    };
    let n = p.readings.len();
    let id_of = |k: usize| iotchain_reading::decode(p.readings[k]).ok().map(|r| r.id());
    let answer_has = |id: &[u8; 32]| (0..n).any(|k| id_of(k).as_ref() == Some(id));
    let Some(got) = id_of(index) else {
        return e;
    };
    let later_leaf = p
        .leaves
        .iter()
        .map(StreamLeaf::decode)
        .any(|l| p.range.takes(&l) && l.id == got);
    match (later_leaf, answer_has(&leaf.id)) {
        (true, true) => RangeProofError::Mismatch {
            index,
            what: "its place (the answer's order is not the stream's)",
        },
        (true, false) => RangeProofError::Missing { position },
        (false, true) => RangeProofError::Extra { index },
        // Neither is elsewhere: the reading was changed or replaced.
        (false, false) => e,
    }
}

fn check_reading(p: &RangeProof<'_>, index: usize, l: &StreamLeaf) -> Result<(), RangeProofError> {
    let r = iotchain_reading::decode(p.readings[index])
        .map_err(|error| RangeProofError::Message { index, error })?;
    let what = if r.id() != l.id {
        "the message (its id)"
    } else if r.device != p.device {
        "the device"
    } else if r.stream != p.stream {
        "the stream"
    } else if r.seq != l.seq {
        "the seq"
    } else if r.ts != l.ts {
        "the ts"
    } else {
        return Ok(());
    };
    Err(RangeProofError::Mismatch { index, what })
}

/// The accumulator record in the trie: RLP `[count, root]`.
fn decode_accumulator(value: &[u8]) -> Option<(u64, Hash)> {
    let (true, payload, []) = rlp_item(value)? else {
        return None;
    };
    let mut items = [(false, &[][..]); 17];
    if rlp_list(payload, &mut items)? != 2 {
        return None;
    }
    let ((false, count), (false, root)) = (items[0], items[1]) else {
        return None;
    };
    if count.len() > 8 || count.first() == Some(&0) || root.len() != 32 {
        return None;
    }
    let count = count.iter().fold(0u64, |v, b| v << 8 | u64::from(*b));
    Some((count, root.try_into().ok()?))
}
