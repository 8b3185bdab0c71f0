//! Committing final blocks: a finalization commits the block and its uncommitted ancestors,
//! each in one durable write, then the committed state, the head and the pool move on.

use std::sync::{Arc, atomic::Ordering};

use alloy_primitives::B256;
use iotchain_api::{BlockEngine, Committed, EngineError, HeadInfo, ItemPool};
use iotchain_block::{Block, FinalityCertificate, Header};
use iotchain_pool::{CommittedBlock, Parent};
use iotchain_storage::{BlockCommit, RefusedItem};

use crate::{Engine, MAX_UNCOMMITTED_DEPTH};

impl Engine {
    /// Builds, signs and commits a block of the oldest durable pool items, if there are any:
    /// a single validator's whole round (propose on the head, sign the header as the only
    /// validator, finalize).
    pub fn produce_next_block(&self) -> Result<Option<Committed>, EngineError> {
        let now = self.inner.runtime.now_ms();
        let head = *self.inner.head.borrow();
        let Some(header) = self.build(head.hash, now, false, false)? else {
            return Ok(None);
        };
        let hash = header.hash();
        // Without simplex, the block's view is its height.
        let certificate =
            FinalityCertificate::new(header.height, hash, 0, header.height, head.height)
                .signed_by(&self.inner.validator);
        self.finalize(hash, certificate, now).map(Some)
    }

    /// Commits one block of the tree whose parent is the head.
    fn commit_one(
        &self,
        hash: B256,
        certificate: &FinalityCertificate,
        now_ms: u64,
    ) -> Result<(Header, usize, usize), EngineError> {
        let inner = &self.inner;
        let executed = inner
            .tree
            .lock()
            .remove(&hash)
            .ok_or(EngineError::UnknownBlock(hash))?;
        let head = *inner.head.borrow();
        if executed.block.header.parent_hash != head.hash {
            return Err(EngineError::UnknownAncestor {
                hash,
                ancestor: executed.block.header.parent_hash,
            });
        }
        let included: Vec<B256> = executed
            .readings
            .iter()
            .map(|(id, _)| B256::from(*id))
            .chain(executed.txs.iter().map(|(h, _)| *h))
            .collect();
        let left_out: Vec<u64> = executed.left_out.iter().map(|(seq, _)| *seq).collect();
        // Everything in the log up to the oldest item still waiting is in a block now (or
        // refused, with its record in this very commit).
        let log_done = inner
            .pool
            .log_done_after(&included.iter().copied().collect(), &left_out)
            .max(inner.store.log_done()?);
        let refused = inner.pool.take_refused();
        let records: Vec<RefusedItem> = refused
            .iter()
            .map(|r| RefusedItem {
                id: r.id,
                height: r.height,
                code: r.code.clone(),
                message: r.message.clone(),
            })
            .collect();
        // The records this block overwrites, as the head's state has them.
        let undo = iotchain_state::StateUndo::of(&inner.committed.read(), &executed.records);
        let nodes = executed.state.unsaved_nodes();
        let commit = BlockCommit {
            block: &executed.block,
            certificate,
            readings: &executed.readings,
            txs: &executed.txs,
            state: &executed.records,
            receipts: &executed.receipts,
            hook_calls: &executed.hook_calls,
            gas: executed.gas,
            log_done,
            refused: &records,
            undo: Some(&undo),
            nodes: &nodes,
        };
        let saved = inner
            .store
            .commit_block(&commit)
            .and_then(|()| inner.store.trie_nodes());
        let nodes = match saved {
            Ok(nodes) => nodes,
            Err(e) => {
                inner.failed.store(true, Ordering::SeqCst);
                inner.pool.health().fail(
                    "committer",
                    "store_failed",
                    format!("cannot commit block {}: {e}", executed.block.header.height),
                );
                inner.pool.restore_refused(refused);
                return Err(e.into());
            }
        };
        let mut state = executed.state;
        state.saved(nodes, inner.trie_cache_nodes);
        let header = executed.block.header;
        let parent = Parent {
            height: header.height,
            hash,
            timestamp_ms: header.timestamp_ms,
            gas: executed.gas,
        };
        {
            // The committed state, its gas figures and the head change together: `base`
            // reads them under the same lock.
            let mut committed = inner.committed.write();
            *committed = state;
            *inner.head_gas.write() = executed.gas;
            inner.head.send_replace(HeadInfo {
                height: header.height,
                hash,
                timestamp_ms: header.timestamp_ms,
            });
        }
        {
            let committed = inner.committed.read();
            inner.pool.on_commit(
                &committed,
                &CommittedBlock {
                    included: &included,
                    left_out: &executed.left_out,
                    built_here: !executed.consumed.is_empty() || included.is_empty(),
                    changed: &executed.records,
                    parent,
                },
            );
        }
        // Blocks at or below the new head can no longer be finalized; those above it may (if
        // they descend from it). Removed only now that the head has moved, so a block on
        // this one always finds its parent as the head or in the tree.
        inner
            .tree
            .lock()
            .retain(|_, b| b.block.header.height > header.height);
        inner.pool.prune_log(log_done)?;
        inner.stats.last_finality_ms.store(
            now_ms.saturating_sub(header.timestamp_ms),
            Ordering::Relaxed,
        );
        index_streams_later(inner);
        let (readings, txs) = (executed.readings.len(), executed.txs.len());
        inner.metrics.blocks.inc();
        inner.metrics.readings_final.inc_by(readings as u64);
        Ok((header, readings, txs))
    }
}

impl BlockEngine for Engine {
    fn can_extend(&self, parent: &B256) -> bool {
        self.inner.head.borrow().hash == *parent
            || self.inner.tree.lock().contains_key(parent)
            || self.restore(parent, MAX_UNCOMMITTED_DEPTH).is_some()
    }

    fn pending_header(&self, hash: &B256) -> Option<Header> {
        if let Some(b) = self.inner.tree.lock().get(hash) {
            return Some(b.block.header.clone());
        }
        self.restore(hash, MAX_UNCOMMITTED_DEPTH)?;
        self.inner
            .tree
            .lock()
            .get(hash)
            .map(|b| b.block.header.clone())
    }

    fn has_pending_items(&self) -> bool {
        self.pending_counts() != (0, 0)
    }

    fn task_stopped(&self, task: &'static str, code: &'static str, message: String) {
        self.inner.pool.health().fail(task, code, message);
    }

    fn propose(
        &self,
        parent: B256,
        timestamp_ms: u64,
        allow_empty: bool,
    ) -> Result<Option<Header>, EngineError> {
        self.build(parent, timestamp_ms, allow_empty, true)
    }

    fn pending_block(&self, hash: &B256) -> Option<Block> {
        if let Some(b) = self.inner.tree.lock().get(hash) {
            return Some(b.block.clone());
        }
        self.restore(hash, MAX_UNCOMMITTED_DEPTH)?;
        self.inner.tree.lock().get(hash).map(|b| b.block.clone())
    }

    fn verify(&self, block: Block, now_ms: u64) -> Result<Header, EngineError> {
        self.execute_verified(block, now_ms, true)
    }

    fn finalize(
        &self,
        hash: B256,
        certificate: FinalityCertificate,
        now_ms: u64,
    ) -> Result<Committed, EngineError> {
        let inner = &self.inner;
        // Blocks recorded before a restart come back into the tree first (outside the commit
        // lock: restoring executes them on their parents, which may wait for a commit).
        if !inner.tree.lock().contains_key(&hash) && inner.head.borrow().hash != hash {
            self.restore(&hash, MAX_UNCOMMITTED_DEPTH);
        }
        let _commit = inner.commit_lock.lock();
        let (path, tip_height) = {
            let tree = inner.tree.lock();
            let head = inner.head.borrow().hash;
            if head == hash {
                return Err(EngineError::AlreadyFinal(hash));
            }
            let mut path = Vec::new();
            let mut at = hash;
            while at != head {
                let b = tree.get(&at).ok_or(if at == hash {
                    EngineError::UnknownBlock(hash)
                } else {
                    EngineError::UnknownAncestor { hash, ancestor: at }
                })?;
                if path.len() > MAX_UNCOMMITTED_DEPTH {
                    return Err(EngineError::TooDeep {
                        hash,
                        depth: MAX_UNCOMMITTED_DEPTH,
                    });
                }
                path.push(at);
                at = b.block.header.parent_hash;
            }
            (path, tree.get(&hash).map(|b| b.block.header.height))
        };
        if certificate.header_hash != hash || Some(certificate.height) != tip_height {
            return Err(EngineError::CertificateMismatch {
                certified: certificate.header_hash,
                certified_height: certificate.height,
                hash,
                height: tip_height.unwrap_or_default(),
            });
        }
        let (mut readings, mut transactions) = (0, 0);
        let mut last = None;
        for block in path.into_iter().rev() {
            let (header, r, t) = self.commit_one(block, &certificate, now_ms)?;
            readings += r;
            transactions += t;
            last = Some(header);
        }
        let header = last.ok_or(EngineError::AlreadyFinal(hash))?;
        Ok(Committed {
            header,
            readings,
            transactions,
        })
    }

    fn import_final(
        &self,
        block: Block,
        certificate: FinalityCertificate,
        now_ms: u64,
    ) -> Result<Option<Committed>, EngineError> {
        let hash = block.header.hash();
        let height = block.header.height;
        let for_descendant = certificate.height > height;
        if !for_descendant && (certificate.header_hash != hash || certificate.height != height) {
            return Err(EngineError::CertificateMismatch {
                certified: certificate.header_hash,
                certified_height: certificate.height,
                hash,
                height,
            });
        }
        certificate
            .verify(&self.inner.genesis.validator_keys())
            .map_err(EngineError::Certificate)?;
        self.execute_verified(block, now_ms, false)?;
        if for_descendant {
            return Ok(None);
        }
        self.finalize(hash, certificate, now_ms).map(Some)
    }
}

/// Brings the store's stream index up to the head on the blocking pool, off the commit path
/// (one indexer at a time: a commit while it runs leaves the rest to it). Queries of the index
/// catch up by themselves, so a failure here is only logged.
fn index_streams_later(inner: &crate::Inner) {
    if inner.indexing.swap(true, Ordering::AcqRel) {
        return;
    }
    // Weak: a finished engine's store closes even if an indexer was about to start.
    let (store, indexing) = (Arc::downgrade(&inner.store), inner.indexing.clone());
    inner.runtime.spawn_blocking(
        "stream_index",
        Box::new(move || {
            loop {
                let Some(store) = store.upgrade() else {
                    indexing.store(false, Ordering::Release);
                    return;
                };
                let failed = store.index_streams().err();
                indexing.store(false, Ordering::Release);
                if let Some(e) = failed {
                    // Retried by the next commit (or query), not here: a store that refuses
                    // writes would otherwise have this loop flood the log.
                    tracing::warn!(error = %e, "the stream index could not follow the head");
                    return;
                }
                let behind = matches!(
                    (store.streams_indexed(), store.head()),
                    (Ok(done), Ok(Some(head))) if done < head
                );
                // Commits made while this ran did not start an indexer: go on if they left
                // work and nobody else took it.
                if !behind || indexing.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        }),
    );
}
