//! What a block built here takes from the queue: the oldest durable items, within the
//! block's limits.

use std::collections::HashSet;

use alloy_primitives::B256;
use iotchain_execution::AcceptedItem;
use iotchain_state::State;
use iotchain_storage::ItemKind;

use crate::Pool;

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
    /// The oldest durable queue items a block on `base` takes, within the block's limits,
    /// leaving out those already in its uncommitted ancestors. (A reading that skips seqs
    /// needs no wait for the skipped ones: they fill the gap whenever they come.)
    pub fn best_items(&self, base: &Selection<'_>) -> Vec<AcceptedItem> {
        let inner = &self.inner;
        let durable = inner.durable.load(std::sync::atomic::Ordering::SeqCst);
        let params = &inner.genesis.params;
        let queue = inner.queue.lock();
        let (mut readings, mut txs, mut gas) = (0u64, 0u64, 0u64);
        let mut owner_tx_bytes = 0usize;
        let mut out = Vec::new();
        let fresh = |q: &&AcceptedItem| {
            !base.excluded_seqs.contains(&q.seq) && !base.excluded_ids.contains(&q.id)
        };
        for q in queue
            .items
            .values()
            .take_while(|q| q.seq <= durable)
            .filter(fresh)
        {
            let (count, max) = match q.kind {
                ItemKind::Reading => (&mut readings, params.max_readings_per_block),
                ItemKind::Tx | ItemKind::EthTx => (&mut txs, params.max_transactions_per_block),
            };
            if *count >= max {
                break;
            }
            // Owner transactions (a batch registers thousands of devices) fill it by bytes.
            if q.kind == ItemKind::Tx {
                owner_tx_bytes += q.bytes.len();
                if owner_tx_bytes > iotchain_block::MAX_OWNER_TX_BYTES_PER_BLOCK {
                    break;
                }
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
