//! The node side: its status, pages of final blocks (`GET /v1/sync/{height}`), the receipts
//! of blocks (`eth_getBlockReceipts`, one JSON-RPC batch per page) and device records.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U64};
use iotchain_block::SyncBlocks;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{Error, Result};

/// Longest wait for a block to become final in one sync request (the node's limit is 10 s).
pub const SYNC_WAIT_MS: u64 = 5_000;
/// Most blocks in one sync answer (the node's limit).
pub const SYNC_MAX: u64 = 64;
/// Most calls in one JSON-RPC batch (the node's limit).
const RPC_BATCH: usize = 100;

/// What the exporter needs of `GET /v1/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// The chain id.
    pub chain_id: u64,
    /// The head height.
    pub height: u64,
    /// The genesis header's hash.
    pub genesis_hash: B256,
    /// The genesis validators' Ed25519 keys.
    pub validators: Vec<B256>,
}

/// A log of a receipt, as `eth_getBlockReceipts` gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogJson {
    /// The emitting contract.
    pub address: Address,
    /// Its topics.
    pub topics: Vec<B256>,
    /// Its data.
    pub data: Bytes,
    /// Its index in the block.
    pub log_index: U64,
}

/// A receipt, of an Ethereum transaction or a reading hook's call.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptJson {
    /// The transaction hash (a hook call's id: `keccak256(readingId ‖ hook)`).
    pub transaction_hash: B256,
    /// Its index among the block's transactions and then hook calls.
    pub transaction_index: U64,
    /// Sender (the IoT precompile for a hook call).
    pub from: Address,
    /// Recipient; `null` for a contract creation.
    pub to: Option<Address>,
    /// The created contract.
    #[serde(default)]
    pub contract_address: Option<Address>,
    /// Gas used by this one.
    pub gas_used: U64,
    /// Gas used in the block up to and including this one.
    pub cumulative_gas_used: U64,
    /// 1 success, 0 failure.
    pub status: U64,
    /// Its logs.
    #[serde(default)]
    pub logs: Vec<LogJson>,
}

/// A client of one node's HTTP API.
#[derive(Debug, Clone)]
pub struct Node {
    url: String,
    http: reqwest::Client,
}

impl Node {
    /// A client of the node at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(SYNC_WAIT_MS + 30_000))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::NodeUnreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(c) = source {
            reason.push_str(": ");
            reason.push_str(&c.to_string());
            source = c.source();
        }
        Error::NodeUnreachable {
            url: self.url.clone(),
            reason,
        }
    }

    async fn answer<T: DeserializeOwned>(&self, what: &str, r: reqwest::Response) -> Result<T> {
        let status = r.status();
        let body = r.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(Error::NodeStatus {
                what: what.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::NodeAnswer {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(&format!("GET {path}"), r).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status> {
        self.get("/v1/status").await
    }

    /// The hash of the final block at `height` (`GET /v1/blocks/{height}`).
    pub async fn block_hash(&self, height: u64) -> Result<B256> {
        #[derive(Deserialize)]
        struct Hash {
            hash: B256,
        }
        Ok(self
            .get::<Hash>(&format!("/v1/blocks/{height}"))
            .await?
            .hash)
    }

    /// Final blocks from `from` on, at most `max` (the node may add the descendant that
    /// certifies the last one), waiting up to `wait_ms` for `from` to be final.
    pub async fn sync(&self, from: u64, max: u64, wait_ms: u64) -> Result<SyncBlocks> {
        self.get(&format!("/v1/sync/{from}?wait_ms={wait_ms}&max={max}"))
            .await
    }

    /// A device record (`GET /v1/devices/{address}`) as JSON; `None` if the node has none.
    pub async fn device(&self, address: &str) -> Result<Option<Value>> {
        match self.get(&format!("/v1/devices/{address}")).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::NodeStatus { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The receipts of each block of `heights` (in that order): its Ethereum transactions'
    /// then its reading hooks', by `eth_getBlockReceipts` in JSON-RPC batches.
    pub async fn receipts(&self, heights: &[u64]) -> Result<Vec<Vec<ReceiptJson>>> {
        let mut out = Vec::with_capacity(heights.len());
        for chunk in heights.chunks(RPC_BATCH) {
            let calls: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBlockReceipts",
                           "params": [format!("{h:#x}")]})
                })
                .collect();
            let r = self
                .http
                .post(format!("{}/", self.url))
                .json(&calls)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let what = "eth_getBlockReceipts";
            let mut answers: Vec<Value> = self.answer(what, r).await?;
            let bad = |reason: String| Error::NodeAnswer {
                what: what.to_owned(),
                reason,
            };
            if answers.len() != chunk.len() {
                return Err(bad(format!(
                    "{} answers to {} calls",
                    answers.len(),
                    chunk.len()
                )));
            }
            // A batch's answers may come in any order: by id.
            answers.sort_by_key(|a| a["id"].as_u64().unwrap_or(u64::MAX));
            for (i, a) in answers.into_iter().enumerate() {
                if a["id"].as_u64() != Some(i as u64) {
                    return Err(bad(format!("answer ids are not 0..{}", chunk.len())));
                }
                if let Some(e) = a.get("error") {
                    return Err(bad(format!("block {}: {e}", chunk[i])));
                }
                let receipts = match a.get("result") {
                    Some(Value::Null) | None => Vec::new(),
                    Some(r) => serde_json::from_value(r.clone())
                        .map_err(|e| bad(format!("block {}: {e}", chunk[i])))?,
                };
                out.push(receipts);
            }
        }
        Ok(out)
    }
}
