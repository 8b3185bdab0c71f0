//! Complete-range proofs in JSON: the `range_proof` of a range answer
//! (`GET /v1/devices/{address}/readings?…&proof=true`), checked by the light client.

use alloy_primitives::{Address, B256, Bytes};
use iotchain_reading::{DeviceAddress, STREAM_LEAF_LEN};
use serde::{Deserialize, Serialize};

use crate::{FinalityCertificate, Genesis, Header};

/// What a range is over, in JSON: `{"kind": "all"|"seq"|"ts"|"block_time", "from", "to"}`
/// (bounds inclusive; absent for `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeJson {
    /// `all`, `seq`, `ts` (device time, ms) or `block_time` (ms).
    pub kind: RangeKindJson,
    /// Lowest value taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Highest value taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// The kinds of [`RangeJson`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RangeKindJson {
    /// The whole stream.
    All,
    /// Device `seq`.
    Seq,
    /// Device time.
    Ts,
    /// Block time.
    BlockTime,
}

/// A complete-range proof (docs/formats.md, "Complete-range proofs").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeProofJson {
    /// Format version, 1.
    pub version: u32,
    /// The device address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{40}$"))]
    pub device: Address,
    /// The stream.
    pub stream: String,
    /// The range the answer holds completely.
    pub range: RangeJson,
    /// `asc` or `desc`: the order of the answer's readings.
    pub order: String,
    /// The final header whose state root commits to the stream's accumulator.
    pub header: Header,
    /// The headers after `header` up to the certified one, when the block was finalized
    /// through a descendant; empty when the certificate is for `header` itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descendants: Vec<Header>,
    /// The finality certificate: of `header`, or of the last of `descendants`.
    pub certificate: FinalityCertificate,
    /// Trie nodes from the state root to the accumulator (or to where it would be).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub state_proof: Vec<Bytes>,
    /// Readings in the stream's accumulator, as the state commits to it.
    pub count: u64,
    /// Position of the first leaf shown.
    pub first: u64,
    /// The leaves shown (80 bytes each), from just before the range to just after it (or to
    /// the end of the stream).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub leaves: Vec<Bytes>,
    /// The accumulator's range proof of those leaves.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub mmr_proof: Vec<B256>,
}

/// What a valid range proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedRange {
    /// Readings of the range: all in the answer.
    pub readings: u64,
    /// Readings of the stream at the certified height.
    pub stream_count: u64,
    /// The certified height.
    pub height: u64,
    /// Its header hash.
    pub header_hash: B256,
}

impl RangeProofJson {
    /// Checks the proof, with the answer's reading messages (in the answer's order), against
    /// a genesis (chain id and validators). The error names the part that fails.
    pub fn verify(&self, genesis: &Genesis, readings: &[Bytes]) -> Result<VerifiedRange, String> {
        if self.version != 1 {
            return Err(format!("unsupported range proof version {}", self.version));
        }
        let descending = match self.order.as_str() {
            "asc" => false,
            "desc" => true,
            other => return Err(format!("order is asc or desc, not {other:?}")),
        };
        let kind = match self.range.kind {
            RangeKindJson::All => iotchain_light::RangeKind::All,
            RangeKindJson::Seq => iotchain_light::RangeKind::Seq,
            RangeKindJson::Ts => iotchain_light::RangeKind::Ts,
            RangeKindJson::BlockTime => iotchain_light::RangeKind::BlockTime,
        };
        let range = iotchain_light::Range {
            kind,
            from: self.range.from.unwrap_or(0),
            to: self.range.to.unwrap_or(u64::MAX),
        };
        let leaves = self
            .leaves
            .iter()
            .enumerate()
            .map(|(i, l)| {
                <[u8; STREAM_LEAF_LEN]>::try_from(l.as_ref())
                    .map_err(|_| format!("leaf {i} is {} bytes, not {STREAM_LEAF_LEN}", l.len()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mmr_proof: Vec<[u8; 32]> = self.mmr_proof.iter().map(|h| h.0).collect();
        let state_proof: Vec<&[u8]> = self.state_proof.iter().map(|n| n.as_ref()).collect();
        let messages: Vec<&[u8]> = readings.iter().map(|m| m.as_ref()).collect();
        let signatures = self
            .certificate
            .light_signatures()
            .map_err(|e| format!("finality certificate: {e}"))?;
        let descendants: Vec<iotchain_light::Header> =
            self.descendants.iter().map(Header::to_light).collect();
        let proof = iotchain_light::RangeProof {
            device: DeviceAddress(self.device.0.0),
            stream: &self.stream,
            range,
            header: self.header.to_light(),
            descendants: &descendants,
            certificate: self.certificate.as_light(&signatures),
            state_proof: &state_proof,
            count: self.count,
            first: self.first,
            leaves: &leaves,
            mmr_proof: &mmr_proof,
            readings: &messages,
            descending,
        };
        let validators: Vec<[u8; 32]> = genesis.validator_keys().iter().map(|v| v.0).collect();
        let v = iotchain_light::verify_range_proof(&proof, genesis.chain_id, &validators)
            .map_err(|e| e.to_string())?;
        Ok(VerifiedRange {
            readings: v.readings,
            stream_count: v.stream_count,
            height: v.height,
            header_hash: B256::from(v.header_hash),
        })
    }
}
