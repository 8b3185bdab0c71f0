//! Proven answers of `GET /v1/devices/{address}/readings?…&proof=true`: the whole range, with a
//! complete-range proof that `iotchain verify` and the light client check.

use iotchain_api::NoStreamProof;
use iotchain_block::RangeProofJson;
use iotchain_reading::DeviceAddress;
use iotchain_storage::StreamRange;

use crate::{ApiError, NodeApi};

/// Most readings a proven answer holds (its `limit` may go up to this).
pub(crate) const MAX_PROVEN_READINGS: usize = 10_000;
/// Most leaves a range proof shows (the range's readings and, for a `seq` or `ts` range, the
/// readings after it: a late one may come at any point).
pub(crate) const MAX_PROOF_LEAVES: u64 = 50_000;

/// The readings of a range and its proof, or why there is none.
pub(crate) fn proven<N: NodeApi>(
    node: &N,
    device: &DeviceAddress,
    stream: Option<&str>,
    range: &StreamRange,
    descending: bool,
    limit: usize,
) -> Result<(Vec<iotchain_storage::StreamEntry>, RangeProofJson), ApiError> {
    let stream = stream.ok_or_else(|| {
        ApiError::bad_request(
            "bad_query",
            "proof=true proves one stream: name it with stream=",
        )
    })?;
    let kinds = [
        range.seq.is_some(),
        range.ts.is_some(),
        range.block_time.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(ApiError::bad_request(
            "bad_range",
            "a proven answer has one kind of range: from_seq/to_seq, from_ts/to_ts or \
             from_time/to_time",
        ));
    }
    let proof = match node.stream_proof(device, stream, range, descending, MAX_PROOF_LEAVES)? {
        Ok(p) => p,
        Err(NoStreamProof::NotKept) => {
            return Err(ApiError::bad_request(
                "no_accumulators",
                "this chain keeps no stream accumulators (its genesis predates them: \
                 params.stream_accumulators): prove readings one by one with \
                 GET /v1/readings/{id}/proof",
            ));
        }
        Err(NoStreamProof::Untracked) => {
            return Err(ApiError::bad_request(
                "untracked_stream",
                format!(
                    "stream {stream:?} is not one of the device's first {} streams, whose \
                     readings the chain accumulates: it has no range proofs",
                    iotchain_state::MAX_STREAMS
                ),
            ));
        }
        Err(NoStreamProof::TooLarge(n)) => {
            return Err(ApiError::bad_request(
                "proof_too_large",
                format!(
                    "a complete proof of this range shows {n} readings of the stream, more \
                     than {MAX_PROOF_LEAVES}: narrow it (a block-time range, from_time/to_time, \
                     shows only the readings in it and one on each side; a seq or ts range also \
                     shows every reading after it)"
                ),
            ));
        }
    };
    if proof.entries.len() > limit {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!(
                "the range holds {} readings, more than limit {limit}: a proven answer is \
                 whole, so narrow the range or raise limit (up to {MAX_PROVEN_READINGS})",
                proof.entries.len()
            ),
        ));
    }
    Ok((proof.entries, proof.proof))
}
