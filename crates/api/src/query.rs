//! The query seam: what the APIs, the MQTT bridge and (later) the explorer and the exporter
//! read of the chain. Implemented by the engine; every read goes through here.

use alloy_primitives::B256;
use iotchain_block::{Block, FinalityCertificate, Genesis, Header, ProofBundle};
use iotchain_execution::StoredReceipt;
use iotchain_reading::DeviceAddress;
use iotchain_state::{DeviceRecord, State};
use iotchain_storage::{BlockGas, ReadingLocation, TxLocation};
use tokio::sync::watch;

use crate::ConsensusStats;

/// The last final block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// Height.
    pub height: u64,
    /// Header hash.
    pub hash: B256,
    /// Header time.
    pub timestamp_ms: u64,
}

/// A complete-range proof and the readings it proves (in the answer's order).
#[derive(Debug, Clone)]
pub struct StreamProof {
    /// The proof.
    pub proof: iotchain_block::RangeProofJson,
    /// The stream's readings in the range, in the answer's order.
    pub entries: Vec<iotchain_storage::StreamEntry>,
}

/// Why a range has no proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStreamProof {
    /// The chain keeps no stream accumulators (its genesis predates them).
    NotKept,
    /// The stream has readings but no accumulator: it is not one of the device's first
    /// [`MAX_STREAMS`](iotchain_state::MAX_STREAMS) streams.
    Untracked,
    /// The proof would show this many leaves, more than allowed.
    TooLarge(u64),
}

/// Where a reading stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingStatus {
    /// Accepted and durable, waiting for a block.
    Pending {
        /// When it was accepted.
        arrival_ms: u64,
        /// The device's time in the reading.
        ts: u64,
    },
    /// In a final block.
    Final {
        /// Its location.
        location: ReadingLocation,
        /// The block's time.
        block_time_ms: u64,
    },
    /// Accepted here, then refused for good by a final block (another reading of the device
    /// took its seq, the device was revoked or rotated its key before it was included).
    Refused(Refused),
}

/// What a reading refused at submission really is when this node holds the very same bytes
/// already, pending or final: a resend after a lost answer, a broker's redelivery, a
/// gateway-failover copy that the relay brought first. Such a resend is acknowledged again
/// (marked as a duplicate), not refused: the reading is held, once.
pub fn held_already<Q: ChainQuery + ?Sized>(
    chain: &Q,
    id: &B256,
    error: &crate::PoolError,
) -> Option<ReadingStatus> {
    if error.code() != "replayed_seq" {
        return None;
    }
    match chain.reading_status(id) {
        Ok(Some(s @ (ReadingStatus::Pending { .. } | ReadingStatus::Final { .. }))) => Some(s),
        _ => None,
    }
}

/// An acknowledged item a final block refused for good, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Reading id or transaction hash.
    pub id: B256,
    /// The stable code of the reason (`replayed_seq`, `revoked_device`, `nonce_too_low`, …).
    pub code: String,
    /// The reason, for people.
    pub message: String,
    /// The height of the block after which it no longer applied.
    pub height: u64,
}

/// Where a transaction stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// In a final block.
    Final(TxLocation),
    /// Accepted, waiting for a block.
    Pending,
    /// Accepted here, then refused for good by a final block.
    Refused(Refused),
    /// Not known to this node.
    Unknown,
}

/// Which state a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAt {
    /// The state after the last final block.
    Committed,
    /// The committed state plus the readings and owner transactions waiting for a block.
    Pending,
}

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Nothing with that key is known here.
    #[error("{0}")]
    NotFound(String),
    /// The reading is accepted but not final yet (it has no proof).
    #[error("reading {0} is pending, not final yet")]
    NotFinal(B256),
    /// The state of that block is no longer kept here (beyond the node's state history).
    #[error("{0}")]
    NotKept(String),
    /// The store failed or holds something it cannot decode (the cause is logged).
    #[error("the node cannot read its store right now")]
    Storage(String),
}

impl QueryError {
    /// A store failure: logged here, reported without internals.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing_error(&e);
        Self::Storage(e.to_string())
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::NotFinal(_) => "not_final",
            Self::NotKept(_) => "state_not_kept",
            Self::Storage(_) => "storage_unavailable",
        }
    }
}

fn tracing_error(e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "storage failure");
}

/// Result of a query.
pub type QueryResult<T> = Result<T, QueryError>;

/// Reads of the chain: final blocks and their indexes, the state, readings' statuses and
/// proofs.
pub trait ChainQuery: Send + Sync + 'static {
    /// The genesis.
    fn genesis(&self) -> &Genesis;
    /// The genesis header's hash.
    fn genesis_hash(&self) -> B256;
    /// The last final block.
    fn head(&self) -> HeadInfo;
    /// Changes of the head.
    fn subscribe_head(&self) -> watch::Receiver<HeadInfo>;
    /// The base fee and gas used of the last final block.
    fn head_gas(&self) -> BlockGas;
    /// What consensus reports about itself.
    fn consensus_stats(&self) -> &ConsensusStats;

    /// Where a reading stands, if this node knows it.
    fn reading_status(&self, id: &B256) -> QueryResult<Option<ReadingStatus>>;
    /// Where a transaction stands.
    fn tx_status(&self, hash: &B256) -> QueryResult<TxStatus>;
    /// The proof bundle of a final reading.
    fn proof(&self, id: &B256) -> QueryResult<ProofBundle>;

    /// Runs `f` on a snapshot of the committed or pending state. The snapshot is taken in
    /// O(1) (the state's maps are structurally shared) and no lock is held while `f` runs,
    /// so a long call or proof never stalls admission, block building or commits.
    fn with_state<R>(&self, at: StateAt, f: impl FnOnce(&State) -> R) -> R;
    /// Runs `f` on the committed state as of final block `height`: the head's, or an older
    /// block's the node still keeps (its state history), else [`QueryError::NotKept`].
    fn with_state_at<R>(&self, height: u64, f: impl FnOnce(&State) -> R) -> QueryResult<R>;
    /// A device's record in the committed state.
    fn device(&self, address: &DeviceAddress) -> Option<DeviceRecord> {
        self.with_state(StateAt::Committed, |s| s.device(address).cloned())
    }

    /// A final block's header.
    fn header(&self, height: u64) -> QueryResult<Option<Header>>;
    /// A final block.
    fn block(&self, height: u64) -> QueryResult<Option<Block>>;
    /// A final block's finality certificate.
    fn certificate(&self, height: u64) -> QueryResult<Option<FinalityCertificate>>;
    /// The height of a final block by its hash.
    fn height_of(&self, hash: &B256) -> QueryResult<Option<u64>>;
    /// A final block's base fee and gas used.
    fn block_gas(&self, height: u64) -> QueryResult<Option<BlockGas>>;
    /// The receipt of a final Ethereum transaction or hook call.
    fn receipt(&self, hash: &B256) -> QueryResult<Option<StoredReceipt>>;
    /// The receipts under `hashes` in the block at `height`, in order.
    fn receipts_in(&self, height: u64, hashes: &[B256]) -> QueryResult<Vec<Option<StoredReceipt>>>;
    /// The ids of the hook calls a final block made, in order.
    fn hook_ids(&self, height: u64) -> QueryResult<Vec<B256>>;

    /// Time buckets of a device stream's numeric readings (see
    /// [`ChainStore::stream_series`](iotchain_storage::ChainStore::stream_series)).
    fn stream_series(
        &self,
        device: &DeviceAddress,
        stream: &str,
        from: u64,
        to: u64,
        bucket_ms: u64,
    ) -> QueryResult<Option<Vec<iotchain_storage::Bucket>>>;
    /// A complete-range proof of a device stream's readings in `range` (at most one kind of
    /// bound set, see [`ChainStore::stream_window`](iotchain_storage::ChainStore::stream_window)),
    /// at the last final block, showing at most `max_leaves` leaves; or why there is none.
    fn stream_proof(
        &self,
        device: &DeviceAddress,
        stream: &str,
        range: &iotchain_storage::StreamRange,
        descending: bool,
        max_leaves: u64,
    ) -> QueryResult<Result<StreamProof, NoStreamProof>>;
    /// Every stream of a device, with its figures (from the stream index: no scan).
    fn streams(&self, device: &DeviceAddress) -> QueryResult<Vec<iotchain_storage::StreamInfo>>;
    /// A page of a device stream's final readings (see
    /// [`ChainStore::stream_page`](iotchain_storage::ChainStore::stream_page)); `None` for a
    /// stream the device never sent.
    #[allow(clippy::type_complexity)]
    fn stream_page(
        &self,
        device: &DeviceAddress,
        stream: &str,
        range: &iotchain_storage::StreamRange,
        after: iotchain_storage::StreamCursor,
        descending: bool,
        limit: usize,
    ) -> QueryResult<
        Option<(
            iotchain_storage::StreamInfo,
            Vec<iotchain_storage::StreamEntry>,
            bool,
        )>,
    >;
}
