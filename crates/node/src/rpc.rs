//! Ethereum JSON-RPC at `/`: what wallets, ethers, viem and web3.py need to send
//! transactions, call and deploy contracts, read receipts and logs and prove state.
//!
//! State is served for the head block (`latest`, `safe`, `finalized`, or its number) and
//! for the pending view (`pending`); an older block number is served only while the state
//! root is still the same as at that block, since the node keeps no historical state.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use axum::{
    Json,
    body::Bytes as Body,
    extract::State as AxState,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use iotchain_block::{BlockItem, Header};
use iotchain_evm::{CallRequest, EthTx, EvmError};
use iotchain_state::State;
use serde_json::{Value, json};

use crate::{
    ApiError, Chain, StoredReceipt,
    eth::{StoreHashes, hook_ids},
};

/// Priority fee the node suggests (`eth_maxPriorityFeePerGas`), in wei.
pub(crate) const SUGGESTED_TIP: u64 = 1_000_000_000;
/// Most blocks one `eth_getLogs` request may scan.
const MAX_LOG_RANGE: u64 = 10_000;
/// Most requests in one batch.
pub(crate) const MAX_BATCH: usize = 100;
/// Most blocks `eth_feeHistory` reports.
const MAX_FEE_HISTORY: u64 = 1024;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    /// JSON-RPC code: -32700 parse, -32600 invalid request, -32601 no method, -32602 invalid
    /// params, -32000 server/transaction errors, 3 execution reverted.
    pub code: i64,
    /// Message (ethers and viem match on some, e.g. "nonce too low").
    pub message: String,
    /// Revert data of a reverted call.
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }

    fn server(message: impl Into<String>) -> Self {
        Self::new(-32000, message)
    }

    fn json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        match e.code {
            "malformed_transaction" | "wrong_chain_id" | "bad_signature" => Self::server(e.message),
            _ => Self::server(e.message),
        }
    }
}

impl From<EvmError> for RpcError {
    fn from(e: EvmError) -> Self {
        match e {
            EvmError::Reverted(data) => {
                let reason = revert_reason(&data);
                Self {
                    code: 3,
                    message: match reason {
                        Some(r) => format!("execution reverted: {r}"),
                        None => "execution reverted".into(),
                    },
                    data: Some(json!(data)),
                }
            }
            other => Self::server(other.to_string()),
        }
    }
}

/// The reason string of an `Error(string)` revert.
fn revert_reason(data: &[u8]) -> Option<String> {
    const SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
    if data.len() < 68 || data[..4] != SELECTOR {
        return None;
    }
    let len = U256::from_be_slice(&data[36..68]);
    let len: usize = len.try_into().ok()?;
    let bytes = data.get(68..68usize.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

type RpcResult = Result<Value, RpcError>;

/// `POST /`: one JSON-RPC request or a batch.
pub(crate) async fn handle(
    AxState(chain): AxState<Arc<Chain>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let forwarded = headers.contains_key(crate::forward::FORWARDED_HEADER);
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = RpcError::new(-32700, format!("parse error: {e}"));
            return Json(json!({"jsonrpc": "2.0", "id": null, "error": err.json()}))
                .into_response();
        }
    };
    match request {
        Value::Array(calls) => {
            if calls.is_empty() || calls.len() > MAX_BATCH {
                let err = RpcError::new(-32600, format!("a batch holds 1 to {MAX_BATCH} requests"));
                return Json(json!({"jsonrpc": "2.0", "id": null, "error": err.json()}))
                    .into_response();
            }
            let mut out = Vec::with_capacity(calls.len());
            let mut rest = calls.as_slice();
            while let Some(first) = rest.first() {
                // Consecutive raw transactions are accepted together: their senders are
                // recovered in parallel and they wait for one log sync.
                let raws: Vec<Bytes> = rest.iter().map_while(raw_transaction).collect();
                let run = raws.len();
                if run > 1 {
                    out.extend(send_raw_transactions(&chain, &rest[..run], raws, forwarded).await);
                    rest = &rest[run..];
                } else {
                    out.push(one(&chain, first.clone(), forwarded).await);
                    rest = &rest[1..];
                }
            }
            Json(Value::Array(out)).into_response()
        }
        single => Json(one(&chain, single, forwarded).await).into_response(),
    }
}

/// The raw bytes of a well-formed `eth_sendRawTransaction` request.
fn raw_transaction(request: &Value) -> Option<Bytes> {
    if request.get("method")?.as_str()? != "eth_sendRawTransaction" {
        return None;
    }
    match request.get("params")?.as_array()?.as_slice() {
        [raw] => parse_bytes(raw).ok(),
        _ => None,
    }
}

/// Responses to consecutive well-formed `eth_sendRawTransaction` requests of a batch (`raws`:
/// their decoded transactions), in order, each as [`one`] would give it.
async fn send_raw_transactions(
    chain: &Arc<Chain>,
    requests: &[Value],
    raws: Vec<Bytes>,
    forwarded: bool,
) -> Vec<Value> {
    let results = chain.submit_eth_txs_from(raws, !forwarded).await;
    requests
        .iter()
        .zip(results)
        .map(|(request, result)| {
            let id = request.get("id").cloned().unwrap_or(Value::Null);
            match result {
                Ok(hash) => json!({"jsonrpc": "2.0", "id": id, "result": hash}),
                Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": RpcError::from(e).json()}),
            }
        })
        .collect()
}

async fn one(chain: &Arc<Chain>, request: Value, forwarded: bool) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        let err = RpcError::new(-32600, "invalid request: no method");
        return json!({"jsonrpc": "2.0", "id": id, "error": err.json()});
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(p)) => p.clone(),
        Some(_) => {
            let err = RpcError::params("params must be an array");
            return json!({"jsonrpc": "2.0", "id": id, "error": err.json()});
        }
    };
    match dispatch(chain, method, &params, forwarded).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(err) => json!({"jsonrpc": "2.0", "id": id, "error": err.json()}),
    }
}

/// Runs one method.
pub(crate) async fn dispatch(
    chain: &Arc<Chain>,
    method: &str,
    params: &[Value],
    forwarded: bool,
) -> RpcResult {
    let p = Params(params);
    match method {
        "eth_chainId" => Ok(qty(chain.genesis().chain_id)),
        "net_version" => Ok(json!(chain.genesis().chain_id.to_string())),
        "net_listening" => Ok(json!(true)),
        "net_peerCount" => Ok(qty(0)),
        "web3_clientVersion" => Ok(json!(format!("iotchain/v{}", env!("CARGO_PKG_VERSION")))),
        "eth_syncing" => Ok(json!(false)),
        "eth_accounts" => Ok(json!([])),
        "eth_blockNumber" => Ok(qty(chain.head().height)),
        "eth_gasPrice" => Ok(qty(chain.next_base_fee() + SUGGESTED_TIP)),
        "eth_maxPriorityFeePerGas" => Ok(qty(SUGGESTED_TIP)),
        "eth_getBalance" => {
            let a = p.address(0)?;
            with_state(chain, &p, 1, |s| {
                qty_u256(s.account(&a).map(|x| x.balance).unwrap_or_default())
            })
        }
        "eth_getTransactionCount" => {
            let a = p.address(0)?;
            if params.get(1).and_then(Value::as_str) == Some("pending") {
                // The account's nonce after its transactions waiting for a block.
                return Ok(qty(chain.pending_nonce(&a)));
            }
            with_state(chain, &p, 1, |s| qty(s.account(&a).map_or(0, |x| x.nonce)))
        }
        "eth_getCode" => {
            let a = p.address(0)?;
            with_state(chain, &p, 1, |s| json!(s.account_code(&a)))
        }
        "eth_getStorageAt" => {
            let a = p.address(0)?;
            let slot = p.u256(1)?;
            with_state(chain, &p, 2, |s| {
                json!(B256::from(s.storage_slot(&a, &slot)))
            })
        }
        "eth_call" => {
            let req = call_request(p.get(0)?)?;
            let (ctx, hashes) = pending_call_env(chain);
            let out = with_state(chain, &p, 1, |s| iotchain_evm::call(s, &hashes, &ctx, &req))?;
            Ok(json!(out?.output))
        }
        "eth_estimateGas" => {
            let req = call_request(p.get(0)?)?;
            let (ctx, hashes) = pending_call_env(chain);
            let gas = chain.with_pending(|s| iotchain_evm::estimate_gas(s, &hashes, &ctx, &req))?;
            Ok(qty(gas))
        }
        "eth_sendRawTransaction" => {
            let raw = p.bytes(0)?;
            let hash = chain
                .submit_eth_tx_from(raw, !forwarded)
                .await
                .map_err(RpcError::from)?;
            Ok(json!(hash))
        }
        "eth_getTransactionByHash" => {
            let hash = p.b256(0)?;
            transaction_by_hash(chain, &hash)
        }
        "eth_getTransactionReceipt" => {
            let hash = p.b256(0)?;
            match stored_receipt(chain, &hash)? {
                Some(r) => {
                    let header = header_at(chain, r.height)?;
                    Ok(receipt_json(&r, &header.hash()))
                }
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByNumber" => {
            let full = p.opt(1).and_then(Value::as_bool).unwrap_or(false);
            match block_number(chain, p.get(0)?)? {
                Some(h) => block_json(chain, h, full),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByHash" => {
            let hash = p.b256(0)?;
            let full = p.opt(1).and_then(Value::as_bool).unwrap_or(false);
            match chain.store().height_of(&hash).map_err(storage)? {
                Some(h) => block_json(chain, h, full),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockTransactionCountByNumber" => match block_number(chain, p.get(0)?)? {
            Some(h) => Ok(qty(eth_txs(chain, h)?.len() as u64)),
            None => Ok(Value::Null),
        },
        "eth_getLogs" => get_logs(chain, p.get(0)?),
        "eth_feeHistory" => fee_history(chain, &p),
        "eth_getProof" => {
            let a = p.address(0)?;
            let slots: Vec<U256> = match p.get(1)? {
                Value::Array(v) => v.iter().map(parse_u256).collect::<Result<_, _>>()?,
                _ => return Err(RpcError::params("storage keys must be an array")),
            };
            if slots.len() > 1000 {
                return Err(RpcError::params("at most 1000 storage keys"));
            }
            with_state(chain, &p, 2, |s| proof_json(s, &a, &slots))
        }
        other => Err(RpcError::new(
            -32601,
            format!("the method {other} does not exist/is not available"),
        )),
    }
}

/// Positional parameters.
struct Params<'a>(&'a [Value]);

impl Params<'_> {
    fn opt(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }
    fn get(&self, i: usize) -> Result<&Value, RpcError> {
        self.opt(i)
            .ok_or_else(|| RpcError::params(format!("missing value for required argument {i}")))
    }
    fn str(&self, i: usize) -> Result<&str, RpcError> {
        self.get(i)?
            .as_str()
            .ok_or_else(|| RpcError::params(format!("argument {i} must be a string")))
    }
    fn address(&self, i: usize) -> Result<Address, RpcError> {
        self.str(i)?
            .parse()
            .map_err(|_| RpcError::params(format!("argument {i} is not a 20-byte hex address")))
    }
    fn b256(&self, i: usize) -> Result<B256, RpcError> {
        self.str(i)?
            .parse()
            .map_err(|_| RpcError::params(format!("argument {i} is not a 32-byte hex hash")))
    }
    fn u256(&self, i: usize) -> Result<U256, RpcError> {
        parse_u256(self.get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Bytes, RpcError> {
        parse_bytes(self.get(i)?)
    }
}

fn parse_u256(v: &Value) -> Result<U256, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::params("expected a hex quantity"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::params(format!("{s:?} is not 0x-prefixed hex")))?;
    if hex.is_empty() || hex.len() > 64 {
        return Err(RpcError::params(format!(
            "{s:?} is not a 256-bit hex value"
        )));
    }
    U256::from_str_radix(hex, 16).map_err(|_| RpcError::params(format!("{s:?} is not hex")))
}

fn parse_u64(v: &Value) -> Result<u64, RpcError> {
    let x = parse_u256(v)?;
    x.try_into()
        .map_err(|_| RpcError::params(format!("{x} does not fit in 64 bits")))
}

fn parse_bytes(v: &Value) -> Result<Bytes, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::params("expected 0x-prefixed hex data"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::params("hex data must start with 0x"))?;
    hex::decode(hex)
        .map(Bytes::from)
        .map_err(|e| RpcError::params(format!("invalid hex data: {e}")))
}

fn qty(x: u64) -> Value {
    json!(format!("{x:#x}"))
}

fn qty_u256(x: U256) -> Value {
    json!(format!("{x:#x}"))
}

fn storage(e: impl std::fmt::Display) -> RpcError {
    tracing::error!(error = %e, "storage failure in JSON-RPC");
    RpcError::server("the node cannot read its store right now")
}

/// Resolves a block parameter (tag or number) to a height at or below the head; `None`
/// for a number above the head.
fn block_number(chain: &Chain, v: &Value) -> Result<Option<u64>, RpcError> {
    let head = chain.head().height;
    match v.as_str() {
        Some("latest" | "safe" | "finalized" | "pending") => Ok(Some(head)),
        Some("earliest") => Ok(Some(0)),
        Some(_) => {
            let n = parse_u64(v)?;
            Ok((n <= head).then_some(n))
        }
        None => Err(RpcError::params("block must be a tag or a hex number")),
    }
}

/// Runs `f` on the state the block parameter at `i` names.
fn with_state<R>(
    chain: &Chain,
    p: &Params<'_>,
    i: usize,
    f: impl FnOnce(&State) -> R,
) -> Result<R, RpcError> {
    let tag = match p.opt(i) {
        None => "latest".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => {
            // EIP-1898: {"blockHash": ...} or {"blockNumber": ...}.
            if let Some(h) = o.get("blockHash").and_then(Value::as_str) {
                let hash: B256 = h
                    .parse()
                    .map_err(|_| RpcError::params("blockHash is not a 32-byte hash"))?;
                let height = chain
                    .store()
                    .height_of(&hash)
                    .map_err(storage)?
                    .ok_or_else(|| RpcError::server(format!("header for hash {hash} not found")))?;
                format!("{height:#x}")
            } else if let Some(n) = o.get("blockNumber").and_then(Value::as_str) {
                n.to_string()
            } else {
                return Err(RpcError::params("block must be a tag, number or hash"));
            }
        }
        Some(_) => return Err(RpcError::params("block must be a tag, number or hash")),
    };
    match tag.as_str() {
        "pending" => Ok(chain.with_pending(f)),
        "latest" | "safe" | "finalized" => Ok(chain.with_committed(f)),
        _ => {
            let n = parse_u64(&json!(tag))?;
            let head = chain.head();
            if n > head.height {
                return Err(RpcError::server(format!("header not found: block {n}")));
            }
            let root = header_at(chain, n)?.state_root;
            let head_root = header_at(chain, head.height)?.state_root;
            if root != head_root {
                return Err(RpcError::server(format!(
                    "missing trie node: the state of block {n} is not kept (only the head's, at {})",
                    head.height
                )));
            }
            Ok(chain.with_committed(f))
        }
    }
}

fn header_at(chain: &Chain, height: u64) -> Result<Header, RpcError> {
    chain
        .store()
        .header(height)
        .map_err(storage)?
        .ok_or_else(|| RpcError::server(format!("header not found: block {height}")))
}

fn call_request(v: &Value) -> Result<CallRequest, RpcError> {
    let o = v
        .as_object()
        .ok_or_else(|| RpcError::params("the call must be an object"))?;
    let field = |k: &str| o.get(k).filter(|v| !v.is_null());
    let address = |k: &str| -> Result<Option<Address>, RpcError> {
        field(k)
            .map(|v| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| RpcError::params(format!("{k} is not an address")))
            })
            .transpose()
    };
    let input = match field("input").or_else(|| field("data")) {
        Some(v) => parse_bytes(v)?,
        None => Bytes::new(),
    };
    Ok(CallRequest {
        from: address("from")?,
        to: address("to")?,
        gas: field("gas").map(parse_u64).transpose()?,
        gas_price: field("gasPrice")
            .or_else(|| field("maxFeePerGas"))
            .map(parse_u256)
            .transpose()?
            .map(|x| x.saturating_to()),
        value: field("value").map(parse_u256).transpose()?,
        input,
    })
}

/// The context and block hashes a call (`eth_call`, `eth_estimateGas`) runs in: the next
/// block's.
fn pending_call_env(chain: &Chain) -> (iotchain_evm::BlockContext, StoreHashes<'_>) {
    let ctx = chain.pending_block_context();
    let hashes = StoreHashes {
        store: chain.store(),
        number: ctx.number,
        branch: &[],
    };
    (ctx, hashes)
}

fn stored_receipt(chain: &Chain, hash: &B256) -> Result<Option<StoredReceipt>, RpcError> {
    let Some(bytes) = chain.store().receipt(hash).map_err(storage)? else {
        return Ok(None);
    };
    StoredReceipt::decode(&bytes)
        .map(Some)
        .ok_or_else(|| storage("undecodable receipt"))
}

/// The receipts under `ids` in the block at `height`, in order (one read of the block's
/// receipts).
fn stored_receipts(
    chain: &Chain,
    height: u64,
    ids: &[B256],
) -> Result<Vec<Option<StoredReceipt>>, RpcError> {
    chain
        .store()
        .receipts_in(height, ids)
        .map_err(storage)?
        .into_iter()
        .map(|bytes| match bytes {
            None => Ok(None),
            Some(b) => StoredReceipt::decode(&b)
                .map(Some)
                .ok_or_else(|| storage("undecodable receipt")),
        })
        .collect()
}

/// The Ethereum transactions of the block at `height`, in order.
fn eth_txs(chain: &Chain, height: u64) -> Result<Vec<EthTx>, RpcError> {
    let block = chain
        .store()
        .block(height)
        .map_err(storage)?
        .ok_or_else(|| RpcError::server(format!("block {height} not found")))?;
    let g = chain.genesis();
    Ok(block
        .items
        .iter()
        .filter_map(|i| match i {
            // Stored transactions were checked when their block was made.
            BlockItem::EthTx(b) => EthTx::decode(b, g.chain_id, usize::MAX).ok(),
            _ => None,
        })
        .collect())
}

fn tx_json(tx: &EthTx, block: Option<(B256, u64, u32, u64)>) -> Value {
    use alloy_consensus::Transaction;
    let (v, r, s, parity) = tx.signature();
    let e = &tx.envelope;
    let mut j = json!({
        "hash": tx.hash,
        "type": qty(tx.tx_type() as u64),
        "chainId": e.chain_id().map(qty),
        "nonce": qty(tx.nonce()),
        "from": tx.sender,
        "to": tx.to(),
        "value": qty_u256(tx.value()),
        "gas": qty(tx.gas_limit()),
        "input": tx.input(),
        "v": qty(v),
        "r": qty_u256(r),
        "s": qty_u256(s),
        "blockHash": null,
        "blockNumber": null,
        "transactionIndex": null,
    });
    match tx.max_priority_fee_per_gas() {
        Some(tip) if tx.tx_type() == 2 => {
            j["maxFeePerGas"] = json!(format!("{:#x}", tx.max_fee_per_gas()));
            j["maxPriorityFeePerGas"] = json!(format!("{tip:#x}"));
        }
        _ => {}
    }
    j["gasPrice"] = json!(format!("{:#x}", tx.max_fee_per_gas()));
    if tx.tx_type() != 0 {
        j["yParity"] = qty(parity as u64);
        j["accessList"] = json!(e.access_list().cloned().unwrap_or_default());
    }
    if let Some((hash, number, index, base_fee)) = block {
        j["blockHash"] = json!(hash);
        j["blockNumber"] = qty(number);
        j["transactionIndex"] = qty(index as u64);
        j["gasPrice"] = json!(format!("{:#x}", tx.effective_gas_price(base_fee)));
    }
    j
}

fn transaction_by_hash(chain: &Chain, hash: &B256) -> RpcResult {
    if let Some(r) = stored_receipt(chain, hash)? {
        let header = header_at(chain, r.height)?;
        let base_fee = chain
            .store()
            .block_gas(r.height)
            .map_err(storage)?
            .unwrap_or_default()
            .base_fee;
        let txs = eth_txs(chain, r.height)?;
        let Some(tx) = txs.get(r.tx_index as usize).filter(|t| t.hash == *hash) else {
            // A hook call: it has a receipt, and no transaction.
            return Ok(Value::Null);
        };
        return Ok(tx_json(
            tx,
            Some((header.hash(), r.height, r.tx_index, base_fee)),
        ));
    }
    match chain.pending_eth_tx(hash) {
        Some(tx) => Ok(tx_json(&tx, None)),
        None => Ok(Value::Null),
    }
}

fn log_json(r: &StoredReceipt, block_hash: &B256, i: usize, log: &alloy_primitives::Log) -> Value {
    json!({
        "address": log.address,
        "topics": log.topics(),
        "data": log.data.data,
        "blockHash": block_hash,
        "blockNumber": qty(r.height),
        "transactionHash": r.receipt.tx_hash,
        "transactionIndex": qty(r.tx_index as u64),
        "logIndex": qty(r.first_log_index as u64 + i as u64),
        "removed": false,
    })
}

fn receipt_json(r: &StoredReceipt, block_hash: &B256) -> Value {
    let x = &r.receipt;
    json!({
        "transactionHash": x.tx_hash,
        "transactionIndex": qty(r.tx_index as u64),
        "blockHash": block_hash,
        "blockNumber": qty(r.height),
        "from": x.from,
        "to": x.to,
        "cumulativeGasUsed": qty(x.cumulative_gas_used),
        "gasUsed": qty(x.gas_used),
        "effectiveGasPrice": format!("{:#x}", x.effective_gas_price),
        "contractAddress": x.contract_address,
        "logs": x.logs.iter().enumerate().map(|(i, l)| log_json(r, block_hash, i, l)).collect::<Vec<_>>(),
        "logsBloom": x.logs_bloom,
        "status": qty(x.status as u64),
        "type": qty(x.tx_type as u64),
    })
}

/// keccak256 of the RLP of an empty list: the uncles hash of a block without uncles.
const EMPTY_OMMERS: B256 =
    alloy_primitives::b256!("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347");

fn block_json(chain: &Chain, height: u64, full: bool) -> RpcResult {
    let header = header_at(chain, height)?;
    let hash = header.hash();
    let gas = chain
        .store()
        .block_gas(height)
        .map_err(storage)?
        .unwrap_or_default();
    let txs = eth_txs(chain, height)?;
    let mut bloom = Bloom::ZERO;
    let hashes: Vec<B256> = txs.iter().map(|tx| tx.hash).collect();
    for r in stored_receipts(chain, height, &hashes)?
        .into_iter()
        .flatten()
    {
        bloom.accrue_bloom(&r.receipt.logs_bloom);
    }
    let transactions: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            if full {
                tx_json(tx, Some((hash, height, i as u32, gas.base_fee)))
            } else {
                json!(tx.hash)
            }
        })
        .collect();
    let g = chain.genesis();
    Ok(json!({
        "number": qty(height),
        "hash": hash,
        "parentHash": header.parent_hash,
        "timestamp": qty(header.timestamp_ms / 1000),
        "stateRoot": header.state_root,
        "transactionsRoot": header.transactions_root,
        "receiptsRoot": alloy_trie::EMPTY_ROOT_HASH,
        "readingsRoot": header.readings_root,
        "readingCount": qty(header.reading_count),
        "logsBloom": bloom,
        "miner": g.fee_recipient(&header.proposer),
        "gasLimit": qty(g.params.block_gas_limit),
        "gasUsed": qty(gas.gas_used),
        "baseFeePerGas": qty(gas.base_fee),
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "mixHash": header.parent_hash,
        "nonce": "0x0000000000000000",
        "sha3Uncles": EMPTY_OMMERS,
        "uncles": [],
        "size": qty(header.encode_rlp().len() as u64),
        "transactions": transactions,
    }))
}

/// A log filter (`eth_getLogs`).
struct LogFilter {
    from: u64,
    to: u64,
    addresses: Vec<Address>,
    /// Per position: the accepted topics (empty: any).
    topics: Vec<Vec<B256>>,
}

impl LogFilter {
    fn parse(chain: &Chain, v: &Value) -> Result<Self, RpcError> {
        let o = v
            .as_object()
            .ok_or_else(|| RpcError::params("the filter must be an object"))?;
        let field = |k: &str| o.get(k).filter(|v| !v.is_null());
        let head = chain.head().height;
        let (from, to) = if let Some(h) = field("blockHash") {
            let hash: B256 = h
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RpcError::params("blockHash is not a 32-byte hash"))?;
            let n = chain
                .store()
                .height_of(&hash)
                .map_err(storage)?
                .ok_or_else(|| RpcError::server(format!("unknown block {hash}")))?;
            (n, n)
        } else {
            let at = |k: &str| -> Result<u64, RpcError> {
                match field(k) {
                    None => Ok(head),
                    Some(v) => Ok(block_number(chain, v)?.unwrap_or(head)),
                }
            };
            (at("fromBlock")?, at("toBlock")?)
        };
        if from > to {
            return Err(RpcError::params(format!(
                "fromBlock {from} is after toBlock {to}"
            )));
        }
        if to - from >= MAX_LOG_RANGE {
            return Err(RpcError::server(format!(
                "query exceeds max block range {MAX_LOG_RANGE}"
            )));
        }
        let parse_addr = |v: &Value| -> Result<Address, RpcError> {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RpcError::params("address is not a 20-byte hex address"))
        };
        let addresses = match field("address") {
            None => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(parse_addr).collect::<Result<_, _>>()?,
            Some(v) => vec![parse_addr(v)?],
        };
        let parse_topic = |v: &Value| -> Result<B256, RpcError> {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RpcError::params("topic is not a 32-byte hash"))
        };
        let topics = match field("topics") {
            None => Vec::new(),
            Some(Value::Array(t)) => t
                .iter()
                .map(|p| match p {
                    Value::Null => Ok(Vec::new()),
                    Value::Array(any) => any.iter().map(parse_topic).collect(),
                    one => Ok(vec![parse_topic(one)?]),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RpcError::params("topics must be an array")),
        };
        Ok(Self {
            from,
            to,
            addresses,
            topics,
        })
    }

    fn matches(&self, log: &alloy_primitives::Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        self.topics.iter().enumerate().all(|(i, accepted)| {
            accepted.is_empty() || log.topics().get(i).is_some_and(|t| accepted.contains(t))
        })
    }
}

fn get_logs(chain: &Chain, filter: &Value) -> RpcResult {
    let f = LogFilter::parse(chain, filter)?;
    let mut out = Vec::new();
    for height in f.from..=f.to {
        let gas = chain.store().block_gas(height).map_err(storage)?;
        let mut ids: Vec<B256> = Vec::new();
        if gas.is_some_and(|g| g.gas_used > 0) {
            ids.extend(eth_txs(chain, height)?.iter().map(|tx| tx.hash));
        }
        // Reading hooks log too; their calls use no block gas.
        ids.extend(hook_ids(chain.store(), height).map_err(storage)?);
        if ids.is_empty() {
            continue;
        }
        let hash = header_at(chain, height)?.hash();
        for r in stored_receipts(chain, height, &ids)?.into_iter().flatten() {
            for (i, log) in r.receipt.logs.iter().enumerate() {
                if f.matches(log) {
                    out.push(log_json(&r, &hash, i, log));
                }
            }
        }
    }
    Ok(Value::Array(out))
}

fn fee_history(chain: &Chain, p: &Params<'_>) -> RpcResult {
    let count = match p.get(0)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| RpcError::params("blockCount must be a positive integer"))?,
        v => parse_u64(v)?,
    }
    .min(MAX_FEE_HISTORY);
    let newest = block_number(chain, p.get(1)?)?.unwrap_or(chain.head().height);
    let percentiles: Vec<f64> = match p.opt(2) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    };
    let count = count.min(newest + 1);
    let oldest = newest + 1 - count;
    let limit = chain.genesis().params.block_gas_limit;
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    let mut last = Default::default();
    for h in oldest..=newest {
        let g = chain
            .store()
            .block_gas(h)
            .map_err(storage)?
            .unwrap_or_default();
        base_fees.push(qty(g.base_fee));
        ratios.push(json!(g.gas_used as f64 / limit as f64));
        // Rewards: the priority fee paid by the block's transactions at each percentile of
        // gas, or zero in a block without transactions.
        let mut tips: Vec<(u128, u64)> = Vec::new();
        if g.gas_used > 0 {
            let hashes: Vec<B256> = eth_txs(chain, h)?.iter().map(|tx| tx.hash).collect();
            for r in stored_receipts(chain, h, &hashes)?.into_iter().flatten() {
                let tip = r
                    .receipt
                    .effective_gas_price
                    .saturating_sub(g.base_fee as u128);
                tips.push((tip, r.receipt.gas_used));
            }
        }
        tips.sort_unstable();
        let total: u64 = tips.iter().map(|(_, g)| g).sum();
        rewards.push(
            percentiles
                .iter()
                .map(|pc| {
                    let threshold = (total as f64 * pc / 100.0) as u64;
                    let mut acc = 0;
                    let tip = tips
                        .iter()
                        .find(|(_, g)| {
                            acc += g;
                            acc >= threshold
                        })
                        .or(tips.last())
                        .map_or(0, |(t, _)| *t);
                    json!(format!("{tip:#x}"))
                })
                .collect::<Vec<_>>(),
        );
        last = g;
    }
    base_fees.push(qty(crate::eth::next_base_fee(chain.genesis(), last)));
    let mut out = json!({
        "oldestBlock": qty(oldest),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
    });
    if !percentiles.is_empty() {
        out["reward"] = json!(rewards);
    }
    Ok(out)
}

fn proof_json(state: &State, address: &Address, slots: &[U256]) -> Value {
    let proof = state.account_proof(address, slots);
    let account = proof.account.unwrap_or_default();
    json!({
        "address": address,
        "balance": qty_u256(account.balance),
        "nonce": qty(account.nonce),
        "codeHash": account.code_hash,
        "storageHash": proof.storage_root,
        "accountProof": proof.proof,
        "storageProof": proof.storage.iter().map(|(slot, value, nodes)| json!({
            "key": B256::from(*slot),
            "value": qty_u256(*value),
            "proof": nodes,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /` upgraded to a WebSocket: JSON-RPC over it, plus `eth_subscribe` to `newHeads` and
/// `logs` (and `eth_unsubscribe`).
pub(crate) async fn ws(
    AxState(chain): AxState<Arc<Chain>>,
    upgrade: axum::extract::WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(chain.max_body())
        .on_upgrade(move |socket| ws_session(chain, socket))
}

/// One subscription of a WebSocket session.
enum Subscription {
    NewHeads,
    Logs(Value),
}

async fn ws_session(chain: Arc<Chain>, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    // Each subscription with the head height when it was made: it reports later blocks only.
    let mut subs: Subscriptions = Default::default();
    let mut heads = chain.subscribe_head();
    let mut seen = chain.head().height;
    let mut next_id = 1u64;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let reply = ws_request(&chain, &text, &mut subs, &mut next_id).await;
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            changed = heads.changed() => {
                if changed.is_err() {
                    return;
                }
                let head = heads.borrow_and_update().height;
                for height in seen + 1..=head {
                    for (id, (since, sub)) in &subs {
                        if height <= *since {
                            continue;
                        }
                        let results = match sub {
                            Subscription::NewHeads => block_json(&chain, height, false)
                                .map(|mut b| {
                                    if let Some(o) = b.as_object_mut() {
                                        o.remove("transactions");
                                    }
                                    vec![b]
                                }),
                            Subscription::Logs(filter) => {
                                let mut f = filter.clone();
                                f["fromBlock"] = qty(height);
                                f["toBlock"] = qty(height);
                                get_logs(&chain, &f).map(|l| match l {
                                    Value::Array(a) => a,
                                    _ => Vec::new(),
                                })
                            }
                        };
                        for result in results.unwrap_or_default() {
                            let note = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                                "params": {"subscription": id, "result": result}});
                            if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                seen = seen.max(head);
            }
        }
    }
}

/// A WebSocket session's subscriptions by id, each with the head height it was made at.
type Subscriptions = std::collections::BTreeMap<String, (u64, Subscription)>;

/// Most subscriptions one WebSocket session may hold.
const MAX_SUBSCRIPTIONS: usize = 64;

async fn ws_request(
    chain: &Arc<Chain>,
    text: &str,
    subs: &mut Subscriptions,
    next_id: &mut u64,
) -> Value {
    let request: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let err = RpcError::new(-32700, format!("parse error: {e}"));
            return json!({"jsonrpc": "2.0", "id": null, "error": err.json()});
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params: Vec<Value> = match request.get("params") {
        Some(Value::Array(p)) => p.clone(),
        _ => Vec::new(),
    };
    let result = match request.get("method").and_then(Value::as_str) {
        Some("eth_subscribe") => {
            let kind = params.first().and_then(Value::as_str);
            let sub = match kind {
                Some("newHeads") => Ok(Subscription::NewHeads),
                Some("logs") => {
                    let filter = params.get(1).cloned().unwrap_or_else(|| json!({}));
                    // Check the filter now, so a bad one is refused at subscribe time.
                    let mut probe = filter.clone();
                    if let Some(o) = probe.as_object_mut() {
                        o.remove("fromBlock");
                        o.remove("toBlock");
                    }
                    LogFilter::parse(chain, &probe).map(|_| Subscription::Logs(probe))
                }
                other => Err(RpcError::params(format!(
                    "unsupported subscription {other:?}: newHeads or logs"
                ))),
            };
            match sub {
                Ok(_) if subs.len() >= MAX_SUBSCRIPTIONS => Err(RpcError::server(format!(
                    "at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
                ))),
                Ok(s) => {
                    let sid = format!("{:#x}", *next_id);
                    *next_id += 1;
                    subs.insert(sid.clone(), (chain.head().height, s));
                    Ok(json!(sid))
                }
                Err(e) => Err(e),
            }
        }
        Some("eth_unsubscribe") => {
            let sid = params.first().and_then(Value::as_str).unwrap_or_default();
            Ok(json!(subs.remove(sid).is_some()))
        }
        Some(method) => dispatch(chain, method, &params, false).await,
        None => Err(RpcError::new(-32600, "invalid request: no method")),
    };
    match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.json()}),
    }
}
