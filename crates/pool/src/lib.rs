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
        atomic::{AtomicBool, Ordering},
    },
};

use alloy_primitives::{Address, B256};
use iotchain_api::{Item, ItemPool, NodeMetrics, Origin, PoolError, Runtime, Submitted};
use iotchain_block::Genesis;
use iotchain_evm::EthTx;
use iotchain_execution::{AcceptedItem, ReadingMeta, apply_owner_tx, apply_reading, decode_eth_tx};
use iotchain_state::State;
use iotchain_storage::{BlockGas, ItemKind, ItemLog, StorageError};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};

use crate::queue::Queue;

/// How the pool is set up.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Directory of the item log.
    pub log_dir: PathBuf,
    /// Most accepted items waiting for a block; beyond it submissions get `overloaded`.
    pub max_pending_items: usize,
    /// Most readings in one submission.
    pub max_batch_readings: usize,
    /// The key this node proposes with (the pending block's fee recipient).
    pub proposer: B256,
}

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
    durable: watch::Sender<u64>,
    /// The item log failed: nothing more is accepted.
    failed: AtomicBool,
    stopping: AtomicBool,
    /// Turns true when the item log's task has synced all and ended.
    stopped: watch::Sender<bool>,
    metrics: NodeMetrics,
    /// Where accepted local items go to reach the other nodes.
    relay: OnceLock<mpsc::UnboundedSender<Vec<Item>>>,
    /// Whether a transaction is final already (the chain store's index).
    is_final: FinalLookup,
}

/// Tells whether a transaction hash is final already (the pool has no store of its own).
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
        let ctx = pending_context(&genesis, &parent, &config.proposer, runtime.now_ms());
        for item in items {
            queue.next_seq = item.seq + 1;
            let bytes = item.bytes;
            let applied = match item.kind {
                ItemKind::Reading => ReadingMeta::decode(&bytes).and_then(|(meta, id)| {
                    apply_reading(&mut queue.pending, &meta, id, item.key_version)?;
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
                    Ok(())
                }),
                ItemKind::Tx => apply_owner_tx(&mut queue.pending, &bytes, genesis.chain_id, 0)
                    .map(|id| {
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
                        })
                    }),
                ItemKind::EthTx => decode_eth_tx(&genesis, &bytes).and_then(|tx| {
                    queue
                        .enqueue_eth(Arc::new(tx), &ctx, item.arrival_ms, Some(item.seq))
                        .map(|_| ())
                }),
            };
            if let Err(e) = applied {
                tracing::info!(seq = item.seq, error = %e, "logged item no longer applies (final in a block of another validator, or superseded); skipped");
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
                durable: watch::Sender::new(durable),
                failed: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                stopped: watch::Sender::new(false),
                metrics,
                relay: OnceLock::new(),
                is_final,
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

    /// Runs `f` on the pending view (the committed state plus the queued readings and owner
    /// transactions).
    pub fn with_pending<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.inner.queue.lock().pending)
    }

    /// The queued item with this id, if any (cloned: its bytes and decoded parts are shared).
    pub fn get(&self, id: &B256) -> Option<AcceptedItem> {
        self.inner.queue.lock().get(id).cloned()
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
        let relay =
            (origin == Origin::Local && self.inner.relay.get().is_some()).then(|| items.clone());
        let inner = self.inner.clone();
        let admitted = iotchain_api::blocking(&*self.inner.runtime, "admission", move || {
            inner.admit(items)
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
}
