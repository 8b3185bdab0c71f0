//! `eth_getLogs`: the logs of Ethereum transactions and reading hooks over a block range.

use alloy_primitives::B256;
use iotchain_api::ChainQuery;
use jsonrpsee::RpcModule;
use serde_json::Value;

use super::{
    EthCtx, block_height,
    blocks::{eth_txs, log_json},
    header_at,
    params::{LogMatch, RpcError, block_id, params_error, server_error},
    state::blocking,
    storage,
};
use crate::NodeApi;

/// Most blocks one `eth_getLogs` request may scan.
const MAX_LOG_RANGE: u64 = 10_000;

pub(super) fn register<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>) {
    blocking(m, "eth_getLogs", |c, p| {
        let (from, to, matcher) = parse_range(&c.node, p.get(0)?)?;
        Ok(Value::Array(logs_in(&c.node, from, to, &matcher)?))
    });
}

/// The block range and the matcher of a log filter.
pub(super) fn parse_range<Q: ChainQuery>(
    chain: &Q,
    v: &Value,
) -> Result<(u64, u64, LogMatch), RpcError> {
    let o = v
        .as_object()
        .ok_or_else(|| params_error("the filter must be an object"))?;
    let field = |k: &str| o.get(k).filter(|v| !v.is_null());
    let head = chain.head().height;
    let (from, to) = if let Some(h) = field("blockHash") {
        let hash: B256 = h
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| params_error("blockHash is not a 32-byte hash"))?;
        let n = chain
            .height_of(&hash)
            .map_err(storage)?
            .ok_or_else(|| server_error(format!("unknown block {hash}")))?;
        (n, n)
    } else {
        let at = |k: &str| -> Result<u64, RpcError> {
            match field(k) {
                None => Ok(head),
                Some(v) => Ok(block_height(chain, &block_id(Some(v))?)?.unwrap_or(head)),
            }
        };
        (at("fromBlock")?, at("toBlock")?)
    };
    if from > to {
        return Err(params_error(format!(
            "fromBlock {from} is after toBlock {to}"
        )));
    }
    if to - from >= MAX_LOG_RANGE {
        return Err(server_error(format!(
            "query exceeds max block range {MAX_LOG_RANGE}"
        )));
    }
    Ok((from, to, LogMatch::parse(o)?))
}

/// The logs of blocks `from..=to` that `matcher` accepts, in order.
pub(super) fn logs_in<Q: ChainQuery>(
    chain: &Q,
    from: u64,
    to: u64,
    matcher: &LogMatch,
) -> Result<Vec<Value>, RpcError> {
    let mut out = Vec::new();
    for height in from..=to {
        let gas = chain.block_gas(height).map_err(storage)?;
        let mut ids: Vec<B256> = Vec::new();
        if gas.is_some_and(|g| g.gas_used > 0) {
            ids.extend(eth_txs(chain, height)?.iter().map(|tx| tx.hash));
        }
        // Reading hooks log too; their calls use no block gas.
        ids.extend(chain.hook_ids(height).map_err(storage)?);
        if ids.is_empty() {
            continue;
        }
        let hash = header_at(chain, height)?.hash();
        for r in chain
            .receipts_in(height, &ids)
            .map_err(storage)?
            .into_iter()
            .flatten()
        {
            for (i, log) in r.receipt.logs.iter().enumerate() {
                if matcher.matches(log) {
                    out.push(log_json(&r, &hash, i, log));
                }
            }
        }
    }
    Ok(out)
}
