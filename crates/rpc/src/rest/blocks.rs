//! Final blocks, and the pages of blocks with certificates that block sync fetches.

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use axum::{Json, extract::State};
use iotchain_api::ChainQuery;
use iotchain_block::{BlockItem, FinalityCertificate, Header, SignedTx, SyncBlock, SyncBlocks};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    cbor_json::data_json,
    off_thread,
    openapi::{Address20, ErrorBody, Hash32, ReadingData},
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

/// Query of `GET /v1/blocks/{height}/items`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ItemsQuery {
    /// Skip this many of the block's readings (default 0).
    #[serde(default)]
    #[param(required = false)]
    offset: usize,
    /// Most readings in the answer, 1 to 1000 (default 100). Transactions are always all
    /// given.
    #[serde(default)]
    #[param(required = false, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A reading of a block, as the block holds it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockReadingJson {
    /// Its position among the block's items (readings and transactions).
    index: usize,
    /// The reading id (a leaf of the header's `readings_root`).
    #[schema(value_type = Hash32)]
    id: B256,
    /// The device.
    #[schema(value_type = Address20)]
    device: String,
    /// The device's `seq`.
    seq: u64,
    /// The device's time, ms.
    ts: u64,
    /// The stream.
    stream: String,
    /// The data as JSON (see "Reading data as JSON").
    #[schema(value_type = ReadingData)]
    data: Option<serde_json::Value>,
}

/// A transaction of a block.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockTransactionJson {
    /// Its position among the block's items.
    index: usize,
    /// `owner` (a device registry transaction) or `ethereum`.
    kind: &'static str,
    /// The transaction hash (keccak256 of its bytes).
    #[schema(value_type = Hash32)]
    hash: B256,
    /// An owner transaction's signer (absent for Ethereum ones: see `eth_getTransactionByHash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Address20>)]
    owner: Option<alloy_primitives::Address>,
    /// An owner transaction's nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<u64>,
    /// An owner transaction's operation: `{"type": "register"|"rotate"|"revoke", …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    op: Option<serde_json::Value>,
}

/// What a final block holds: a page of its readings and all its transactions.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockItemsJson {
    /// The block height.
    height: u64,
    /// The header hash.
    #[schema(value_type = Hash32)]
    hash: B256,
    /// How many readings the block holds in all.
    reading_count: usize,
    /// The readings from `offset` on (at most `limit`), in block order.
    readings: Vec<BlockReadingJson>,
    /// The block's transactions, owner and Ethereum ones, in block order.
    transactions: Vec<BlockTransactionJson>,
}

#[utoipa::path(
    get,
    path = "/v1/blocks/{height}/items",
    tag = "chain",
    params(("height" = u64, Path, description = "Block height (genesis is 0)"), ItemsQuery),
    responses(
        (status = 200, description = "The readings (a page) and transactions of the final block at `height`", body = BlockItemsJson),
        (status = 400, description = "`bad_height`, `bad_limit`, `bad_path`, `bad_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: no final block at `height` yet", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_block_items<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(height): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Result<Json<BlockItemsJson>, ApiError> {
    let height = parse_height(&height)?;
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let node = shared.node.clone();
    let chain_id = node.genesis().chain_id;
    let block = off_thread(move || {
        node.block(height)?
            .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))
    })
    .await?;
    let mut readings = Vec::new();
    let mut transactions = Vec::new();
    let mut reading_count = 0;
    for (index, item) in block.items.iter().enumerate() {
        match item {
            BlockItem::Reading(message) => {
                reading_count += 1;
                if reading_count <= q.offset || readings.len() >= limit {
                    continue;
                }
                // A final block's readings were checked when it was built.
                let Ok(r) = iotchain_reading::decode(message) else {
                    continue;
                };
                readings.push(BlockReadingJson {
                    index,
                    id: B256::from(iotchain_reading::reading_id(message)),
                    device: r.device.to_string(),
                    seq: r.seq,
                    ts: r.ts,
                    stream: r.stream.to_string(),
                    data: data_json(r.data),
                });
            }
            BlockItem::Tx(bytes) => {
                let tx = SignedTx::decode_and_check(bytes, chain_id).ok();
                transactions.push(BlockTransactionJson {
                    index,
                    kind: "owner",
                    hash: alloy_primitives::keccak256(bytes),
                    owner: tx.as_ref().map(|t| t.owner),
                    nonce: tx.as_ref().map(|t| t.nonce),
                    op: tx.and_then(|t| serde_json::to_value(&t.op).ok()),
                });
            }
            BlockItem::EthTx(bytes) => transactions.push(BlockTransactionJson {
                index,
                kind: "ethereum",
                hash: alloy_primitives::keccak256(bytes),
                owner: None,
                nonce: None,
                op: None,
            }),
        }
    }
    Ok(Json(BlockItemsJson {
        height,
        hash: block.header.hash(),
        reading_count,
        readings,
        transactions,
    }))
}

/// Query of `GET /v1/blocks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListBlocksQuery {
    /// The newest block wanted (default: the head).
    to: Option<u64>,
    /// Most blocks in the answer, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `true`: only blocks that hold transactions (owner or Ethereum ones), looking back at
    /// most 10,000 blocks per answer.
    has_transactions: Option<bool>,
}

/// A page of final blocks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockListJson {
    /// The blocks, newest first (certificates left out: see `/v1/blocks/{height}`).
    blocks: Vec<BlockSummaryJson>,
    /// Pass as `to` for the next (older) page; `null` at genesis.
    next_to: Option<u64>,
}

/// A block's hash and header.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BlockSummaryJson {
    /// The header hash.
    #[schema(value_type = Hash32)]
    hash: B256,
    /// The header.
    header: Header,
}

/// Most headers one `GET /v1/blocks?has_transactions=true` looks at.
const SCAN_LIMIT: u64 = 10_000;

#[utoipa::path(
    get,
    path = "/v1/blocks",
    tag = "chain",
    params(ListBlocksQuery),
    responses(
        (status = 200, description = "Final blocks, newest first", body = BlockListJson),
        (status = 400, description = "`bad_limit`, `bad_query`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn list_blocks<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Query(q): Query<ListBlocksQuery>,
) -> Result<Json<BlockListJson>, ApiError> {
    let limit = super::page_limit(q.limit, 20, 100)?;
    let node = shared.node.clone();
    let only_tx = q.has_transactions.unwrap_or(false);
    let to = q.to.unwrap_or(u64::MAX).min(node.head().height);
    off_thread(move || {
        let mut blocks = Vec::new();
        let mut h = Some(to);
        let floor = if only_tx {
            to.saturating_sub(SCAN_LIMIT - 1)
        } else {
            0
        };
        while let Some(height) = h.filter(|h| *h >= floor && blocks.len() < limit) {
            let header = node
                .header(height)?
                .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
            if !only_tx || header.transaction_count > 0 {
                blocks.push(BlockSummaryJson {
                    hash: header.hash(),
                    header,
                });
            }
            h = height.checked_sub(1);
        }
        Ok(Json(BlockListJson { blocks, next_to: h }))
    })
    .await
}
