//! Complete-range proofs (docs/formats.md): a device stream's accumulator as the last final
//! state commits to it, the trie proof of it, and the window of the stream index around a
//! range, with the proof hashes of the accumulator's other leaves.

use alloy_primitives::{Address, B256, Bytes};
use iotchain_api::{ChainQuery, NoStreamProof, QueryError, QueryResult, StreamProof};
use iotchain_block::{RangeJson, RangeKindJson, RangeProofJson};
use iotchain_reading::DeviceAddress;
use iotchain_storage::{ProofBound, StreamRange, Window};

use crate::Engine;

fn storage(e: impl std::fmt::Display) -> QueryError {
    QueryError::storage(e)
}

/// The range as a proof names it: the bound the stream window is over.
fn range_json(range: &StreamRange) -> RangeJson {
    let (kind, bounds) = match range.proof_bound() {
        ProofBound::BlockTime(b) => (RangeKindJson::BlockTime, Some(b)),
        ProofBound::Seq(b) => (RangeKindJson::Seq, Some(b)),
        ProofBound::Ts(b) => (RangeKindJson::Ts, Some(b)),
        ProofBound::All => (RangeKindJson::All, None),
    };
    RangeJson {
        kind,
        from: bounds.map(|b| b.0),
        to: bounds.map(|b| b.1),
    }
}

pub(crate) fn stream_proof(
    engine: &Engine,
    device: &DeviceAddress,
    stream: &str,
    range: &StreamRange,
    descending: bool,
    max_leaves: u64,
) -> QueryResult<Result<StreamProof, NoStreamProof>> {
    let inner = &engine.inner;
    if !inner.genesis.params.stream_accumulators {
        return Ok(Err(NoStreamProof::NotKept));
    }
    let store = &inner.store;
    // The committed state and the block it is the state after change together, under this
    // lock (see the commit).
    let (state, head) = {
        let committed = inner.committed.read();
        (committed.clone(), *inner.head.borrow())
    };
    let header = store
        .header(head.height)
        .map_err(storage)?
        .ok_or_else(|| storage("head header missing"))?;
    let (certificate, descendants) = crate::query::certified(store, head.height)?;
    let accumulator = state.accumulator(device, stream);
    let count = accumulator.map_or(0, |a| a.peaks.count());
    let (first, leaves, mmr_proof, entries) = match accumulator {
        None => {
            if engine.streams(device)?.iter().any(|s| s.stream == stream) {
                return Ok(Err(NoStreamProof::Untracked));
            }
            (0, Vec::new(), Vec::new(), Vec::new())
        }
        Some(_) => match store
            .stream_window(&device.0, stream, range, count, max_leaves)
            .map_err(storage)?
        {
            Window::Empty => return Err(storage("a stream with an accumulator is not indexed")),
            Window::TooLarge(n) => return Ok(Err(NoStreamProof::TooLarge(n))),
            Window::Proven(w) => (w.first, w.leaves, w.proof, w.entries),
        },
    };
    let mut entries = entries;
    if descending {
        entries.reverse();
    }
    let proof = RangeProofJson {
        version: 1,
        device: Address::from(device.0),
        stream: stream.to_string(),
        range: range_json(range),
        order: if descending { "desc" } else { "asc" }.into(),
        header,
        descendants,
        certificate,
        state_proof: state
            .accumulator_proof(device, stream)
            .map_err(QueryError::storage)?,
        count,
        first,
        leaves: leaves
            .iter()
            .map(|l| Bytes::copy_from_slice(&l.encode()))
            .collect(),
        mmr_proof: mmr_proof.into_iter().map(B256::from).collect(),
    };
    Ok(Ok(StreamProof { proof, entries }))
}
