//! Embedded, crash-safe storage of iotchain: the accepted-item log and the block, reading and
//! state store.
//!
//! Two parts, each with one fsync per group of writes:
//! - [`ItemLog`]: an append-only log of accepted readings and transactions. An item is
//!   acknowledged to its sender only after the log is synced, so a `kill -9` never loses it.
//! - [`ChainStore`]: a `redb` database holding blocks, headers, certificates, the reading
//!   index and the state records. One write transaction (one fsync) per block also records how
//!   far into the log the chain has consumed, so items are neither lost nor included twice.

mod chain;
mod error;
mod history;
mod index;
mod log;
mod receipts;
mod run_filter;
mod stream_mmr;
mod stream_store;
mod streams;
mod trie_nodes;

pub use chain::{
    BlockCommit, BlockGas, ChainStore, ReadingLocation, RefusedItem, TxLocation, delay_ms,
};
pub use error::{Result, StorageError};
pub use history::{DEFAULT_HISTORY_BLOCKS, History, UndoWalk};
pub use index::{HashIndex, IndexShape, Probes};
pub use log::{ItemKind, ItemLog, LogItem};
pub use stream_mmr::{ProvenWindow, Window};
pub use streams::{
    Bucket, MINUTE_MS, ProofBound, StreamCursor, StreamEntry, StreamInfo, StreamRange,
};
