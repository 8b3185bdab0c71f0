//! Block execution of iotchain: one [`BlockExecution`] applies readings, owner and Ethereum
//! transactions and hooks, for the builder and the verifier alike.
//!
//! ```text
//!            pool (AcceptedItem: decoded, verified)          a peer's block (BlockItem)
//!                        │ push_accepted                              │ push (+ the pool's copy)
//!                        ▼                                            ▼
//!   ┌─────────────────────────── BlockExecution (Policy::Build | Policy::Verify) ──────────┐
//!   │ readings: key, seq (gaps), stream head, hook calls; signatures of readings decoded   │
//!   │ here batched at finish · owner txs: registry rules · Ethereum txs: revm, receipts     │
//!   └───────────────────────────────────────┬─────────────────────────────────────────────┘
//!                                           │ finish: hooks, signatures, roots
//!                                           ▼
//!                          Executed ── seal(parent, time, proposer) ──▶ ExecutedBlock (built)
//!                                   └─ check(received header) ───────▶ ExecutedBlock (verified)
//! ```
//!
//! An item that does not apply is left out by [`Policy::Build`] and refuses the block under
//! [`Policy::Verify`]; everything else is the same code, so a validator can never refuse a
//! block its proposer built by the same rules.

mod block;
mod env;
mod error;
mod reading;
mod receipts;

pub use block::{
    AcceptedItem, BlockExecution, Executed, ExecutedBlock, MAX_CLOCK_DRIFT_MS, Policy,
    apply_owner_tx, check_header, decode_eth_tx, item_id,
};
pub use env::{block_context, next_base_fee};
pub use error::{ItemError, VerifyError};
pub use reading::{
    CheckedReading, DecodedReading, ReadingMeta, apply_reading, signed_by_any, verify_readings,
};
pub use receipts::{StoredReceipt, hook_ids_of, hooks_key};
