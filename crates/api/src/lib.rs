//! The seams of the iotchain node: what the APIs, consensus and the MQTT bridge may ask of
//! the pool and the chain, as traits with typed errors.
//!
//! ```text
//!   rpc (REST, JSON-RPC)   mqtt bridge            consensus (simplex)
//!        │      │              │   │                   │
//!   ItemPool  ChainQuery   ItemPool ChainQuery     BlockEngine (: ChainQuery)
//!        └──────┴──────────────┴───┴───────────────────┘
//!                              │ implemented by
//!                     iotchain-engine (with iotchain-pool inside)
//! ```
//!
//! Implementations take their time and their threads from a [`Runtime`]: the Commonware
//! runtime the node runs on.

mod engine;
mod health;
mod metrics;
mod pool;
mod query;
mod redact;
mod runtime;

pub use engine::{BlockEngine, Committed, ConsensusStats, EngineError};
pub use health::{Failure, Health};
pub use metrics::{CodeLabel, MetricsRegistry, NodeMetrics, registry};
pub use pool::{Item, ItemPool, Origin, PoolError, Submitted};
pub use query::{
    ChainQuery, HeadInfo, NoStreamProof, QueryError, QueryResult, ReadingStatus, Refused, StateAt,
    StreamProof, TxStatus, held_already,
};
pub use redact::redact_url;
pub use runtime::{CommonwareRuntime, Runtime, Task, blocking, within};
