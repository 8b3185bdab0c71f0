//! After a block commits: its items leave the queue, the pending view follows the committed
//! state, and the item log drops what every block now holds.

use std::collections::HashSet;

use alloy_primitives::B256;
use iotchain_execution::{apply_owner_tx, apply_reading};
use iotchain_reading::DeviceAddress;
use iotchain_state::{State, StateRecords};
use iotchain_storage::{ItemKind, StorageError};

use crate::{Parent, Pool};

/// What a committed block did, as the pool needs it.
#[derive(Debug)]
pub struct CommittedBlock<'a> {
    /// The reading ids and transaction hashes it includes, in block order.
    pub included: &'a [B256],
    /// The item-log seqs of the queue items a block built here took (empty for a block
    /// built elsewhere).
    pub consumed: &'a [u64],
    /// The records it changed.
    pub changed: &'a StateRecords,
    /// The block itself, as the parent of the next.
    pub parent: Parent,
}

impl Pool {
    /// The highest item-log seq every item up to which is in a block once `block` commits:
    /// the mark the commit records, and up to which the log may be pruned after it.
    pub fn log_done_after(&self, included: &HashSet<B256>, consumed: &[u64]) -> u64 {
        let queue = self.inner.queue.lock();
        let oldest_waiting = queue
            .items
            .values()
            .find(|q| {
                // `consumed` is in queue order, so sorted.
                !included.contains(&q.id) && consumed.binary_search(&q.seq).is_err()
            })
            .map(|q| q.seq);
        oldest_waiting.unwrap_or(queue.next_seq).saturating_sub(1)
    }

    /// Drops the log segments whose items are all in committed blocks.
    pub fn prune_log(&self, done: u64) -> Result<(), StorageError> {
        self.inner.log.lock().prune(done)
    }

    /// Takes a committed block's items out of the queue and brings the pending view (the
    /// committed state plus the queued readings and owner transactions) up to `committed`.
    ///
    /// A block built here consumed a prefix of the queue: when it changed device records
    /// only (readings), the pending view holds its effects already. Otherwise the pending
    /// view takes the accounts the block changed, and the device records it changed with the
    /// queued readings of those devices applied again; when the block changed owner records
    /// or owner transactions are queued (registry administration, rare) it is rebuilt from
    /// the committed state. Queued items that no longer apply are dropped, and so are
    /// Ethereum transactions whose nonce the block used or skipped.
    pub fn on_commit(&self, committed: &State, block: &CommittedBlock<'_>) {
        *self.inner.parent.lock() = block.parent;
        let built_here = !block.consumed.is_empty() || block.included.is_empty();
        let changed = block.changed;
        let mut guard = self.inner.queue.lock();
        let queue = &mut *guard;
        // A block built here may have left out queued items that no longer applied.
        for seq in block.consumed {
            queue.remove(*seq);
        }
        let found: Vec<u64> = block
            .included
            .iter()
            .filter_map(|id| queue.index.get(id).copied())
            .collect();
        for seq in found {
            queue.remove(seq);
        }
        let only_devices = changed.owners.is_empty()
            && changed.accounts.is_empty()
            && changed.storage.is_empty()
            && changed.wiped.is_empty()
            && changed.code.is_empty();
        if built_here && only_devices {
            return;
        }
        let mut dropped = Vec::new();
        if changed.owners.is_empty() && queue.owner_txs == 0 {
            queue.pending.absorb_accounts(changed);
            let touched: HashSet<DeviceAddress> =
                changed.devices.iter().map(|d| d.address).collect();
            for d in &changed.devices {
                queue.pending.copy_device_from(committed, &d.address);
            }
            for q in queue.items.values() {
                let Some(meta) = q.meta.as_ref().filter(|m| touched.contains(&m.device)) else {
                    continue;
                };
                if let Err(e) = apply_reading(&mut queue.pending, meta, q.id, q.key_version) {
                    tracing::info!(id = %q.id, error = %e, "queued reading no longer applies after a block; dropped");
                    dropped.push(q.seq);
                }
            }
        } else {
            let mut pending = committed.clone();
            let chain_id = self.inner.genesis.chain_id;
            for q in queue.items.values() {
                let applied = match (&q.kind, &q.meta) {
                    (ItemKind::Reading, Some(meta)) => {
                        apply_reading(&mut pending, meta, q.id, q.key_version).map(|_| ())
                    }
                    (ItemKind::Tx, _) => {
                        apply_owner_tx(&mut pending, &q.bytes, chain_id, 0).map(|_| ())
                    }
                    // Ethereum transactions are checked by their senders' nonces below.
                    _ => Ok(()),
                };
                if let Err(e) = applied {
                    tracing::info!(id = %q.id, error = %e, "queued item no longer applies after a block; dropped");
                    dropped.push(q.seq);
                }
            }
            queue.pending = pending;
        }
        for seq in dropped {
            queue.remove(seq);
        }
        queue.drop_stale_eth_txs();
    }
}
