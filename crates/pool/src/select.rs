//! What a block built here takes from the queue: the oldest durable items, within the
//! block's limits.

use std::collections::{HashMap, HashSet};

use alloy_primitives::B256;
use iotchain_execution::AcceptedItem;
use iotchain_reading::DeviceAddress;
use iotchain_state::State;
use iotchain_storage::ItemKind;

use crate::Pool;

/// How long a proposer holds back a reading that skips seqs of its device, when other
/// validators may hold the skipped ones.
const GAP_GRACE_MS: u64 = 5_000;

/// What a block is built on, as the selection needs it.
#[derive(Debug)]
pub struct Selection<'a> {
    /// The state after the block's parent.
    pub state: &'a State,
    /// Queue items already in the parent's uncommitted ancestors (by log seq and by id).
    pub excluded_seqs: &'a HashSet<u64>,
    /// Ids of items in the uncommitted ancestors.
    pub excluded_ids: &'a HashSet<B256>,
    /// The block's time.
    pub at_ms: u64,
}

impl Pool {
    /// The oldest durable queue items a block on `base` at `base.at_ms` takes, within the
    /// block's limits, leaving out those already in its uncommitted ancestors.
    ///
    /// A reading that skips seqs of its device waits a grace period first when there are
    /// several validators: the skipped ones may be held by another validator (accepted
    /// there, the forward to this node lost), and including this one first would make them
    /// replays.
    pub fn best_items(&self, base: &Selection<'_>) -> Vec<AcceptedItem> {
        let inner = &self.inner;
        let durable = *inner.durable.borrow();
        let params = &inner.genesis.params;
        let grace = if inner.genesis.validators.len() > 1 {
            GAP_GRACE_MS
        } else {
            0
        };
        let queue = inner.queue.lock();
        let (mut readings, mut txs, mut gas) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        // The last seq per device once the readings chosen so far apply (lookups only).
        let mut last_seq: HashMap<DeviceAddress, Option<u64>> = HashMap::new();
        let fresh = |q: &&AcceptedItem| {
            !base.excluded_seqs.contains(&q.seq) && !base.excluded_ids.contains(&q.id)
        };
        for q in queue
            .items
            .values()
            .take_while(|q| q.seq <= durable)
            .filter(fresh)
        {
            if let Some(meta) = &q.meta {
                let last = *last_seq
                    .entry(meta.device)
                    .or_insert_with(|| base.state.device(&meta.device).and_then(|d| d.last_seq));
                let gap = last.is_some_and(|l| meta.seq > l.saturating_add(1));
                if gap && base.at_ms < q.arrival_ms.saturating_add(grace) {
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
}
