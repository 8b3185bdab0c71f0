//! The chain: pending view, item queue, group-committed item log, committed state and store.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, B256, Bytes, I256, U256};
use axum::http::StatusCode;
use iotchain_block::{
    Block, BlockItem, DeviceKeyJson, FinalityCertificate, Genesis, Header, ProofBundle, SignedTx,
};
use iotchain_crypto::{DevicePublicKey, SignatureCheck, ValidatorKey, verify_signatures};
use iotchain_evm::{BlockExecutor, EthTx};
use iotchain_reading::DeviceAddress;
use iotchain_state::{DeviceRecord, Gap, State, StateRecords, StreamHead};
use iotchain_storage::{
    BlockCommit, BlockGas, ChainStore, ItemKind, ItemLog, LogItem, ReadingLocation, TxLocation,
};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;

use crate::{
    ApiError, NodeConfig, NodeError,
    eth::{BlockReceipts, StoreHashes, block_context, next_base_fee},
};

/// How long a submission waits for its log sync before reporting the store unavailable.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a proposer holds back a reading that skips seqs of its device, when other
/// validators may hold the skipped ones (see [`Chain::next_batch`]).
const GAP_GRACE_MS: u64 = 5_000;

/// How far ahead of this node's clock a block's time may be.
const MAX_CLOCK_DRIFT_MS: u64 = 5_000;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last final block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// Height.
    pub height: u64,
    /// Header hash.
    pub hash: B256,
    /// Header time.
    pub timestamp_ms: u64,
}

/// The outcome of one submitted item.
pub type ItemResult = Result<B256, ApiError>;

/// Where a reading stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingStatus {
    /// Accepted and durable, waiting for a block.
    Pending {
        /// When it was accepted.
        arrival_ms: u64,
        /// The device's time in the reading.
        ts: u64,
    },
    /// In a final block.
    Final {
        /// Its location.
        location: ReadingLocation,
        /// The block's time.
        block_time_ms: u64,
    },
}

/// An accepted item waiting for a block.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) kind: ItemKind,
    /// Device, seq and ts of a reading.
    pub(crate) meta: Option<ReadingMeta>,
    pub(crate) id: B256,
    pub(crate) bytes: Bytes,
    pub(crate) arrival_ms: u64,
    pub(crate) key_version: u32,
    /// An Ethereum transaction, decoded and its sender recovered.
    pub(crate) eth: Option<Arc<EthTx>>,
    /// What an Ethereum transaction may cost its sender at most (kept for it while queued).
    pub(crate) max_cost: U256,
}

/// A block built or verified here, not yet committed, and everything committing it will
/// write. Its parent is the head or another proposal: simplex lets a leader build on a
/// notarized block before that block is finalized, and finalizing a block finalizes its
/// uncommitted ancestors with it.
struct Proposal {
    block: Block,
    /// The state after the block.
    state: State,
    records: iotchain_state::StateRecords,
    readings: Vec<([u8; 32], ReadingLocation)>,
    txs: Vec<(B256, TxLocation)>,
    gaps: Vec<(DeviceAddress, Gap)>,
    /// Receipts of the Ethereum transactions and hook calls, encoded for the store.
    receipts: Vec<(B256, Vec<u8>)>,
    /// The ids of the hook calls.
    hook_calls: Vec<B256>,
    /// Base fee and gas used.
    gas: BlockGas,
    /// Item-log seqs of the queue items a block built here consumed (a prefix of the queue);
    /// empty for a block received from another validator.
    consumed: Vec<u64>,
}

/// What a new block builds on: the head, or a proposal not yet committed.
struct Base {
    height: u64,
    hash: B256,
    timestamp_ms: u64,
    /// The state after the parent.
    state: State,
    /// Base fee and gas used of the parent.
    gas: BlockGas,
    /// Heights and hashes of the uncommitted ancestors, parent included (for `BLOCKHASH`).
    branch: Vec<(u64, B256)>,
    /// Queue items already in uncommitted ancestors (between the head and the parent).
    excluded_seqs: HashSet<u64>,
    excluded_ids: HashSet<B256>,
}

/// How many uncommitted blocks may sit between the head and a new block's parent.
const MAX_UNCOMMITTED_DEPTH: usize = 64;

struct Ingest {
    /// Committed state plus every queued reading and owner transaction. Queued Ethereum
    /// transactions are not executed here (the block that includes one executes it): their
    /// senders' nonces and reserved funds are in `senders`.
    pending: State,
    /// Accepted items not yet in a block, by item-log seq (oldest first).
    queue: BTreeMap<u64, Queued>,
    /// Reading ids and transaction hashes in the queue.
    index: HashMap<B256, u64>,
    /// Senders of queued Ethereum transactions: how many each has queued and what they may
    /// cost at most.
    senders: HashMap<Address, QueuedTxs>,
    /// Queued owner and Ethereum transactions.
    owner_txs: usize,
    eth_txs: usize,
    next_seq: u64,
    /// Accepted items not yet synced to the log.
    unsynced: Vec<LogItem>,
    stopping: bool,
}

/// A sender's queued Ethereum transactions.
#[derive(Debug, Clone, Copy, Default)]
struct QueuedTxs {
    count: u64,
    max_cost: U256,
}

impl Ingest {
    /// Queues an accepted item (already applied to the pending view, if it applies there)
    /// and hands it to the item log.
    fn push(&mut self, q: Queued) {
        self.unsynced.push(LogItem {
            seq: q.seq,
            kind: q.kind,
            arrival_ms: q.arrival_ms,
            key_version: q.key_version,
            bytes: q.bytes.clone(),
        });
        self.insert(q);
    }

    /// Queues an item that is in the item log already.
    fn insert(&mut self, q: Queued) {
        match (&q.kind, &q.eth) {
            (ItemKind::Tx, _) => self.owner_txs += 1,
            (ItemKind::EthTx, Some(tx)) => {
                self.eth_txs += 1;
                let s = self.senders.entry(tx.sender).or_default();
                s.count += 1;
                s.max_cost = s.max_cost.saturating_add(q.max_cost);
            }
            _ => {}
        }
        self.index.insert(q.id, q.seq);
        self.queue.insert(q.seq, q);
    }

    /// Takes the item with log seq `seq` out of the queue.
    fn remove(&mut self, seq: u64) -> Option<Queued> {
        let q = self.queue.remove(&seq)?;
        self.index.remove(&q.id);
        match (&q.kind, &q.eth) {
            (ItemKind::Tx, _) => self.owner_txs -= 1,
            (ItemKind::EthTx, Some(tx)) => {
                self.eth_txs -= 1;
                if let Some(s) = self.senders.get_mut(&tx.sender) {
                    s.count -= 1;
                    s.max_cost = s.max_cost.saturating_sub(q.max_cost);
                    if s.count == 0 {
                        self.senders.remove(&tx.sender);
                    }
                }
            }
            _ => {}
        }
        Some(q)
    }

    /// The next log seq.
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// `sender` as its next Ethereum transaction sees it: its account in the pending view
    /// after its queued transactions.
    fn queued_sender(&self, sender: &Address) -> iotchain_evm::QueuedSender {
        let account = self.pending.account(sender);
        let queued = self.senders.get(sender).copied().unwrap_or_default();
        iotchain_evm::QueuedSender {
            nonce: account.map_or(0, |a| a.nonce) + queued.count,
            balance: account
                .map_or(U256::ZERO, |a| a.balance)
                .saturating_sub(queued.max_cost),
            has_code: account.is_some_and(|a| a.code_hash != alloy_primitives::KECCAK256_EMPTY),
        }
    }

    /// Checks an Ethereum transaction as its sender's next one and queues it; its log seq.
    fn enqueue_eth(
        &mut self,
        tx: Arc<EthTx>,
        ctx: &iotchain_evm::BlockContext,
        arrival_ms: u64,
    ) -> Result<u64, ApiError> {
        let max_cost = iotchain_evm::check_next(&tx, ctx, &self.queued_sender(&tx.sender))
            .map_err(|e| ApiError::from_evm(&e))?;
        let seq = self.take_seq();
        self.push(Queued {
            seq,
            kind: ItemKind::EthTx,
            meta: None,
            id: tx.hash,
            bytes: tx.raw.clone(),
            arrival_ms,
            key_version: 0,
            eth: Some(tx),
            max_cost,
        });
        Ok(seq)
    }

    /// Drops queued Ethereum transactions that can no longer follow their sender's nonce in
    /// the pending view (another transaction of the sender took that nonce in a block, or an
    /// earlier one of the sender was left out of a block), and those after them.
    fn drop_stale_eth_txs(&mut self) {
        if self.eth_txs == 0 {
            return;
        }
        let mut next: HashMap<Address, Option<u64>> = HashMap::new();
        let mut stale = Vec::new();
        for q in self.queue.values() {
            let Some(tx) = &q.eth else { continue };
            let expected = next
                .entry(tx.sender)
                .or_insert_with(|| Some(self.pending.account(&tx.sender).map_or(0, |a| a.nonce)));
            if *expected == Some(tx.nonce()) {
                *expected = tx.nonce().checked_add(1);
            } else {
                *expected = None;
                stale.push(q.seq);
            }
        }
        for seq in stale {
            if let Some(q) = self.remove(seq) {
                tracing::info!(hash = %q.id, "queued transaction no longer follows its sender's nonce after a block; dropped");
            }
        }
    }
}

/// Counters exposed at `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) readings_accepted: AtomicU64,
    pub(crate) txs_accepted: AtomicU64,
    pub(crate) rejected: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub(crate) blocks: AtomicU64,
    pub(crate) readings_final: AtomicU64,
    pub(crate) log_syncs: AtomicU64,
}

/// What consensus reports about itself, for operators (`/v1/status`, `/metrics`).
#[derive(Debug, Default)]
pub struct ConsensusStats {
    /// The latest simplex view this validator saw notarized or finalized.
    pub view: AtomicU64,
    /// When each other validator was last heard from (a vote), by key.
    seen: Mutex<HashMap<B256, std::time::Instant>>,
    /// Milliseconds from the last committed block's proposal time to its commit here.
    pub last_finality_ms: AtomicU64,
    /// Proofs of validator misbehaviour simplex has seen: conflicting notarize or finalize
    /// votes, or a finalize vote beside a nullify vote, in one view.
    pub faults: AtomicU64,
}

impl ConsensusStats {
    /// Records the view of a notarization or finalization.
    pub fn observe_view(&self, view: u64) {
        self.view.fetch_max(view, Ordering::Relaxed);
    }

    /// Records a vote from `validator`.
    pub fn heard_from(&self, validator: B256) {
        self.seen
            .lock()
            .insert(validator, std::time::Instant::now());
    }

    /// Validators heard from within `window`.
    pub fn peers_seen(&self, window: Duration) -> usize {
        self.seen
            .lock()
            .values()
            .filter(|t| t.elapsed() <= window)
            .count()
    }
}

/// The chain shared by ingestion, block production and the API.
pub struct Chain {
    genesis: Genesis,
    genesis_hash: B256,
    store: ChainStore,
    validator: ValidatorKey,
    max_batch: usize,
    max_body: usize,
    max_pending: usize,
    ingest: Mutex<Ingest>,
    wake_flusher: Condvar,
    committed: RwLock<State>,
    /// Base fee and gas used of the head block.
    head_gas: RwLock<BlockGas>,
    log: Mutex<ItemLog>,
    durable: watch::Sender<u64>,
    head: watch::Sender<HeadInfo>,
    failed: AtomicBool,
    /// Blocks built by [`Chain::propose`], by header hash, waiting for a certificate.
    proposals: Mutex<HashMap<B256, Proposal>>,
    /// Held while a block commits, so blocks from consensus and from sync commit one at a time.
    commit_lock: Mutex<()>,
    /// Recorded proposals that did not rebuild to their hash after a restart, so they are not
    /// rebuilt again each time consensus asks about them.
    unrestorable: Mutex<HashSet<B256>>,
    consensus_stats: ConsensusStats,
    /// Where accepted items go to reach the other nodes (when there are peers).
    forward: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::forward::Forward>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) metrics: Metrics,
    /// Other parts' counters appended to `/metrics` (e.g. the MQTT bridge).
    metrics_sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

/// A part of the node outside this crate that reports counters at `/metrics`.
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text-format series (with `# HELP` and `# TYPE`) to `out`.
    fn render(&self, out: &mut String);
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("head", &*self.head.borrow())
            .finish()
    }
}

/// The genesis block's header.
pub(crate) fn genesis_header(genesis: &Genesis, state: &mut State) -> Header {
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
        state_root: state.root(),
    }
}

impl Chain {
    /// Opens the data directory, creating genesis on first start and recovering pending
    /// items from the log.
    pub fn open(config: &NodeConfig) -> Result<Arc<Self>, NodeError> {
        let genesis = config.genesis.clone();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            NodeError::DataDir(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = ChainStore::open(&config.data_dir.join("chain.redb"), config.db_cache_bytes)?;
        let mut genesis_state = State::genesis(&genesis);
        let gheader = genesis_header(&genesis, &mut genesis_state);
        let genesis_hash = gheader.hash();
        let (mut committed, head) = match store.head()? {
            None => {
                let block = Block {
                    header: gheader.clone(),
                    items: vec![],
                };
                let cert = FinalityCertificate::new(0, genesis_hash, 0, 0, 0);
                let mut state = State::genesis(&genesis);
                let records = state.changed_records();
                state.root();
                store.commit_block(&BlockCommit {
                    block: &block,
                    certificate: &cert,
                    readings: &[],
                    txs: &[],
                    state: &records,
                    gaps: &[],
                    receipts: &[],
                    hook_calls: &[],
                    gas: BlockGas {
                        base_fee: genesis.params.min_base_fee,
                        gas_used: 0,
                    },
                    log_done: 0,
                })?;
                (state, gheader)
            }
            Some(h) => {
                let stored_genesis = store
                    .header(0)?
                    .ok_or_else(|| NodeError::DataDir("genesis block missing".into()))?;
                if stored_genesis.hash() != genesis_hash {
                    return Err(NodeError::DataDir(format!(
                        "{} holds another chain (genesis {}), not this genesis ({genesis_hash})",
                        config.data_dir.display(),
                        stored_genesis.hash()
                    )));
                }
                let header = store
                    .header(h)?
                    .ok_or_else(|| NodeError::DataDir(format!("head block {h} missing")))?;
                let iotchain_state::StateRecords {
                    devices,
                    owners,
                    accounts,
                    storage,
                    code,
                    ..
                } = store.state_records()?;
                let mut state = State::from_records(devices, owners).with_accounts(
                    accounts.into_iter().filter_map(|(a, acc)| Some((a, acc?))),
                    storage,
                    code,
                );
                let root = state.root();
                if root != header.state_root {
                    return Err(NodeError::DataDir(format!(
                        "stored state root {root} does not match head block {h} ({})",
                        header.state_root
                    )));
                }
                (state, header)
            }
        };
        committed.root();
        let head_gas = store.block_gas(head.height)?.unwrap_or(BlockGas {
            base_fee: genesis.params.min_base_fee,
            gas_used: 0,
        });
        let log_done = store.log_done()?;
        let (log, items) = ItemLog::open(&config.data_dir.join("log"), log_done)?;
        let mut ingest = Ingest {
            pending: committed.clone(),
            queue: BTreeMap::new(),
            index: HashMap::new(),
            senders: HashMap::new(),
            owner_txs: 0,
            eth_txs: 0,
            next_seq: log_done + 1,
            unsynced: Vec::new(),
            stopping: false,
        };
        let recovered = items.len();
        let pending_ctx = block_context(
            &genesis,
            head.height + 1,
            now_ms(),
            head.hash(),
            &B256::from(config.validator_key.public_key()),
            next_base_fee(&genesis, head_gas),
        );
        for item in items {
            ingest.next_seq = item.seq + 1;
            let bytes = item.bytes;
            let applied = match item.kind {
                ItemKind::Reading => ReadingMeta::decode(&bytes).and_then(|(meta, id)| {
                    apply_reading(&mut ingest.pending, &meta, id, item.key_version, None)?;
                    Ok((id, Some(meta), None, U256::ZERO))
                }),
                ItemKind::Tx => apply_tx_bytes(&mut ingest.pending, &bytes, genesis.chain_id, 0)
                    .map(|id| (id, None, None, U256::ZERO)),
                ItemKind::EthTx => decode_eth(&genesis, &bytes).and_then(|tx| {
                    let sender = ingest.queued_sender(&tx.sender);
                    let max_cost = iotchain_evm::check_next(&tx, &pending_ctx, &sender)
                        .map_err(|e| ApiError::from_evm(&e))?;
                    Ok((tx.hash, None, Some(Arc::new(tx)), max_cost))
                }),
            };
            match applied {
                Ok((id, meta, eth, max_cost)) => ingest.insert(Queued {
                    seq: item.seq,
                    kind: item.kind,
                    meta,
                    id,
                    bytes,
                    arrival_ms: item.arrival_ms,
                    key_version: item.key_version,
                    eth,
                    max_cost,
                }),
                Err(e) => {
                    tracing::info!(seq = item.seq, error = %e.message, "logged item no longer applies (final in a block of another validator, or superseded); skipped")
                }
            }
        }
        if recovered > 0 {
            tracing::info!(recovered, "recovered accepted items from the log");
        }
        let durable_seq = ingest.next_seq - 1;
        let chain = Arc::new(Self {
            genesis,
            genesis_hash,
            store,
            validator: config.validator_key.clone(),
            max_batch: config.max_batch_readings,
            max_body: config.max_body_bytes,
            max_pending: config.max_pending_items,
            ingest: Mutex::new(ingest),
            wake_flusher: Condvar::new(),
            committed: RwLock::new(committed),
            head_gas: RwLock::new(head_gas),
            log: Mutex::new(log),
            durable: watch::Sender::new(durable_seq),
            head: watch::Sender::new(HeadInfo {
                height: head.height,
                hash: head.hash(),
                timestamp_ms: head.timestamp_ms,
            }),
            failed: AtomicBool::new(false),
            proposals: Mutex::new(HashMap::new()),
            commit_lock: Mutex::new(()),
            unrestorable: Mutex::new(HashSet::new()),
            consensus_stats: ConsensusStats::default(),
            forward: std::sync::OnceLock::new(),
            flusher: Mutex::new(None),
            metrics: Metrics::default(),
            metrics_sources: RwLock::new(Vec::new()),
        });
        let flusher = chain.clone();
        let handle = std::thread::Builder::new()
            .name("item-log".into())
            .spawn(move || flusher.run_flusher())
            .expect("spawn the item-log thread");
        *chain.flusher.lock() = Some(handle);
        Ok(chain)
    }

    /// What consensus reports about itself.
    pub fn consensus_stats(&self) -> &ConsensusStats {
        &self.consensus_stats
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The genesis header hash.
    pub fn genesis_hash(&self) -> B256 {
        self.genesis_hash
    }

    /// The chain store.
    pub fn store(&self) -> &ChainStore {
        &self.store
    }

    /// The last final block.
    pub fn head(&self) -> HeadInfo {
        *self.head.borrow()
    }

    /// Subscribes to head changes.
    pub fn subscribe_head(&self) -> watch::Receiver<HeadInfo> {
        self.head.subscribe()
    }

    /// Largest accepted reading in bytes.
    pub fn max_reading_bytes(&self) -> usize {
        self.genesis.params.max_reading_bytes as usize
    }

    /// Most readings in one batch request.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Largest HTTP request body.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Numbers of queued readings and transactions.
    pub fn pending_counts(&self) -> (usize, usize) {
        let ingest = self.ingest.lock();
        let txs = ingest.owner_txs + ingest.eth_txs;
        (ingest.queue.len() - txs, txs)
    }

    /// The nonce the next Ethereum transaction of `sender` must carry: its account's nonce
    /// after its transactions waiting for a block (`eth_getTransactionCount` with
    /// `pending`).
    pub fn pending_nonce(&self, sender: &Address) -> u64 {
        self.ingest.lock().queued_sender(sender).nonce
    }

    /// Runs `f` on the committed state.
    pub fn with_committed<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.committed.read())
    }

    /// Runs `f` on the pending view (committed state plus queued items).
    pub fn with_pending<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.ingest.lock().pending)
    }

    /// Adds counters to `/metrics`.
    pub fn add_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        self.metrics_sources.write().push(source);
    }

    /// Appends every added source's series to `out`.
    pub(crate) fn render_metrics_sources(&self, out: &mut String) {
        for s in self.metrics_sources.read().iter() {
            s.render(out);
        }
    }

    fn count_rejection(&self, code: &'static str) {
        *self.metrics.rejected.lock().entry(code).or_default() += 1;
    }

    /// Sends accepted items to the other nodes from now on.
    pub(crate) fn set_forwarder(
        &self,
        forward: tokio::sync::mpsc::UnboundedSender<crate::forward::Forward>,
    ) {
        let _ = self.forward.set(forward);
    }

    /// Verifies and accepts readings. Returns one result per message, in order; accepted
    /// readings are durable in the item log when this returns, and are forwarded to the
    /// other nodes.
    pub async fn submit_readings(self: &Arc<Self>, messages: Vec<Bytes>) -> Vec<ItemResult> {
        self.submit_readings_from(messages, true).await
    }

    /// Like [`Chain::submit_readings`]; `forward` false for readings another node forwarded.
    pub async fn submit_readings_from(
        self: &Arc<Self>,
        messages: Vec<Bytes>,
        forward: bool,
    ) -> Vec<ItemResult> {
        let originals = (forward && self.forward.get().is_some()).then(|| messages.clone());
        let chain = self.clone();
        let checked =
            match tokio::task::spawn_blocking(move || chain.check_readings(messages)).await {
                Ok(c) => c,
                Err(e) => return vec![Err(ApiError::storage(&e))],
            };
        let (results, max_seq) = match self.accept_readings(checked) {
            Ok(accepted) => accepted,
            Err(refused) => return refused,
        };
        self.finish_submission(
            results,
            max_seq,
            originals,
            crate::forward::Forward::Readings,
        )
        .await
    }

    /// The end of a submission: waits until the log holds `max_seq` (0: nothing accepted),
    /// turning every accepted result into a storage error if it cannot, then forwards the
    /// `originals` that were accepted (when this node forwards), as `wrap` makes them.
    async fn finish_submission(
        &self,
        results: Vec<ItemResult>,
        max_seq: u64,
        originals: Option<Vec<Bytes>>,
        wrap: fn(Vec<Bytes>) -> crate::forward::Forward,
    ) -> Vec<ItemResult> {
        if max_seq > 0
            && let Err(e) = self.wait_durable(max_seq).await
        {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        if let (Some(originals), Some(forward)) = (originals, self.forward.get()) {
            let accepted: Vec<Bytes> = originals
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(m, _)| m)
                .collect();
            if !accepted.is_empty() {
                let _ = forward.send(wrap(accepted));
            }
        }
        results
    }

    /// Applies checked readings to the pending view and queues them for the log: results in
    /// order and the last log seq to wait for (0: none), or every result refused (overload).
    #[allow(clippy::type_complexity)]
    fn accept_readings(
        &self,
        checked: Vec<Result<CheckedReading, ApiError>>,
    ) -> Result<(Vec<ItemResult>, u64), Vec<ItemResult>> {
        let mut results = Vec::with_capacity(checked.len());
        let mut max_seq = 0;
        {
            let mut guard = self.ingest.lock();
            let ingest = &mut *guard;
            if ingest.queue.len() + checked.len() > self.max_pending {
                let e = self.overloaded(ingest.queue.len());
                return Err(checked.into_iter().map(|c| c.and(Err(e.clone()))).collect());
            }
            for c in checked {
                let r = c.and_then(|c| {
                    let CheckedReading { d, key_version, .. } = c;
                    apply_reading(&mut ingest.pending, &d.meta, d.id, key_version, None)?;
                    let seq = ingest.take_seq();
                    ingest.push(Queued {
                        seq,
                        kind: ItemKind::Reading,
                        meta: Some(d.meta),
                        id: d.id,
                        bytes: d.bytes,
                        arrival_ms: now_ms(),
                        key_version,
                        eth: None,
                        max_cost: U256::ZERO,
                    });
                    max_seq = seq;
                    Ok(d.id)
                });
                results.push(r);
            }
        }
        for r in &results {
            match r {
                Ok(_) => self
                    .metrics
                    .readings_accepted
                    .fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    self.count_rejection(e.code);
                    0
                }
            };
        }
        Ok((results, max_seq))
    }

    /// Like [`Chain::submit_readings`] (without forwarding), blocking the calling thread
    /// instead of needing an async runtime: for simulations and tools.
    pub fn submit_readings_blocking(&self, messages: Vec<Bytes>) -> Vec<ItemResult> {
        let checked = self.check_readings(messages);
        let (results, max_seq) = match self.accept_readings(checked) {
            Ok(accepted) => accepted,
            Err(refused) => return refused,
        };
        if max_seq > 0
            && let Err(e) = self.wait_durable_blocking(max_seq)
        {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        results
    }

    /// Queues readings WITHOUT checking their signatures, so that this node proposes blocks
    /// with forged readings: a Byzantine validator, for simulations only.
    #[cfg(feature = "byzantine-testing")]
    pub fn submit_unverified_blocking(&self, messages: Vec<Bytes>) -> Vec<ItemResult> {
        let max = self.max_reading_bytes();
        let checked = messages
            .into_iter()
            .map(|m| {
                let d = decode_reading(m, max)?;
                attach_key(&self.ingest.lock().pending, d)
            })
            .collect();
        let (results, max_seq) = match self.accept_readings(checked) {
            Ok(accepted) => accepted,
            Err(refused) => return refused,
        };
        if max_seq > 0
            && let Err(e) = self.wait_durable_blocking(max_seq)
        {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        results
    }

    /// Like [`Chain::submit_tx`] (without forwarding), blocking the calling thread.
    pub fn submit_tx_blocking(&self, raw: Bytes) -> ItemResult {
        let (hash, seq) = self.accept_tx(raw)?;
        self.wait_durable_blocking(seq)?;
        Ok(hash)
    }

    /// Waits, blocking the thread, until the log has synced item `seq`.
    fn wait_durable_blocking(&self, seq: u64) -> Result<(), ApiError> {
        self.wake_flusher.notify_one();
        let mut rx = self.durable.subscribe();
        let synced = futures::executor::block_on(rx.wait_for(|d| *d >= seq)).is_ok();
        if !synced || self.failed.load(Ordering::Relaxed) {
            return Err(ApiError::storage(&"the item log did not sync"));
        }
        Ok(())
    }

    /// Decodes, looks up keys and verifies signatures (CPU work, off the async threads).
    fn check_readings(&self, messages: Vec<Bytes>) -> Vec<Result<CheckedReading, ApiError>> {
        let max = self.max_reading_bytes();
        // Decode outside the lock, then look up keys under it.
        let decoded: Vec<Result<Decoded, ApiError>> = messages
            .into_iter()
            .map(|m| decode_reading(m, max))
            .collect();
        let prepared: Vec<Result<CheckedReading, ApiError>> = {
            let ingest = self.ingest.lock();
            decoded
                .into_iter()
                .map(|d| d.and_then(|d| attach_key(&ingest.pending, d)))
                .collect()
        };
        let checks: Vec<SignatureCheck<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|c| SignatureCheck {
                key: &c.key,
                message: &c.d.sig_structure,
                signature: &c.d.signature,
            })
            .collect();
        let verdicts = verify_signatures(&checks);
        drop(checks);
        let mut verdicts = verdicts.into_iter();
        prepared
            .into_iter()
            .map(|p| {
                let c = p?;
                if verdicts.next().unwrap_or(false) {
                    return Ok(c);
                }
                Err(self.explain_bad_signature(
                    &c.d.meta.device,
                    &c.key,
                    &c.d.sig_structure,
                    &c.d.signature,
                ))
            })
            .collect()
    }

    /// A signature failed with the current key: tell a replaced key from a forgery.
    fn explain_bad_signature(
        &self,
        device: &DeviceAddress,
        current: &DevicePublicKey,
        msg: &[u8],
        sig: &[u8; 64],
    ) -> ApiError {
        let previous = self
            .ingest
            .lock()
            .pending
            .device(device)
            .map(|d| d.previous_keys.clone())
            .unwrap_or_default();
        let old_key_signed = previous.iter().filter(|k| *k != current).any(|k| {
            verify_signatures(&[SignatureCheck {
                key: k,
                message: msg,
                signature: sig,
            }])[0]
        });
        if old_key_signed {
            ApiError::from_state(&iotchain_state::StateError::RotatedKey(*device))
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_signature",
                format!("signature does not verify with the registered key of device {device}"),
            )
        }
    }

    /// Accepts an owner transaction (RLP bytes). Durable when this returns; forwarded to the
    /// other nodes.
    pub async fn submit_tx(self: &Arc<Self>, raw: Bytes) -> ItemResult {
        self.submit_tx_from(raw, true).await
    }

    /// Like [`Chain::submit_tx`]; `forward` false for a transaction another node forwarded.
    pub async fn submit_tx_from(self: &Arc<Self>, raw: Bytes, forward: bool) -> ItemResult {
        let original = forward.then(|| raw.clone());
        let r = self.accept_tx(raw);
        match &r {
            Ok(_) => {
                self.metrics.txs_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.count_rejection(e.code),
        }
        let (hash, seq) = r?;
        self.wait_durable(seq).await?;
        if let (Some(raw), Some(f)) = (original, self.forward.get()) {
            let _ = f.send(crate::forward::Forward::Tx(raw));
        }
        Ok(hash)
    }

    fn overloaded(&self, pending: usize) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the node holds {pending} items waiting for a block (limit {}); retry shortly",
                self.max_pending
            ),
        )
    }

    /// Refuses a transaction when the queue is full or the transaction is queued already
    /// (`known_prefix` starts the message of the latter), or, with `final_too`, final already.
    /// (A final Ethereum transaction needs no lookup: its nonce is used, so it is refused as
    /// `nonce too low`, as geth refuses it.)
    fn check_new_tx(
        &self,
        ingest: &Ingest,
        hash: &B256,
        known_prefix: &str,
        final_too: bool,
    ) -> Result<(), ApiError> {
        if ingest.queue.len() >= self.max_pending {
            return Err(self.overloaded(ingest.queue.len()));
        }
        let known = ingest.index.contains_key(hash)
            || (final_too
                && self
                    .store
                    .transaction(hash)
                    .map_err(|e| ApiError::storage(&e))?
                    .is_some());
        if known {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "known_transaction",
                format!("{known_prefix}transaction {hash} was already accepted"),
            ));
        }
        Ok(())
    }

    fn accept_tx(&self, raw: Bytes) -> Result<(B256, u64), ApiError> {
        let chain_id = self.genesis.chain_id;
        let tx = SignedTx::decode_and_check(&raw, chain_id)
            .map_err(|e| ApiError::bad_request("invalid_transaction", e.to_string()))?;
        let hash = tx.hash();
        let mut guard = self.ingest.lock();
        let ingest = &mut *guard;
        self.check_new_tx(ingest, &hash, "", true)?;
        ingest
            .pending
            .apply_tx(&tx, 0)
            .map_err(|e| ApiError::from_state(&e))?;
        let seq = ingest.take_seq();
        ingest.push(Queued {
            seq,
            kind: ItemKind::Tx,
            meta: None,
            id: hash,
            bytes: raw,
            arrival_ms: now_ms(),
            key_version: 0,
            eth: None,
            max_cost: U256::ZERO,
        });
        Ok((hash, seq))
    }

    /// Accepts an Ethereum transaction (EIP-2718 bytes, as `eth_sendRawTransaction` takes
    /// them): decoded, its sender recovered, and checked as its sender's next transaction
    /// after those already queued (nonce, funds for everything queued, fee cap, gas; see
    /// [`iotchain_evm::check_next`]). It is executed once, in the block that includes it.
    /// Durable when this returns; forwarded to the other nodes.
    pub async fn submit_eth_tx(self: &Arc<Self>, raw: Bytes) -> ItemResult {
        self.submit_eth_tx_from(raw, true).await
    }

    /// Like [`Chain::submit_eth_tx`]; `forward` false for a transaction another node
    /// forwarded.
    pub async fn submit_eth_tx_from(self: &Arc<Self>, raw: Bytes, forward: bool) -> ItemResult {
        let mut results = self.submit_eth_txs_from(vec![raw], forward).await;
        results
            .pop()
            .unwrap_or_else(|| Err(ApiError::storage(&"no result")))
    }

    /// Accepts several Ethereum transactions in order (a JSON-RPC batch): their senders are
    /// recovered in parallel, and they are checked, queued and synced to the log together.
    /// One result per transaction; a refused one does not stop those after it.
    pub async fn submit_eth_txs_from(
        self: &Arc<Self>,
        raws: Vec<Bytes>,
        forward: bool,
    ) -> Vec<ItemResult> {
        let originals = (forward && self.forward.get().is_some()).then(|| raws.clone());
        let n = raws.len();
        let chain = self.clone();
        let accepted = match tokio::task::spawn_blocking(move || chain.accept_eth_txs(raws)).await {
            Ok(r) => r,
            // One result per transaction: a JSON-RPC batch answers every call it holds.
            Err(e) => return (0..n).map(|_| Err(ApiError::storage(&e))).collect(),
        };
        let max_seq = self.count_eth_txs(&accepted);
        let results = accepted.into_iter().map(|r| r.map(|(h, _)| h)).collect();
        self.finish_submission(results, max_seq, originals, crate::forward::Forward::EthTxs)
            .await
    }

    /// Like [`Chain::submit_eth_tx`] (without forwarding), blocking the calling thread.
    pub fn submit_eth_tx_blocking(&self, raw: Bytes) -> ItemResult {
        let accepted = self.accept_eth_txs(vec![raw]);
        let max_seq = self.count_eth_txs(&accepted);
        let (hash, _) = accepted
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(ApiError::storage(&"no result")))?;
        self.wait_durable_blocking(max_seq)?;
        Ok(hash)
    }

    /// Counts accepted and refused transactions; the last log seq to wait for (0: none).
    fn count_eth_txs(&self, accepted: &[Result<(B256, u64), ApiError>]) -> u64 {
        let mut max_seq = 0;
        for r in accepted {
            match r {
                Ok((_, seq)) => {
                    self.metrics.txs_accepted.fetch_add(1, Ordering::Relaxed);
                    max_seq = max_seq.max(*seq);
                }
                Err(e) => self.count_rejection(e.code),
            }
        }
        max_seq
    }

    /// The context the pending view executes Ethereum transactions in: the next block, as
    /// this node would propose it now.
    pub fn pending_block_context(&self) -> iotchain_evm::BlockContext {
        let head = self.head();
        block_context(
            &self.genesis,
            head.height + 1,
            now_ms().max(head.timestamp_ms),
            head.hash,
            &B256::from(self.validator.public_key()),
            self.next_base_fee(),
        )
    }

    /// A queued (not yet final) Ethereum transaction.
    pub fn pending_eth_tx(&self, hash: &B256) -> Option<EthTx> {
        let ingest = self.ingest.lock();
        let q = ingest.queue.get(ingest.index.get(hash)?)?;
        q.eth.as_deref().cloned()
    }

    /// The base fee of the next block.
    pub fn next_base_fee(&self) -> u64 {
        next_base_fee(&self.genesis, *self.head_gas.read())
    }

    /// Decodes `raws` and recovers their senders (in parallel: the costly part), then checks
    /// and queues them in order under one lock.
    fn accept_eth_txs(&self, raws: Vec<Bytes>) -> Vec<Result<(B256, u64), ApiError>> {
        use rayon::prelude::*;
        let decoded: Vec<Result<EthTx, ApiError>> = raws
            .par_iter()
            .with_min_len(8)
            .map(|raw| decode_eth(&self.genesis, raw))
            .collect();
        let ctx = self.pending_block_context();
        let mut guard = self.ingest.lock();
        let ingest = &mut *guard;
        let arrival_ms = now_ms();
        decoded
            .into_iter()
            .map(|tx| {
                let tx = Arc::new(tx?);
                // "already known" is geth's wording, which Ethereum clients match on.
                self.check_new_tx(ingest, &tx.hash, "already known: ", false)?;
                let hash = tx.hash;
                Ok((hash, ingest.enqueue_eth(tx, &ctx, arrival_ms)?))
            })
            .collect()
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), ApiError> {
        self.wake_flusher.notify_one();
        let mut rx = self.durable.subscribe();
        match tokio::time::timeout(SYNC_TIMEOUT, rx.wait_for(|d| *d >= seq)).await {
            Ok(Ok(_)) if !self.failed.load(Ordering::Relaxed) => Ok(()),
            _ => Err(ApiError::storage(&"the item log did not sync")),
        }
    }

    /// The group-commit loop: syncs everything accepted since the last sync in one write.
    fn run_flusher(self: Arc<Self>) {
        loop {
            let items = {
                let mut ingest = self.ingest.lock();
                while ingest.unsynced.is_empty() && !ingest.stopping {
                    self.wake_flusher.wait(&mut ingest);
                }
                if ingest.unsynced.is_empty() {
                    return;
                }
                std::mem::take(&mut ingest.unsynced)
            };
            let last = items.last().map(|i| i.seq).unwrap_or(0);
            if let Err(e) = self.log.lock().append(&items) {
                tracing::error!(error = %e, "cannot write the item log: refusing further writes");
                self.failed.store(true, Ordering::Relaxed);
                self.durable.send_replace(u64::MAX);
                return;
            }
            self.metrics.log_syncs.fetch_add(1, Ordering::Relaxed);
            self.durable.send_replace(last);
        }
    }

    /// Stops the log thread once it has synced what it holds, and waits for it. Call before
    /// dropping the chain: the thread holds a reference, so the store stays open until then.
    pub fn shutdown(&self) {
        self.ingest.lock().stopping = true;
        self.wake_flusher.notify_one();
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
    }

    /// Builds, signs and commits a block of the oldest durable queued items, if there are any.
    ///
    /// This is a single validator's whole round: propose on the head, sign the header as the
    /// only validator, finalize.
    pub fn produce_next_block(&self) -> Result<Option<(Header, usize, usize)>, NodeError> {
        let Some(header) = self.propose(self.head().hash, false)? else {
            return Ok(None);
        };
        let hash = header.hash();
        // Without simplex, the block's view is its height.
        let certificate =
            FinalityCertificate::new(header.height, hash, 0, header.height, self.head().height)
                .signed_by(&self.validator);
        self.finalize(hash, certificate).map(Some)
    }

    /// Whether storage failed (the node then stops producing and accepting).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// How long a reading that skips seqs waits before it is proposed: nothing with one
    /// validator (no one else can hold the skipped ones), [`GAP_GRACE_MS`] with several.
    fn gap_grace_ms(&self) -> u64 {
        if self.genesis.validators.len() > 1 {
            GAP_GRACE_MS
        } else {
            0
        }
    }

    /// The oldest durable queue items a block on `base` with time `at_ms` takes, within the
    /// block's limits, leaving out those already in its uncommitted ancestors. Deterministic in the queue, `base` and `at_ms`, so a recorded
    /// proposal can be rebuilt after a restart.
    fn next_batch(&self, base: &Base, at_ms: u64) -> Vec<Queued> {
        let durable = *self.durable.borrow();
        let params = &self.genesis.params;
        let grace = self.gap_grace_ms();
        let ingest = self.ingest.lock();
        let (mut readings, mut txs, mut gas) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        // The last seq per device once the readings chosen so far apply.
        let mut last_seq: HashMap<DeviceAddress, Option<u64>> = HashMap::new();
        let fresh = |q: &&Queued| {
            !base.excluded_seqs.contains(&q.seq) && !base.excluded_ids.contains(&q.id)
        };
        for q in ingest
            .queue
            .values()
            .take_while(|q| q.seq <= durable)
            .filter(fresh)
        {
            if let Some(meta) = &q.meta {
                let last = *last_seq
                    .entry(meta.device)
                    .or_insert_with(|| base.state.device(&meta.device).and_then(|d| d.last_seq));
                // A reading that skips seqs waits `grace` first: the skipped ones may be
                // held by another validator (accepted there, its forward to us lost), and
                // including this one first would make them replays.
                let gap = last.is_some_and(|l| meta.seq > l.saturating_add(1));
                if gap && at_ms < q.arrival_ms.saturating_add(grace) {
                    continue;
                }
                last_seq.insert(meta.device, Some(meta.seq));
            }
            let (count, max) = match q.kind {
                ItemKind::Reading => (&mut readings, params.max_readings_per_block),
                ItemKind::Tx | ItemKind::EthTx => (&mut txs, params.max_transactions_per_block),
            };
            if *count >= max {
                break;
            }
            // Ethereum transactions fill the block by their gas limits.
            if let Some(tx) = &q.eth {
                if gas + tx.gas_limit() > params.block_gas_limit {
                    break;
                }
                gas += tx.gas_limit();
            }
            *count += 1;
            out.push(q.clone());
        }
        out
    }

    /// Builds a block on `parent` (the head, or a block proposed or verified here and not
    /// yet committed) from the oldest durable queued items, without committing it: it waits
    /// for [`Chain::finalize`] with a certificate. Returns `None` when there is nothing to
    /// include and `allow_empty` is false.
    ///
    /// This is the proposer's half of consensus; [`Chain::finalize`] is the reporter's half.
    pub fn propose(&self, parent: B256, allow_empty: bool) -> Result<Option<Header>, NodeError> {
        let base = self.base(parent).ok_or_else(|| {
            let head = self.head();
            NodeError::Consensus(format!(
                "cannot build on {parent}: neither the head ({} at height {}) nor a block \
                 proposed or verified here",
                head.hash, head.height
            ))
        })?;
        let timestamp_ms = now_ms().max(base.timestamp_ms);
        let items = self.next_batch(&base, timestamp_ms);
        if items.is_empty() && !allow_empty {
            return Ok(None);
        }
        self.build(base, items, timestamp_ms).map(Some)
    }

    /// Whether a block can be built on (or verified against) `parent` now: it is the head,
    /// or a block proposed or verified here and not yet committed.
    pub fn can_extend(&self, parent: &B256) -> bool {
        self.head().hash == *parent || self.proposed_header(parent).is_some()
    }

    /// What a block on `parent` builds on, if `parent` is the head or a proposal (restored
    /// from the store after a restart if need be).
    fn base(&self, parent: B256) -> Option<Base> {
        // A finalization in flight takes the blocks it commits out of the proposals before
        // the head moves to them: wait for it to finish, then look once more.
        self.try_base(parent).or_else(|| {
            drop(self.commit_lock.lock());
            self.try_base(parent)
        })
    }

    fn try_base(&self, parent: B256) -> Option<Base> {
        let committed = self.committed.read();
        let head = self.head();
        if parent == head.hash {
            return Some(Base {
                height: head.height,
                hash: head.hash,
                timestamp_ms: head.timestamp_ms,
                state: committed.clone(),
                gas: *self.head_gas.read(),
                branch: Vec::new(),
                excluded_seqs: HashSet::new(),
                excluded_ids: HashSet::new(),
            });
        }
        drop(committed);
        self.proposed_header(&parent)?;
        let proposals = self.proposals.lock();
        let tip = proposals.get(&parent)?;
        let mut base = Base {
            height: tip.block.header.height,
            hash: parent,
            timestamp_ms: tip.block.header.timestamp_ms,
            state: tip.state.clone(),
            gas: tip.gas,
            branch: Vec::new(),
            excluded_seqs: HashSet::new(),
            excluded_ids: HashSet::new(),
        };
        // Walk back to the head: every ancestor must be an uncommitted proposal.
        let mut at = parent;
        for _ in 0..MAX_UNCOMMITTED_DEPTH {
            if at == head.hash {
                return Some(base);
            }
            let p = proposals.get(&at)?;
            base.branch.push((p.block.header.height, at));
            base.excluded_seqs.extend(p.consumed.iter().copied());
            base.excluded_ids
                .extend(p.readings.iter().map(|(id, _)| B256::from(*id)));
            base.excluded_ids.extend(p.txs.iter().map(|(h, _)| *h));
            at = p.block.header.parent_hash;
        }
        None
    }

    /// Like [`Chain::propose`], and records the proposal durably (header and item count)
    /// before returning, so that after a crash a finalization of it can still be committed:
    /// the items are still in the log, and rebuilding from them gives the same block.
    pub fn propose_durable(&self, parent: B256) -> Result<Header, NodeError> {
        let header = self.propose(parent, true)?.expect("empty blocks allowed");
        let consumed = self.proposals.lock()[&header.hash()].consumed.len() as u32;
        self.store.put_proposal(&header, consumed)?;
        Ok(header)
    }

    /// The header of a block proposed or verified here and not yet finalized, restoring a
    /// proposal of this node from the store after a restart (with its uncommitted ancestors).
    pub fn proposed_header(&self, hash: &B256) -> Option<Header> {
        self.restore_proposal(hash, MAX_UNCOMMITTED_DEPTH)
    }

    fn restore_proposal(&self, hash: &B256, depth: usize) -> Option<Header> {
        if let Some(p) = self.proposals.lock().get(hash) {
            return Some(p.block.header.clone());
        }
        if self.unrestorable.lock().contains(hash) {
            return None;
        }
        let (header, consumed) = self.store.proposal(hash).ok().flatten()?;
        if header.parent_hash != self.head().hash {
            // Built on an uncommitted block of its own: restore that one first.
            self.restore_proposal(&header.parent_hash, depth.checked_sub(1)?)?;
        }
        let base = self.base(header.parent_hash)?;
        let items: Vec<Queued> = self
            .next_batch(&base, header.timestamp_ms)
            .into_iter()
            .take(consumed as usize)
            .collect();
        if items.len() != consumed as usize {
            // Not all its items are back yet (the log's durable mark may still be moving).
            return None;
        }
        let rebuilt = self
            .build(base, items, header.timestamp_ms)
            .ok()
            .filter(|h| h.hash() == *hash);
        if rebuilt.is_none() {
            tracing::warn!(%hash, "a proposal recorded before the restart does not rebuild; it is left to sync");
            self.unrestorable.lock().insert(*hash);
        }
        rebuilt
    }

    /// The whole block of a proposal built or verified here and not yet finalized.
    pub fn proposed_block(&self, hash: &B256) -> Option<Block> {
        self.proposed_header(hash)?;
        self.proposals.lock().get(hash).map(|p| p.block.clone())
    }

    /// Whether `hash` is a block proposed here and not yet finalized.
    pub fn has_proposal(&self, hash: &B256) -> bool {
        self.proposed_header(hash).is_some()
    }

    /// The execution context and block hashes of a block at `height` on `base` (the same
    /// for the proposer building it and every validator verifying it).
    fn block_env<'a>(
        &'a self,
        base: &'a Base,
        height: u64,
        timestamp_ms: u64,
        parent: B256,
        proposer: &B256,
    ) -> (iotchain_evm::BlockContext, StoreHashes<'a>) {
        let base_fee = next_base_fee(&self.genesis, base.gas);
        let ctx = block_context(
            &self.genesis,
            height,
            timestamp_ms,
            parent,
            proposer,
            base_fee,
        );
        let hashes = StoreHashes {
            store: &self.store,
            number: height,
            branch: &base.branch,
        };
        (ctx, hashes)
    }

    /// Applies `items` (the oldest queue items not in `base`'s ancestors) on `base`'s state
    /// and keeps the resulting block as a proposal.
    fn build(
        &self,
        mut base: Base,
        items: Vec<Queued>,
        timestamp_ms: u64,
    ) -> Result<Header, NodeError> {
        let parent = base.hash;
        let height = base.height + 1;
        let mut state = std::mem::take(&mut base.state);
        let proposer = B256::from(self.validator.public_key());
        let (ctx, hashes) = self.block_env(&base, height, timestamp_ms, parent, &proposer);
        let base_fee = ctx.base_fee;
        let mut executor = BlockExecutor::new(ctx, &hashes);
        let mut receipts = BlockReceipts::default();
        let mut hook_calls: Vec<(DeviceAddress, StreamHead)> = Vec::new();
        let mut block_items = Vec::with_capacity(items.len());
        let mut readings: Vec<([u8; 32], ReadingLocation)> = Vec::new();
        let mut txs: Vec<(B256, TxLocation)> = Vec::new();
        let mut gaps: Vec<(DeviceAddress, Gap)> = Vec::new();
        let mut ids: Vec<[u8; 32]> = Vec::new();
        let mut tx_leaves: Vec<[u8; 32]> = Vec::new();
        for q in &items {
            let item = block_items.len() as u32;
            match q.kind {
                ItemKind::Reading => {
                    let meta = q.meta.as_ref().expect("queued readings carry their meta");
                    match apply_reading(&mut state, meta, q.id, q.key_version, Some(&mut gaps)) {
                        Ok(()) => {
                            hooked(&state, meta, q.id, &mut hook_calls);
                            let location = ReadingLocation {
                                height,
                                index: ids.len() as u32,
                                item,
                                arrival_ms: q.arrival_ms,
                                ts: Some(meta.ts),
                            };
                            readings.push((q.id.0, location));
                            ids.push(q.id.0);
                            block_items.push(BlockItem::Reading(q.bytes.clone()));
                        }
                        Err(e) => {
                            tracing::error!(id = %q.id, error = %e.message, "accepted reading no longer applies; dropped")
                        }
                    }
                }
                ItemKind::Tx => {
                    match apply_tx_bytes(&mut state, &q.bytes, self.genesis.chain_id, height) {
                        Ok(hash) => {
                            txs.push((hash, TxLocation { height, item }));
                            tx_leaves.push(iotchain_merkle::leaf_hash(&q.bytes));
                            block_items.push(BlockItem::Tx(q.bytes.clone()));
                        }
                        Err(e) => {
                            tracing::error!(hash = %q.id, error = %e.message, "accepted transaction no longer applies; dropped")
                        }
                    }
                }
                ItemKind::EthTx => {
                    let tx = match &q.eth {
                        Some(tx) => tx.clone(),
                        None => match decode_eth(&self.genesis, &q.bytes) {
                            Ok(tx) => Arc::new(tx),
                            Err(e) => {
                                tracing::error!(hash = %q.id, error = %e.message, "accepted transaction does not decode; dropped");
                                continue;
                            }
                        },
                    };
                    match executor.execute(&mut state, &tx) {
                        Ok(receipt) => {
                            receipts.push(height, receipt);
                            txs.push((tx.hash, TxLocation { height, item }));
                            tx_leaves.push(iotchain_merkle::leaf_hash(&q.bytes));
                            block_items.push(BlockItem::EthTx(q.bytes.clone()));
                        }
                        Err(e) => {
                            tracing::error!(hash = %q.id, error = %e, "accepted transaction no longer applies; dropped")
                        }
                    }
                }
            }
        }
        receipts.run_hooks(&mut executor, &mut state, &hook_calls, height);
        let gas = BlockGas {
            base_fee,
            gas_used: executor.gas_used(),
        };
        let records = state.changed_records();
        let header = Header {
            chain_id: self.genesis.chain_id,
            height,
            parent_hash: parent,
            timestamp_ms,
            proposer,
            readings_root: B256::from(iotchain_merkle::root(&ids)),
            reading_count: ids.len() as u64,
            transactions_root: B256::from(iotchain_merkle::root(&tx_leaves)),
            transaction_count: tx_leaves.len() as u64,
            state_root: state.root(),
        };
        let proposal = Proposal {
            block: Block {
                header: header.clone(),
                items: block_items,
            },
            state,
            records,
            readings,
            txs,
            gaps,
            receipts: receipts.encoded,
            hook_calls: receipts.hook_calls,
            gas,
            consumed: items.iter().map(|q| q.seq).collect(),
        };
        self.proposals.lock().insert(header.hash(), proposal);
        Ok(header)
    }

    /// Commits a proposed or verified block with its finality certificate: one durable write,
    /// then the committed state, the queue and the head move on. Returns the header and the
    /// numbers of readings and transactions.
    ///
    /// The block may have been built here ([`Chain::propose`]) or by another validator
    /// ([`Chain::verify_block`]); its items leave this node's queue either way, and items of
    /// the queue that no longer apply after it (a reading replayed by another node's block,
    /// say) are dropped.
    ///
    /// Uncommitted ancestors of the block (a leader may build on a notarized block before it
    /// is finalized) are committed first, in order: a finalization finalizes every ancestor.
    /// Each ancestor is stored with this block's certificate; its proofs carry the headers
    /// that link it to the certified one.
    pub fn finalize(
        &self,
        hash: B256,
        certificate: FinalityCertificate,
    ) -> Result<(Header, usize, usize), NodeError> {
        let _commit = self.commit_lock.lock();
        let path = {
            let proposals = self.proposals.lock();
            let head = self.head().hash;
            let mut path = Vec::new();
            let mut at = hash;
            while at != head {
                let p = proposals.get(&at).ok_or_else(|| {
                    NodeError::Consensus(if at == hash {
                        format!("block {hash} was neither proposed nor verified here")
                    } else {
                        format!(
                            "block {hash} extends {at}, which is neither committed nor known here"
                        )
                    })
                })?;
                if path.len() > MAX_UNCOMMITTED_DEPTH {
                    return Err(NodeError::Consensus(format!(
                        "block {hash} is more than {MAX_UNCOMMITTED_DEPTH} blocks past the head"
                    )));
                }
                path.push(at);
                at = p.block.header.parent_hash;
            }
            path
        };
        let tip_height = self
            .proposals
            .lock()
            .get(&hash)
            .map(|p| p.block.header.height);
        if certificate.header_hash != hash || Some(certificate.height) != tip_height {
            return Err(NodeError::Consensus(format!(
                "the certificate for {} at height {} is not for block {hash}",
                certificate.header_hash, certificate.height
            )));
        }
        let (mut readings, mut txs) = (0, 0);
        let mut last = None;
        for block in path.into_iter().rev() {
            let (header, r, t) = self.commit_proposal(block, &certificate)?;
            readings += r;
            txs += t;
            last = Some(header);
        }
        let header =
            last.ok_or_else(|| NodeError::Consensus(format!("block {hash} is already the head")))?;
        Ok((header, readings, txs))
    }

    /// Commits one proposal whose parent is the head.
    fn commit_proposal(
        &self,
        hash: B256,
        certificate: &FinalityCertificate,
    ) -> Result<(Header, usize, usize), NodeError> {
        let proposal = self.proposals.lock().remove(&hash).ok_or_else(|| {
            NodeError::Consensus(format!("block {hash} is no longer a proposal here"))
        })?;
        let head = self.head();
        if proposal.block.header.parent_hash != head.hash {
            return Err(NodeError::Consensus(format!(
                "block {hash} does not extend the head {}",
                head.hash
            )));
        }
        let included: HashSet<B256> = proposal
            .readings
            .iter()
            .map(|(id, _)| B256::from(*id))
            .chain(proposal.txs.iter().map(|(h, _)| *h))
            .collect();
        // Everything in the log up to the oldest item still waiting is in a block now.
        let log_done = {
            let ingest = self.ingest.lock();
            let oldest_waiting = ingest
                .queue
                .values()
                .find(|q| {
                    // `consumed` is in queue order, so sorted.
                    !included.contains(&q.id) && proposal.consumed.binary_search(&q.seq).is_err()
                })
                .map(|q| q.seq);
            oldest_waiting.unwrap_or(ingest.next_seq).saturating_sub(1)
        }
        .max(self.store.log_done()?);
        let commit = BlockCommit {
            block: &proposal.block,
            certificate,
            readings: &proposal.readings,
            txs: &proposal.txs,
            state: &proposal.records,
            gaps: &proposal.gaps,
            receipts: &proposal.receipts,
            hook_calls: &proposal.hook_calls,
            gas: proposal.gas,
            log_done,
        };
        if let Err(e) = self.store.commit_block(&commit) {
            self.failed.store(true, Ordering::Relaxed);
            return Err(e.into());
        }
        let header = proposal.block.header;
        {
            // The committed state, its gas figures and the head change together: `base`
            // reads them under the same lock.
            let mut committed = self.committed.write();
            *committed = proposal.state;
            *self.head_gas.write() = proposal.gas;
            self.head.send_replace(HeadInfo {
                height: header.height,
                hash,
                timestamp_ms: header.timestamp_ms,
            });
        }
        self.settle_queue(&included, &proposal.consumed, &proposal.records);
        // Proposals at or below the new head can no longer be finalized; those above it may
        // (if they descend from it). Removed only now that the head has moved, so a block
        // on this one always finds its parent as the head or as a proposal.
        self.proposals
            .lock()
            .retain(|_, p| p.block.header.height > header.height);
        self.log.lock().prune(log_done)?;
        self.consensus_stats.last_finality_ms.store(
            now_ms().saturating_sub(header.timestamp_ms),
            Ordering::Relaxed,
        );
        let (readings, txs) = (proposal.readings.len(), proposal.txs.len());
        self.metrics.blocks.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .readings_final
            .fetch_add(readings as u64, Ordering::Relaxed);
        Ok((header, readings, txs))
    }

    /// Takes a committed block's items out of the queue and brings the pending view (the
    /// committed state plus the queued readings and owner transactions) up to the new
    /// committed state.
    ///
    /// A block built here consumed a prefix of the queue: when it changed device records
    /// only (readings), the pending view holds its effects already. Otherwise the pending view
    /// takes the accounts the block changed, and the device records it changed with the queued
    /// readings of those devices applied again; when the block changed owner records or owner
    /// transactions are queued (registry administration, rare) it is rebuilt from the
    /// committed state. Queued items that no longer apply are dropped, and so are Ethereum
    /// transactions whose nonce the block used or skipped.
    fn settle_queue(&self, included: &HashSet<B256>, consumed: &[u64], changed: &StateRecords) {
        let built_here = !consumed.is_empty() || included.is_empty();
        let mut guard = self.ingest.lock();
        let ingest = &mut *guard;
        // A block built here may have left out queued items that no longer applied.
        for seq in consumed {
            ingest.remove(*seq);
        }
        for id in included {
            if let Some(seq) = ingest.index.get(id).copied() {
                ingest.remove(seq);
            }
        }
        let only_devices = changed.owners.is_empty()
            && changed.accounts.is_empty()
            && changed.storage.is_empty()
            && changed.wiped.is_empty()
            && changed.code.is_empty();
        if built_here && only_devices {
            return;
        }
        let committed = self.committed.read();
        let mut dropped = Vec::new();
        if changed.owners.is_empty() && ingest.owner_txs == 0 {
            ingest.pending.absorb_accounts(changed);
            let touched: HashSet<DeviceAddress> =
                changed.devices.iter().map(|d| d.address).collect();
            for d in &touched {
                ingest.pending.copy_device_from(&committed, d);
            }
            for q in ingest.queue.values() {
                let Some(meta) = q.meta.as_ref().filter(|m| touched.contains(&m.device)) else {
                    continue;
                };
                if let Err(e) = apply_reading(&mut ingest.pending, meta, q.id, q.key_version, None)
                {
                    tracing::info!(id = %q.id, error = %e.message, "queued reading no longer applies after a block; dropped");
                    dropped.push(q.seq);
                }
            }
        } else {
            let mut pending = committed.clone();
            let chain_id = self.genesis.chain_id;
            for q in ingest.queue.values() {
                let applied = match (&q.kind, &q.meta) {
                    (ItemKind::Reading, Some(meta)) => {
                        apply_reading(&mut pending, meta, q.id, q.key_version, None)
                    }
                    (ItemKind::Tx, _) => {
                        apply_tx_bytes(&mut pending, &q.bytes, chain_id, 0).map(|_| ())
                    }
                    // Ethereum transactions are checked by their senders' nonces below.
                    _ => Ok(()),
                };
                if let Err(e) = applied {
                    tracing::info!(id = %q.id, error = %e.message, "queued item no longer applies after a block; dropped");
                    dropped.push(q.seq);
                }
            }
            ingest.pending = pending;
        }
        drop(committed);
        for seq in dropped {
            ingest.remove(seq);
        }
        ingest.drop_stale_eth_txs();
    }

    /// Checks a block proposed by another validator: it extends the head, and every reading
    /// and transaction in it is well-formed, signed by its device or owner and applies in
    /// order (no replay, no unknown device); its roots and state root are recomputed. A block
    /// that passes is kept for [`Chain::finalize`]; the error says why one does not.
    pub fn verify_block(&self, block: Block) -> Result<Header, NodeError> {
        let reject = |why: String| NodeError::Consensus(format!("block rejected: {why}"));
        let header = block.header.clone();
        let hash = header.hash();
        if header.chain_id != self.genesis.chain_id {
            return Err(reject(format!("chain id {}", header.chain_id)));
        }
        let Some(mut base) = self.base(header.parent_hash) else {
            let head = self.head();
            return Err(reject(format!(
                "parent {} does not extend the head {} at height {} nor a block known here",
                header.parent_hash, head.hash, head.height
            )));
        };
        if header.height != base.height + 1 {
            return Err(reject(format!(
                "height {} does not follow its parent's height {}",
                header.height, base.height
            )));
        }
        if header.timestamp_ms < base.timestamp_ms
            || header.timestamp_ms > now_ms() + MAX_CLOCK_DRIFT_MS
        {
            return Err(reject(format!(
                "time {} is before its parent's or too far ahead",
                header.timestamp_ms
            )));
        }
        if !self.genesis.validator_keys().contains(&header.proposer) {
            return Err(reject(format!(
                "proposer {} is not a validator",
                header.proposer
            )));
        }
        let params = &self.genesis.params;
        let max = self.max_reading_bytes();
        let height = header.height;
        let mut state = std::mem::take(&mut base.state);
        let (ctx, hashes) = self.block_env(
            &base,
            height,
            header.timestamp_ms,
            header.parent_hash,
            &header.proposer,
        );
        let base_fee = ctx.base_fee;
        let mut executor = BlockExecutor::new(ctx, &hashes);
        let mut receipts = BlockReceipts::default();
        let mut hook_calls: Vec<(DeviceAddress, StreamHead)> = Vec::new();
        let mut readings: Vec<([u8; 32], ReadingLocation)> = Vec::new();
        let mut txs: Vec<(B256, TxLocation)> = Vec::new();
        let mut gaps: Vec<(DeviceAddress, Gap)> = Vec::new();
        let mut tx_leaves: Vec<[u8; 32]> = Vec::new();
        let mut to_verify: Vec<CheckedReading> = Vec::new();
        let arrival_ms = now_ms();
        // Readings this node accepted itself were decoded and verified then (the id is the
        // hash of the signed bytes): they are applied from what the queue kept, unless the
        // device's key changed since; the rest are decoded here and verified in one batch.
        let ids: Vec<Option<B256>> = block
            .items
            .iter()
            .map(|it| match it {
                BlockItem::Reading(b) => Some(B256::from(iotchain_reading::reading_id(b))),
                BlockItem::Tx(_) | BlockItem::EthTx(_) => None,
            })
            .collect();
        let eth_hashes: Vec<Option<B256>> = block
            .items
            .iter()
            .map(|it| match it {
                BlockItem::EthTx(b) => Some(alloy_primitives::keccak256(b)),
                _ => None,
            })
            .collect();
        // Ethereum transactions this node accepted were decoded and their senders recovered
        // then (the hash is of the signed bytes).
        type Known = HashMap<B256, (ReadingMeta, u32)>;
        type KnownEth = HashMap<B256, Arc<EthTx>>;
        let (known, known_eth): (Known, KnownEth) = {
            let ingest = self.ingest.lock();
            let known = ids
                .iter()
                .flatten()
                .filter_map(|id| {
                    let q = ingest.queue.get(ingest.index.get(id)?)?;
                    Some((*id, (q.meta.clone()?, q.key_version)))
                })
                .collect();
            let known_eth = eth_hashes
                .iter()
                .flatten()
                .filter_map(|h| {
                    let q = ingest.queue.get(ingest.index.get(h)?)?;
                    Some((*h, q.eth.clone()?))
                })
                .collect();
            (known, known_eth)
        };
        for (item, it) in block.items.iter().enumerate() {
            match it {
                BlockItem::Reading(bytes) => {
                    if readings.len() as u64 >= params.max_readings_per_block {
                        return Err(reject("too many readings".into()));
                    }
                    let id = ids[item].expect("a reading has an id");
                    let fast = known.get(&id).filter(|(meta, kv)| {
                        state.device(&meta.device).map(|r| r.key_version()) == Some(*kv)
                    });
                    let bad = |e: ApiError| reject(format!("reading {item}: {}", e.message));
                    let ts = match fast {
                        Some((meta, kv)) => {
                            apply_reading(&mut state, meta, id, *kv, Some(&mut gaps))
                                .map_err(bad)?;
                            hooked(&state, meta, id, &mut hook_calls);
                            meta.ts
                        }
                        None => {
                            let d = decode_reading(bytes.clone(), max).map_err(bad)?;
                            let c = attach_key(&state, d).map_err(bad)?;
                            apply_reading(
                                &mut state,
                                &c.d.meta,
                                c.d.id,
                                c.key_version,
                                Some(&mut gaps),
                            )
                            .map_err(bad)?;
                            hooked(&state, &c.d.meta, c.d.id, &mut hook_calls);
                            let ts = c.d.meta.ts;
                            to_verify.push(c);
                            ts
                        }
                    };
                    let location = ReadingLocation {
                        height,
                        index: readings.len() as u32,
                        item: item as u32,
                        arrival_ms,
                        ts: Some(ts),
                    };
                    readings.push((id.0, location));
                }
                BlockItem::Tx(bytes) => {
                    if txs.len() as u64 >= params.max_transactions_per_block {
                        return Err(reject("too many transactions".into()));
                    }
                    let tx_hash = apply_tx_bytes(&mut state, bytes, self.genesis.chain_id, height)
                        .map_err(|e| reject(format!("transaction {item}: {}", e.message)))?;
                    txs.push((
                        tx_hash,
                        TxLocation {
                            height,
                            item: item as u32,
                        },
                    ));
                    tx_leaves.push(iotchain_merkle::leaf_hash(bytes));
                }
                BlockItem::EthTx(bytes) => {
                    if txs.len() as u64 >= params.max_transactions_per_block {
                        return Err(reject("too many transactions".into()));
                    }
                    let bad = |e: String| reject(format!("transaction {item}: {e}"));
                    let tx = match eth_hashes[item].and_then(|h| known_eth.get(&h)) {
                        Some(tx) => tx.clone(),
                        None => {
                            Arc::new(decode_eth(&self.genesis, bytes).map_err(|e| bad(e.message))?)
                        }
                    };
                    let receipt = executor
                        .execute(&mut state, &tx)
                        .map_err(|e| bad(e.to_string()))?;
                    receipts.push(height, receipt);
                    txs.push((
                        tx.hash,
                        TxLocation {
                            height,
                            item: item as u32,
                        },
                    ));
                    tx_leaves.push(iotchain_merkle::leaf_hash(bytes));
                }
            }
        }
        receipts.run_hooks(&mut executor, &mut state, &hook_calls, height);
        let gas = BlockGas {
            base_fee,
            gas_used: executor.gas_used(),
        };
        let checks: Vec<SignatureCheck<'_>> = to_verify
            .iter()
            .map(|c| SignatureCheck {
                key: &c.key,
                message: &c.d.sig_structure,
                signature: &c.d.signature,
            })
            .collect();
        if let Some(bad) = verify_signatures(&checks).iter().position(|ok| !ok) {
            return Err(reject(format!(
                "reading {} of device {} has a bad signature",
                to_verify[bad].d.id, to_verify[bad].d.meta.device
            )));
        }
        let ids: Vec<[u8; 32]> = readings.iter().map(|(id, _)| *id).collect();
        let expect = |what: &str, got: B256, want: B256| {
            if got == want {
                Ok(())
            } else {
                Err(reject(format!("{what} is {want}, recomputed {got}")))
            }
        };
        expect(
            "readings_root",
            B256::from(iotchain_merkle::root(&ids)),
            header.readings_root,
        )?;
        expect(
            "transactions_root",
            B256::from(iotchain_merkle::root(&tx_leaves)),
            header.transactions_root,
        )?;
        if header.reading_count != ids.len() as u64
            || header.transaction_count != tx_leaves.len() as u64
        {
            return Err(reject("item counts do not match the items".into()));
        }
        let records = state.changed_records();
        expect("state_root", state.root(), header.state_root)?;
        self.proposals.lock().insert(
            hash,
            Proposal {
                block,
                state,
                records,
                readings,
                txs,
                gaps,
                receipts: receipts.encoded,
                hook_calls: receipts.hook_calls,
                gas,
                consumed: Vec::new(),
            },
        );
        Ok(header)
    }

    /// Commits a block another node finalized (block sync): checks its certificate against
    /// the validator set, then verifies and commits it like any other block.
    ///
    /// A block finalized through a descendant carries the descendant's certificate (a
    /// higher height): it is verified and held, and committed when that descendant is
    /// imported (`Ok(None)` until then; sync pages end at a block certified for itself).
    pub fn import_final(
        &self,
        block: Block,
        certificate: FinalityCertificate,
    ) -> Result<Option<(Header, usize, usize)>, NodeError> {
        let hash = block.header.hash();
        let height = block.header.height;
        let for_descendant = certificate.height > height;
        if !for_descendant && (certificate.header_hash != hash || certificate.height != height) {
            return Err(NodeError::Consensus(format!(
                "certificate for {} at height {} does not match block {hash} at height {height}",
                certificate.header_hash, certificate.height
            )));
        }
        certificate
            .verify(&self.genesis.validator_keys())
            .map_err(|e| NodeError::Consensus(format!("finality certificate: {e}")))?;
        if !self.proposals.lock().contains_key(&hash) {
            self.verify_block(block)?;
        }
        if for_descendant {
            return Ok(None);
        }
        self.finalize(hash, certificate).map(Some)
    }

    /// Where a reading stands, if the node knows it.
    pub fn reading_status(&self, id: &B256) -> Result<Option<ReadingStatus>, ApiError> {
        // Look in the queue first: an item leaves it only after its block is stored.
        let pending = {
            let ingest = self.ingest.lock();
            ingest
                .index
                .get(id)
                .and_then(|seq| ingest.queue.get(seq))
                .map(|q| (q.arrival_ms, q.meta.as_ref().map_or(0, |m| m.ts)))
        };
        if let Some(location) = self
            .store
            .reading(&id.0)
            .map_err(|e| ApiError::storage(&e))?
        {
            let block_time_ms = self
                .store
                .header(location.height)
                .map_err(|e| ApiError::storage(&e))?
                .map(|h| h.timestamp_ms)
                .unwrap_or(0);
            return Ok(Some(ReadingStatus::Final {
                location,
                block_time_ms,
            }));
        }
        Ok(pending.map(|(arrival_ms, ts)| ReadingStatus::Pending { arrival_ms, ts }))
    }

    /// Whether a transaction is final (`Some(location)`), pending (`None` inside `Ok(true)`).
    pub fn tx_status(&self, hash: &B256) -> Result<(Option<TxLocation>, bool), ApiError> {
        let pending = self.ingest.lock().index.contains_key(hash);
        let location = self
            .store
            .transaction(hash)
            .map_err(|e| ApiError::storage(&e))?;
        Ok((location, pending))
    }

    /// Builds the proof bundle of a final reading.
    pub fn proof(&self, id: &B256) -> Result<ProofBundle, ApiError> {
        let storage = |e: iotchain_storage::StorageError| ApiError::storage(&e);
        let location = self.store.reading(&id.0).map_err(storage)?.ok_or_else(|| {
            if self.ingest.lock().index.contains_key(id) {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "not_final",
                    format!("reading {id} is pending, not final yet"),
                )
            } else {
                ApiError::not_found(format!("reading {id} is unknown"))
            }
        })?;
        let block = self
            .store
            .block(location.height)
            .map_err(storage)?
            .ok_or_else(|| ApiError::storage(&"block missing"))?;
        let certificate = self
            .store
            .certificate(location.height)
            .map_err(storage)?
            .ok_or_else(|| ApiError::storage(&"certificate missing"))?;
        let descendants = (location.height + 1..=certificate.height)
            .map(|h| {
                self.store
                    .header(h)
                    .map_err(storage)?
                    .ok_or_else(|| ApiError::storage(&"descendant header missing"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = block.reading_ids();
        let audit_path = iotchain_merkle::audit_path(&ids, location.index as usize)
            .into_iter()
            .map(B256::from)
            .collect();
        let Some(BlockItem::Reading(message)) = block.items.get(location.item as usize) else {
            return Err(ApiError::storage(&"reading index points at a non-reading"));
        };
        let reading = iotchain_reading::decode(message).map_err(|e| ApiError::storage(&e))?;
        let record = self
            .with_committed(|s| s.device(&reading.device).cloned())
            .ok_or_else(|| ApiError::storage(&"device of a final reading missing"))?;
        let sig_structure = iotchain_reading::sig_structure(reading.protected, reading.payload);
        let key = std::iter::once(&record.public_key)
            .chain(record.previous_keys.iter().rev())
            .find(|k| {
                verify_signatures(&[SignatureCheck {
                    key: k,
                    message: &sig_structure,
                    signature: reading.signature,
                }])[0]
            })
            .cloned()
            .ok_or_else(|| ApiError::storage(&"no key of the device verifies a final reading"))?;
        Ok(ProofBundle {
            version: 1,
            reading_id: *id,
            message: message.clone(),
            index: location.index as u64,
            audit_path,
            device_key: DeviceKeyJson::from_key(&key),
            header: block.header,
            descendants,
            certificate,
        })
    }

    /// A device record from the committed state.
    pub fn device(&self, address: &DeviceAddress) -> Option<DeviceRecord> {
        self.with_committed(|s| s.device(address).cloned())
    }
}

/// A decoded reading whose signature is to be checked.
pub(crate) struct CheckedReading {
    d: Decoded,
    key_version: u32,
    /// The device's current key.
    key: DevicePublicKey,
}

/// A reading decoded outside any lock.
pub(crate) struct Decoded {
    alg: iotchain_reading::Alg,
    meta: ReadingMeta,
    id: B256,
    /// The signed bytes.
    sig_structure: Vec<u8>,
    signature: [u8; 64],
    bytes: Bytes,
}

/// What block production needs of a reading, kept so it is not decoded again.
#[derive(Debug, Clone)]
pub(crate) struct ReadingMeta {
    device: DeviceAddress,
    seq: u64,
    ts: u64,
    /// Shared, so cloning a queued reading's meta does not copy it.
    stream: Arc<str>,
    /// `data` in micro-units when it is a CBOR number.
    value: Option<I256>,
}

impl From<&iotchain_reading::Reading<'_>> for ReadingMeta {
    fn from(r: &iotchain_reading::Reading<'_>) -> Self {
        Self {
            device: r.device,
            seq: r.seq,
            ts: r.ts,
            stream: r.stream.into(),
            value: iotchain_state::micro_units(r.data),
        }
    }
}

fn decode_reading(message: Bytes, max: usize) -> Result<Decoded, ApiError> {
    if message.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "reading_too_large",
            format!("reading is {} bytes, the limit is {max}", message.len()),
        ));
    }
    let r = iotchain_reading::decode(&message).map_err(|e| ApiError::from_reading(&e))?;
    Ok(Decoded {
        alg: r.alg,
        meta: ReadingMeta::from(&r),
        id: B256::from(iotchain_reading::reading_id(&message)),
        sig_structure: iotchain_reading::sig_structure(r.protected, r.payload),
        signature: *r.signature,
        bytes: message.clone(),
    })
}

/// Looks up the device's key in the pending view and makes the cheap checks.
fn attach_key(pending: &State, d: Decoded) -> Result<CheckedReading, ApiError> {
    let device = &d.meta.device;
    let record = pending
        .device(device)
        .ok_or_else(|| ApiError::from_state(&iotchain_state::StateError::UnknownDevice(*device)))?;
    if record.public_key.alg() != d.alg {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_alg",
            format!(
                "device {device} signs with {}, the reading says {}",
                record.public_key.alg(),
                d.alg
            ),
        ));
    }
    pending
        .check_reading(device, record.key_version(), d.meta.seq)
        .map_err(|e| ApiError::from_state(&e))?;
    Ok(CheckedReading {
        key_version: record.key_version(),
        key: record.public_key.clone(),
        d,
    })
}

impl ReadingMeta {
    /// Decodes a stored reading's meta and id.
    fn decode(bytes: &[u8]) -> Result<(Self, B256), ApiError> {
        let r = iotchain_reading::decode(bytes).map_err(|e| ApiError::from_reading(&e))?;
        Ok((
            Self::from(&r),
            B256::from(iotchain_reading::reading_id(bytes)),
        ))
    }
}

/// Notes a reading just applied to `state` when its device has a hook on its stream: the
/// hook is called once the block's items are applied.
fn hooked(
    state: &State,
    meta: &ReadingMeta,
    id: B256,
    calls: &mut Vec<(DeviceAddress, StreamHead)>,
) {
    if state.hook(&meta.device, &meta.stream).is_some() {
        calls.push((meta.device, stream_head(meta, id)));
    }
}

fn stream_head(meta: &ReadingMeta, id: B256) -> StreamHead {
    StreamHead {
        stream: meta.stream.to_string(),
        seq: meta.seq,
        ts: meta.ts,
        id,
        value: meta.value,
    }
}

/// Applies a reading (verified when accepted) to a state, recording a seq gap if any.
fn apply_reading(
    state: &mut State,
    meta: &ReadingMeta,
    id: B256,
    key_version: u32,
    gaps: Option<&mut Vec<(DeviceAddress, Gap)>>,
) -> Result<(), ApiError> {
    let applied = state
        .apply_reading(&meta.device, key_version, meta.seq, meta.ts, id)
        .map_err(|e| ApiError::from_state(&e))?;
    if let (Some(gaps), Some(gap)) = (gaps, applied.gap) {
        gaps.push((meta.device, gap));
    }
    state.record_stream(
        &meta.device,
        &StreamHead {
            stream: &*meta.stream,
            seq: meta.seq,
            ts: meta.ts,
            id,
            value: meta.value,
        },
    );
    Ok(())
}

/// Applies a stored transaction to a state.
fn apply_tx_bytes(
    state: &mut State,
    bytes: &[u8],
    chain_id: u64,
    height: u64,
) -> Result<B256, ApiError> {
    let tx = SignedTx::decode_and_check(bytes, chain_id)
        .map_err(|e| ApiError::bad_request("invalid_transaction", e.to_string()))?;
    state
        .apply_tx(&tx, height)
        .map_err(|e| ApiError::from_state(&e))?;
    Ok(tx.hash())
}

/// Decodes an Ethereum transaction of this chain and recovers its sender.
fn decode_eth(genesis: &Genesis, bytes: &[u8]) -> Result<EthTx, ApiError> {
    EthTx::decode(
        bytes,
        genesis.chain_id,
        genesis.params.max_eth_tx_bytes as usize,
    )
    .map_err(|e| ApiError::from_evm(&e))
}
