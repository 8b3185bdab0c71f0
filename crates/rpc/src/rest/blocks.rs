//! Final blocks, and the pages of blocks with certificates that block sync fetches.

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State};
use iotchain_api::ChainQuery;
use iotchain_block::{SyncBlock, SyncBlocks};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{off_thread, parse_height};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
};

pub(super) async fn latest_block<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
) -> Result<Json<Value>, ApiError> {
    block_json(&shared.node, shared.node.head().height)
}

pub(super) async fn get_block<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(height): Path<String>,
) -> Result<Json<Value>, ApiError> {
    block_json(&shared.node, parse_height(&height)?)
}

fn block_json<Q: ChainQuery>(chain: &Q, height: u64) -> Result<Json<Value>, ApiError> {
    let header = chain
        .header(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let certificate = chain.certificate(height)?;
    Ok(Json(
        json!({"hash": header.hash(), "header": header, "certificate": certificate}),
    ))
}

/// Query of `GET /v1/sync/{height}`.
#[derive(Debug, Deserialize)]
pub(super) struct SyncQuery {
    /// Wait up to this long (at most 10 s) for the block at `height` to be final.
    #[serde(default)]
    wait_ms: u64,
    /// Most blocks in the answer (default and limit 64; fewer when they are large).
    #[serde(default)]
    max: Option<u64>,
}

/// Most bytes of blocks in one sync answer.
const SYNC_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Finalized blocks with their certificates, from `height` on: what block sync fetches.
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
