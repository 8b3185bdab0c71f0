//! Exports an iotchain node's final chain into PostgreSQL for analytics, exactly once and resumable.
//!
//! ```text
//!   node  GET /v1/sync/{h}          ┌──────────── fetch task ────────────┐
//!   ─────────────────────────────►  │ decode blocks (iotchain-block),    │
//!         POST / eth_getBlockReceipts│ check hashes chain on and the      │
//!         GET /v1/devices/{a}       │ certificates, rows (rows.rs)       │
//!                                   └────────────────┬───────────────────┘
//!                                                    │ bounded channel: 2 batches
//!                                   ┌────────────────▼───────────────────┐
//!   PostgreSQL  ◄───────────────────│ one transaction per batch: lock    │
//!                                   │ and check the cursor, COPY rows,   │
//!                                   │ upsert devices, move the cursor    │
//!                                   └────────────────────────────────────┘
//! ```
//!
//! Exactly once: the rows of a batch of blocks and the cursor (the last height written) are
//! committed in one PostgreSQL transaction, so after a crash at any moment the database holds
//! whole batches up to the cursor and nothing past it; a restart continues at cursor + 1.
//! Primary keys are a second net: a row written twice aborts the batch instead of doubling.
//! Fetching the next batch overlaps writing the current one. The tables are in
//! `docs/analytics.md` and [`schema`].

mod error;
mod export;
mod numeric;
pub mod rows;
pub mod schema;
mod sink;
pub mod source;

pub use error::{Error, Result};
pub use export::{Config, Event, Progress, Summary, run};
pub use numeric::Numeric;
