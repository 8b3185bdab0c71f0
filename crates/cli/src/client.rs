//! A small client for the node's HTTP API, shared by the commands, the simulator and the bench.

use std::time::Duration;

use alloy_primitives::{Address, B256};
use anyhow::{Context, anyhow, bail};
use iotchain_block::{DeviceOp, SignedTx};
use iotchain_crypto::OwnerKey;
use serde_json::Value;

/// An HTTP client bound to one node.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

/// Encodes messages as a CBOR array (the `application/cbor` batch body).
pub(crate) fn cbor_batch(messages: &[Vec<u8>]) -> Vec<u8> {
    iotchain_reading::encode_batch(messages)
}

impl Client {
    pub(crate) fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(90))
            .build()
            .expect("http client");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn json(&self, resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("node answered {status} without JSON"))?;
        if status.is_success() {
            return Ok(body);
        }
        match body.get("error") {
            Some(e) => bail!(
                "node rejected the request ({status}, {}): {}",
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            ),
            None => bail!("node answered {status}: {body}"),
        }
    }

    /// One Ethereum JSON-RPC call at `/`: its result, or its error as an error.
    pub(crate) async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let reply = self.rpc_batch(&[body]).await?.pop().unwrap_or_default();
        if let Some(e) = reply.get("error") {
            bail!("{method}: {e}");
        }
        Ok(reply["result"].clone())
    }

    /// A JSON-RPC batch at `/`: one response object per request, in request order.
    pub(crate) async fn rpc_batch(&self, requests: &[Value]) -> anyhow::Result<Vec<Value>> {
        let reply: Value = self
            .http
            .post(format!("{}/", self.base))
            .json(&requests)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?
            .json()
            .await?;
        let Value::Array(mut replies) = reply else {
            bail!("JSON-RPC batch answered with {reply}");
        };
        replies.sort_by_key(|r| r["id"].as_u64().unwrap_or(u64::MAX));
        Ok(replies)
    }

    /// A JSON-RPC quantity result (0x-hex) as a number.
    pub(crate) async fn rpc_quantity(&self, method: &str, params: Value) -> anyhow::Result<u128> {
        let v = self.rpc(method, params).await?;
        let s = v.as_str().context("a quantity")?;
        Ok(u128::from_str_radix(s.trim_start_matches("0x"), 16)?)
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        self.json(resp).await
    }

    pub(crate) async fn status(&self) -> anyhow::Result<Value> {
        self.get("/v1/status").await
    }

    /// What the node's chain has its readings sign as COSE `external_aad` (`reading_aad` in
    /// `/v1/status`: the genesis hash, or empty on a chain whose readings do not name it).
    pub(crate) async fn reading_aad(&self) -> anyhow::Result<Vec<u8>> {
        let status = self.status().await?;
        let hex = status["reading_aad"]
            .as_str()
            .context("the node's /v1/status has no reading_aad (a node older than this CLI?)")?;
        parse_aad(hex)
    }

    /// Waits until the node answers `/v1/status`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.status().await {
                Ok(s) => return Ok(s),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Signs an owner operation with the owner's next pending nonce, submits it and waits
    /// until it is final. Returns the transaction hash and its height.
    pub(crate) async fn submit_op(
        &self,
        owner: &OwnerKey,
        op: DeviceOp,
    ) -> anyhow::Result<(B256, u64)> {
        let (chain_id, nonce) = self.owner_nonce(owner).await?;
        let tx = SignedTx::sign(owner, chain_id, nonce, op)?;
        let hash = self.post_tx(&tx).await?;
        match self.final_height(hash, Duration::from_secs(30)).await? {
            Some(h) => Ok((hash, h)),
            None => bail!("transaction {hash} accepted but not final after 30 s"),
        }
    }

    /// The chain id and the owner's next nonce (counting its pending transactions), or an
    /// error when genesis does not authorise the owner.
    pub(crate) async fn owner_nonce(&self, owner: &OwnerKey) -> anyhow::Result<(u64, u64)> {
        let status = self.status().await?;
        let chain_id = status["chain_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("status has no chain_id"))?;
        let info = self.get(&format!("/v1/owners/{}", owner.address())).await?;
        if info["authorised"] != Value::Bool(true) {
            bail!(
                "owner {} is not authorised on this chain (see genesis.json owners)",
                owner.address()
            );
        }
        Ok((chain_id, info["pending_nonce"].as_u64().unwrap_or(0)))
    }

    /// Waits up to `timeout` for transaction `hash` to be final; its height, or `None`. The
    /// node holds one long poll for at most a minute, so a longer wait asks again.
    pub(crate) async fn final_height(
        &self,
        hash: impl std::fmt::Display,
        timeout: Duration,
    ) -> anyhow::Result<Option<u64>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait_ms = left.min(Duration::from_secs(60)).as_millis();
            let s = self
                .get(&format!("/v1/transactions/{hash}?wait_ms={wait_ms}"))
                .await?;
            if s["status"] == "final" {
                return Ok(s["height"].as_u64());
            }
            if left.is_zero() || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Posts a signed transaction without waiting for finality; returns its hash.
    pub(crate) async fn post_tx(&self, tx: &SignedTx) -> anyhow::Result<B256> {
        let raw = iotchain_block::hex0x(tx.encode_rlp());
        let resp = self
            .http
            .post(format!("{}/v1/transactions", self.base))
            .json(&serde_json::json!({ "raw": raw }))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let body = self.json(resp).await?;
        body["hash"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .context("node returned no hash")
    }

    /// Posts one reading (`application/cose`).
    pub(crate) async fn post_reading(&self, message: Vec<u8>) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/v1/readings", self.base))
            .header("content-type", "application/cose")
            .body(message)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        self.json(resp).await
    }

    /// Posts a batch (`application/cbor`); returns the raw status and JSON body.
    pub(crate) async fn post_batch(&self, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let (status, body) = self
            .post_bytes("/v1/readings", "application/cbor", body)
            .await?;
        Ok((status, serde_json::from_slice(&body)?))
    }

    /// Posts `body` as `content_type` to `path`; the raw status and response body (for the
    /// bench, which reads replies without building JSON trees).
    pub(crate) async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    /// Every device, optionally of one owner, a page of 1,000 at a time.
    pub(crate) async fn devices(&self, owner: Option<Address>) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = String::from("/v1/devices?limit=1000");
            if let Some(o) = owner {
                path.push_str(&format!("&owner={o}"));
            }
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page = self.get(&path).await?;
            all.extend(page["devices"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }
}

/// Signs EIP-1559 transactions for one chain at one fee cap and tip, as raw 0x-hex.
#[derive(Clone, Copy)]
pub(crate) struct TxSigner {
    pub(crate) chain_id: u64,
    pub(crate) max_fee: u128,
    pub(crate) tip: u128,
}

impl TxSigner {
    pub(crate) fn sign(
        self,
        key: &k256::ecdsa::SigningKey,
        nonce: u64,
        to: alloy_primitives::TxKind,
        value: alloy_primitives::U256,
        input: Vec<u8>,
        gas_limit: u64,
    ) -> anyhow::Result<String> {
        let Self {
            chain_id,
            max_fee,
            tip,
        } = self;
        let tx = alloy_consensus::TxEip1559 {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to,
            value,
            input: alloy_primitives::Bytes::from(input),
            access_list: Default::default(),
        };
        Ok(iotchain_evm::sign_tx(key, tx)?.to_string())
    }
}

/// Parses `--chain`-style hex: `0x` followed by 64 hex digits (a genesis hash), or `0x`/`none`
/// for an empty `external_aad`.
pub(crate) fn parse_aad(text: &str) -> anyhow::Result<Vec<u8>> {
    if text == "none" || text == "0x" {
        return Ok(Vec::new());
    }
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(digits).with_context(|| format!("{text:?} is not hex"))?;
    anyhow::ensure!(
        bytes.len() == 32,
        "{text:?} is {} bytes; a genesis hash is 32 (or `none` for a chain whose readings do not name it)",
        bytes.len()
    );
    Ok(bytes)
}
