//! The iotchain engine: the committed state, the tree of executed blocks not yet final,
//! propose, verify, finalize, and the chain's queries.
//!
//! ```text
//!                     consensus (BlockEngine)                       APIs (ChainQuery)
//!   propose(parent, t) ──┐   verify(block, now) ──┐   finalize(hash, certificate)
//!                        ▼                        ▼              │
//!        pool.best_items ─▶ BlockExecution(Build)  BlockExecution(Verify)
//!                        └──────────┬─────────────┘              │
//!                                   ▼                            ▼
//!             tree of executed blocks (each recorded      commit: one redb transaction
//!             durably before consensus may vote on it)    (block, certificate, indexes,
//!                                                          state records, log mark)
//!                                                                │
//!                                          committed state, head ─▶ pool.on_commit
//! ```
//!
//! Simplex lets a leader build on a notarized block before it is final; the tree holds such
//! blocks (up to [`MAX_UNCOMMITTED_DEPTH`] past the head) with the state after each, and a
//! finalization commits a block's uncommitted ancestors with it. Every block in the tree is
//! in the store's pending blocks too, so after a restart it is re-executed from its record
//! when consensus asks for it.

pub use iotchain_storage::{DEFAULT_HISTORY_BLOCKS, History};

mod commit;
mod execute;
mod hashes;
mod history;
mod query;
mod range_proof;
mod record;
mod tree;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use alloy_primitives::{Address, B256};
use iotchain_api::{
    ConsensusStats, EngineError, HeadInfo, Item, ItemPool, NodeMetrics, Origin, Runtime, Submitted,
};
use iotchain_block::{Block, FinalityCertificate, Genesis, Header};
use iotchain_crypto::ValidatorKey;
use iotchain_evm::EthTx;
use iotchain_execution::ExecutedBlock;
use iotchain_pool::{Parent, Pool, PoolConfig};
use iotchain_state::State;
use iotchain_storage::{BlockCommit, BlockGas, ChainStore};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

/// How many uncommitted blocks may sit between the head and a new block's parent.
pub const MAX_UNCOMMITTED_DEPTH: usize = 64;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Data directory: holds `chain.redb` and `log/`.
    pub data_dir: PathBuf,
    /// The chain's genesis.
    pub genesis: Genesis,
    /// This node's key: it proposes with it (and, as a single validator, signs with it).
    pub validator_key: ValidatorKey,
    /// Upper bound of the chain database's page cache, in bytes.
    pub db_cache_bytes: usize,
    /// Most accepted items waiting for a block.
    pub max_pending_items: usize,
    /// Most readings in one submission.
    pub max_batch_readings: usize,
    /// How much state history to keep (for queries at older blocks).
    pub history: iotchain_storage::History,
    /// Most bytes of history one query at an older block may read (about as much memory
    /// while it runs): the most expensive valid request stays bounded.
    pub history_query_bytes: u64,
    /// About how many bytes of the state's trie nodes the committed state keeps in memory;
    /// past that, the nodes below the top levels are dropped after a commit and loaded again
    /// from the store when a block reaches them.
    pub trie_cache_bytes: usize,
}

/// Bytes of history one query may read unless configured otherwise (a few seconds of work
/// on 2 cores).
pub const DEFAULT_HISTORY_QUERY_BYTES: u64 = 64 << 20;

/// Bytes of trie nodes kept in memory unless configured otherwise.
pub const DEFAULT_TRIE_CACHE_BYTES: usize = 64 << 20;

/// About what one trie node costs in memory (a branch with its 16 slots and cached
/// reference, or a leaf with its value), to turn a byte budget into a count.
const TRIE_NODE_BYTES: usize = 320;

/// The engine. Cheap to clone: every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("head", &*self.inner.head.borrow())
            .finish()
    }
}

struct Inner {
    genesis: Genesis,
    genesis_hash: B256,
    store: Arc<ChainStore>,
    validator: ValidatorKey,
    proposer: B256,
    runtime: Arc<dyn Runtime>,
    pool: Pool,
    committed: RwLock<State>,
    /// Base fee and gas used of the head block.
    head_gas: RwLock<BlockGas>,
    head: watch::Sender<HeadInfo>,
    /// Blocks built or verified here, not yet committed, by header hash.
    tree: Mutex<BTreeMap<B256, ExecutedBlock>>,
    /// Held while a block commits, so blocks from consensus and from sync commit one at a
    /// time.
    commit_lock: Mutex<()>,
    /// The store failed: no more blocks here.
    failed: AtomicBool,
    /// The stream index is being brought up to the head in the background.
    indexing: Arc<AtomicBool>,
    stats: ConsensusStats,
    metrics: NodeMetrics,
    /// States of older blocks built lately for queries (see `query::with_state_at`).
    history_cache: Mutex<Vec<history::CachedState>>,
    /// See [`EngineConfig::history_query_bytes`].
    history_query_bytes: u64,
    /// Most trie nodes the committed state keeps in memory ([`EngineConfig::trie_cache_bytes`]).
    trie_cache_nodes: usize,
}

/// The genesis block's header.
pub fn genesis_header(genesis: &Genesis) -> Header {
    let mut state = State::genesis(genesis);
    Header {
        chain_id: genesis.chain_id,
        height: 0,
        parent_hash: B256::ZERO,
        timestamp_ms: genesis.timestamp_ms,
        proposer: B256::ZERO,
        readings_root: B256::from(iotchain_merkle::root(&[])),
        reading_count: 0,
        transactions_root: B256::from(iotchain_merkle::root(&[])),
        transaction_count: 0,
        // A state all in memory reads no node, so it cannot fail.
        state_root: state.root().unwrap_or_default(),
    }
}

/// A trie node this node could not read from its own store.
fn trie_fault(e: iotchain_state::TrieError) -> EngineError {
    EngineError::Storage(iotchain_storage::StorageError::Corrupt(e.to_string()))
}

impl Engine {
    /// Opens the data directory (creating the genesis block on first start), rebuilds the
    /// state from its records (checked against the head's state root) and opens the pool,
    /// which queues again the accepted items not yet in a block.
    pub fn open(
        config: EngineConfig,
        runtime: Arc<dyn Runtime>,
        metrics: NodeMetrics,
    ) -> Result<Self, EngineError> {
        let EngineConfig {
            data_dir,
            genesis,
            validator_key,
            db_cache_bytes,
            max_pending_items,
            max_batch_readings,
            history,
            history_query_bytes,
            trie_cache_bytes,
        } = config;
        let trie_cache_nodes = trie_cache_bytes / TRIE_NODE_BYTES;
        std::fs::create_dir_all(&data_dir).map_err(|source| {
            iotchain_storage::StorageError::Io {
                path: data_dir.display().to_string(),
                source,
            }
        })?;
        let store = Arc::new(
            ChainStore::open(&data_dir.join("chain.redb"), db_cache_bytes)?.with_history(history),
        );
        let gheader = genesis_header(&genesis);
        let genesis_hash = gheader.hash();
        let (committed, head) = match store.head()? {
            None => {
                let block = Block {
                    header: gheader.clone(),
                    items: vec![],
                };
                let cert = FinalityCertificate::new(0, genesis_hash, 0, 0, 0);
                let mut state = State::genesis(&genesis);
                let records = state.changed_records();
                state.root().map_err(trie_fault)?;
                let nodes = state.unsaved_nodes();
                store.commit_block(&BlockCommit {
                    block: &block,
                    certificate: &cert,
                    readings: &[],
                    txs: &[],
                    state: &records,
                    receipts: &[],
                    hook_calls: &[],
                    gas: BlockGas {
                        base_fee: genesis.params.min_base_fee,
                        gas_used: 0,
                    },
                    log_done: 0,
                    refused: &[],
                    undo: None,
                    nodes: &nodes,
                })?;
                state.saved(store.trie_nodes()?, trie_cache_nodes);
                (state, gheader)
            }
            Some(h) => {
                let stored_genesis = store.header(0)?.ok_or_else(|| {
                    iotchain_storage::StorageError::Corrupt("genesis block missing".into())
                })?;
                if stored_genesis.hash() != genesis_hash {
                    return Err(EngineError::OtherChain {
                        dir: data_dir.display().to_string(),
                        stored: stored_genesis.hash(),
                        given: genesis_hash,
                    });
                }
                let header = store.header(h)?.ok_or_else(|| {
                    iotchain_storage::StorageError::Corrupt(format!("head block {h} missing"))
                })?;
                let iotchain_state::StateRecords {
                    devices,
                    owners,
                    accounts,
                    storage,
                    code,
                    accumulators,
                    ..
                } = store.state_records()?;
                let state = State::from_records(devices, owners)
                    .with_accounts(
                        accounts.into_iter().filter_map(|(a, acc)| Some((a, acc?))),
                        storage,
                        code,
                    )
                    .with_accumulators(accumulators)
                    .with_manufacturers(genesis.manufacturers.iter().copied());
                let mut state = if store.has_trie_nodes()? {
                    // The tries start from the stored root: nothing is rehashed, and the
                    // root node is read (and checked against its hash) now.
                    let state = state.with_stored_tries(store.trie_nodes()?, header.state_root);
                    state.check_stored().map_err(trie_fault)?;
                    state
                } else {
                    // A store from before the trie nodes were kept: rebuilt from the records
                    // once, and all of its nodes are saved with the next block.
                    state
                };
                let root = state.root().map_err(trie_fault)?;
                if root != header.state_root {
                    return Err(EngineError::Storage(
                        iotchain_storage::StorageError::Corrupt(format!(
                            "stored state root {root} does not match head block {h} ({})",
                            header.state_root
                        )),
                    ));
                }
                (state, header)
            }
        };
        let head_gas = store.block_gas(head.height)?.unwrap_or(BlockGas {
            base_fee: genesis.params.min_base_fee,
            gas_used: 0,
        });
        let proposer = B256::from(validator_key.public_key());
        // Weak: the pool (and its item log task) must not keep the database open after the
        // engine is dropped.
        let lookup = Arc::downgrade(&store);
        let pool = Pool::open(
            PoolConfig {
                genesis: genesis.clone(),
                genesis_hash,
                log_dir: data_dir.join("log"),
                max_pending_items,
                max_batch_readings,
                proposer,
                proposes: genesis.validator_keys().contains(&proposer),
            },
            runtime.clone(),
            &committed,
            Parent {
                height: head.height,
                hash: head.hash(),
                timestamp_ms: head.timestamp_ms,
                gas: head_gas,
            },
            store.log_done()?,
            metrics.clone(),
            Box::new(move |id| {
                lookup.upgrade().is_some_and(|s| {
                    matches!(s.transaction(id), Ok(Some(_)))
                        || matches!(s.reading(&id.0), Ok(Some(_)))
                })
            }),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                genesis,
                genesis_hash,
                store,
                validator: validator_key,
                proposer,
                runtime,
                pool,
                committed: RwLock::new(committed),
                head_gas: RwLock::new(head_gas),
                head: watch::Sender::new(HeadInfo {
                    height: head.height,
                    hash: head.hash(),
                    timestamp_ms: head.timestamp_ms,
                }),
                tree: Mutex::new(BTreeMap::new()),
                commit_lock: Mutex::new(()),
                failed: AtomicBool::new(false),
                indexing: Arc::default(),
                stats: ConsensusStats::default(),
                metrics,
                history_cache: Mutex::new(Vec::new()),
                history_query_bytes,
                trie_cache_nodes,
            }),
        })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The chain store (for tools and tests; the APIs read through [`iotchain_api::ChainQuery`]).
    pub fn store(&self) -> &ChainStore {
        &self.inner.store
    }

    /// This node's validator key (public part).
    pub fn proposer(&self) -> B256 {
        self.inner.proposer
    }

    /// Whether the store or the item log failed (the node then produces and accepts
    /// nothing).
    pub fn has_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Relaxed) || self.inner.pool.has_failed()
    }

    /// Syncs the item log and stops its task. Call before dropping the engine.
    pub async fn shutdown(&self) {
        self.inner.pool.shutdown().await;
        // The background stream indexer holds the store while it runs: let it finish (it
        // writes at most a few hundred blocks per transaction), so that the database is closed
        // when the engine is dropped.
        while self
            .inner
            .indexing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.inner
                .runtime
                .sleep(std::time::Duration::from_millis(2))
                .await;
        }
    }

    /// The runtime the engine takes its time from.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }
}

impl ItemPool for Engine {
    async fn submit(&self, items: Vec<Item>, origin: Origin) -> Vec<Submitted> {
        self.inner.pool.submit(items, origin).await
    }

    fn pending_counts(&self) -> (usize, usize) {
        self.inner.pool.pending_counts()
    }

    fn pending_nonce(&self, sender: &Address) -> u64 {
        self.inner.pool.pending_nonce(sender)
    }

    fn pending_eth_tx(&self, hash: &B256) -> Option<EthTx> {
        self.inner.pool.pending_eth_tx(hash)
    }

    fn max_batch(&self) -> usize {
        self.inner.pool.max_batch()
    }

    fn pending_block_context(&self) -> iotchain_evm::BlockContext {
        self.inner.pool.pending_context()
    }

    fn pending_readings(&self) -> Vec<(B256, iotchain_reading::DeviceAddress)> {
        self.inner.pool.pending_readings()
    }

    fn subscribe_refused(&self) -> tokio::sync::broadcast::Receiver<iotchain_api::Refused> {
        self.inner.pool.subscribe_refused()
    }

    fn health(&self) -> &iotchain_api::Health {
        self.inner.pool.health()
    }

    fn not_ready(&self) -> Option<iotchain_api::PoolError> {
        self.inner.pool.not_ready()
    }
}

#[cfg(feature = "testing")]
pub mod testing;
