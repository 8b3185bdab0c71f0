//! Final blocks, and the pages of blocks with certificates that block sync fetches.

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use axum::{Json, extract::State};
use iotchain_api::ChainQuery;
use iotchain_block::{FinalityCertificate, Header, SyncBlock, SyncBlocks};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    off_thread,
    openapi::{ErrorBody, Hash32},
    parse_height,
};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
};

/// A final block's header, its hash and its finality certificate.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockJson {
    /// The header hash (keccak256 of its RLP).
    #[schema(value_type = Hash32)]
    hash: B256,
    /// The header.
    header: Header,
    /// The certificate that finalized it: its own, or a descendant's when it was finalized
    /// through one; `null` for genesis.
    certificate: Option<FinalityCertificate>,
}

#[utoipa::path(
    get,
    path = "/v1/blocks/latest",
    tag = "chain",
    responses(
        (status = 200, description = "The last final block", body = BlockJson),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn latest_block<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
) -> Result<Json<BlockJson>, ApiError> {
    block_json(&shared.node, shared.node.head().height)
}

#[utoipa::path(
    get,
    path = "/v1/blocks/{height}",
    tag = "chain",
    params(("height" = u64, Path, description = "Block height (genesis is 0)")),
    responses(
        (status = 200, description = "The final block at `height`", body = BlockJson),
        (status = 400, description = "`bad_height`: not a number; `bad_path`", body = ErrorBody),
        (status = 404, description = "`not_found`: no final block at `height` yet", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_block<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(height): Path<String>,
) -> Result<Json<BlockJson>, ApiError> {
    block_json(&shared.node, parse_height(&height)?)
}

fn block_json<Q: ChainQuery>(chain: &Q, height: u64) -> Result<Json<BlockJson>, ApiError> {
    let header = chain
        .header(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let certificate = chain.certificate(height)?;
    Ok(Json(BlockJson {
        hash: header.hash(),
        header,
        certificate,
    }))
}

/// Query of `GET /v1/sync/{height}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SyncQuery {
    /// Wait up to this many ms (at most 10,000) for the block at `height` to be final.
    #[serde(default)]
    #[param(required = false)]
    wait_ms: u64,
    /// Most blocks in the answer (default and limit 64; fewer when they are large).
    #[serde(default)]
    max: Option<u64>,
}

/// Most bytes of blocks in one sync answer.
const SYNC_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Finalized blocks with their certificates, from `height` on: what block sync fetches.
#[utoipa::path(
    get,
    path = "/v1/sync/{height}",
    tag = "chain",
    params(
        ("height" = u64, Path, description = "The first block wanted (at least 1: genesis comes from the genesis file)"),
        SyncQuery,
    ),
    responses(
        (status = 200, description = "Consecutive final blocks from `height` on (at most `max`, about 8 MiB); \
         none when `height` is not final (within `wait_ms`)", body = SyncBlocks),
        (status = 400, description = "`bad_height`: not a number, or 0; `bad_path`, `bad_query`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_sync<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(height): Path<String>,
    Query(q): Query<SyncQuery>,
) -> Result<Json<SyncBlocks>, ApiError> {
    let from = parse_height(&height)?;
    if from == 0 {
        return Err(ApiError::bad_request(
            "bad_height",
            "sync starts at height 1 (the genesis block comes from the genesis file)",
        ));
    }
    let node = shared.node.clone();
    if node.head().height < from && q.wait_ms > 0 {
        let mut head = node.subscribe_head();
        let wait = Duration::from_millis(q.wait_ms.min(10_000));
        let _ = tokio::time::timeout(wait, head.wait_for(|h| h.height >= from)).await;
    }
    let max = q.max.unwrap_or(64).clamp(1, 64);
    let page = off_thread(move || sync_page(&node, from, max)).await?;
    Ok(Json(page))
}

fn sync_page<Q: ChainQuery>(chain: &Q, from: u64, max: u64) -> Result<SyncBlocks, ApiError> {
    let head = chain.head().height;
    let mut out = SyncBlocks::default();
    let mut bytes = 0usize;
    let mut last = head.min(from.saturating_add(max - 1));
    let mut h = from;
    while h <= last {
        let (Some(block), Some(certificate)) = (chain.block(h)?, chain.certificate(h)?) else {
            break;
        };
        let rlp = block.encode_rlp();
        bytes += rlp.len();
        // A block finalized through a descendant is only importable with that descendant:
        // a page never ends between them.
        let certified_here = certificate.height == h;
        out.blocks.push(SyncBlock {
            block: rlp.into(),
            certificate,
        });
        if !certified_here {
            // Reach the certified descendant, past the page's size limits if need be (at
            // most the depth simplex leaves unfinalized, bounded by the head).
            last = last.max(h + 1).min(head);
        } else if bytes >= SYNC_PAGE_BYTES {
            break;
        }
        h += 1;
    }
    Ok(out)
}
