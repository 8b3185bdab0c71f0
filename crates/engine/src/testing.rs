//! Helpers for tests of the engine and of what is built on it: a Commonware tokio runtime to
//! run on, an engine opened on it, submissions by kind.

use std::sync::Arc;

use alloy_primitives::Bytes;
use commonware_runtime::{Runner as _, Supervisor as _};
use iotchain_api::{
    BlockEngine, CommonwareRuntime, EngineError, Item, ItemPool, NodeMetrics, Origin, Runtime,
    Submitted,
};

use crate::{Engine, EngineConfig};

/// Runs `f` on a Commonware tokio runtime with two workers, its storage in a fresh temporary
/// directory.
pub fn run<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce(commonware_runtime::tokio::Context) -> Fut,
    Fut: std::future::Future,
{
    commonware_runtime::tokio::Runner::new(commonware_runtime::tokio::Config::new()).start(f)
}

/// The runtime of an engine opened on `context`.
pub fn runtime(context: &commonware_runtime::tokio::Context) -> Arc<dyn Runtime> {
    Arc::new(CommonwareRuntime(context.child("engine")))
}

/// Opens an engine on `context`'s runtime.
pub fn open(
    context: &commonware_runtime::tokio::Context,
    config: EngineConfig,
) -> Result<Engine, EngineError> {
    Engine::open(config, runtime(context), NodeMetrics::default())
}

impl Engine {
    /// Submits readings from a local client.
    pub async fn submit_readings(&self, messages: Vec<Bytes>) -> Vec<Submitted> {
        let items = messages.into_iter().map(Item::Reading).collect();
        self.submit(items, Origin::Local).await
    }

    /// Submits one owner transaction from a local client.
    pub async fn submit_owner_tx(&self, raw: Bytes) -> Submitted {
        let mut r = self.submit(vec![Item::OwnerTx(raw)], Origin::Local).await;
        r.pop().expect("one result per item")
    }

    /// Submits one Ethereum transaction from a local client.
    pub async fn submit_eth_tx(&self, raw: Bytes) -> Submitted {
        let mut r = self.submit(vec![Item::EthTx(raw)], Origin::Local).await;
        r.pop().expect("one result per item")
    }

    /// The runtime's clock, in ms.
    pub fn now_ms(&self) -> u64 {
        self.inner.runtime.now_ms()
    }
}

/// An engine configuration with the node's default limits.
pub fn config(
    data_dir: std::path::PathBuf,
    genesis: iotchain_block::Genesis,
    validator_key: iotchain_crypto::ValidatorKey,
) -> EngineConfig {
    EngineConfig {
        data_dir,
        genesis,
        validator_key,
        db_cache_bytes: 64 * 1024 * 1024,
        max_pending_items: 500_000,
        max_batch_readings: 10_000,
        history: iotchain_storage::History::default(),
        history_query_bytes: crate::DEFAULT_HISTORY_QUERY_BYTES,
        // Nothing below the top levels stays in memory, so every test's blocks and proofs
        // read the trie from the store.
        trie_cache_bytes: 0,
    }
}

/// The consensus calls at the runtime's current time, for tests that play consensus.
impl Engine {
    /// [`BlockEngine::propose`] now.
    pub fn propose_now(
        &self,
        parent: alloy_primitives::B256,
        allow_empty: bool,
    ) -> Result<Option<iotchain_block::Header>, EngineError> {
        BlockEngine::propose(self, parent, self.now_ms(), allow_empty)
    }

    /// [`BlockEngine::verify`] now.
    pub fn verify_now(
        &self,
        block: iotchain_block::Block,
    ) -> Result<iotchain_block::Header, EngineError> {
        BlockEngine::verify(self, block, self.now_ms())
    }

    /// [`BlockEngine::finalize`] now.
    pub fn finalize_now(
        &self,
        hash: alloy_primitives::B256,
        certificate: iotchain_block::FinalityCertificate,
    ) -> Result<iotchain_api::Committed, EngineError> {
        BlockEngine::finalize(self, hash, certificate, self.now_ms())
    }

    /// [`BlockEngine::import_final`] now.
    pub fn import_final_now(
        &self,
        block: iotchain_block::Block,
        certificate: iotchain_block::FinalityCertificate,
    ) -> Result<Option<iotchain_api::Committed>, EngineError> {
        BlockEngine::import_final(self, block, certificate, self.now_ms())
    }
}

/// A weak reference to an engine: tells when its last clone is gone (and its store closed).
#[derive(Debug)]
pub struct WeakEngine(std::sync::Weak<crate::Inner>);

impl WeakEngine {
    /// Whether a clone of the engine still exists somewhere.
    pub fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl Engine {
    /// A weak reference to this engine.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }
}
