//! Node configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use iotchain_block::Genesis;
use iotchain_crypto::ValidatorKey;
use iotchain_engine::EngineConfig;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory: holds `chain.redb` and `log/`.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// The chain's genesis.
    pub genesis: Genesis,
    /// This validator's key.
    pub validator_key: ValidatorKey,
    /// Time between blocks.
    pub block_interval: Duration,
    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Most readings in one batch request.
    pub max_batch_readings: usize,
    /// Most accepted items waiting for a block; beyond it submissions get 503 `overloaded`
    /// (backpressure instead of unbounded memory under a flood).
    pub max_pending_items: usize,
    /// Upper bound of the chain database's page cache, in bytes. It grows on demand; a larger
    /// cache keeps the reading index's inserts in memory on long runs.
    pub db_cache_bytes: usize,
    /// Most JSON-RPC connections at once (HTTP requests in flight and WebSocket sessions).
    pub max_rpc_connections: u32,
    /// The HTTP server's connection cap, per-address cap and header timeout.
    pub http: crate::HttpLimits,
    /// The bounds of `eth_call` and `eth_estimateGas`: gas cap, timeout, workers, gas per
    /// request or batch.
    pub calls: iotchain_rpc::eth::CallConfig,
    /// Produce blocks with the node's own single-validator loop. Off when a consensus engine
    /// (`iotchain-consensus`) drives the engine's propose, verify and finalize.
    pub produce_blocks: bool,
    /// Keys (besides the genesis validators') whose relays this node takes as relays: the
    /// followers that forward to it.
    pub forwarders: Vec<alloy_primitives::B256>,
    /// Base URLs of other nodes' HTTP APIs (`http://host:port`): accepted readings and
    /// transactions are forwarded to them, and block sync fetches from them.
    pub peers: Vec<String>,
    /// How much state history to keep: `eth_call`, `eth_getBalance`, `eth_getStorageAt`,
    /// `eth_getProof` and device queries answer at the blocks it covers.
    pub history: crate::History,
    /// Most bytes of history one query at an older block may read.
    pub history_query_bytes: u64,
    /// About how many bytes of trie nodes the committed state keeps in memory (the rest are
    /// read from the store when a block reaches them).
    pub trie_cache_bytes: usize,
}

impl NodeConfig {
    /// Defaults for a node with the given genesis, key and data directory.
    pub fn new(data_dir: PathBuf, genesis: Genesis, validator_key: ValidatorKey) -> Self {
        Self {
            data_dir,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8545)),
            genesis,
            validator_key,
            block_interval: Duration::from_millis(200),
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_readings: 10_000,
            max_pending_items: 500_000,
            db_cache_bytes: 256 * 1024 * 1024,
            max_rpc_connections: 1024,
            http: crate::HttpLimits::default(),
            calls: iotchain_rpc::eth::CallConfig::default(),
            produce_blocks: true,
            peers: Vec::new(),
            forwarders: Vec::new(),
            history: crate::History::default(),
            history_query_bytes: iotchain_engine::DEFAULT_HISTORY_QUERY_BYTES,
            trie_cache_bytes: iotchain_engine::DEFAULT_TRIE_CACHE_BYTES,
        }
    }

    /// The engine's part of the configuration.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            data_dir: self.data_dir.clone(),
            genesis: self.genesis.clone(),
            validator_key: self.validator_key.clone(),
            db_cache_bytes: self.db_cache_bytes,
            max_pending_items: self.max_pending_items,
            max_batch_readings: self.max_batch_readings,
            history: self.history,
            history_query_bytes: self.history_query_bytes,
            trie_cache_bytes: self.trie_cache_bytes,
        }
    }
}
