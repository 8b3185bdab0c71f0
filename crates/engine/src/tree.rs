//! The tree of executed blocks not yet final: what a new block builds on, and blocks
//! restored from their durable records after a restart.

use std::collections::HashSet;

use alloy_primitives::B256;
use iotchain_state::State;
use iotchain_storage::BlockGas;

use crate::{Engine, MAX_UNCOMMITTED_DEPTH};

/// What a new block builds on: the head, or a block of the tree.
pub(crate) struct Base {
    pub(crate) height: u64,
    pub(crate) hash: B256,
    pub(crate) timestamp_ms: u64,
    /// The state after the parent.
    pub(crate) state: State,
    /// Base fee and gas used of the parent.
    pub(crate) gas: BlockGas,
    /// Heights and hashes of the uncommitted ancestors, parent included (for `BLOCKHASH`).
    pub(crate) branch: Vec<(u64, B256)>,
    /// Pool items already in uncommitted ancestors (between the head and the parent).
    pub(crate) excluded_seqs: HashSet<u64>,
    pub(crate) excluded_ids: HashSet<B256>,
}

impl Engine {
    /// The block a record names: its items from the pool or from the record itself.
    fn block_of_record(&self, record: &[u8]) -> Result<iotchain_block::Block, String> {
        let (header, entries) = crate::record::decode(record)?;
        let items = entries
            .into_iter()
            .map(|e| match e {
                crate::record::Entry::Item(item) => Ok(item),
                crate::record::Entry::Pool(seq) => self
                    .inner
                    .pool
                    .by_seq(seq)
                    .map(|i| i.block_item())
                    .ok_or_else(|| format!("item {seq} of the record is no longer in the pool")),
            })
            .collect::<Result<_, String>>()?;
        Ok(iotchain_block::Block { header, items })
    }

    /// What a block on `parent` builds on, if `parent` is the head or in the tree (restored
    /// from its durable record after a restart if need be).
    pub(crate) fn base(&self, parent: B256) -> Option<Base> {
        // A finalization in flight takes the blocks it commits out of the tree before the
        // head moves to them: wait for it to finish, then look once more.
        if let Some(base) = self.try_base(parent) {
            return Some(base);
        }
        drop(self.inner.commit_lock.lock());
        if let Some(base) = self.try_base(parent) {
            return Some(base);
        }
        self.restore(&parent, MAX_UNCOMMITTED_DEPTH)?;
        self.try_base(parent)
    }

    fn try_base(&self, parent: B256) -> Option<Base> {
        let inner = &self.inner;
        let committed = inner.committed.read();
        let head = *inner.head.borrow();
        if parent == head.hash {
            return Some(Base {
                height: head.height,
                hash: head.hash,
                timestamp_ms: head.timestamp_ms,
                state: committed.clone(),
                gas: *inner.head_gas.read(),
                branch: Vec::new(),
                excluded_seqs: HashSet::new(),
                excluded_ids: HashSet::new(),
            });
        }
        drop(committed);
        let tree = inner.tree.lock();
        let tip = tree.get(&parent)?;
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
        // Walk back to the head: every ancestor must be in the tree.
        let mut at = parent;
        for _ in 0..MAX_UNCOMMITTED_DEPTH {
            if at == head.hash {
                return Some(base);
            }
            let p = tree.get(&at)?;
            base.branch.push((p.block.header.height, at));
            base.excluded_seqs.extend(p.consumed.iter().copied());
            base.excluded_ids
                .extend(p.readings.iter().map(|(id, _)| B256::from(*id)));
            base.excluded_ids.extend(p.txs.iter().map(|(h, _)| *h));
            at = p.block.header.parent_hash;
        }
        None
    }

    /// Whether `hash` was committed while its record was being read (a finalization racing
    /// a lookup): then it is not in the tree, and that is no fault of the record.
    fn final_meanwhile(&self, hash: &B256) -> bool {
        self.inner.store.height_of(hash).ok().flatten().is_some()
    }

    /// Puts a block recorded before a restart back into the tree by executing it again on
    /// its parent (restoring the parent first if it is a recorded block too). A record that
    /// no longer executes is forgotten (block sync brings the chain on).
    pub(crate) fn restore(&self, hash: &B256, depth: usize) -> Option<()> {
        if self.inner.tree.lock().contains_key(hash) {
            return Some(());
        }
        let record = self.inner.store.pending_block(hash).ok().flatten()?;
        let block = match self.block_of_record(&record) {
            Ok(block) => block,
            Err(_) if self.final_meanwhile(hash) => return None,
            Err(e) => {
                tracing::warn!(%hash, error = %e, "a block recorded before the restart cannot be rebuilt; forgotten");
                let _ = self.inner.store.remove_pending_block(hash);
                return None;
            }
        };
        let parent = block.header.parent_hash;
        if parent != self.inner.head.borrow().hash && !self.inner.tree.lock().contains_key(&parent)
        {
            self.restore(&parent, depth.checked_sub(1)?)?;
        }
        let now = self.inner.runtime.now_ms();
        match self.execute_verified(block, now, false) {
            Ok(_) => {
                tracing::info!(%hash, "restored a recorded block");
                Some(())
            }
            Err(_) if self.final_meanwhile(hash) => None,
            Err(e) => {
                tracing::warn!(%hash, error = %e, "a block recorded before the restart does not execute; forgotten");
                let _ = self.inner.store.remove_pending_block(hash);
                None
            }
        }
    }
}
