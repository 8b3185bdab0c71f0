//! After a block commits: its items leave the queue, the pending view follows the committed
//! state, the items a final block refuses for good are recorded as refused (never silently
//! dropped), and the item log drops what every block now holds.

use std::collections::HashSet;

use alloy_primitives::B256;
use iotchain_execution::{AcceptedItem, ItemError, apply_owner_tx, apply_reading};
use iotchain_reading::DeviceAddress;
use iotchain_state::{State, StateRecords};
use iotchain_storage::{ItemKind, StorageError};

use crate::{Parent, Pool};

/// What a committed block did, as the pool needs it.
#[derive(Debug)]
pub struct CommittedBlock<'a> {
    /// The reading ids and transaction hashes it includes, in block order.
    pub included: &'a [B256],
    /// The pool items a block built here left out (by item-log seq), and why.
    pub left_out: &'a [(u64, ItemError)],
    /// Whether this node built the block from its own pool (then its pending view holds the
    /// block's effects already).
    pub built_here: bool,
    /// The records it changed.
    pub changed: &'a StateRecords,
    /// The block itself, as the parent of the next.
    pub parent: Parent,
}

impl Pool {
    /// The highest item-log seq every item up to which leaves the queue once a block that
    /// includes `included` and refuses the items `left_out` commits: the mark the commit
    /// records, and up to which the log may be pruned after it.
    pub fn log_done_after(&self, included: &HashSet<B256>, left_out: &[u64]) -> u64 {
        let queue = self.inner.queue.lock();
        let oldest_waiting = queue
            .items
            .values()
            .find(|q| !included.contains(&q.id) && !left_out.contains(&q.seq))
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
    /// A block built here from the queue, leaving nothing out and changing device records
    /// only (readings), is what the pending view holds already. Otherwise the pending view
    /// takes the accounts the block changed and the device records it changed, with the queued
    /// readings of those devices applied again; when the block changed owner records or owner
    /// transactions are queued (registry administration, rare) it is rebuilt from the committed
    /// state. A queued item that no longer applies to the committed chain (another reading
    /// took its seq, its device was revoked or rotated its key, another transaction took its
    /// nonce) is refused for good, with the reason.
    pub fn on_commit(&self, committed: &State, block: &CommittedBlock<'_>) {
        *self.inner.parent.lock() = block.parent;
        let changed = block.changed;
        let height = block.parent.height;
        let mut refused: Vec<(AcceptedItem, ItemError)> = Vec::new();
        let mut guard = self.inner.queue.lock();
        let queue = &mut *guard;
        let found: Vec<u64> = block
            .included
            .iter()
            .filter_map(|id| queue.index.get(id).copied())
            .collect();
        for seq in found {
            queue.remove(seq);
        }
        for (seq, e) in block.left_out {
            if let Some(item) = queue.remove(*seq) {
                refused.push((item, e.clone()));
            }
        }
        let only_devices = changed.owners.is_empty()
            && changed.accounts.is_empty()
            && changed.storage.is_empty()
            && changed.wiped.is_empty()
            && changed.code.is_empty();
        if block.built_here && block.left_out.is_empty() && only_devices {
            return;
        }
        let mut failed = Vec::new();
        if changed.owners.is_empty() && queue.owner_txs == 0 && block.left_out.is_empty() {
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
                    failed.push((q.seq, e));
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
                    failed.push((q.seq, e));
                }
            }
            queue.pending = pending;
        }
        for (seq, e) in failed {
            if let Some(item) = queue.remove(seq) {
                refused.push((item, e));
            }
        }
        refused.extend(queue.drop_stale_eth_txs());
        drop(guard);
        self.refuse(refused, height);
    }
}
