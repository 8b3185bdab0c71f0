//! The consensus seam: what a BFT engine drives (build, verify, finalize) and what it reports
//! about itself.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use alloy_primitives::B256;
use iotchain_block::{Block, FinalityCertificate, Header};
use iotchain_execution::VerifyError;
use iotchain_storage::StorageError;
use parking_lot::Mutex;

use crate::ChainQuery;

/// A block committed with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its header (the last one, when a finalization committed uncommitted ancestors too).
    pub header: Header,
    /// Readings committed.
    pub readings: usize,
    /// Transactions committed.
    pub transactions: usize,
}

/// Why the engine cannot do what consensus asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The parent is neither the head nor a block built or verified here.
    #[error(
        "cannot build on {parent}: neither the head ({head} at height {height}) nor a block proposed or verified here"
    )]
    UnknownParent {
        /// The parent asked for.
        parent: B256,
        /// The head's hash.
        head: B256,
        /// The head's height.
        height: u64,
    },
    /// The block breaks a rule: no vote for it.
    #[error("block rejected: {0}")]
    Rejected(#[from] VerifyError),
    /// Finalizing a block this node neither built nor verified.
    #[error("block {0} was neither proposed nor verified here")]
    UnknownBlock(B256),
    /// Finalizing a block whose ancestor is neither committed nor known here.
    #[error("block {hash} extends {ancestor}, which is neither committed nor known here")]
    UnknownAncestor {
        /// The block.
        hash: B256,
        /// The missing ancestor.
        ancestor: B256,
    },
    /// Too many uncommitted blocks between the head and this one.
    #[error("block {hash} is more than {depth} blocks past the head")]
    TooDeep {
        /// The block.
        hash: B256,
        /// The most uncommitted blocks allowed.
        depth: usize,
    },
    /// The certificate names another block or height.
    #[error(
        "the certificate for {certified} at height {certified_height} is not for block {hash} at height {height}"
    )]
    CertificateMismatch {
        /// The block the certificate is for.
        certified: B256,
        /// Its height.
        certified_height: u64,
        /// The block.
        hash: B256,
        /// Its height.
        height: u64,
    },
    /// The certificate's signatures do not make a quorum of the validator set.
    #[error("finality certificate: {0}")]
    Certificate(String),
    /// The block is final already.
    #[error("block {0} is already final")]
    AlreadyFinal(B256),
    /// The data directory holds another chain.
    #[error("{dir} holds another chain (genesis {stored}), not this genesis ({given})")]
    OtherChain {
        /// The data directory.
        dir: String,
        /// The genesis hash stored there.
        stored: B256,
        /// The genesis hash given.
        given: B256,
    },
    /// The store failed: the node stops producing blocks rather than diverge.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a BFT engine (Commonware simplex) needs of the chain.
pub trait BlockEngine: ChainQuery {
    /// Whether a block can be built on, or verified against, `parent` now: it is the head,
    /// or a block built or verified here and not yet final (restored from its durable
    /// record after a restart).
    fn can_extend(&self, parent: &B256) -> bool;

    /// The header of a block built or verified here and not yet final (restored from its
    /// durable record after a restart if need be).
    fn pending_header(&self, hash: &B256) -> Option<Header>;

    /// Whether items wait for a block (a proposer with nothing to include waits a little).
    fn has_pending_items(&self) -> bool;

    /// Records that a critical consensus task stopped (it must not end while the node
    /// runs): the node then takes no more writes and its binary exits non-zero.
    fn task_stopped(&self, task: &'static str, code: &'static str, message: String);

    /// Builds a block on `parent` at `timestamp_ms` (the runtime's clock) from the pool's
    /// oldest durable items, records it durably and keeps it until it is finalized or
    /// superseded. With `allow_empty` false, `None` when nothing waits.
    fn propose(
        &self,
        parent: B256,
        timestamp_ms: u64,
        allow_empty: bool,
    ) -> Result<Option<Header>, EngineError>;

    /// A block built or verified here and not yet final.
    fn pending_block(&self, hash: &B256) -> Option<Block>;

    /// Re-executes another validator's block on its parent (every reading's signature, every
    /// transaction, the roots) and, if it holds, records it durably and keeps it for
    /// [`BlockEngine::finalize`]. `now_ms` (the runtime's clock) bounds its time.
    fn verify(&self, block: Block, now_ms: u64) -> Result<Header, EngineError>;

    /// Commits a block built or verified here with its finality certificate, after its
    /// uncommitted ancestors.
    fn finalize(
        &self,
        hash: B256,
        certificate: FinalityCertificate,
        now_ms: u64,
    ) -> Result<Committed, EngineError>;

    /// Commits a block another node finalized (block sync): its certificate checked against
    /// the validator set, the block verified. A block certified through a descendant is
    /// held until that descendant arrives (`Ok(None)`).
    fn import_final(
        &self,
        block: Block,
        certificate: FinalityCertificate,
        now_ms: u64,
    ) -> Result<Option<Committed>, EngineError>;

    /// Whether the block `hash` is final here.
    fn is_final(&self, hash: &B256) -> bool {
        matches!(self.height_of(hash), Ok(Some(_)))
    }
}

/// What consensus reports about itself, for operators (`/v1/status`, `/metrics`).
#[derive(Debug, Default)]
pub struct ConsensusStats {
    /// The latest simplex view this validator saw notarized or finalized.
    pub view: AtomicU64,
    /// When each validator was last heard from (a p2p message on any channel), by key: ms of
    /// the runtime's clock.
    seen: Mutex<BTreeMap<B256, u64>>,
    /// Milliseconds from the last committed block's proposal time to its commit here.
    pub last_finality_ms: AtomicU64,
    /// Proofs of validator misbehaviour simplex has seen: conflicting notarize or finalize
    /// votes, or a finalize vote beside a nullify vote, in one view.
    pub faults: AtomicU64,
}

impl ConsensusStats {
    /// Records the view of a notarization or finalization.
    pub fn observe_view(&self, view: u64) {
        self.view.fetch_max(view, Ordering::Relaxed);
    }

    /// Records a message from `validator` at `now_ms`.
    pub fn heard_from(&self, validator: B256, now_ms: u64) {
        self.seen.lock().insert(validator, now_ms);
    }

    /// When `validator` was last heard from (ms of the runtime's clock), if ever.
    pub fn last_heard(&self, validator: &B256) -> Option<u64> {
        self.seen.lock().get(validator).copied()
    }

    /// Validators heard from within `window_ms` before `now_ms`, `me` excepted (the p2p
    /// layer never delivers a validator's own messages; a key recorded by mistake for this
    /// node is not counted either).
    pub fn peers_seen(&self, now_ms: u64, window_ms: u64, me: &B256) -> usize {
        self.seen
            .lock()
            .iter()
            .filter(|(k, t)| *k != me && now_ms.saturating_sub(**t) <= window_ms)
            .count()
    }
}
