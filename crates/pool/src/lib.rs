//! The iotchain pool: admission of readings and transactions, the pending queue and its
//! group-committed item log.
//!
//! ```text
//!  HTTP / MQTT / JSON-RPC / peers ── submit(items, Origin) ──┐
//!                                                            ▼
//!     decode ─▶ key from the pending view ─▶ batch-verify signatures, recover senders
//!                                                            │ (the runtime's blocking pool)
//!                                                            ▼
//!     queue (pending view += item) ──▶ unsynced ──▶ item log: one fsync per group ──▶ 2xx
//!            │                                                        │
//!            │ best_items(base, time)                                  └──▶ relay to peers (Local only)
//!            ▼
//!     the engine builds a block ──▶ commits it ──▶ on_commit: queue settled, pending view rebased
//! ```
//!
//! An item is acknowledged only once the log holds it: a `kill -9` after a 2xx never loses it
//! (on start the log is read back past the last block's mark). Time comes from the node's
//! [`Runtime`], as do the threads that verify and sync.

mod admission;
mod log;
mod queue;
mod select;
mod settle;
pub use select::Selection;
pub use settle::CommittedBlock;

use std::{
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use alloy_primitives::{Address, B256};
use iotchain_api::{Item, ItemPool, NodeMetrics, Origin, PoolError, Refused, Runtime, Submitted};
use iotchain_block::Genesis;
use iotchain_evm::EthTx;
use iotchain_execution::{AcceptedItem, ReadingMeta, apply_owner_tx, apply_reading, decode_eth_tx};
use iotchain_state::State;
use iotchain_storage::{BlockGas, ItemKind, ItemLog, StorageError};
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::queue::Queue;

/// How the pool is set up.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Its hash (what readings sign as COSE `external_aad` when the genesis says so).
    pub genesis_hash: B256,
    /// Directory of the item log.
    pub log_dir: PathBuf,
    /// Most accepted items waiting for a block; beyond it submissions get `overloaded`.
    pub max_pending_items: usize,
    /// Most readings in one submission.
    pub max_batch_readings: usize,
    /// The key this node proposes with (the pending block's fee recipient).
    pub proposer: B256,
    /// Whether this node is a validator (it proposes what it holds itself); a follower only
    /// relays, and refuses new items once no validator was reachable for
    /// [`UNREACHABLE_AFTER_MS`].
    pub proposes: bool,
}

/// How long a follower may fail to reach any validator before it refuses new items
/// (`validators_unreachable`): it still holds, and keeps offering, what it acknowledged.
pub const UNREACHABLE_AFTER_MS: u64 = 30_000;

/// The block the next one builds on, as the pool checks Ethereum transactions against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: B256,
    /// Its time.
    pub timestamp_ms: u64,
    /// Its base fee and gas used.
    pub gas: BlockGas,
}

/// The pool. Cheap to clone: every clone is the same pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (r, t) = self.pending_counts();
        f.debug_struct("Pool")
            .field("readings", &r)
            .field("transactions", &t)
            .finish()
    }
}

struct Inner {
    genesis: Genesis,
    config: PoolConfig,
    runtime: Arc<dyn Runtime>,
    queue: Mutex<Queue>,
    /// The block the next one builds on.
    parent: Mutex<Parent>,
    log: Mutex<ItemLog>,
    /// Wakes the item log's task.
    flush: Notify,
    /// The highest item-log seq synced.
    durable: AtomicU64,
    /// Wakes the submissions waiting for a sync, in the order they began waiting (a
    /// `tokio::sync::watch` spreads its waiters over shards picked by a thread-local random
    /// number, which would make the deterministic simulation's runs differ).
    synced: Notify,
    /// The item log failed: nothing more is accepted.
    failed: AtomicBool,
    stopping: AtomicBool,
    /// Turns true when the item log's task has synced all and ended.
    stopped: watch::Sender<bool>,
    metrics: NodeMetrics,
    /// Where accepted local items go to reach the other nodes.
    relay: OnceLock<mpsc::UnboundedSender<Vec<Item>>>,
    /// Whether a reading or transaction is final already (the chain store's indexes).
    is_final: FinalLookup,
    /// Refusals not yet recorded in the store (the next commit records them).
    refused: Mutex<Vec<Refused>>,
    /// Refusals as they happen.
    refused_tx: broadcast::Sender<Refused>,
    /// When a relay last reached another node (ms, the runtime's clock).
    last_relay_ok: AtomicU64,
    /// Critical tasks report their death here; then nothing more is accepted.
    health: iotchain_api::Health,
}

/// Tells whether a reading id or transaction hash is final already (the pool has no store of
/// its own).
pub type FinalLookup = Box<dyn Fn(&B256) -> bool + Send + Sync>;

impl Pool {
    /// Opens the item log in `config.log_dir`, queues the items logged after `log_done` (the
    /// last block's mark) that still apply to `committed`, and starts the log's task on the
    /// runtime.
    pub fn open(
        config: PoolConfig,
        runtime: Arc<dyn Runtime>,
        committed: &State,
        parent: Parent,
        log_done: u64,
        metrics: NodeMetrics,
        is_final: FinalLookup,
    ) -> Result<Self, StorageError> {
        let genesis = config.genesis.clone();
        let (log, items) = ItemLog::open(&config.log_dir, log_done)?;
        let mut queue = Queue::new(committed.clone(), log_done + 1);
        let recovered = items.len();
        let now = runtime.now_ms();
        let ctx = pending_context(&genesis, &parent, &config.proposer, now);
        let mut refused = Vec::new();
        for item in items {
            queue.next_seq = item.seq + 1;
            let (seq, arrival_ms) = (item.seq, item.arrival_ms);
            match recover(&genesis, &mut queue, item, &ctx) {
                // Every recovered item is offered to the other nodes again: its relay may not
                // have gone out before the stop.
                Ok(()) => queue.offer(seq, now),
                Err(refusal) if is_final(&refusal.0) => {
                    let id = refusal.0;
                    tracing::debug!(%id, seq, "logged item is final already (in a block of another validator)")
                }
                Err(refusal) => {
                    let (id, e) = *refusal;
                    tracing::info!(%id, seq, arrival_ms, error = %e, "logged item no longer applies; refused");
                    refused.push(Refused {
                        id,
                        code: e.code().to_string(),
                        message: e.to_string(),
                        height: parent.height,
                    });
                }
            }
        }
        if recovered > 0 {
            tracing::info!(recovered, "recovered accepted items from the log");
        }
        let durable = queue.next_seq - 1;
        let pool = Self {
            inner: Arc::new(Inner {
                genesis,
                config,
                runtime,
                queue: Mutex::new(queue),
                parent: Mutex::new(parent),
                log: Mutex::new(log),
                flush: Notify::new(),
                durable: AtomicU64::new(durable),
                synced: Notify::new(),
                failed: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                stopped: watch::Sender::new(false),
                metrics,
                relay: OnceLock::new(),
                is_final,
                refused: Mutex::new(refused),
                refused_tx: broadcast::channel(4096).0,
                last_relay_ok: AtomicU64::new(now),
                health: iotchain_api::Health::new(),
            }),
        };
        let inner = pool.inner.clone();
        pool.inner
            .runtime
            .spawn("item_log", Box::pin(log::run(inner)));
        Ok(pool)
    }

    /// Sends the items accepted from local clients to `relay` from now on (to forward them
    /// to the other nodes).
    pub fn set_relay(&self, relay: mpsc::UnboundedSender<Vec<Item>>) {
        let _ = self.inner.relay.set(relay);
    }

    /// Whether the item log failed (the pool then accepts nothing).
    pub fn has_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Syncs what the log holds and stops its task; waits for it. Call before dropping the
    /// node's parts.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.flush.notify_one();
        let mut stopped = self.inner.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// A snapshot of the pending view (the committed state plus the queued readings and owner
    /// transactions), taken in O(1) (structural sharing): reads and calls
    /// run on it without holding the queue's lock.
    pub fn snapshot(&self) -> State {
        self.inner.queue.lock().pending.clone()
    }

    /// The queued item with this id, if any (cloned: its bytes and decoded parts are shared).
    pub fn get(&self, id: &B256) -> Option<AcceptedItem> {
        self.inner.queue.lock().get(id).cloned()
    }

    /// The refusal of an item this node acknowledged, if a final block refused it and the
    /// store does not hold the record yet.
    pub fn refused(&self, id: &B256) -> Option<Refused> {
        self.inner
            .refused
            .lock()
            .iter()
            .find(|r| r.id == *id)
            .cloned()
    }

    /// The refusals the next block commit records (in its transaction, so the item log's mark
    /// passes a refused item only with its record).
    pub fn take_refused(&self) -> Vec<Refused> {
        std::mem::take(&mut *self.inner.refused.lock())
    }

    /// Puts refusals back (a commit that failed did not record them).
    pub fn restore_refused(&self, refused: Vec<Refused>) {
        let mut r = self.inner.refused.lock();
        let later = std::mem::replace(&mut *r, refused);
        r.extend(later);
    }

    pub(crate) fn refuse(
        &self,
        items: Vec<(AcceptedItem, iotchain_execution::ItemError)>,
        height: u64,
    ) {
        if items.is_empty() {
            return;
        }
        let refused: Vec<Refused> = items
            .into_iter()
            .map(|(item, e)| {
                tracing::info!(id = %item.id, error = %e, "an acknowledged item was refused by a final block");
                self.inner.metrics.reject(e.code());
                Refused {
                    id: item.id,
                    code: e.code().to_string(),
                    message: e.to_string(),
                    height,
                }
            })
            .collect();
        // Recorded before it is announced: whoever hears of a refusal (the MQTT bridge's ack)
        // finds it in the node's status at once.
        self.inner.refused.lock().extend(refused.iter().cloned());
        for r in refused {
            let _ = self.inner.refused_tx.send(r);
        }
    }

    /// Items accepted here that are due to be offered to the other nodes again (not yet in
    /// a final block), at most `max`; each is offered again later, at growing intervals.
    pub fn due_for_offer(&self, max: usize) -> Vec<Item> {
        let now = self.inner.runtime.now_ms();
        let mut guard = self.inner.queue.lock();
        let queue = &mut *guard;
        let due: Vec<u64> = queue
            .offers
            .iter()
            .filter(|(_, o)| o.next_at_ms <= now)
            .map(|(seq, _)| *seq)
            .take(max)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for seq in due {
            let Some(item) = queue.items.get(&seq) else {
                queue.offers.remove(&seq);
                continue;
            };
            out.push(match item.kind {
                ItemKind::Reading => Item::Reading(item.bytes.clone()),
                ItemKind::Tx => Item::OwnerTx(item.bytes.clone()),
                ItemKind::EthTx => Item::EthTx(item.bytes.clone()),
            });
            if let Some(o) = queue.offers.get_mut(&seq) {
                o.attempts += 1;
                let wait =
                    (queue::REOFFER_FIRST_MS << o.attempts.min(8)).min(queue::REOFFER_MAX_MS);
                o.next_at_ms = now + wait;
            }
        }
        out
    }

    /// Notes that a relay reached another node now.
    pub fn relay_reached(&self) {
        self.inner
            .last_relay_ok
            .store(self.inner.runtime.now_ms(), Ordering::Relaxed);
    }

    /// The queued item with this item-log seq, if any.
    pub fn by_seq(&self, seq: u64) -> Option<AcceptedItem> {
        self.inner.queue.lock().items.get(&seq).cloned()
    }

    /// The queued items among `ids`, by id.
    pub fn get_many(&self, ids: &[B256]) -> std::collections::HashMap<B256, AcceptedItem> {
        let queue = self.inner.queue.lock();
        ids.iter()
            .filter_map(|id| Some((*id, queue.get(id)?.clone())))
            .collect()
    }

    /// Whether an item with this id waits for a block.
    pub fn contains(&self, id: &B256) -> bool {
        self.inner.queue.lock().index.contains_key(id)
    }

    /// The context the next block's Ethereum transactions are checked in, as this node
    /// would propose it now.
    pub fn pending_context(&self) -> iotchain_evm::BlockContext {
        let parent = *self.inner.parent.lock();
        pending_context(
            &self.inner.genesis,
            &parent,
            &self.inner.config.proposer,
            self.inner.runtime.now_ms(),
        )
    }
}

/// Queues an item read back from the log (applied to the pending view, checked against it);
/// its id and why when it no longer applies.
fn recover(
    genesis: &Genesis,
    queue: &mut Queue,
    item: iotchain_storage::LogItem,
    ctx: &iotchain_evm::BlockContext,
) -> Result<(), Box<(B256, iotchain_execution::ItemError)>> {
    let bytes = item.bytes;
    match item.kind {
        ItemKind::Reading => {
            let (meta, id) = ReadingMeta::decode(&bytes).map_err(|e| Box::new((B256::ZERO, e)))?;
            apply_reading(&mut queue.pending, &meta, id, item.key_version)
                .map_err(|e| Box::new((id, e)))?;
            queue.insert(AcceptedItem {
                seq: item.seq,
                kind: item.kind,
                meta: Some(meta),
                id,
                bytes,
                arrival_ms: item.arrival_ms,
                key_version: item.key_version,
                eth: None,
                max_cost: Default::default(),
            });
        }
        ItemKind::Tx => {
            let id = iotchain_block::SignedTx::decode_and_check(&bytes, genesis.chain_id)
                .map_or_else(|_| alloy_primitives::keccak256(&bytes), |t| t.hash());
            let id = apply_owner_tx(&mut queue.pending, &bytes, genesis.chain_id, 0)
                .map_err(|e| Box::new((id, e)))?;
            queue.insert(AcceptedItem {
                seq: item.seq,
                kind: item.kind,
                meta: None,
                id,
                bytes,
                arrival_ms: item.arrival_ms,
                key_version: 0,
                eth: None,
                max_cost: Default::default(),
            });
        }
        ItemKind::EthTx => {
            let id = alloy_primitives::keccak256(&bytes);
            let tx = decode_eth_tx(genesis, &bytes).map_err(|e| Box::new((id, e)))?;
            queue
                .enqueue_eth(Arc::new(tx), ctx, item.arrival_ms, Some(item.seq))
                .map_err(|e| Box::new((id, e)))?;
        }
    }
    Ok(())
}

/// The context of the next block on `parent`, proposed by `proposer` now.
fn pending_context(
    genesis: &Genesis,
    parent: &Parent,
    proposer: &B256,
    now_ms: u64,
) -> iotchain_evm::BlockContext {
    iotchain_execution::block_context(
        genesis,
        parent.height + 1,
        now_ms.max(parent.timestamp_ms),
        parent.hash,
        proposer,
        parent.gas,
    )
}

impl ItemPool for Pool {
    async fn submit(&self, items: Vec<Item>, origin: Origin) -> Vec<Submitted> {
        let n = items.len();
        if let Some(e) = self
            .inner
            .stopped_taking()
            .or_else(|| self.inner.cannot_promise(origin))
        {
            for _ in 0..n {
                self.inner.metrics.reject(e.code());
            }
            return (0..n).map(|_| Err(e.clone())).collect();
        }
        let relay =
            (origin == Origin::Local && self.inner.relay.get().is_some()).then(|| items.clone());
        let inner = self.inner.clone();
        let admitted = iotchain_api::blocking(&*self.inner.runtime, "admission", move || {
            inner.admit(items, origin)
        })
        .await;
        let Some(admitted) = admitted.filter(|a| a.len() == n) else {
            let e = PoolError::Storage("the node is stopping".into());
            return (0..n).map(|_| Err(e.clone())).collect();
        };
        let max_seq = admitted
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(_, seq)| *seq))
            .max()
            .unwrap_or(0);
        let mut results: Vec<Submitted> =
            admitted.into_iter().map(|r| r.map(|(id, _)| id)).collect();
        if max_seq > 0
            && let Err(e) = self.inner.wait_durable(max_seq).await
        {
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(e.clone());
                }
            }
            return results;
        }
        if let (Some(items), Some(relay)) = (relay, self.inner.relay.get()) {
            let accepted: Vec<Item> = items
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| i)
                .collect();
            if !accepted.is_empty() {
                let _ = relay.send(accepted);
            }
        }
        results
    }

    fn pending_counts(&self) -> (usize, usize) {
        self.inner.queue.lock().counts()
    }

    fn pending_nonce(&self, sender: &Address) -> u64 {
        self.inner.queue.lock().queued_sender(sender).nonce
    }

    fn pending_eth_tx(&self, hash: &B256) -> Option<EthTx> {
        self.inner.queue.lock().get(hash)?.eth.as_deref().cloned()
    }

    fn max_batch(&self) -> usize {
        self.inner.config.max_batch_readings
    }

    fn pending_block_context(&self) -> iotchain_evm::BlockContext {
        self.pending_context()
    }

    fn pending_readings(&self) -> Vec<(B256, iotchain_reading::DeviceAddress)> {
        self.inner
            .queue
            .lock()
            .items
            .values()
            .filter_map(|q| Some((q.id, q.meta.as_ref()?.device)))
            .collect()
    }

    fn subscribe_refused(&self) -> broadcast::Receiver<Refused> {
        self.inner.refused_tx.subscribe()
    }

    fn health(&self) -> &iotchain_api::Health {
        &self.inner.health
    }

    fn not_ready(&self) -> Option<PoolError> {
        if let Some(e) = self.inner.stopped_taking() {
            return Some(e);
        }
        if let Some(e) = self.inner.cannot_promise(Origin::Local) {
            return Some(e);
        }
        let pending = self.inner.queue.lock().items.len();
        (pending >= self.inner.config.max_pending_items).then(|| self.inner.overloaded(pending))
    }
}

impl Inner {
    /// Why this node takes nothing at all now: a critical task stopped, or the item log
    /// failed.
    pub(crate) fn stopped_taking(&self) -> Option<PoolError> {
        if let Some(f) = self.health.failure() {
            return Some(PoolError::Failed(f.clone()));
        }
        self.failed
            .load(Ordering::Relaxed)
            .then(|| PoolError::Storage("the item log failed".into()))
    }

    /// Why this node takes no new item from a local client now, if it cannot hand it on: a
    /// follower without peers, or one that reached no validator for [`UNREACHABLE_AFTER_MS`].
    fn cannot_promise(&self, origin: Origin) -> Option<PoolError> {
        if self.config.proposes || origin == Origin::Forwarded {
            return None;
        }
        if self.relay.get().is_none() {
            return Some(PoolError::NoPeers);
        }
        let since = self
            .runtime
            .now_ms()
            .saturating_sub(self.last_relay_ok.load(Ordering::Relaxed));
        (since > UNREACHABLE_AFTER_MS).then_some(PoolError::Unreachable { for_ms: since })
    }
}
