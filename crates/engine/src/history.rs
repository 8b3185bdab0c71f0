//! The state at an older block, for queries: the committed state turned back by the undos of
//! the blocks above it, its root checked against that block's header. The states built last
//! are kept for a while, so a client's series of calls at one block pays once.

use iotchain_api::QueryError;
use iotchain_state::State;
use iotchain_storage::{History, UndoWalk};

use crate::Engine;

/// States of older blocks kept at once.
const CACHED_STATES: usize = 2;
/// Blocks the head may move on before a cached state is dropped: a cached state shares its
/// records with the head's only until they change, so it must not grow into a copy.
const CACHE_BLOCKS: u64 = 8;

/// A state built for queries at an older block.
pub(crate) struct CachedState {
    height: u64,
    /// The head when it was built.
    head: u64,
    state: State,
}

impl Engine {
    /// The committed state as of final block `height`, if the node still keeps it.
    pub(crate) fn state_at(&self, height: u64) -> Result<State, QueryError> {
        let inner = &self.inner;
        let (head_state, head) = {
            let committed = inner.committed.read();
            (committed.clone(), inner.head.borrow().height)
        };
        if height >= head {
            return if height == head {
                Ok(head_state)
            } else {
                Err(QueryError::NotFound(format!(
                    "block {height} is not final yet (the head is {head})"
                )))
            };
        }
        let not_kept = |oldest: u64| {
            let window = match inner.store.history() {
                History::Archive => "an archive node since its store was created".to_string(),
                History::Blocks(n) => format!("the last {n} blocks (--history-blocks)"),
            };
            QueryError::NotKept(format!(
                "the state of block {height} is no longer kept: this node keeps {window}, \
                 from block {oldest}; ask an archive node (--archive)"
            ))
        };
        // Beyond the window, even if a cached state still has it: answers do not depend on
        // what was asked lately.
        if let History::Blocks(n) = inner.store.history()
            && height + n < head
        {
            return Err(not_kept(head - n));
        }
        // Start from the nearest cached state at or above `height`, else from the head.
        let (mut state, from) = {
            let mut cache = inner.history_cache.lock();
            cache.retain(|c| c.head + CACHE_BLOCKS >= head);
            // Not refreshed on use: a state kept longer would drift into a copy.
            match cache
                .iter()
                .filter(|c| c.height >= height)
                .min_by_key(|c| c.height)
            {
                Some(c) => (c.state.clone(), c.height),
                None => (head_state, head),
            }
        };
        if from == height {
            return Ok(state);
        }
        let walked = inner
            .store
            .walk_undos(height, from, inner.history_query_bytes, |undo| {
                state.revert(undo)
            })
            .map_err(QueryError::storage)?;
        match walked {
            UndoWalk::Done => {}
            UndoWalk::Missing => {
                return Err(not_kept(
                    inner.store.oldest_state().map_err(QueryError::storage)?,
                ));
            }
            UndoWalk::TooMuch { blocks } => {
                return Err(QueryError::NotKept(format!(
                    "the state of block {height} is {blocks} blocks back, more history than one \
                     query may rebuild here ({} MiB); ask an archive node (--archive) or a block \
                     closer to the head",
                    inner.history_query_bytes >> 20
                )));
            }
        }
        let root = state.root().map_err(QueryError::storage)?;
        let header = inner
            .store
            .header(height)
            .map_err(QueryError::storage)?
            .ok_or_else(|| QueryError::storage(format!("header {height} missing")))?;
        if root != header.state_root {
            return Err(QueryError::storage(format!(
                "the state history gives root {root} at block {height}, its header {}",
                header.state_root
            )));
        }
        let mut cache = inner.history_cache.lock();
        if cache.len() >= CACHED_STATES
            && let Some(oldest) = cache
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.head)
                .map(|(i, _)| i)
        {
            cache.swap_remove(oldest);
        }
        cache.push(CachedState {
            height,
            head,
            state: state.clone(),
        });
        Ok(state)
    }
}
