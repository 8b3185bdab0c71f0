//! The block-sync wire format: finalized blocks with their certificates, as JSON.

use alloy_primitives::Bytes;
use serde::{Deserialize, Serialize};

use crate::FinalityCertificate;

/// A finalized block as block sync carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncBlock {
    /// The block's RLP (`[header, items]`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x([0-9a-f]{2})*$"))]
    pub block: Bytes,
    /// Its finality certificate.
    pub certificate: FinalityCertificate,
}

/// A page of consecutive finalized blocks (`GET /v1/sync/{height}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncBlocks {
    /// Blocks from the requested height on, oldest first; empty when there is none yet.
    pub blocks: Vec<SyncBlock>,
}
