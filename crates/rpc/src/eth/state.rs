//! Chain facts, account state, calls, transaction submission and state proofs.

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use iotchain_api::{Item, Origin, PoolError, QueryError};
use iotchain_evm::EvmError;
use iotchain_state::State;
use jsonrpsee::{RpcModule, types::ErrorObject};
use serde_json::{Value, json};

use super::{
    Budget, EthCtx, QueryHashes, SUGGESTED_TIP,
    params::{Params, RpcError, block_id, call_request, params_error, parse_u256, server_error},
    qty, qty_u256, with_evm, with_state,
};
use crate::NodeApi;

type Method<N> = fn(&EthCtx<N>, &Params) -> Result<Value, RpcError>;

/// Registers a method that reads the store or runs the EVM: it runs on the blocking pool.
pub(super) fn blocking<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>, name: &'static str, f: Method<N>) {
    m.register_blocking_method(name, move |p, ctx, _| f(&ctx, &Params::of(&p)?))
        .expect("method names are unique");
}

/// Registers a method that answers from memory.
pub(super) fn quick<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>, name: &'static str, f: Method<N>) {
    m.register_method(name, move |p, ctx, _| f(ctx, &Params::of(&p)?))
        .expect("method names are unique");
}

/// A refused transaction, as Ethereum clients expect it (they match on geth's messages).
pub(crate) fn pool_error(e: &PoolError) -> RpcError {
    server_error(e.to_string())
}

/// An EVM failure of a call: a revert with its data and reason (code 3), or a server error.
fn evm_error(e: EvmError) -> RpcError {
    match e {
        EvmError::Reverted(data) => {
            let message = match revert_reason(&data) {
                Some(r) => format!("execution reverted: {r}"),
                None => "execution reverted".into(),
            };
            ErrorObject::owned(3, message, Some(json!(data)))
        }
        other => server_error(other.to_string()),
    }
}

/// The reason string of an `Error(string)` revert.
pub(crate) fn revert_reason(data: &[u8]) -> Option<String> {
    const SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
    if data.len() < 68 || data[..4] != SELECTOR {
        return None;
    }
    let len = U256::from_be_slice(&data[36..68]);
    let len: usize = len.try_into().ok()?;
    let bytes = data.get(68..68usize.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

pub(super) fn register<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>) {
    quick(m, "eth_chainId", |c, _| Ok(qty(c.node.genesis().chain_id)));
    quick(m, "net_version", |c, _| {
        Ok(json!(c.node.genesis().chain_id.to_string()))
    });
    quick(m, "net_listening", |_, _| Ok(json!(true)));
    // The validators heard from in the last 10 s, as `/v1/status` counts them.
    quick(m, "net_peerCount", |c, _| {
        Ok(qty(
            crate::rest::status::peers(&c.node, c.runtime.now_ms(), &c.node_key) as u64,
        ))
    });
    quick(m, "web3_clientVersion", |_, _| {
        Ok(json!(format!("iotchain/v{}", env!("CARGO_PKG_VERSION"))))
    });
    quick(m, "eth_syncing", |_, _| Ok(json!(false)));
    quick(m, "eth_accounts", |_, _| Ok(json!([])));
    quick(m, "eth_blockNumber", |c, _| Ok(qty(c.node.head().height)));
    quick(m, "eth_gasPrice", |c, _| {
        Ok(qty(c.node.pending_block_context().base_fee + SUGGESTED_TIP))
    });
    quick(m, "eth_maxPriorityFeePerGas", |_, _| Ok(qty(SUGGESTED_TIP)));
    blocking(m, "eth_getBalance", |c, p| {
        let a = p.address(0)?;
        with_state(&c.node, &block_id(p.opt(1))?, |s| {
            qty_u256(s.account(&a).map(|x| x.balance).unwrap_or_default())
        })
    });
    blocking(m, "eth_getTransactionCount", |c, p| {
        let a = p.address(0)?;
        let at = block_id(p.opt(1))?;
        if at == super::BlockId::Pending {
            // The account's nonce after its transactions waiting for a block.
            return Ok(qty(c.node.pending_nonce(&a)));
        }
        with_state(&c.node, &at, |s| qty(s.account(&a).map_or(0, |x| x.nonce)))
    });
    blocking(m, "eth_getCode", |c, p| {
        let a = p.address(0)?;
        with_state(&c.node, &block_id(p.opt(1))?, |s| json!(s.account_code(&a)))
    });
    blocking(m, "eth_getStorageAt", |c, p| {
        let a = p.address(0)?;
        let slot = p.u256(1)?;
        with_state(&c.node, &block_id(p.opt(2))?, |s| {
            json!(B256::from(s.storage_slot(&a, &slot)))
        })
    });
    m.register_async_method("eth_call", |p, ctx, ext| async move {
        let p = Params::of(&p)?;
        let req = call_request(p.get(0)?)?;
        let at = block_id(p.opt(1))?;
        let out = on_evm(
            ctx,
            ext.get::<Arc<Budget>>().cloned(),
            at,
            move |s, h, b, l| iotchain_evm::call(s, h, b, &req, l),
        )
        .await?;
        Ok::<_, RpcError>(json!(out.map_err(evm_error)?.output))
    })
    .expect("method names are unique");
    m.register_async_method("eth_estimateGas", |p, ctx, ext| async move {
        let p = Params::of(&p)?;
        let req = call_request(p.get(0)?)?;
        let at = super::BlockId::Pending;
        let gas = on_evm(
            ctx,
            ext.get::<Arc<Budget>>().cloned(),
            at,
            move |s, h, b, l| iotchain_evm::estimate_gas(s, h, b, &req, l),
        )
        .await?;
        Ok::<_, RpcError>(qty(gas.map_err(evm_error)?))
    })
    .expect("method names are unique");
    // geth's semantics: the accounts and slots the call touches, the sender, the recipient
    // and the precompiles left out; run on the pending view by default, held to the same
    // caps as eth_estimateGas; a call that fails still has its list, with `error`.
    m.register_async_method("eth_createAccessList", |p, ctx, ext| async move {
        let p = Params::of(&p)?;
        let req = call_request(p.get(0)?)?;
        let at = match p.opt(1) {
            None => super::BlockId::Pending,
            v => block_id(v)?,
        };
        let out = on_evm(
            ctx,
            ext.get::<Arc<Budget>>().cloned(),
            at,
            move |s, h, b, l| iotchain_evm::create_access_list(s, h, b, &req, l),
        )
        .await?;
        Ok::<_, RpcError>(access_list_json(&out.map_err(evm_error)?))
    })
    .expect("method names are unique");
    m.register_async_method("eth_sendRawTransaction", |p, ctx, ext| async move {
        let raw = Params::of(&p)?.bytes(0)?;
        let origin = ext.get::<Origin>().copied().unwrap_or(Origin::Local);
        let mut results = ctx.node.submit(vec![Item::EthTx(raw)], origin).await;
        match results.pop() {
            Some(Ok(hash)) => Ok::<_, RpcError>(json!(hash)),
            Some(Err(e)) => Err(pool_error(&e)),
            None => Err(server_error("the node cannot store data right now")),
        }
    })
    .expect("method names are unique");
    blocking(m, "eth_getProof", |c, p| {
        let a = p.address(0)?;
        let slots: Vec<U256> = match p.get(1)? {
            Value::Array(v) => v.iter().map(parse_u256).collect::<Result<_, _>>()?,
            _ => return Err(params_error("storage keys must be an array")),
        };
        if slots.len() > 1000 {
            return Err(params_error("at most 1000 storage keys"));
        }
        with_state(&c.node, &block_id(p.opt(2))?, |s| proof_json(s, &a, &slots))?
    });
}

/// Runs `f` on a call worker against the state `at` names, in the pending block's context,
/// within the request's budget (see [`with_evm`]).
async fn on_evm<N: NodeApi, T: Send + 'static>(
    ctx: Arc<EthCtx<N>>,
    budget: Option<Arc<Budget>>,
    at: super::BlockId,
    f: impl FnOnce(
        &State,
        &QueryHashes<'_, N>,
        &iotchain_evm::BlockContext,
        &iotchain_evm::CallLimits<'_>,
    ) -> T
    + Send
    + 'static,
) -> Result<T, RpcError> {
    with_evm(ctx, budget, move |c, limits| {
        let block = call_context(&c.node, &at)?;
        let hashes = QueryHashes {
            chain: &c.node,
            number: block.number,
        };
        with_state(&c.node, &at, |s| f(s, &hashes, &block, limits))
    })
    .await
}

/// The block a call at `at` runs in: the pending block's for the head, and for an older block
/// the block after it (its number, time, base fee and parent hash), the one whose
/// transactions ran on that block's state.
fn call_context<N: NodeApi>(
    node: &N,
    at: &super::BlockId,
) -> Result<iotchain_evm::BlockContext, RpcError> {
    let mut block = node.pending_block_context();
    if matches!(at, super::BlockId::Latest | super::BlockId::Pending) {
        return Ok(block);
    }
    let Some(height) = super::block_height(node, at)? else {
        return Ok(block);
    };
    if height + 1 < block.number {
        let next = super::header_at(node, height + 1)?;
        block.number = next.height;
        block.timestamp_ms = next.timestamp_ms;
        block.timestamp = next.timestamp_ms / 1000;
        block.prevrandao = next.parent_hash;
        if let Some(gas) = node.block_gas(next.height).map_err(super::storage)? {
            block.base_fee = gas.base_fee;
        }
    }
    Ok(block)
}

/// The answer of `eth_createAccessList`, as geth gives it.
fn access_list_json(out: &iotchain_evm::AccessListOutcome) -> Value {
    let list: Vec<Value> = out
        .access_list
        .iter()
        .map(|item| json!({"address": item.address, "storageKeys": item.storage_keys}))
        .collect();
    let mut answer = json!({"accessList": list, "gasUsed": qty(out.gas_used)});
    if let Some(e) = &out.error {
        answer["error"] = json!(match e {
            EvmError::Reverted(data) => match revert_reason(data) {
                Some(r) => format!("execution reverted: {r}"),
                None => "execution reverted".into(),
            },
            other => other.to_string(),
        });
    }
    answer
}

fn proof_json(state: &State, address: &Address, slots: &[U256]) -> Result<Value, RpcError> {
    let proof = state
        .account_proof(address, slots)
        .map_err(|e| super::storage(QueryError::storage(e)))?;
    let account = proof.account.unwrap_or_default();
    Ok(json!({
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
    }))
}
