//! Relaying accepted readings and transactions to the other nodes, so that whichever
//! validator proposes next holds them: a reading accepted by any node is included once (the
//! state refuses a second inclusion: its device's `seq` has moved on).
//!
//! Relaying is best effort and batched: what is accepted within a few milliseconds goes to
//! every peer in one `application/cbor` request marked [`FORWARDED_HEADER`] (a node does not
//! relay what it was relayed). A reading a peer misses is still proposed by the node that
//! accepted it, when its turn comes.

use std::time::Duration;

use alloy_primitives::Bytes;
use iotchain_api::Item;
use iotchain_rpc::FORWARDED_HEADER;
use tokio::sync::{mpsc, watch};

/// Most readings in one relayed request.
const MAX_RELAY_BATCH: usize = 4096;
/// Most Ethereum transactions in one relayed JSON-RPC batch: the batch limit of `/`.
const MAX_RELAY_TXS: usize = iotchain_rpc::eth::MAX_BATCH;
/// Longest an accepted reading waits to be relayed with others.
const LINGER: Duration = Duration::from_millis(5);

/// Sends what `items` delivers to every peer until `shutdown` turns true (a relay in flight
/// is dropped then: the accepting node still holds the items in its durable log and
/// proposes them itself).
pub(crate) async fn run(
    peers: Vec<String>,
    items: mpsc::UnboundedReceiver<Vec<Item>>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = relay_all(peers, items) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

async fn relay_all(peers: Vec<String>, mut items: mpsc::UnboundedReceiver<Vec<Item>>) {
    let client = reqwest::Client::new();
    let peers: Vec<String> = peers
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    while let Some(first) = items.recv().await {
        let deadline = tokio::time::Instant::now() + LINGER;
        let (mut readings, mut txs, mut eth) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = Some(first);
        loop {
            for item in next.take().into_iter().flatten() {
                match item {
                    Item::Reading(r) => readings.push(r),
                    Item::OwnerTx(t) => txs.push(t),
                    Item::EthTx(t) => eth.push(t),
                }
            }
            if readings.len() >= MAX_RELAY_BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, items.recv()).await {
                Ok(Some(f)) => next = Some(f),
                _ => break,
            }
        }
        // Ethereum transactions go in JSON-RPC batches, in the order they were accepted (a
        // sender's nonces stay in order).
        let eth_batches: Vec<serde_json::Value> = eth
            .chunks(MAX_RELAY_TXS)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, tx)| {
                        let raw = format!("0x{}", hex::encode(tx));
                        serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]})
                    })
                    .collect()
            })
            .collect();
        let body = Bytes::from(iotchain_reading::encode_batch(&readings));
        let sends = peers.iter().map(|peer| {
            let client = client.clone();
            let body = body.clone();
            let txs = txs.clone();
            let eth_batches = eth_batches.clone();
            let has_readings = !readings.is_empty();
            async move {
                if has_readings {
                    let r = client
                        .post(format!("{peer}/v1/readings"))
                        .header("content-type", "application/cbor")
                        .header(FORWARDED_HEADER, "1")
                        .body(body.0)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "relaying readings failed");
                    }
                }
                let posts = txs
                    .into_iter()
                    .map(|tx| {
                        (
                            format!("{peer}/v1/transactions"),
                            serde_json::json!({ "raw": tx }),
                        )
                    })
                    .chain(eth_batches.into_iter().map(|b| (format!("{peer}/"), b)));
                for (url, body) in posts {
                    let r = client
                        .post(url)
                        .header(FORWARDED_HEADER, "1")
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "relaying a transaction failed");
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
    }
}
