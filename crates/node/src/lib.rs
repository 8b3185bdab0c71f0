//! The iotchain node: ingestion of readings and transactions, block production and the
//! HTTP API.
//!
//! A node is assembled from three parts sharing one [`Chain`]:
//! - ingestion ([`Chain::submit_readings`], [`Chain::submit_tx`]) checks items against the
//!   pending view of the state, appends them to the item log and acknowledges them once the
//!   log is synced (group commit: one fsync for everything that arrived meanwhile);
//! - the block producer takes the oldest durable items, applies them to the committed state,
//!   signs the header and commits the block in one database transaction;
//! - the HTTP API (`/v1/...`) serves submissions, statuses, devices, blocks and proofs.

mod api;
mod chain;
mod config;
mod error;
mod eth;
mod forward;
mod producer;
mod rpc;

pub use api::router;
/// HTTP status of an [`ApiError`].
pub use axum::http::StatusCode;
pub use chain::{Chain, ConsensusStats, HeadInfo, ItemResult, MetricsSource, ReadingStatus};
pub use config::NodeConfig;
pub use error::{ApiError, NodeError};
pub use eth::StoredReceipt;
pub use forward::FORWARDED_HEADER;
pub use producer::BlockEvent;

use std::{net::SocketAddr, sync::Arc};

use tokio::sync::broadcast;

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The chain shared by every part.
    pub chain: Arc<Chain>,
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// Finalized-block events (for progress output).
    pub blocks: broadcast::Sender<BlockEvent>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
}

/// How long a stopping node lets HTTP requests in flight finish.
pub const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Node {
    /// Opens the data directory (creating the genesis block on first start), recovers pending
    /// items from the log, binds the HTTP port and starts producing blocks.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let chain = Chain::open(&config)?;
        let (blocks, _) = broadcast::channel(1024);
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| NodeError::Bind(config.http_addr.to_string(), e))?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Bind(config.http_addr.to_string(), e))?;
        let mut tasks = Vec::new();
        if !config.peers.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            chain.set_forwarder(tx);
            tasks.push(tokio::spawn(forward::run(
                config.peers.clone(),
                rx,
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(producer::announce(
            chain.clone(),
            blocks.clone(),
            shutdown_rx.clone(),
        )));
        if config.produce_blocks {
            tasks.push(tokio::spawn(producer::run(
                chain.clone(),
                config.clone(),
                shutdown_rx.clone(),
            )));
        } else {
            tasks.push(tokio::spawn(producer::idle(
                chain.clone(),
                shutdown_rx.clone(),
            )));
        }
        let app = router(chain.clone());
        let mut rx = shutdown_rx;
        let http = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        tracing::info!(%http_addr, chain_id = chain.genesis().chain_id, "node started");
        Ok(Self {
            chain,
            http_addr,
            blocks,
            shutdown,
            tasks,
            http,
        })
    }

    /// Stops the HTTP server, the forwarder and the block producer, letting an in-flight
    /// block finish. Requests in flight get [`HTTP_DRAIN`] to complete; a client that holds
    /// its connection longer is cut off, so a stop always ends.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut http = self.http;
        if tokio::time::timeout(HTTP_DRAIN, &mut http).await.is_err() {
            tracing::warn!("requests still open after {HTTP_DRAIN:?}; closing them");
            http.abort();
        }
    }
}
