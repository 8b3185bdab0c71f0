//! Building a block from the pool and verifying a block from elsewhere: both through one
//! [`BlockExecution`], with the build or the verify policy.

use alloy_primitives::B256;
use iotchain_api::EngineError;
use iotchain_block::{Block, Header};
use iotchain_execution::{BlockExecution, Policy, block_context, check_header, item_id};
use iotchain_pool::Selection;

use crate::{Engine, hashes::StoreHashes, tree::Base};

impl Engine {
    /// Records a block of the tree durably, naming the items the pool holds.
    fn record(&self, executed: &iotchain_execution::ExecutedBlock) -> Result<(), EngineError> {
        let block = &executed.block;
        let record = crate::record::encode(block, &executed.sources);
        self.inner
            .store
            .put_pending_block(&block.header.hash(), block.header.height, &record)?;
        Ok(())
    }

    fn unknown_parent(&self, parent: B256) -> EngineError {
        let head = *self.inner.head.borrow();
        EngineError::UnknownParent {
            parent,
            head: head.hash,
            height: head.height,
        }
    }

    /// Builds a block on `parent` at `timestamp_ms` (or its parent's time, if later) from the
    /// pool's oldest durable items and keeps it in the tree; with `record`, also in the
    /// store's pending blocks before returning. `None` when nothing waits and `allow_empty`
    /// is false.
    pub(crate) fn build(
        &self,
        parent: B256,
        timestamp_ms: u64,
        allow_empty: bool,
        record: bool,
    ) -> Result<Option<Header>, EngineError> {
        let inner = &self.inner;
        let base = self
            .base(parent)
            .ok_or_else(|| self.unknown_parent(parent))?;
        let timestamp_ms = timestamp_ms.max(base.timestamp_ms);
        let items = inner.pool.best_items(&Selection {
            state: &base.state,
            excluded_seqs: &base.excluded_seqs,
            excluded_ids: &base.excluded_ids,
            at_ms: timestamp_ms,
        });
        if items.is_empty() && !allow_empty {
            return Ok(None);
        }
        let Base {
            height,
            hash,
            state,
            gas,
            branch,
            ..
        } = base;
        let ctx = block_context(
            &inner.genesis,
            height + 1,
            timestamp_ms,
            hash,
            &inner.proposer,
            gas,
        );
        let hashes = StoreHashes {
            store: &inner.store,
            number: height + 1,
            branch: &branch,
        };
        let aad = inner.genesis.reading_aad(&inner.genesis_hash);
        let mut execution =
            BlockExecution::new(&inner.genesis, aad, Policy::Build, state, ctx, &hashes);
        for item in &items {
            execution.push_accepted(item)?;
        }
        let executed = execution.finish()?.seal(hash, timestamp_ms, inner.proposer);
        let header = executed.block.header.clone();
        if record {
            self.record(&executed)?;
        }
        inner.tree.lock().insert(header.hash(), executed);
        Ok(Some(header))
    }

    /// Re-executes a block from elsewhere (another validator, a peer's sync answer, this
    /// node's own record after a restart) on its parent and keeps it in the tree if it holds;
    /// with `record`, also in the store's pending blocks before returning.
    pub(crate) fn execute_verified(
        &self,
        block: Block,
        now_ms: u64,
        record: bool,
    ) -> Result<Header, EngineError> {
        let inner = &self.inner;
        let header = block.header.clone();
        let hash = header.hash();
        if inner.tree.lock().contains_key(&hash) {
            return Ok(header);
        }
        let base = self
            .base(header.parent_hash)
            .ok_or_else(|| self.unknown_parent(header.parent_hash))?;
        check_header(
            &inner.genesis,
            &header,
            base.height,
            base.timestamp_ms,
            now_ms,
        )?;
        // Items this node accepted itself were decoded and verified then (the id is the hash
        // of the signed bytes): they are applied from what the pool kept.
        let ids: Vec<B256> = block.items.iter().map(item_id).collect();
        let known = inner.pool.get_many(&ids);
        let ctx = block_context(
            &inner.genesis,
            header.height,
            header.timestamp_ms,
            header.parent_hash,
            &header.proposer,
            base.gas,
        );
        let hashes = StoreHashes {
            store: &inner.store,
            number: header.height,
            branch: &base.branch,
        };
        let aad = inner.genesis.reading_aad(&inner.genesis_hash);
        let mut execution = BlockExecution::new(
            &inner.genesis,
            aad,
            Policy::Verify,
            base.state,
            ctx,
            &hashes,
        );
        for (item, id) in block.items.into_iter().zip(&ids) {
            execution.push(item, known.get(id), now_ms)?;
        }
        let executed = execution.finish()?.check(header.clone())?;
        if record {
            self.record(&executed)?;
        }
        inner.tree.lock().insert(hash, executed);
        Ok(header)
    }
}
