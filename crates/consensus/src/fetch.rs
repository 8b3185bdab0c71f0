//! Fetching a block by its hash from the other validators, over Commonware's p2p resolver
//! (channel 4): a validator that never received a proposal, lacks the notarized parent it
//! must build on or vote over, or missed a finalized block asks its peers, and every
//! validator serves the blocks it holds (built, verified or restored from their records
//! after a restart, or final). An answer is kept only if its header has the hash asked for
//! and its items are the ones that header commits to; a peer that answers with anything
//! else is blocked.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use alloy_primitives::B256;
use bytes::Bytes;
use commonware_cryptography::sha256::Digest;
use commonware_resolver::{Consumer, Delivery, Resolver, p2p::Producer};
use commonware_runtime::{Clock, Spawner, Supervisor};
use commonware_utils::channel::oneshot;
use iotchain_api::{BlockEngine, ChainQuery};
use iotchain_block::Block;
use parking_lot::Mutex;

use crate::app::{Inbox, blocking, now_ms, to_b256, wait_until};

/// Most unknown ancestors fetched to reach a block this node can build on (further behind,
/// block sync catches up from final blocks instead).
const MAX_FETCH_DEPTH: usize = 32;

/// Serves the blocks this validator holds to peers that ask for one by hash.
pub(crate) struct Serve<E, A> {
    pub(crate) context: E,
    pub(crate) chain: A,
}

impl<E: Supervisor, A: Clone> Clone for Serve<E, A> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.child("serve"),
            chain: self.chain.clone(),
        }
    }
}

impl<E: Spawner + Supervisor, A: BlockEngine + Clone> Producer for Serve<E, A> {
    type Key = Digest;

    fn produce(&mut self, key: Digest) -> oneshot::Receiver<Bytes> {
        let (answer, receiver) = oneshot::channel();
        let chain = self.chain.clone();
        // A store read (and, for a block recorded before a restart, its re-execution): off
        // the resolver's loop. No answer (the sender dropped) tells the peer to ask another.
        self.context
            .child("serve")
            .shared(true)
            .spawn(move |_| async move {
                let hash = to_b256(&key);
                let block = chain.pending_block(&hash).or_else(|| {
                    let height = chain.height_of(&hash).ok().flatten()?;
                    chain.block(height).ok().flatten()
                });
                if let Some(block) = block {
                    let _ = answer.send(Bytes::from(block.encode_rlp()));
                }
            });
        receiver
    }
}

/// Takes fetched blocks into the inbox, after checking them against the hash asked for.
#[derive(Clone)]
pub(crate) struct Take<A> {
    pub(crate) chain: A,
    pub(crate) inbox: Arc<Inbox>,
}

impl<A: ChainQuery + Clone> Consumer for Take<A> {
    type Key = Digest;
    type Value = Bytes;
    type Subscriber = ();
    type Outcome = bool;

    fn deliver(&mut self, delivery: Delivery<Digest, ()>, value: Bytes) -> oneshot::Receiver<bool> {
        let (verdict, receiver) = oneshot::channel();
        let hash = to_b256(&delivery.key);
        let valid = match Block::decode_rlp(&value) {
            Ok(block) if block.header.hash() == hash && block.body_matches_header() => {
                tracing::debug!(%hash, height = block.header.height, "fetched a block");
                self.inbox.insert(block, self.chain.head().height);
                true
            }
            Ok(_) => {
                tracing::warn!(%hash, "a peer answered a block fetch with another block");
                false
            }
            Err(e) => {
                tracing::warn!(%hash, error = %e, "a peer answered a block fetch with bytes that are no block");
                false
            }
        };
        let _ = verdict.send(valid);
        receiver
    }
}

/// What fetches blocks by hash (the resolver's mailbox).
pub(crate) trait BlockResolver: Resolver<Key = Digest, Subscriber = ()> + Sync {}

impl<R: Resolver<Key = Digest, Subscriber = ()> + Sync> BlockResolver for R {}

/// Asks peers for blocks, and waits for them in the inbox (where the proposer's broadcast
/// lands too); verifies a block once however many tasks need it.
#[derive(Clone)]
pub(crate) struct Fetcher<R> {
    resolver: R,
    pub(crate) inbox: Arc<Inbox>,
    /// Hashes someone is waiting for, with how many waiters: the resolver keeps retrying
    /// these and drops the rest.
    wanted: Arc<Mutex<BTreeMap<Digest, usize>>>,
    /// Blocks being verified right now.
    verifying: Arc<Mutex<BTreeSet<B256>>>,
}

impl<R: BlockResolver> Fetcher<R> {
    pub(crate) fn new(resolver: R, inbox: Arc<Inbox>) -> Self {
        Self {
            resolver,
            inbox,
            wanted: Arc::default(),
            verifying: Arc::default(),
        }
    }

    /// Re-executes `block` (another validator's proposal, or a fetched block) on its parent
    /// and keeps it, off the async workers; `None` if the task failed.
    pub(crate) async fn verify<E: Spawner + Clock, A: BlockEngine + Clone>(
        &self,
        context: &E,
        chain: &A,
        block: Arc<Block>,
    ) -> Option<Result<iotchain_block::Header, iotchain_api::EngineError>> {
        let hash = block.header.hash();
        self.verifying.lock().insert(hash);
        let c = chain.clone();
        let now = now_ms(context);
        let result = blocking(context, move || c.verify((*block).clone(), now)).await;
        self.verifying.lock().remove(&hash);
        result
    }

    /// The block `hash`: from the inbox, waiting `ask_after` for it to arrive by itself
    /// (a proposal's broadcast), then fetched from peers until `timeout` is over.
    pub(crate) async fn block(
        &self,
        clock: &impl Clock,
        hash: B256,
        ask_after: Duration,
        timeout: Duration,
    ) -> Option<Arc<Block>> {
        let ask_after = ask_after.min(timeout);
        if let Some(block) = self.inbox.wait(clock, &hash, ask_after).await {
            return Some(block);
        }
        let key = Digest(hash.0);
        *self.wanted.lock().entry(key).or_default() += 1;
        tracing::debug!(%hash, "asking peers for a block");
        let _ = self.resolver.clone().fetch(key);
        let block = self
            .inbox
            .wait(clock, &hash, timeout.saturating_sub(ask_after))
            .await;
        let mut wanted = self.wanted.lock();
        if let Some(n) = wanted.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                wanted.remove(&key);
            }
        }
        let still: Vec<Digest> = wanted.keys().copied().collect();
        drop(wanted);
        let _ = self
            .resolver
            .clone()
            .retain(move |k: &Digest, _: &()| still.contains(k));
        block
    }

    /// Makes `hash` a block this node can build on, vote over or finalize: the head, a block
    /// of the tree (restored from its record after a restart), or else fetched from peers
    /// with any unknown ancestors and verified, oldest first, like any proposal. Gives up
    /// (false) when a block cannot be had within `timeout`, does not verify, or is final
    /// below the head.
    pub(crate) async fn ensure<E: Spawner + Clock, A: BlockEngine + Clone>(
        &self,
        context: &E,
        chain: &A,
        hash: B256,
        timeout: Duration,
    ) -> bool {
        let deadline = context.current() + timeout;
        let mut fetched: Vec<Arc<Block>> = Vec::new();
        let mut want = hash;
        while !chain.can_extend(&want) {
            if fetched.len() >= MAX_FETCH_DEPTH {
                tracing::debug!(%hash, "too far behind to fetch the branch; block sync catches up");
                return false;
            }
            if chain.is_final(&want) {
                tracing::debug!(%hash, %want, "the branch hangs off a final block below the head");
                return false;
            }
            let left = deadline
                .duration_since(context.current())
                .unwrap_or(Duration::ZERO);
            if self.verifying.lock().contains(&want) {
                // Another task is verifying it (the proposal of the previous view): wait
                // for that instead of verifying it twice.
                wait_until(context, left, || {
                    !self.verifying.lock().contains(&want) || chain.can_extend(&want)
                })
                .await;
                if chain.can_extend(&want) {
                    break;
                }
                if context.current() >= deadline {
                    return false;
                }
                continue;
            }
            let Some(block) = self.block(context, want, Duration::ZERO, left).await else {
                tracing::debug!(%want, "no peer had the block in time");
                return false;
            };
            want = block.header.parent_hash;
            fetched.push(block);
        }
        for block in fetched.into_iter().rev() {
            let hash = block.header.hash();
            if chain.pending_header(&hash).is_some() || chain.is_final(&hash) {
                continue;
            }
            match self.verify(context, chain, block).await {
                Some(Ok(_)) => tracing::info!(%hash, "verified a fetched block"),
                Some(Err(e)) => {
                    tracing::warn!(%hash, error = %e, "a fetched block does not verify");
                    return false;
                }
                None => return false,
            }
        }
        true
    }
}
