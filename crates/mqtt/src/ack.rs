//! Acknowledgements published on the ack topic, as JSON.
//!
//! One [`MessageAck`] answers each reading message, with one result per reading in message
//! order; one [`FinalAck`] per block and ack topic reports readings that became final.

use alloy_primitives::B256;
use iotchain_api::PoolError;
use iotchain_reading::ReadingError;
use serde::{Deserialize, Serialize};

/// A rejection: the stable `code` (the same as the HTTP API's) and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckError {
    /// Stable machine-readable code, e.g. `replayed_seq`, `bad_signature`, `malformed_cbor`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl AckError {
    /// A rejection with this code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<&PoolError> for AckError {
    fn from(e: &PoolError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<&ReadingError> for AckError {
    fn from(e: &ReadingError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// The outcome of one reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum AckResult {
    /// Durably accepted: it will be in a block.
    Accepted {
        /// Position of the reading in its message (0 for a single reading).
        index: usize,
        /// Reading id: `SHA-256(0x00 ‖ canonical message)` ([`iotchain_reading::reading_id`]).
        id: B256,
        /// The node already held this reading (a redelivery or a resend): stored once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// Refused for good; resending the same bytes gets the same answer.
    Rejected {
        /// Position of the reading in its message.
        index: usize,
        /// Reading id, when the payload was one reading or a batch element.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<B256>,
        /// Why.
        error: AckError,
    },
    /// In a final block.
    Final {
        /// Reading id.
        id: B256,
        /// Height of the block.
        height: u64,
        /// Position among the block's readings.
        block_index: u64,
    },
    /// Accepted, then refused for good by a final block (another reading took its seq, its
    /// device was revoked or rotated its key first).
    Refused {
        /// Reading id.
        id: B256,
        /// Height of the block after which it no longer applied.
        height: u64,
        /// Why.
        error: AckError,
    },
}

/// What a final block decided for readings the node acknowledged on one ack topic: `"final"`
/// (they are in it) or `"refused"` (they no longer apply after it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAck {
    /// Readings accepted (duplicates included).
    pub accepted: usize,
    /// Readings rejected.
    pub rejected: usize,
    /// One result per reading, in message order.
    pub results: Vec<AckResult>,
}

impl MessageAck {
    /// Counts the results.
    pub fn new(results: Vec<AckResult>) -> Self {
        let accepted = results
            .iter()
            .filter(|r| matches!(r, AckResult::Accepted { .. }))
            .count();
        Self {
            accepted,
            rejected: results.len() - accepted,
            results,
        }
    }
}

/// Readings of one ack topic that became final in one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalAck {
    /// `"final"` or `"refused"`.
    pub status: String,
    /// Height of the block.
    pub height: u64,
    /// Time in the block's header, ms since the Unix epoch.
    pub block_time_ms: u64,
    /// One [`AckResult::Final`] (or [`AckResult::Refused`]) per reading.
    pub results: Vec<AckResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_ack_json() {
        let id = B256::repeat_byte(0xab);
        let e = AckError::new(
            "replayed_seq",
            "reading seq 4 is not greater than last accepted 7",
        );
        let ack = MessageAck::new(vec![
            AckResult::Accepted {
                index: 0,
                id,
                duplicate: false,
            },
            AckResult::Accepted {
                index: 1,
                id,
                duplicate: true,
            },
            AckResult::Rejected {
                index: 2,
                id: Some(id),
                error: e.clone(),
            },
        ]);
        let v = serde_json::to_value(&ack).unwrap();
        let hex = format!("{id}");
        assert_eq!(
            v,
            json!({
                "accepted": 2,
                "rejected": 1,
                "results": [
                    {"status": "accepted", "index": 0, "id": hex},
                    {"status": "accepted", "index": 1, "id": hex, "duplicate": true},
                    {"status": "rejected", "index": 2, "id": hex,
                     "error": {"code": "replayed_seq", "message": "reading seq 4 is not greater than last accepted 7"}},
                ]
            })
        );
        let back: MessageAck = serde_json::from_value(v).unwrap();
        assert_eq!(back, ack);
    }

    #[test]
    fn final_ack_json() {
        let id = B256::repeat_byte(1);
        let ack = FinalAck {
            status: "final".into(),
            height: 9,
            block_time_ms: 1_700_000_000_000,
            results: vec![AckResult::Final {
                id,
                height: 9,
                block_index: 3,
            }],
        };
        let v = serde_json::to_value(&ack).unwrap();
        assert_eq!(
            v["results"][0],
            json!({"status": "final", "id": format!("{id}"), "height": 9, "block_index": 3})
        );
        assert_eq!(v["status"], "final");
    }
}
