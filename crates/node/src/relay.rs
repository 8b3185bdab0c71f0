//! Relaying accepted readings and transactions to the other nodes, so that whichever
//! validator proposes next holds them: a reading accepted by any node is included once (the
//! state refuses a second inclusion of a `seq`).
//!
//! What is accepted within a few milliseconds goes to every peer in one `application/cbor`
//! request marked [`FORWARDED_HEADER`] (a node does not relay what it was relayed). Then, until
//! a final block includes or refuses it, the pool offers it again at growing intervals (2 s,
//! 4 s, … 30 s; also after a restart): a peer that was down, or a follower's only way to a
//! proposer, gets it when it comes back. A peer that does not answer is skipped for a while
//! (backoff up to 30 s). Every answer from a peer tells the pool a node was reached.

use std::{collections::HashMap, time::Duration};

use alloy_primitives::Bytes;
use iotchain_api::Item;
use iotchain_pool::Pool;
use iotchain_rpc::FORWARDED_HEADER;
use tokio::sync::{mpsc, watch};

/// Most readings in one relayed request.
const MAX_RELAY_BATCH: usize = 4096;
/// Most Ethereum transactions in one relayed JSON-RPC batch: the batch limit of `/`.
const MAX_RELAY_TXS: usize = iotchain_rpc::eth::MAX_BATCH;
/// Longest an accepted reading waits to be relayed with others.
const LINGER: Duration = Duration::from_millis(5);
/// How often the pool is asked for items due to be offered again.
const REOFFER_TICK: Duration = Duration::from_millis(500);
/// Most items offered again per tick.
const MAX_REOFFER: usize = 20_000;
/// A peer that did not answer is skipped this long, doubling per failure up to 30 s.
const PEER_BACKOFF_MIN: Duration = Duration::from_secs(1);
const PEER_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Sends what `items` delivers to every peer until `shutdown` turns true (a relay in flight
/// is dropped then: the accepting node still holds the items in its durable log and
/// proposes them itself).
pub(crate) async fn run(
    peers: Vec<String>,
    signer: Signer,
    pool: Pool,
    items: mpsc::UnboundedReceiver<Vec<Item>>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = relay_all(peers, signer, pool, items) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// When each peer that did not answer may be tried again (lookups only).
#[derive(Default)]
struct Backoff {
    peers: HashMap<String, (u32, tokio::time::Instant)>,
}

impl Backoff {
    fn ready(&self, peer: &str) -> bool {
        self.peers
            .get(peer)
            .is_none_or(|(_, at)| tokio::time::Instant::now() >= *at)
    }

    fn failed(&mut self, peer: &str) {
        let e = self
            .peers
            .entry(peer.to_string())
            .or_insert((0, tokio::time::Instant::now()));
        e.0 += 1;
        let wait = (PEER_BACKOFF_MIN * 2u32.saturating_pow(e.0 - 1)).min(PEER_BACKOFF_MAX);
        e.1 = tokio::time::Instant::now() + wait;
    }

    fn answered(&mut self, peer: &str) {
        self.peers.remove(peer);
    }
}

/// What signs this node's relays ([`iotchain_rpc::sign_forwarded`]).
pub(crate) struct Signer {
    pub(crate) key: iotchain_crypto::ValidatorKey,
    pub(crate) genesis: alloy_primitives::B256,
}

impl Signer {
    fn mark(&self, body: &[u8]) -> String {
        iotchain_rpc::sign_forwarded(&self.key, &self.genesis, body)
    }
}

async fn relay_all(
    peers: Vec<String>,
    signer: Signer,
    pool: Pool,
    mut items: mpsc::UnboundedReceiver<Vec<Item>>,
) {
    let client = reqwest::Client::new();
    let peers: Vec<String> = peers
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    let mut backoff = Backoff::default();
    let mut tick = tokio::time::interval(REOFFER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            first = items.recv() => match first {
                Some(f) => f,
                None => return,
            },
            _ = tick.tick() => {
                let due = pool.due_for_offer(MAX_REOFFER);
                if due.is_empty() {
                    continue;
                }
                tracing::debug!(items = due.len(), "offering acknowledged items again");
                due
            }
        };
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
        let ready: Vec<&String> = peers.iter().filter(|p| backoff.ready(p)).collect();
        for chunk in readings.chunks(MAX_RELAY_BATCH) {
            let batch = Batch {
                readings: chunk,
                txs: &txs,
                eth: &eth,
            };
            let answered = futures::future::join_all(
                ready.iter().map(|peer| batch.send(&client, &signer, peer)),
            )
            .await;
            settle(&pool, &mut backoff, &ready, &answered);
            txs.clear();
            eth.clear();
        }
        if !txs.is_empty() || !eth.is_empty() {
            let batch = Batch {
                readings: &[],
                txs: &txs,
                eth: &eth,
            };
            let answered = futures::future::join_all(
                ready.iter().map(|peer| batch.send(&client, &signer, peer)),
            )
            .await;
            settle(&pool, &mut backoff, &ready, &answered);
        }
    }
}

/// Notes which peers answered.
fn settle(pool: &Pool, backoff: &mut Backoff, peers: &[&String], answered: &[bool]) {
    for (peer, ok) in peers.iter().zip(answered) {
        if *ok {
            backoff.answered(peer);
        } else {
            backoff.failed(peer);
        }
    }
    if answered.iter().any(|a| *a) {
        pool.relay_reached();
    }
}

/// One relay's items.
struct Batch<'a> {
    readings: &'a [Bytes],
    txs: &'a [Bytes],
    eth: &'a [Bytes],
}

impl Batch<'_> {
    /// Sends the batch to `peer`; whether the peer answered (whatever it answered: it holds
    /// the items, or refused them for a reason of its own).
    async fn send(&self, client: &reqwest::Client, signer: &Signer, peer: &str) -> bool {
        let mut answered = true;
        if !self.readings.is_empty() {
            let body = iotchain_reading::encode_batch(self.readings);
            let url = format!("{peer}/v1/readings");
            answered &= post_signed(client, signer, url, "application/cbor", body).await;
        }
        // Ethereum transactions go in JSON-RPC batches, in the order they were accepted (a
        // sender's nonces stay in order).
        let posts = self
            .txs
            .iter()
            .map(|tx| {
                (
                    format!("{peer}/v1/transactions"),
                    serde_json::json!({ "raw": tx }),
                )
            })
            .chain(self.eth.chunks(MAX_RELAY_TXS).map(|chunk| {
                let calls: Vec<serde_json::Value> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, tx)| {
                        let raw = format!("0x{}", hex::encode(tx));
                        serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]})
                    })
                    .collect();
                (format!("{peer}/"), serde_json::Value::Array(calls))
            }));
        for (url, body) in posts {
            let body = serde_json::to_vec(&body).expect("JSON values serialize");
            answered &= post_signed(client, signer, url, "application/json", body).await;
        }
        answered
    }
}

/// Posts `body` to `url` marked as a relay signed by `signer`; whether the peer answered.
async fn post_signed(
    client: &reqwest::Client,
    signer: &Signer,
    url: String,
    content_type: &str,
    body: Vec<u8>,
) -> bool {
    let r = client
        .post(&url)
        .header("content-type", content_type)
        .header(FORWARDED_HEADER, signer.mark(&body))
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    if let Err(e) = r {
        // Neither the URL nor reqwest's error (which repeats it) may print a peer's password.
        let url = iotchain_api::redact_url(&url);
        tracing::debug!(%url, error = %e.without_url(), "relaying failed");
        return false;
    }
    true
}
