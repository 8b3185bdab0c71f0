//! The block producer of a single-validator chain: a block per interval while items wait.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::{Chain, NodeConfig};

/// A finalized block, for progress output.
#[derive(Debug, Clone)]
pub struct BlockEvent {
    /// Height.
    pub height: u64,
    /// Header hash.
    pub hash: alloy_primitives::B256,
    /// Readings in the block.
    pub readings: usize,
    /// Transactions in the block.
    pub transactions: usize,
}

/// Announces every new head as a [`BlockEvent`], whoever finalized it.
pub(crate) async fn announce(
    chain: Arc<Chain>,
    events: broadcast::Sender<BlockEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut head = chain.subscribe_head();
    let mut last = chain.head().height;
    loop {
        tokio::select! {
            changed = head.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let now = chain.head().height;
        for height in last + 1..=now {
            if let Ok(Some(h)) = chain.store().header(height) {
                let _ = events.send(BlockEvent {
                    height,
                    hash: h.hash(),
                    readings: h.reading_count as usize,
                    transactions: h.transaction_count as usize,
                });
            }
        }
        last = now;
    }
}

/// Runs until `shutdown` turns true, then finishes the block in flight and stops the log.
pub(crate) async fn run(
    chain: Arc<Chain>,
    config: NodeConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(config.block_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if chain.has_failed() {
            tracing::error!("storage failed: block production stopped");
            break;
        }
        let c = chain.clone();
        match tokio::task::spawn_blocking(move || c.produce_next_block()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some((header, readings, transactions)))) => {
                tracing::debug!(
                    height = header.height,
                    readings,
                    transactions,
                    "block final"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "block commit failed: block production stopped");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "block producer panicked");
                break;
            }
        }
    }
    let c = chain.clone();
    let _ = tokio::task::spawn_blocking(move || c.shutdown()).await;
}

/// Waits for shutdown when blocks come from consensus, then stops the log thread.
pub(crate) async fn idle(chain: Arc<Chain>, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = tokio::task::spawn_blocking(move || chain.shutdown()).await;
}
