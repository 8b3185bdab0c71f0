//! Blocks, transactions, receipts and fee history, in Ethereum's JSON shapes.

use alloy_primitives::{B256, Bloom};
use iotchain_api::ChainQuery;
use iotchain_block::BlockItem;
use iotchain_evm::EthTx;
use iotchain_execution::StoredReceipt;
use jsonrpsee::RpcModule;
use serde_json::{Value, json};

use super::{
    EthCtx, block_height, header_at,
    params::{Params, RpcError, block_id, params_error, parse_u64, server_error},
    qty, qty_u256,
    state::blocking,
    storage,
};
use crate::NodeApi;

/// Most blocks `eth_feeHistory` reports.
const MAX_FEE_HISTORY: u64 = 1024;

/// keccak256 of the RLP of an empty list: the uncles hash of a block without uncles.
const EMPTY_OMMERS: B256 =
    alloy_primitives::b256!("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347");

pub(super) fn register<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>) {
    blocking(m, "eth_getTransactionByHash", |c, p| {
        transaction_by_hash(&c.node, &p.b256(0)?)
    });
    blocking(m, "eth_getTransactionReceipt", |c, p| {
        match c.node.receipt(&p.b256(0)?).map_err(storage)? {
            Some(r) => {
                let header = header_at(&c.node, r.height)?;
                Ok(receipt_json(&r, &header.hash()))
            }
            None => Ok(Value::Null),
        }
    });
    blocking(m, "eth_getBlockByNumber", |c, p| {
        let full = p.opt(1).and_then(Value::as_bool).unwrap_or(false);
        match block_height(&c.node, &block_id(Some(p.get(0)?))?)? {
            Some(h) => block_json(&c.node, h, full),
            None => Ok(Value::Null),
        }
    });
    blocking(m, "eth_getBlockByHash", |c, p| {
        let hash = p.b256(0)?;
        let full = p.opt(1).and_then(Value::as_bool).unwrap_or(false);
        match c.node.height_of(&hash).map_err(storage)? {
            Some(h) => block_json(&c.node, h, full),
            None => Ok(Value::Null),
        }
    });
    blocking(
        m,
        "eth_getBlockTransactionCountByNumber",
        |c, p| match block_height(&c.node, &block_id(Some(p.get(0)?))?)? {
            Some(h) => Ok(qty(eth_txs(&c.node, h)?.len() as u64)),
            None => Ok(Value::Null),
        },
    );
    blocking(m, "eth_getBlockTransactionCountByHash", |c, p| {
        match c.node.height_of(&p.b256(0)?).map_err(storage)? {
            Some(h) => Ok(qty(eth_txs(&c.node, h)?.len() as u64)),
            None => Ok(Value::Null),
        }
    });
    blocking(m, "eth_getTransactionByBlockNumberAndIndex", |c, p| {
        let height = block_height(&c.node, &block_id(Some(p.get(0)?))?)?;
        transaction_at(&c.node, height, parse_u64(p.get(1)?)?)
    });
    blocking(m, "eth_getTransactionByBlockHashAndIndex", |c, p| {
        let height = c.node.height_of(&p.b256(0)?).map_err(storage)?;
        transaction_at(&c.node, height, parse_u64(p.get(1)?)?)
    });
    blocking(m, "eth_getBlockReceipts", |c, p| {
        let Some(height) = block_height(&c.node, &block_id(Some(p.get(0)?))?)? else {
            return Ok(Value::Null);
        };
        let hash = header_at(&c.node, height)?.hash();
        // The transactions' receipts in order, then the reading hooks' (whose logs are the
        // block's logs too).
        let mut ids: Vec<B256> = eth_txs(&c.node, height)?.iter().map(|tx| tx.hash).collect();
        ids.extend(c.node.hook_ids(height).map_err(storage)?);
        let receipts = c.node.receipts_in(height, &ids).map_err(storage)?;
        Ok(Value::Array(
            receipts
                .iter()
                .flatten()
                .map(|r| receipt_json(r, &hash))
                .collect(),
        ))
    });
    blocking(m, "eth_feeHistory", |c, p| fee_history(&c.node, p));
}

/// Transaction `index` of the final block at `height` (null past the end or for no block).
fn transaction_at<Q: ChainQuery>(
    chain: &Q,
    height: Option<u64>,
    index: u64,
) -> Result<Value, RpcError> {
    let Some(height) = height else {
        return Ok(Value::Null);
    };
    let txs = eth_txs(chain, height)?;
    let Some(tx) = usize::try_from(index).ok().and_then(|i| txs.get(i)) else {
        return Ok(Value::Null);
    };
    let base_fee = chain
        .block_gas(height)
        .map_err(storage)?
        .unwrap_or_default()
        .base_fee;
    let hash = header_at(chain, height)?.hash();
    Ok(tx_json(tx, Some((hash, height, index as u32, base_fee))))
}

/// The Ethereum transactions of the final block at `height`, in order.
pub(super) fn eth_txs<Q: ChainQuery>(chain: &Q, height: u64) -> Result<Vec<EthTx>, RpcError> {
    let block = chain
        .block(height)
        .map_err(storage)?
        .ok_or_else(|| server_error(format!("block {height} not found")))?;
    let chain_id = chain.genesis().chain_id;
    Ok(block
        .items
        .iter()
        .filter_map(|i| match i {
            // Stored transactions were checked when their block was made.
            BlockItem::EthTx(b) => EthTx::decode(b, chain_id, usize::MAX).ok(),
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

fn transaction_by_hash<N: NodeApi>(node: &N, hash: &B256) -> Result<Value, RpcError> {
    if let Some(r) = node.receipt(hash).map_err(storage)? {
        let header = header_at(node, r.height)?;
        let base_fee = node
            .block_gas(r.height)
            .map_err(storage)?
            .unwrap_or_default()
            .base_fee;
        let txs = eth_txs(node, r.height)?;
        let Some(tx) = txs.get(r.tx_index as usize).filter(|t| t.hash == *hash) else {
            // A hook call: it has a receipt, and no transaction.
            return Ok(Value::Null);
        };
        return Ok(tx_json(
            tx,
            Some((header.hash(), r.height, r.tx_index, base_fee)),
        ));
    }
    match node.pending_eth_tx(hash) {
        Some(tx) => Ok(tx_json(&tx, None)),
        None => Ok(Value::Null),
    }
}

/// A log of a receipt in Ethereum's JSON shape.
pub(super) fn log_json(
    r: &StoredReceipt,
    block_hash: &B256,
    i: usize,
    log: &alloy_primitives::Log,
) -> Value {
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

/// The final block at `height` in Ethereum's JSON shape (`full`: with whole transactions).
pub(super) fn block_json<Q: ChainQuery>(
    chain: &Q,
    height: u64,
    full: bool,
) -> Result<Value, RpcError> {
    let header = header_at(chain, height)?;
    let hash = header.hash();
    let gas = chain
        .block_gas(height)
        .map_err(storage)?
        .unwrap_or_default();
    let txs = eth_txs(chain, height)?;
    let mut bloom = Bloom::ZERO;
    // The logs of the block's reading hooks are the block's logs too (eth_getLogs returns
    // them): a client that skips blocks by their bloom must not skip a hook's event.
    let mut hashes: Vec<B256> = txs.iter().map(|tx| tx.hash).collect();
    hashes.extend(chain.hook_ids(height).map_err(storage)?);
    for r in chain
        .receipts_in(height, &hashes)
        .map_err(storage)?
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

fn fee_history<Q: ChainQuery>(chain: &Q, p: &Params) -> Result<Value, RpcError> {
    let count = match p.get(0)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| params_error("blockCount must be a positive integer"))?,
        v => parse_u64(v)?,
    }
    .min(MAX_FEE_HISTORY);
    let newest = block_height(chain, &block_id(Some(p.get(1)?))?)?.unwrap_or(chain.head().height);
    let percentiles: Vec<f64> = match p.opt(2) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    };
    let count = count.min(newest + 1);
    let oldest = newest + 1 - count;
    let genesis = chain.genesis();
    let limit = genesis.params.block_gas_limit;
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    let mut last = Default::default();
    for h in oldest..=newest {
        let g = chain.block_gas(h).map_err(storage)?.unwrap_or_default();
        base_fees.push(qty(g.base_fee));
        ratios.push(json!(g.gas_used as f64 / limit as f64));
        // Rewards: the priority fee paid by the block's transactions at each percentile of
        // gas, or zero in a block without transactions.
        let mut tips: Vec<(u128, u64)> = Vec::new();
        if g.gas_used > 0 {
            let hashes: Vec<B256> = eth_txs(chain, h)?.iter().map(|tx| tx.hash).collect();
            for r in chain
                .receipts_in(h, &hashes)
                .map_err(storage)?
                .into_iter()
                .flatten()
            {
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
    base_fees.push(qty(iotchain_execution::next_base_fee(genesis, last)));
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
