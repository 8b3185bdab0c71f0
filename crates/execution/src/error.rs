//! Why an item does not apply, and why a block is refused.

use alloy_primitives::B256;
use iotchain_reading::{Alg, DeviceAddress, ReadingError};
use iotchain_state::StateError;

/// Why one reading or transaction cannot be accepted or applied. [`ItemError::code`] is the
/// stable machine-readable code the APIs report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The reading's bytes do not decode as a reading.
    #[error(transparent)]
    Reading(#[from] ReadingError),
    /// The reading is larger than the chain accepts.
    #[error("reading is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// `max_reading_bytes` of the genesis.
        limit: usize,
    },
    /// The reading names another algorithm than the device's key.
    #[error("device {device} signs with {registered}, the reading says {got}")]
    WrongAlg {
        /// The device.
        device: DeviceAddress,
        /// Its key's algorithm.
        registered: Alg,
        /// The reading's `alg`.
        got: Alg,
    },
    /// The signature does not verify with the device's current key (nor a previous one).
    #[error("signature does not verify with the registered key of device {0}")]
    BadSignature(DeviceAddress),
    /// The item breaks a rule of the state (unknown or revoked device, replayed seq, …).
    #[error(transparent)]
    State(#[from] StateError),
    /// An owner transaction that does not decode or is not signed for this chain.
    #[error("invalid owner transaction: {0}")]
    InvalidTransaction(String),
    /// An Ethereum transaction the contract lane refuses.
    #[error(transparent)]
    Evm(#[from] iotchain_evm::EvmError),
}

impl ItemError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Reading(e) => e.code(),
            Self::TooLarge { .. } => "reading_too_large",
            Self::WrongAlg { .. } => "wrong_alg",
            Self::BadSignature(_) => "bad_signature",
            Self::State(e) => e.code(),
            Self::InvalidTransaction(_) => "invalid_transaction",
            Self::Evm(e) => e.code(),
        }
    }
}

/// Why a block from another validator (or a peer, or this node's own record) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Built for another chain.
    #[error("chain id {0} is not this chain's")]
    ChainId(u64),
    /// The height does not follow the parent's.
    #[error("height {height} does not follow its parent's height {parent}")]
    Height {
        /// The block's height.
        height: u64,
        /// Its parent's height.
        parent: u64,
    },
    /// The block's time is before its parent's, or too far ahead of this node's clock.
    #[error("time {time} is before its parent's ({parent}) or more than {drift_ms} ms after {now}")]
    Time {
        /// The block's time.
        time: u64,
        /// The parent's time.
        parent: u64,
        /// This node's clock.
        now: u64,
        /// How far ahead a block's time may be.
        drift_ms: u64,
    },
    /// The proposer is not a validator of the genesis.
    #[error("proposer {0} is not a validator")]
    Proposer(B256),
    /// More readings than a block may hold.
    #[error("more than {0} readings")]
    TooManyReadings(u64),
    /// More transactions than a block may hold.
    #[error("more than {0} transactions")]
    TooManyTransactions(u64),
    /// More bytes of owner transactions than a block may hold.
    #[error("more than {0} bytes of owner transactions")]
    OwnerTxBytes(usize),
    /// An item does not apply.
    #[error("item {index}: {source}")]
    Item {
        /// Its position in the block.
        index: usize,
        /// Why.
        source: ItemError,
    },
    /// A reading's signature does not verify.
    #[error("reading {id} of device {device} has a bad signature")]
    BadSignature {
        /// The reading's id.
        id: B256,
        /// Its device.
        device: DeviceAddress,
    },
    /// A root in the header is not what executing the block gives.
    #[error("{what} is {header}, recomputed {computed}")]
    Root {
        /// `readings_root`, `transactions_root` or `state_root`.
        what: &'static str,
        /// What the header says.
        header: B256,
        /// What executing the block gave.
        computed: B256,
    },
    /// The header's item counts do not match the body.
    #[error("item counts do not match the items")]
    Counts,
    /// This node could not read its own state's trie nodes from its store (a fault of this
    /// node, not of the block).
    #[error("this node's state store failed: {0}")]
    Store(#[from] iotchain_state::TrieError),
}
