//! The pool seam: submitting readings and transactions, and what is waiting for a block.

use std::future::Future;

use alloy_primitives::{Address, B256, Bytes};
use iotchain_evm::EthTx;
use iotchain_execution::ItemError;

/// Who handed the node an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A device, gateway, wallet or bridge talking to this node: the node relays what it
    /// accepts to the other nodes.
    Local,
    /// Another node of the network relayed it: it is not relayed again.
    Forwarded,
}

/// One item to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A COSE_Sign1 reading, as the device signed it.
    Reading(Bytes),
    /// An owner transaction (RLP).
    OwnerTx(Bytes),
    /// An Ethereum transaction (EIP-2718 bytes, as `eth_sendRawTransaction` takes them).
    EthTx(Bytes),
}

/// Why the pool refused an item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The item itself is refused (malformed, forged, replayed, …).
    #[error(transparent)]
    Item(#[from] ItemError),
    /// The node holds as many items as it may; retry shortly.
    #[error("the node holds {pending} items waiting for a block (limit {limit}); retry shortly")]
    Overloaded {
        /// Items waiting.
        pending: usize,
        /// `max_pending_items`.
        limit: usize,
    },
    /// The transaction is waiting for a block already (or, for an owner transaction, is
    /// final already).
    #[error("{}transaction {hash} was already accepted", if *geth_wording { "already known: " } else { "" })]
    Known {
        /// Its hash.
        hash: B256,
        /// Ethereum clients match on geth's "already known".
        geth_wording: bool,
    },
    /// The node cannot make the item durable (disk full or failing, the item log stopped).
    #[error("the node cannot store data right now")]
    Storage(String),
    /// This node cannot propose, and has reached no validator for longer than it may hold
    /// items it could not hand on: it takes nothing rather than promise what it cannot keep.
    #[error(
        "no validator has been reachable from this node for {for_ms} ms; send to a validator or retry later"
    )]
    Unreachable {
        /// How long no validator was reachable.
        for_ms: u64,
    },
    /// This node cannot propose and has no peers to hand items to: nothing it took would
    /// ever be final.
    #[error("this node is not a validator and has no peers configured; send to a validator")]
    NoPeers,
    /// A critical task of the node stopped: it takes nothing it could not finalize, and is
    /// exiting so that its supervisor restarts it.
    #[error("{}: {}; the node is restarting, retry shortly", .0.task, .0.message)]
    Failed(crate::Failure),
}

impl PoolError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Item(e) => e.code(),
            Self::Overloaded { .. } => "overloaded",
            Self::Known { .. } => "known_transaction",
            Self::Storage(_) => "storage_unavailable",
            Self::Unreachable { .. } => "validators_unreachable",
            Self::NoPeers => "no_peers",
            Self::Failed(f) => f.code,
        }
    }

    /// Whether the refusal says "not now" rather than "never": the sender should retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Overloaded { .. }
                | Self::Storage(_)
                | Self::Unreachable { .. }
                | Self::NoPeers
                | Self::Failed(_)
        )
    }
}

/// The outcome of one submitted item: its id (reading id or transaction hash) once it is
/// durable, or why it was refused.
pub type Submitted = Result<B256, PoolError>;

/// The pool: admission of readings and transactions, and what waits for a block.
pub trait ItemPool: Send + Sync + 'static {
    /// Checks and accepts `items` (readings verified in batches, Ethereum senders recovered
    /// in parallel, each checked against the pending view) and returns one result per item,
    /// in order. An accepted item is durable in the item log when this resolves.
    fn submit(
        &self,
        items: Vec<Item>,
        origin: Origin,
    ) -> impl Future<Output = Vec<Submitted>> + Send;

    /// Readings and transactions waiting for a block.
    fn pending_counts(&self) -> (usize, usize);

    /// The nonce the next Ethereum transaction of `sender` must carry: its account's nonce
    /// after its transactions waiting for a block.
    fn pending_nonce(&self, sender: &Address) -> u64;

    /// An Ethereum transaction waiting for a block.
    fn pending_eth_tx(&self, hash: &B256) -> Option<EthTx>;

    /// Most readings one submission may hold.
    fn max_batch(&self) -> usize;

    /// The context the next block executes Ethereum transactions in, as this node would
    /// propose it now (`eth_call`, `eth_estimateGas`, the gas price).
    fn pending_block_context(&self) -> iotchain_evm::BlockContext;

    /// The readings waiting for a block, with their devices (to follow them to their block,
    /// as the MQTT bridge does after a restart).
    fn pending_readings(&self) -> Vec<(B256, iotchain_reading::DeviceAddress)>;

    /// Acknowledged items refused for good by final blocks, as it happens.
    fn subscribe_refused(&self) -> tokio::sync::broadcast::Receiver<crate::Refused>;

    /// The node's health record: critical tasks report their death to it.
    fn health(&self) -> &crate::Health;

    /// Why the node would refuse a client's write now, if it would: a failed critical task,
    /// a failed item log, a follower that cannot hand items on, a full pool. `None` when it
    /// takes writes (what `GET /v1/health` reports as ready).
    fn not_ready(&self) -> Option<PoolError>;
}
