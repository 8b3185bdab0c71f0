//! The node's counters, as Prometheus metrics (`prometheus-client`): the pool and the engine
//! count, the HTTP API renders them at `/metrics` with every other part's.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// The registry every part of a node adds its metrics to.
pub type MetricsRegistry = Arc<Mutex<Registry>>;

/// A new, empty registry.
pub fn registry() -> MetricsRegistry {
    Arc::new(Mutex::new(Registry::default()))
}

/// The label of a refusal: its stable error code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error code (`replayed_seq`, `bad_signature`, …).
    pub code: &'static str,
}

/// What the pool and the engine count.
#[derive(Debug, Default, Clone)]
pub struct NodeMetrics {
    /// Readings accepted.
    pub readings_accepted: Counter,
    /// Owner and Ethereum transactions accepted.
    pub transactions_accepted: Counter,
    /// Items refused, by error code.
    pub rejected: Family<CodeLabel, Counter>,
    /// Blocks committed since start.
    pub blocks: Counter,
    /// Readings in committed blocks since start.
    pub readings_final: Counter,
    /// Item log group commits (fsyncs).
    pub log_syncs: Counter,
}

impl NodeMetrics {
    /// Adds the counters to `registry` (under `iotchain_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("iotchain");
        r.register(
            "readings_accepted",
            "Readings accepted.",
            self.readings_accepted.clone(),
        );
        r.register(
            "transactions_accepted",
            "Owner and Ethereum transactions accepted.",
            self.transactions_accepted.clone(),
        );
        r.register(
            "rejected",
            "Items rejected, by error code.",
            self.rejected.clone(),
        );
        r.register(
            "blocks",
            "Blocks committed since start.",
            self.blocks.clone(),
        );
        r.register(
            "readings_final",
            "Readings in blocks committed since start.",
            self.readings_final.clone(),
        );
        r.register(
            "log_syncs",
            "Item log group commits (fsyncs).",
            self.log_syncs.clone(),
        );
    }

    /// Counts a refusal.
    pub fn reject(&self, code: &'static str) {
        self.rejected.get_or_create(&CodeLabel { code }).inc();
    }
}
