//! The block producer of a single-validator chain without consensus (tests and tools): a
//! block per interval while items wait. And the announcer of new heads, whoever finalized
//! them.

use std::time::Duration;

use iotchain_api::{ChainQuery, blocking};
use iotchain_engine::Engine;
use tokio::sync::{broadcast, watch};

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

/// Announces every new head as a [`BlockEvent`].
pub(crate) async fn announce(
    engine: Engine,
    events: broadcast::Sender<BlockEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut head = engine.subscribe_head();
    let mut last = engine.head().height;
    loop {
        tokio::select! {
            changed = head.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let now = engine.head().height;
        for height in last + 1..=now {
            if let Ok(Some(h)) = engine.header(height) {
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

/// Produces a block every `interval` while items wait, until `shutdown` turns true (then
/// the block in flight finishes).
pub(crate) async fn run(engine: Engine, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if engine.has_failed() {
            tracing::error!("storage failed: block production stopped");
            break;
        }
        let e = engine.clone();
        match blocking(&**engine.runtime(), "produce", move || {
            e.produce_next_block()
        })
        .await
        {
            Some(Ok(None)) => {}
            Some(Ok(Some(c))) => {
                tracing::debug!(
                    height = c.header.height,
                    readings = c.readings,
                    transactions = c.transactions,
                    "block final"
                );
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "block commit failed: block production stopped");
                break;
            }
            None => {
                tracing::error!("block producer stopped");
                break;
            }
        }
    }
}
