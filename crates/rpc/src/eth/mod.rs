//! Ethereum JSON-RPC at `/` (HTTP and WebSocket), served by `jsonrpsee`: what wallets,
//! ethers, viem and web3.py need to send transactions, call and deploy contracts, read
//! receipts and logs, prove state and follow new heads and logs.
//!
//! State is served for the head block (`latest`, `safe`, `finalized`, or its number or hash)
//! and for the pending view (`pending`); an older block is served only while the state root
//! is still the same as at that block, since the node keeps no historical state.

mod batch;
mod blocks;
mod logs;
pub(crate) mod params;
mod state;
mod subscribe;
mod transport;

use iotchain_api::{ChainQuery, QueryError, StateAt};
use iotchain_evm::BlockHashes;
use iotchain_state::State;
use jsonrpsee::RpcModule;

use crate::NodeApi;
use params::{BlockId, RpcError, server_error};

pub(crate) use transport::{http, too_large, ws};

/// Priority fee the node suggests (`eth_maxPriorityFeePerGas`), in wei.
pub(crate) const SUGGESTED_TIP: u64 = 1_000_000_000;
/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;
/// Most subscriptions one WebSocket connection may hold.
pub(crate) const MAX_SUBSCRIPTIONS: u32 = 64;

/// What every method sees.
pub(crate) struct EthCtx<N> {
    pub(crate) node: N,
    /// The node's clock and key, for `net_peerCount`.
    pub(crate) runtime: std::sync::Arc<dyn iotchain_api::Runtime>,
    pub(crate) node_key: alloy_primitives::B256,
}

/// The methods, with their context.
pub(crate) fn module<N: NodeApi>(
    node: N,
    runtime: std::sync::Arc<dyn iotchain_api::Runtime>,
    node_key: alloy_primitives::B256,
) -> RpcModule<EthCtx<N>> {
    let mut m = RpcModule::new(EthCtx {
        node,
        runtime,
        node_key,
    });
    state::register(&mut m);
    blocks::register(&mut m);
    logs::register(&mut m);
    subscribe::register(&mut m);
    m
}

/// A store failure, as JSON-RPC reports it (the cause is logged where it happened).
pub(crate) fn storage(e: QueryError) -> RpcError {
    match e {
        QueryError::Storage(_) => server_error("the node cannot read its store right now"),
        other => server_error(other.to_string()),
    }
}

/// `0x`-hex of a quantity.
pub(crate) fn qty(x: u64) -> serde_json::Value {
    serde_json::json!(format!("{x:#x}"))
}

/// `0x`-hex of a 256-bit quantity.
pub(crate) fn qty_u256(x: alloy_primitives::U256) -> serde_json::Value {
    serde_json::json!(format!("{x:#x}"))
}

/// The height a block parameter names, at or below the head; `None` for a number above the
/// head or an unknown hash.
pub(crate) fn block_height<Q: ChainQuery>(
    chain: &Q,
    id: &BlockId,
) -> Result<Option<u64>, RpcError> {
    let head = chain.head().height;
    match id {
        BlockId::Latest | BlockId::Pending => Ok(Some(head)),
        BlockId::Earliest => Ok(Some(0)),
        BlockId::Number(n) => Ok((*n <= head).then_some(*n)),
        BlockId::Hash(h) => chain.height_of(h).map_err(storage),
    }
}

/// The header at `height`, or a "header not found" error.
pub(crate) fn header_at<Q: ChainQuery>(
    chain: &Q,
    height: u64,
) -> Result<iotchain_block::Header, RpcError> {
    chain
        .header(height)
        .map_err(storage)?
        .ok_or_else(|| server_error(format!("header not found: block {height}")))
}

/// Runs `f` on the state a block parameter names.
pub(crate) fn with_state<Q: ChainQuery, R>(
    chain: &Q,
    id: &BlockId,
    f: impl FnOnce(&State) -> R,
) -> Result<R, RpcError> {
    let height = match id {
        BlockId::Pending => return Ok(chain.with_state(StateAt::Pending, f)),
        BlockId::Latest => return Ok(chain.with_state(StateAt::Committed, f)),
        BlockId::Earliest => 0,
        BlockId::Number(n) => *n,
        BlockId::Hash(hash) => chain
            .height_of(hash)
            .map_err(storage)?
            .ok_or_else(|| server_error(format!("header for hash {hash} not found")))?,
    };
    let head = chain.head();
    if height > head.height {
        return Err(server_error(format!("header not found: block {height}")));
    }
    let root = header_at(chain, height)?.state_root;
    let head_root = header_at(chain, head.height)?.state_root;
    if root != head_root {
        return Err(server_error(format!(
            "missing trie node: the state of block {height} is not kept (only the head's, at {})",
            head.height
        )));
    }
    Ok(chain.with_state(StateAt::Committed, f))
}

/// Block hashes for `BLOCKHASH` in calls: the 256 final blocks below `number`.
pub(crate) struct QueryHashes<'a, Q> {
    pub(crate) chain: &'a Q,
    pub(crate) number: u64,
}

impl<Q: ChainQuery> BlockHashes for QueryHashes<'_, Q> {
    fn block_hash(&self, number: u64) -> alloy_primitives::B256 {
        if number >= self.number || self.number - number > 256 {
            return alloy_primitives::B256::ZERO;
        }
        self.chain
            .header(number)
            .ok()
            .flatten()
            .map(|h| h.hash())
            .unwrap_or_default()
    }
}
