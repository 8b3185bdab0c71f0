//! The iotchain node: assembles the engine and its pool, the HTTP API and the relay to
//! peers on one Commonware runtime.
//!
//! ```text
//!                   ┌──────────── Commonware tokio runtime (one per process) ───────────┐
//!   HTTP :8545 ───▶ │ iotchain-rpc (axum + jsonrpsee) ──▶ Engine (ChainQuery, ItemPool) │
//!                   │                                       │  └─ Pool ─▶ relay to peers │
//!                   │ consensus (iotchain-consensus, started by the CLI) ─▶ BlockEngine  │
//!                   │ producer (single validator, no consensus) ─▶ produce_next_block    │
//!                   └───────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Everything takes its time and its blocking threads from the runtime's context.

mod config;
mod error;
mod http;
mod producer;
mod relay;

pub use config::NodeConfig;
pub use error::NodeError;
pub use http::{HttpLimits, HttpStats};
pub use iotchain_engine::{
    DEFAULT_HISTORY_BLOCKS, DEFAULT_TRIE_CACHE_BYTES, Engine, History, genesis_header,
};
pub use producer::BlockEvent;

use std::{net::SocketAddr, sync::Arc};

use commonware_runtime::{Metrics as _, Supervisor as _};
use iotchain_api::{CommonwareRuntime, NodeMetrics, Runtime};
use iotchain_rpc::{RpcConfig, RpcHandle};
use tokio::sync::{broadcast, watch};

/// How long a stopping node lets HTTP requests in flight finish.
pub const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The engine every part shares.
    pub engine: Engine,
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// Finalized-block events (for progress output).
    pub blocks: broadcast::Sender<BlockEvent>,
    /// The registry `/metrics` renders (other parts, like the MQTT bridge, add to it).
    pub metrics: iotchain_api::MetricsRegistry,
    /// The HTTP server's connection counts.
    pub http_stats: Arc<HttpStats>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    rpc: RpcHandle,
}

impl Node {
    /// Opens the data directory (creating the genesis block on first start), recovers pending
    /// items from the log, binds the HTTP port and, with `produce_blocks`, starts producing
    /// blocks. Everything runs on `context`'s runtime.
    pub async fn start(
        context: commonware_runtime::tokio::Context,
        config: NodeConfig,
    ) -> Result<Self, NodeError> {
        let runtime: Arc<dyn Runtime> = Arc::new(CommonwareRuntime(context.child("engine")));
        let metrics = NodeMetrics::default();
        let registry = iotchain_api::registry();
        metrics.register(&mut registry.lock());
        // The store panics on some damaged pages (redb's "unreachable" states) rather than
        // answering an error: that is a damaged data directory, and it is named.
        let engine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Engine::open(config.engine(), runtime.clone(), metrics)
        }))
        .map_err(|panic| {
            NodeError::Damaged(
                config.data_dir.join("chain.redb").display().to_string(),
                panic_message(&*panic),
            )
        })??;
        let (blocks, _) = broadcast::channel(1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| NodeError::Bind(config.http_addr.to_string(), e))?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Bind(config.http_addr.to_string(), e))?;
        let mut tasks = Vec::new();
        if !config.peers.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            engine.pool().set_relay(tx);
            tasks.push(critical(
                &engine,
                &shutdown_rx,
                "relay",
                relay::run(
                    config.peers.clone(),
                    relay::Signer {
                        key: config.validator_key.clone(),
                        genesis: engine.genesis_hash(),
                    },
                    engine.pool().clone(),
                    rx,
                    shutdown_rx.clone(),
                ),
            ));
        }
        tasks.push(tokio::spawn(producer::announce(
            engine.clone(),
            blocks.clone(),
            shutdown_rx.clone(),
        )));
        if config.produce_blocks {
            tasks.push(critical(
                &engine,
                &shutdown_rx,
                "producer",
                producer::run(engine.clone(), config.block_interval, shutdown_rx.clone()),
            ));
        }
        let runtime_metrics = context.child("metrics");
        let (app, rpc) = iotchain_rpc::router(
            engine.clone(),
            RpcConfig {
                max_body_bytes: config.max_body_bytes,
                max_rpc_connections: config.max_rpc_connections,
                runtime,
                node_key: engine.proposer(),
                metrics: registry.clone(),
                runtime_metrics: Some(Arc::new(move || runtime_metrics.encode())),
                calls: config.calls,
                forwarders: config.forwarders.clone(),
            },
        );
        let cap = http::connection_cap(&config.http);
        let http_stats = Arc::new(HttpStats::default());
        let http = critical(
            &engine,
            &shutdown_rx,
            "http",
            http::serve(
                listener,
                app,
                config.http,
                cap,
                http_stats.clone(),
                shutdown_rx.clone(),
            ),
        );
        tracing::info!(
            %http_addr,
            chain_id = engine.genesis().chain_id,
            max_http_connections = cap,
            "node started"
        );
        Ok(Self {
            engine,
            http_addr,
            blocks,
            metrics: registry,
            http_stats,
            shutdown,
            tasks,
            http,
            rpc,
        })
    }

    /// Resolves when a critical task (consensus, the item log, the committer, the producer,
    /// the relay, the HTTP server) has stopped: the node then takes no more writes, and its
    /// binary should stop it and exit non-zero so that its supervisor restarts it.
    pub async fn failed(&self) -> Failure {
        self.engine.health().failed().await
    }

    /// Stops the HTTP server, the relay and the block producer (letting a block in flight
    /// finish), then syncs and closes the item log. Requests in flight get [`HTTP_DRAIN`] to
    /// complete; a client that holds its connection longer is cut off, so a stop always
    /// ends.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.rpc.stop();
        for t in self.tasks {
            let _ = t.await;
        }
        let mut http = self.http;
        if tokio::time::timeout(HTTP_DRAIN, &mut http).await.is_err() {
            tracing::warn!("requests still open after {HTTP_DRAIN:?}; closing them");
            http.abort();
        }
        self.engine.shutdown().await;
    }
}

use iotchain_api::{ChainQuery as _, Failure, ItemPool as _};

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Spawns a task the node cannot do without: if it ends or panics before the node stops,
/// the node's health records it (writes are refused from then on).
fn critical(
    engine: &Engine,
    stopping: &watch::Receiver<bool>,
    task: &'static str,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use futures::FutureExt as _;
    let health = engine.health().clone();
    let stopping = stopping.clone();
    tokio::spawn(async move {
        let outcome = std::panic::AssertUnwindSafe(work).catch_unwind().await;
        if *stopping.borrow() {
            return;
        }
        let message = match outcome {
            Ok(()) => format!("the {task} task ended"),
            Err(panic) => format!("the {task} task panicked: {}", panic_message(&*panic)),
        };
        health.fail(task, "task_stopped", message);
    })
}
