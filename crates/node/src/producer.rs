//! The block producer of a single-validator chain: a block per interval while items wait.

use std::{sync::Arc, time::Instant};

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
    /// Time to build and commit it, ms.
    pub commit_ms: f64,
}

/// Runs until `shutdown` turns true, then finishes the block in flight and stops the log.
pub(crate) async fn run(
    chain: Arc<Chain>,
    config: NodeConfig,
    events: broadcast::Sender<BlockEvent>,
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
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || c.produce_next_block()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some((header, readings, transactions)))) => {
                let event = BlockEvent {
                    height: header.height,
                    hash: header.hash(),
                    readings,
                    transactions,
                    commit_ms: started.elapsed().as_secs_f64() * 1e3,
                };
                tracing::debug!(height = event.height, readings, transactions, "block final");
                let _ = events.send(event);
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
