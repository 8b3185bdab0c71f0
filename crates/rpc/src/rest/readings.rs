//! A reading's status and proof, a transaction's status.

use std::sync::Arc;

use alloy_primitives::B256;
use axum::{Json, extract::State};
use iotchain_api::{ReadingStatus, TxStatus};
use iotchain_block::ProofBundle;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    off_thread,
    openapi::{ErrorBody, ErrorDetail, Hash32},
    parse_b256, wait_final,
};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
};

/// Query of the status of an item.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// Wait up to this many ms (at most 60,000) for the item to be final or refused.
    wait_ms: Option<u64>,
}

/// Where a reading stands (`status`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(super) enum ReadingStatusJson {
    /// Accepted and durable on this node, waiting for a block.
    Pending {
        /// The reading id.
        #[schema(value_type = Hash32)]
        id: B256,
        /// When this node accepted it, ms since the Unix epoch.
        arrival_ms: u64,
        /// The device's time in the reading, ms.
        ts: u64,
        /// `arrival_ms − ts` (negative when the device's clock runs ahead).
        delay_ms: i64,
    },
    /// In a final block.
    Final {
        /// The reading id.
        #[schema(value_type = Hash32)]
        id: B256,
        /// The block's height.
        height: u64,
        /// Its position among the block's readings (its Merkle leaf index).
        index: u32,
        /// When this node accepted it, ms since the Unix epoch.
        arrival_ms: u64,
        /// The device's time; `null` for readings finalized by a node version that did not
        /// index it.
        ts: Option<u64>,
        /// `arrival_ms − ts`; `null` when `ts` is.
        delay_ms: Option<i64>,
        /// The block's time, ms.
        block_time_ms: u64,
    },
    /// Acknowledged by this node, then refused for good by a final block.
    Refused {
        /// The reading id.
        #[schema(value_type = Hash32)]
        id: B256,
        /// The block after which it no longer applied.
        height: u64,
        /// Why (`replayed_seq`, `revoked_device`, `rotated_key`, …).
        error: ErrorDetail,
    },
}

#[utoipa::path(
    get,
    path = "/v1/readings/{id}",
    tag = "readings",
    params(("id" = String, Path, description = "The reading id (32 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{64}$"), WaitQuery),
    responses(
        (status = 200, description = "Pending, final or refused", body = ReadingStatusJson),
        (status = 400, description = "`bad_id`, `bad_path`, `bad_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: this node does not know the reading", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_reading<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<ReadingStatusJson>, ApiError> {
    let node = &shared.node;
    let id = parse_b256(&id, "reading id")?;
    wait_final(node, q.wait_ms, || {
        Ok(matches!(
            node.reading_status(&id)?,
            Some(ReadingStatus::Final { .. } | ReadingStatus::Refused(_)) | None
        ))
    })
    .await?;
    match node.reading_status(&id)? {
        None => Err(ApiError::not_found(format!("reading {id} is unknown"))),
        Some(ReadingStatus::Pending { arrival_ms, ts }) => Ok(Json(ReadingStatusJson::Pending {
            id,
            arrival_ms,
            ts,
            delay_ms: iotchain_storage::delay_ms(arrival_ms, ts),
        })),
        Some(ReadingStatus::Refused(r)) => Ok(Json(ReadingStatusJson::Refused {
            id: r.id,
            height: r.height,
            error: ErrorDetail {
                code: r.code,
                message: r.message,
            },
        })),
        Some(ReadingStatus::Final {
            location,
            block_time_ms,
        }) => Ok(Json(ReadingStatusJson::Final {
            id,
            height: location.height,
            index: location.index,
            arrival_ms: location.arrival_ms,
            ts: location.ts,
            delay_ms: location.delay_ms(),
            block_time_ms,
        })),
    }
}

#[utoipa::path(
    get,
    path = "/v1/readings/{id}/proof",
    tag = "readings",
    params(("id" = String, Path, description = "The reading id (32 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The proof bundle (docs/formats.md, \"Proof bundle\"): checked offline with \\
         `iotchain verify` or the light client", body = ProofBundle),
        (status = 400, description = "`bad_id`, `bad_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no final block holds the reading", body = ErrorBody),
        (status = 409, description = "`not_final`: the reading is still pending", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_proof<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(id): Path<String>,
) -> Result<Json<ProofBundle>, ApiError> {
    let id = parse_b256(&id, "reading id")?;
    let node = shared.node.clone();
    let proof = off_thread(move || node.proof(&id).map_err(ApiError::from)).await?;
    Ok(Json(proof))
}

/// Where an owner transaction stands (`status`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(super) enum TxStatusJson {
    /// Accepted, waiting for a block.
    Pending {
        /// The transaction hash.
        #[schema(value_type = Hash32)]
        hash: B256,
    },
    /// In a final block.
    Final {
        /// The transaction hash.
        #[schema(value_type = Hash32)]
        hash: B256,
        /// The block's height.
        height: u64,
    },
    /// Acknowledged by this node, then refused for good by a final block.
    Refused {
        /// The transaction hash.
        #[schema(value_type = Hash32)]
        hash: B256,
        /// The block after which it no longer applied.
        height: u64,
        /// Why (`bad_nonce`, …).
        error: ErrorDetail,
    },
}

#[utoipa::path(
    get,
    path = "/v1/transactions/{hash}",
    tag = "devices",
    params(("hash" = String, Path, description = "The transaction hash (32 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{64}$"), WaitQuery),
    responses(
        (status = 200, description = "Pending, final or refused", body = TxStatusJson),
        (status = 400, description = "`bad_id`, `bad_path`, `bad_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: this node does not know the transaction", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_transaction<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(hash): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<TxStatusJson>, ApiError> {
    let node = &shared.node;
    let hash = parse_b256(&hash, "transaction hash")?;
    wait_final(node, q.wait_ms, || {
        Ok(!matches!(node.tx_status(&hash)?, TxStatus::Pending))
    })
    .await?;
    match node.tx_status(&hash)? {
        TxStatus::Final(loc) => Ok(Json(TxStatusJson::Final {
            hash,
            height: loc.height,
        })),
        TxStatus::Pending => Ok(Json(TxStatusJson::Pending { hash })),
        TxStatus::Refused(r) => Ok(Json(TxStatusJson::Refused {
            hash,
            height: r.height,
            error: ErrorDetail {
                code: r.code,
                message: r.message,
            },
        })),
        TxStatus::Unknown => Err(ApiError::not_found(format!(
            "transaction {hash} is unknown"
        ))),
    }
}
