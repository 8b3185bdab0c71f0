//! Ethereum JSON-RPC at `/` (HTTP and WebSocket), served by `jsonrpsee`: what wallets,
//! ethers, viem and web3.py need to send transactions, call and deploy contracts, read
//! receipts and logs, prove state and follow new heads and logs.
//!
//! State is served for the head block (`latest`, `safe`, `finalized`, or its number or hash),
//! for the pending view (`pending`) and for the older blocks the node's state history keeps
//! (the last `--history-blocks`, or all of them on an archive node).

mod batch;
mod blocks;
mod filters;
mod logs;
pub(crate) mod params;
mod state;
mod subscribe;
mod transport;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

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

/// The bounds of `eth_call` and `eth_estimateGas` (geth's `--rpc.gascap` and
/// `--rpc.evmtimeout` are the precedent). Calls run on a snapshot of the state, never under a
/// lock that admission or block building takes.
#[derive(Debug, Clone, Copy)]
pub struct CallConfig {
    /// Most gas one execution may use; a call asking for more is held to it.
    pub gas_cap: u64,
    /// Longest the EVM work of one request, or of a whole batch, may take (waiting for a
    /// worker included); then it is stopped with "execution aborted (timeout = … ms)".
    pub timeout: std::time::Duration,
    /// Calls executed at once (the others wait for a worker, within their timeout).
    pub workers: usize,
    /// Gas one request, or a whole batch, may use over all its executions (an
    /// `eth_estimateGas` runs a call per step of its search).
    pub request_gas: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            gas_cap: 50_000_000,
            timeout: std::time::Duration::from_secs(5),
            workers: (cores / 2).max(1),
            request_gas: 500_000_000,
        }
    }
}

/// What every method sees.
pub(crate) struct EthCtx<N> {
    pub(crate) node: N,
    pub(crate) calls: CallConfig,
    /// One permit per call worker.
    pub(crate) workers: Arc<tokio::sync::Semaphore>,
    /// Filter entries all `logs` subscriptions hold (bounded in total).
    pub(crate) filter_entries: Arc<std::sync::atomic::AtomicUsize>,
    /// The polled filters (`eth_newFilter` …).
    pub(crate) filters: filters::Filters,
    /// The node's clock and key, for `net_peerCount`.
    pub(crate) runtime: Arc<dyn iotchain_api::Runtime>,
    pub(crate) node_key: alloy_primitives::B256,
}

/// The EVM work one request (or one batch: its calls share it) may still do: gas left and
/// a deadline, after which its executions stop.
#[derive(Debug)]
pub(crate) struct Budget {
    gas: AtomicU64,
    total: u64,
    timeout: std::time::Duration,
    deadline: tokio::time::Instant,
    cancel: Arc<AtomicBool>,
    timer: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Budget {
    pub(crate) fn new(calls: &CallConfig) -> Self {
        Self {
            gas: AtomicU64::new(calls.request_gas),
            total: calls.request_gas,
            timeout: calls.timeout,
            deadline: tokio::time::Instant::now() + calls.timeout,
            cancel: Arc::new(AtomicBool::new(false)),
            timer: parking_lot::Mutex::new(None),
        }
    }

    /// Starts the timer that stops this budget's executions at its deadline (once).
    fn arm(&self) {
        let mut timer = self.timer.lock();
        if timer.is_none() {
            let (cancel, deadline) = (self.cancel.clone(), self.deadline);
            *timer = Some(tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                cancel.store(true, Ordering::Relaxed);
            }));
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if let Some(t) = self.timer.get_mut().take() {
            t.abort();
        }
    }
}

/// Runs EVM work `f` for a request: on a call worker (waiting for one within the request's
/// deadline), off the async threads, bounded by the request's gas budget and deadline.
pub(crate) async fn with_evm<N: NodeApi, T: Send + 'static>(
    ctx: Arc<EthCtx<N>>,
    budget: Option<Arc<Budget>>,
    f: impl FnOnce(&EthCtx<N>, &iotchain_evm::CallLimits<'_>) -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    let budget = budget.unwrap_or_else(|| Arc::new(Budget::new(&ctx.calls)));
    budget.arm();
    let permit = tokio::time::timeout_at(budget.deadline, ctx.workers.clone().acquire_owned())
        .await
        .map_err(|_| {
            server_error(format!(
                "execution aborted (timeout = {} ms): every call worker was busy",
                budget.timeout.as_millis()
            ))
        })?
        .map_err(|_| server_error("the node is stopping"))?;
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let limits = iotchain_evm::CallLimits {
            gas_cap: ctx.calls.gas_cap,
            cancel: Some(&budget.cancel),
            timeout_ms: budget.timeout.as_millis() as u64,
            budget: Some((&budget.gas, budget.total)),
        };
        f(&ctx, &limits)
    });
    work.await
        .map_err(|_| server_error("the call failed inside the node"))?
}

/// The methods, with their context.
pub(crate) fn module<N: NodeApi>(
    node: N,
    calls: CallConfig,
    runtime: Arc<dyn iotchain_api::Runtime>,
    node_key: alloy_primitives::B256,
) -> RpcModule<EthCtx<N>> {
    let mut m = RpcModule::new(EthCtx {
        node,
        calls,
        workers: Arc::new(tokio::sync::Semaphore::new(calls.workers.max(1))),
        filter_entries: Arc::default(),
        filters: filters::Filters::default(),
        runtime,
        node_key,
    });
    state::register(&mut m);
    blocks::register(&mut m);
    logs::register(&mut m);
    filters::register(&mut m);
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
    if height > chain.head().height {
        return Err(server_error(format!("header not found: block {height}")));
    }
    chain.with_state_at(height, f).map_err(|e| match e {
        // As geth words a pruned state, so clients recognise it.
        QueryError::NotKept(why) => server_error(format!("missing trie node: {why}")),
        other => storage(other),
    })
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
