//! The authenticated iotchain state: device registry, owners, per-device reading heads and
//! Ethereum accounts under one Merkle Patricia trie root.
//!
//! The same [`State`] type serves two purposes: the committed state of the last final block,
//! and the node's pending view (committed state plus every accepted but not yet final item),
//! against which new readings and transactions are validated. Because both apply the same
//! items in the same order with the same rules, an item accepted into the pending view always
//! applies when its block is built.

pub mod account;
mod accumulator;
mod error;
mod record;
mod state;
pub mod trie;

pub use account::Account;
pub use accumulator::{StreamAccumulator, accumulator_key};
pub use error::{Result, StateError};
pub use record::{
    DeviceRecord, DeviceStatus, Gap, Hook, MAX_OPEN_GAPS, MAX_STREAMS, OwnerRecord, StreamHead,
    micro_units,
};
pub use state::{
    AccountProof, AppliedReading, LeafPlace, MAX_STREAM_NAME, State, StateRecords, StateUndo,
};
pub use trie::{NodeSource, Trie, TrieError, node_key};
