//! Block sync: fetching finalized blocks with their certificates from peers' HTTP APIs
//! (`GET /v1/sync/{height}`), for a validator that missed blocks and for followers.
//!
//! Every fetched block is checked like any other: its certificate against the genesis
//! validator set, then every item re-verified and the state root recomputed
//! ([`BlockEngine::import_final`]). A peer can withhold blocks but not forge them.

use std::{future::Future, sync::Arc, time::Duration};

use iotchain_api::BlockEngine;
use iotchain_block::SyncBlocks;
use tokio::sync::Notify;

use crate::{
    Runtime,
    app::{blocking, now_ms},
};

/// Where block sync fetches finalized blocks from.
pub trait BlockSource: Send + Sync + 'static {
    /// Finalized blocks from height `from` on, waiting up to `wait_ms` for `from` to exist.
    /// `attempt` counts failed tries so far (a source with several peers moves on).
    fn fetch(
        &self,
        from: u64,
        wait_ms: u64,
        attempt: usize,
    ) -> impl Future<Output = Result<SyncBlocks, String>> + Send;
}

/// Peers' HTTP APIs (`GET /v1/sync/{height}`), tried in turn.
#[derive(Debug, Clone)]
pub struct HttpPeers {
    client: reqwest::Client,
    peers: Vec<String>,
}

impl HttpPeers {
    /// Fetches from these base URLs.
    pub fn new(peers: Vec<String>) -> Self {
        Self {
            client: reqwest::Client::new(),
            peers,
        }
    }
}

impl BlockSource for HttpPeers {
    async fn fetch(&self, from: u64, wait_ms: u64, attempt: usize) -> Result<SyncBlocks, String> {
        if self.peers.is_empty() {
            return Err("no peers to sync from".into());
        }
        let peer = &self.peers[attempt % self.peers.len()];
        fetch(&self.client, peer, from, wait_ms).await
    }
}

/// How long a follower's request waits at the peer for the next block.
const FOLLOW_WAIT_MS: u64 = 2_000;
/// How often a validator checks that it is not behind, without a hint.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Fetches one page of blocks starting at `from`.
pub async fn fetch(
    client: &reqwest::Client,
    peer: &str,
    from: u64,
    wait_ms: u64,
) -> Result<SyncBlocks, String> {
    let url = format!(
        "{}/v1/sync/{from}?wait_ms={wait_ms}",
        peer.trim_end_matches('/')
    );
    // What an error says names the peer without its password (reqwest's errors repeat the URL).
    let shown = iotchain_api::redact_url(&url);
    let response = client
        .get(&url)
        .timeout(Duration::from_millis(wait_ms + 30_000))
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("{shown}: HTTP {}", response.status()));
    }
    response
        .json::<SyncBlocks>()
        .await
        .map_err(|e| format!("{shown}: {}", e.without_url()))
}

/// Keeps the chain up to date with its peers: a follower asks continuously (long polls), a
/// validator when woken (a finalization it could not commit) and every few seconds.
pub async fn run<E: Runtime, A: BlockEngine + Clone>(
    context: E,
    chain: A,
    source: impl BlockSource,
    wake: Arc<Notify>,
    follower: bool,
) {
    let mut attempt = 0usize;
    loop {
        let from = chain.head().height + 1;
        let wait_ms = if follower { FOLLOW_WAIT_MS } else { 0 };
        let imported = match source.fetch(from, wait_ms, attempt).await {
            Ok(page) => {
                let mut imported = 0usize;
                for b in page.blocks {
                    let c = chain.clone();
                    let now = now_ms(&context);
                    let r = blocking(&context, move || {
                        let block = iotchain_block::Block::decode_rlp(&b.block)
                            .map_err(|e| e.to_string())?;
                        if block.header.height <= c.head().height {
                            return Ok(None); // committed meanwhile through consensus
                        }
                        match c.import_final(block, b.certificate, now) {
                            // Consensus committed it between the check and the import.
                            Err(iotchain_api::EngineError::AlreadyFinal(_)) => Ok(None),
                            r => r.map_err(|e| e.to_string()),
                        }
                    })
                    .await;
                    match r {
                        Some(Ok(Some(committed))) => {
                            imported += 1;
                            tracing::debug!(
                                height = committed.header.height,
                                readings = committed.readings,
                                "synced block"
                            );
                        }
                        Some(Ok(None)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "block from peer refused");
                            attempt += 1;
                            break;
                        }
                        None => {
                            tracing::error!("sync task failed");
                            break;
                        }
                    }
                }
                if imported > 0 {
                    tracing::info!(imported, height = chain.head().height, "caught up blocks");
                }
                imported
            }
            Err(e) => {
                tracing::debug!(error = %e, "peer unavailable for sync");
                attempt += 1;
                0
            }
        };
        if imported == 0 {
            let pause = if follower {
                Duration::from_millis(500)
            } else {
                CHECK_INTERVAL
            };
            let _ = crate::app::within(&context, pause, wake.notified()).await;
        }
    }
}
