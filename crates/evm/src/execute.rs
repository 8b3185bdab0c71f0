//! Executing transactions and calls with revm against an [`iotchain_state::State`].

use std::{
    convert::Infallible,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, B256, Bloom, Bytes, Log, TxKind, U256};
use iotchain_state::{Account, State};
use revm::{
    Context, DatabaseRef, ExecuteEvm, InspectEvm, Inspector, MainBuilder, MainContext,
    bytecode::Bytecode,
    context::{
        BlockEnv, TxEnv,
        result::{EVMError, ExecutionResult, InvalidTransaction},
    },
    database_interface::WrapDatabaseRef,
    interpreter::{InstructionResult, Interpreter, InterpreterTypes},
    state::{AccountInfo, EvmState},
};
use revm_inspectors::access_list::AccessListInspector;

use crate::{
    EthTx, EvmError, Result, SPEC,
    iot::{IOT_ADDRESS, IotPrecompiles, OnReadingCall, StateAccess, apply_events},
};
use alloy_sol_types::SolCall;
use iotchain_reading::DeviceAddress;
use iotchain_state::StreamHead;

/// Hashes of earlier blocks, for the `BLOCKHASH` opcode.
pub trait BlockHashes {
    /// The hash of the block at `number` (zero when unknown).
    fn block_hash(&self, number: u64) -> B256;
}

impl BlockHashes for () {
    fn block_hash(&self, _: u64) -> B256 {
        B256::ZERO
    }
}

/// The block a transaction executes in: what revm's `BlockEnv` needs, all derived from the
/// chain so every validator derives the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    /// Chain id.
    pub chain_id: u64,
    /// Block height.
    pub number: u64,
    /// Block time in seconds.
    pub timestamp: u64,
    /// Block time in ms (the header's `timestamp_ms`).
    pub timestamp_ms: u64,
    /// Receives the priority fees: the proposer's fee recipient.
    pub beneficiary: Address,
    /// EIP-1559 base fee in wei.
    pub base_fee: u64,
    /// The block gas limit.
    pub gas_limit: u64,
    /// `PREVRANDAO`: the parent block's hash (no randomness beacon here).
    pub prevrandao: B256,
}

impl BlockContext {
    fn env(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(self.prevrandao),
            ..BlockEnv::default()
        }
    }
}

/// What one executed transaction did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: B256,
    /// EIP-2718 type.
    pub tx_type: u8,
    /// Sender.
    pub from: Address,
    /// Call target (`None` for a creation).
    pub to: Option<Address>,
    /// The created contract, for a successful creation.
    pub contract_address: Option<Address>,
    /// Success (true) or revert/halt (false).
    pub status: bool,
    /// Gas this transaction used.
    pub gas_used: u64,
    /// Gas used in the block up to and including this transaction.
    pub cumulative_gas_used: u64,
    /// Price per gas paid.
    pub effective_gas_price: u128,
    /// Logs emitted (none when it failed).
    pub logs: Vec<Log>,
    /// Bloom filter of the logs.
    pub logs_bloom: Bloom,
}

/// Executes a block's transactions in order against a state, keeping the block's gas count.
#[derive(Debug)]
pub struct BlockExecutor<'h, H: ?Sized> {
    ctx: BlockContext,
    hashes: &'h H,
    gas_used: u64,
    /// Gas the block's hook calls used (they have their own budget: the block gas limit).
    hook_gas_used: u64,
}

/// revm's view of the state: reads go straight to the [`State`].
struct StateDb<'a, H: ?Sized> {
    state: &'a State,
    hashes: &'a H,
}

impl<H: BlockHashes + ?Sized> DatabaseRef for StateDb<'_, H> {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Infallible> {
        Ok(self.state.account(&address).map(|a| {
            let code = analyzed(self.state, &a.code_hash);
            AccountInfo::new(a.balance, a.nonce, a.code_hash, code.unwrap_or_default())
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Infallible> {
        Ok(analyzed(self.state, &code_hash).unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Infallible> {
        Ok(self.state.storage_slot(&address, &index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Infallible> {
        Ok(self.hashes.block_hash(number))
    }
}

/// Most analysed contracts kept ([`analyzed`]); past it the cache starts again empty.
const ANALYZED_CODE: usize = 4096;

/// The code under `hash`, analysed (jump destinations) for revm. Code under a hash never
/// changes, so its analysis is kept across transactions instead of redone each time a
/// transaction loads the contract.
fn analyzed(state: &State, hash: &B256) -> Option<Bytecode> {
    use std::sync::{LazyLock, Mutex};
    // Plain accounts (most of them) have no code: no need to take the process-wide lock.
    if *hash == revm::primitives::KECCAK_EMPTY {
        return None;
    }
    static CACHE: LazyLock<Mutex<std::collections::HashMap<B256, Bytecode>>> =
        LazyLock::new(Default::default);
    // The map is consistent whatever a panicking holder left: take it even when poisoned.
    let lock = || {
        CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(code) = lock().get(hash) {
        return Some(code.clone());
    }
    let code = Bytecode::new_raw(state.code(hash)?.clone());
    let mut cache = lock();
    if cache.len() >= ANALYZED_CODE {
        cache.clear();
    }
    cache.insert(*hash, code.clone());
    Some(code)
}

impl<H: BlockHashes + ?Sized> StateAccess for WrapDatabaseRef<StateDb<'_, H>> {
    fn state(&self) -> &State {
        self.0.state
    }
}

/// Writes revm's changes into the state (in address order, so the state's change sets are
/// the same on every validator).
fn apply(state: &mut State, changes: EvmState) {
    let mut changes: Vec<_> = changes.into_iter().collect();
    changes.sort_unstable_by_key(|(a, _)| *a);
    for (address, account) in changes {
        if !account.is_touched() {
            continue;
        }
        if account.is_selfdestructed() {
            state.set_account(address, None);
            continue;
        }
        if account.is_created() {
            state.wipe_storage(address);
        }
        let mut code_hash = account.info.code_hash;
        // Code is set when an account is created; a loaded contract's code is already in the
        // state under its hash (hashing it again for every call would cost a keccak of the
        // whole contract).
        if let Some(code) = &account.info.code
            && state.code(&code_hash).is_none()
        {
            let bytes = code.original_bytes();
            if !bytes.is_empty() {
                code_hash = state.insert_code(bytes);
            }
        }
        let info = Account {
            nonce: account.info.nonce,
            balance: account.info.balance,
            code_hash,
        };
        // EIP-161: a touched account that ends empty is deleted.
        if info.is_empty() {
            state.set_account(address, None);
            continue;
        }
        state.set_account(address, Some(info));
        let mut slots: Vec<_> = account
            .storage
            .into_iter()
            .filter(|(_, s)| s.is_changed())
            .collect();
        slots.sort_unstable_by_key(|(k, _)| *k);
        for (slot, value) in slots {
            state.set_storage(address, slot, value.present_value());
        }
    }
}

fn tx_env(tx: &EthTx) -> TxEnv {
    use alloy_consensus::Transaction;
    let e = &tx.envelope;
    TxEnv {
        tx_type: tx.tx_type(),
        caller: tx.sender,
        gas_limit: e.gas_limit(),
        gas_price: e.max_fee_per_gas(),
        kind: e.kind(),
        value: e.value(),
        data: e.input().clone(),
        nonce: e.nonce(),
        chain_id: e.chain_id(),
        access_list: e.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: e.max_priority_fee_per_gas(),
        ..TxEnv::default()
    }
}

fn invalid(tx: &TxEnv, base_fee: u64, e: InvalidTransaction, balance: U256) -> EvmError {
    match e {
        InvalidTransaction::NonceTooLow { tx: got, state } => EvmError::NonceTooLow {
            sender: tx.caller,
            got,
            expected: state,
        },
        InvalidTransaction::NonceTooHigh { tx: got, state } => EvmError::NonceTooHigh {
            sender: tx.caller,
            got,
            expected: state,
        },
        InvalidTransaction::LackOfFundForMaxFee { fee, .. } => EvmError::InsufficientFunds {
            sender: tx.caller,
            balance,
            cost: *fee,
        },
        InvalidTransaction::CallerGasLimitMoreThanBlock => EvmError::GasAboveBlockLimit {
            gas: tx.gas_limit,
            limit: 0,
        },
        InvalidTransaction::GasPriceLessThanBasefee => EvmError::FeeCapTooLow {
            max_fee: tx.gas_price,
            base_fee,
        },
        InvalidTransaction::CallGasCostMoreThanGasLimit { initial_gas, .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit {
            gas_floor: initial_gas,
            ..
        } => EvmError::IntrinsicGasTooLow {
            gas: tx.gas_limit,
            needed: initial_gas,
        },
        InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => {
            EvmError::WrongChainId {
                got: tx.chain_id,
                expected: 0,
            }
        }
        other => EvmError::Invalid(other.to_string()),
    }
}

fn evm_error(
    state: &State,
    tx: &TxEnv,
    ctx: &BlockContext,
    e: EVMError<Infallible, InvalidTransaction>,
) -> EvmError {
    match e {
        EVMError::Transaction(t) => {
            let balance = state
                .account(&tx.caller)
                .map(|a| a.balance)
                .unwrap_or_default();
            invalid_in(tx, ctx, t, balance)
        }
        other => EvmError::Invalid(other.to_string()),
    }
}

/// [`invalid`], with the block's gas limit and chain id filled in.
fn invalid_in(tx: &TxEnv, ctx: &BlockContext, e: InvalidTransaction, balance: U256) -> EvmError {
    match invalid(tx, ctx.base_fee, e, balance) {
        EvmError::GasAboveBlockLimit { gas, .. } => EvmError::GasAboveBlockLimit {
            gas,
            limit: ctx.gas_limit,
        },
        EvmError::WrongChainId { got, .. } => EvmError::WrongChainId {
            got,
            expected: ctx.chain_id,
        },
        other => other,
    }
}

/// A sender as the transaction queue sees it: its account after the transactions of it that
/// are accepted and not yet in a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuedSender {
    /// The nonce its next transaction must carry: its account's nonce plus its queued
    /// transactions.
    pub nonce: u64,
    /// Its balance less what its queued transactions may cost at most.
    pub balance: U256,
    /// Whether the sender's account holds code (EIP-3607: it may not send transactions).
    pub has_code: bool,
}

/// Checks `tx` as the next transaction of its sender, to be executed in a block like `ctx`,
/// without executing it: every rule revm checks before it executes a transaction (chain id,
/// fee cap against the base fee, priority fee within the fee cap, gas limit within the
/// block's, intrinsic gas and the EIP-7623 floor, init code size, no code at the sender, the
/// nonce, funds for `gas_limit × max_fee + value`), with revm's own checks. Returns what the
/// transaction may cost at most: what its sender must keep for it until it is in a block.
///
/// This is how a transaction queue accepts transactions (as Ethereum nodes' pools do): the
/// EVM runs each transaction once, in the block that includes it.
pub fn check_next(tx: &EthTx, ctx: &BlockContext, sender: &QueuedSender) -> Result<U256> {
    use revm::{
        context_interface::Transaction as _,
        handler::{pre_execution::validate_account_nonce_and_code, validation},
    };
    let env = tx_env(tx);
    let fail = |e: InvalidTransaction| invalid_in(&env, ctx, e, sender.balance);
    let evm = Context::mainnet()
        .with_block(ctx.env())
        .with_tx(env.clone())
        .modify_cfg_chained(|cfg| {
            cfg.set_spec_and_mainnet_gas_params(SPEC);
            cfg.chain_id = ctx.chain_id;
        });
    let cap = revm::context_interface::Cfg::tx_gas_limit_cap(&evm.cfg);
    validation::validate_tx_env(evm, SPEC).map_err(fail)?;
    validation::validate_initial_tx_gas(&env, SPEC, false, false, cap, None).map_err(fail)?;
    if sender.has_code {
        return Err(fail(InvalidTransaction::RejectCallerWithCode));
    }
    let account = AccountInfo {
        nonce: sender.nonce,
        ..AccountInfo::default()
    };
    validate_account_nonce_and_code(&account, env.nonce, false, false).map_err(fail)?;
    env.ensure_enough_balance(sender.balance).map_err(fail)?;
    env.max_balance_spending().map_err(fail)
}

/// Runs revm on `state` without changing it.
/// `for_call`: no fee and no nonce check (`eth_call`, and the chain's own hook calls).
fn run(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    tx: TxEnv,
    for_call: bool,
) -> Result<(ExecutionResult, EvmState)> {
    run_limited(state, hashes, ctx, tx, for_call, None)
}

/// Stops an execution when its flag is set: every frame halts at its next instruction.
struct Interrupt<'a> {
    cancel: &'a AtomicBool,
    steps: u32,
}

impl<CTX, INTR: InterpreterTypes> Inspector<CTX, INTR> for Interrupt<'_> {
    fn step(&mut self, interp: &mut Interpreter<INTR>, _context: &mut CTX) {
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(1024) && self.cancel.load(Ordering::Relaxed) {
            interp.halt(InstructionResult::OutOfGas);
        }
    }
}

/// [`run`], stopped when `cancel` is set (a call's time limit).
fn run_limited(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    tx: TxEnv,
    for_call: bool,
    cancel: Option<&AtomicBool>,
) -> Result<(ExecutionResult, EvmState)> {
    let db = WrapDatabaseRef(StateDb { state, hashes });
    let mut block = ctx.env();
    if for_call {
        // As geth's eth_call: a call without a gas price is not held to the base fee.
        block.basefee = 0;
    }
    let context = Context::mainnet()
        .with_db(db)
        .with_block(block)
        .modify_cfg_chained(|cfg| {
            cfg.set_spec_and_mainnet_gas_params(SPEC);
            cfg.chain_id = ctx.chain_id;
            cfg.disable_nonce_check = for_call;
        });
    let out = match cancel {
        None => context
            .build_mainnet()
            .with_precompiles(IotPrecompiles::new(SPEC))
            .transact(tx.clone()),
        Some(cancel) => context
            .build_mainnet_with_inspector(Interrupt { cancel, steps: 0 })
            .with_precompiles(IotPrecompiles::new(SPEC))
            .inspect_tx(tx.clone()),
    }
    .map_err(|e| evm_error(state, &tx, ctx, e))?;
    Ok((out.result, out.state))
}

impl<'h, H: BlockHashes + ?Sized> BlockExecutor<'h, H> {
    /// An executor for a block with no gas used yet.
    pub fn new(ctx: BlockContext, hashes: &'h H) -> Self {
        Self {
            ctx,
            hashes,
            gas_used: 0,
            hook_gas_used: 0,
        }
    }

    /// The block this executor executes in.
    pub fn context(&self) -> &BlockContext {
        &self.ctx
    }

    /// Gas used by the transactions executed so far.
    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    /// Checks that `tx` fits in the rest of the block (its whole gas limit, as Ethereum
    /// requires of a block's transactions).
    pub fn check_fits(&self, tx: &EthTx) -> Result<()> {
        if tx.gas_limit() > self.ctx.gas_limit {
            return Err(EvmError::GasAboveBlockLimit {
                gas: tx.gas_limit(),
                limit: self.ctx.gas_limit,
            });
        }
        let left = self.ctx.gas_limit - self.gas_used;
        if tx.gas_limit() > left {
            return Err(EvmError::BlockFull {
                left,
                gas: tx.gas_limit(),
            });
        }
        Ok(())
    }

    /// Executes `tx` on `state` and writes its effects into it. A transaction that reverts
    /// or runs out of gas still applies (nonce, fee) and gets a failed receipt; an invalid
    /// one (nonce, funds, fee cap, gas) is refused with the state unchanged.
    pub fn execute(&mut self, state: &mut State, tx: &EthTx) -> Result<Receipt> {
        self.check_fits(tx)?;
        let env = tx_env(tx);
        let (result, changes) = run(state, self.hashes, &self.ctx, env, false)?;
        apply(state, changes);
        let gas_used = result.tx_gas_used();
        self.gas_used += gas_used;
        let status = result.is_success();
        let contract_address = result.created_address();
        let logs = match result {
            ExecutionResult::Success { logs, .. } => logs,
            _ => Vec::new(),
        };
        apply_events(state, &logs, self.ctx.number);
        Ok(Receipt {
            tx_hash: tx.hash,
            tx_type: tx.tx_type(),
            from: tx.sender,
            to: tx.to(),
            contract_address,
            status,
            gas_used,
            cumulative_gas_used: self.gas_used,
            effective_gas_price: tx.effective_gas_price(self.ctx.base_fee),
            logs_bloom: bloom(&logs),
            logs,
        })
    }

    /// Calls the hook on the stream of a reading a block includes, if its device has one:
    /// `onReading` from [`IOT_ADDRESS`] with the hook's gas limit (the 21,000 base
    /// included), paid at the block's base fee from the owner's deposit (burned). A hook
    /// whose deposit does not cover its gas limit is not called; one that reverts or runs
    /// out of gas gets a failed receipt. Either way the reading stays in the block. Hook
    /// gas does not count toward the block's gas; it has a budget of its own, as large: a
    /// hook whose gas limit no longer fits in what is left of it is not called. Returns the receipt, whose `tx_hash` is
    /// [`hook_call_id`].
    pub fn run_hook(
        &mut self,
        state: &mut State,
        device: &DeviceAddress,
        head: &StreamHead,
    ) -> Option<Receipt> {
        let hook = state.hook(device, &head.stream)?.clone();
        let fee_cap = U256::from(hook.gas_limit) * U256::from(self.ctx.base_fee);
        let call = OnReadingCall {
            device: Address::from(device.0),
            stream: head.stream.clone(),
            seq: head.seq,
            ts: head.ts,
            hasValue: head.value.is_some(),
            value: head.value.unwrap_or_default(),
            readingId: head.id,
        };
        let mut receipt = Receipt {
            tx_hash: hook_call_id(&head.id, &hook.contract),
            tx_type: 0,
            from: IOT_ADDRESS,
            to: Some(hook.contract),
            contract_address: None,
            status: false,
            gas_used: 0,
            cumulative_gas_used: self.gas_used + self.hook_gas_used,
            effective_gas_price: u128::from(self.ctx.base_fee),
            logs: Vec::new(),
            logs_bloom: Bloom::ZERO,
        };
        // Unfunded, or past the block's hook budget (hooks may use, together, as much gas
        // as the block gas limit): not called.
        if hook.deposit < fee_cap
            || self.hook_gas_used.saturating_add(hook.gas_limit) > self.ctx.gas_limit
        {
            return Some(receipt);
        }
        let env = TxEnv {
            tx_type: 0,
            caller: IOT_ADDRESS,
            gas_limit: hook.gas_limit,
            gas_price: 0,
            kind: TxKind::Call(hook.contract),
            data: call.abi_encode().into(),
            nonce: state.account(&IOT_ADDRESS).map_or(0, |a| a.nonce),
            chain_id: Some(self.ctx.chain_id),
            ..TxEnv::default()
        };
        let Ok((result, changes)) = run(state, self.hashes, &self.ctx, env, true) else {
            // Refused before it ran (its gas limit is below the call's intrinsic gas).
            return Some(receipt);
        };
        apply(state, changes);
        receipt.gas_used = result.tx_gas_used();
        self.hook_gas_used += receipt.gas_used;
        // Hook receipts follow the block's transactions: their cumulative gas counts the
        // transactions' and the hooks' so far, this one included.
        receipt.cumulative_gas_used = self.gas_used + self.hook_gas_used;
        receipt.status = result.is_success();
        if let ExecutionResult::Success { logs, .. } = result {
            apply_events(state, &logs, self.ctx.number);
            receipt.logs_bloom = bloom(&logs);
            receipt.logs = logs;
        }
        let fee = U256::from(receipt.gas_used) * U256::from(self.ctx.base_fee);
        let taken = state.charge_hook(device, &head.stream, fee);
        if let Some(mut iot) = state.account(&IOT_ADDRESS).copied() {
            iot.balance = iot.balance.saturating_sub(taken);
            state.set_account(IOT_ADDRESS, (!iot.is_empty()).then_some(iot));
        }
        Some(receipt)
    }
}

/// The id of a hook call (its receipt's `tx_hash`): `keccak256(reading id ‖ hook contract)`.
pub fn hook_call_id(reading_id: &B256, contract: &Address) -> B256 {
    let mut buf = [0u8; 52];
    buf[..32].copy_from_slice(reading_id.as_slice());
    buf[32..].copy_from_slice(contract.as_slice());
    alloy_primitives::keccak256(buf)
}

fn bloom(logs: &[Log]) -> Bloom {
    let mut bloom = Bloom::ZERO;
    for log in logs {
        bloom.accrue_log(log);
    }
    bloom
}

/// A call that changes nothing (`eth_call`, `eth_estimateGas`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Caller (zero address when absent).
    pub from: Option<Address>,
    /// Target; `None` runs `input` as init code.
    pub to: Option<Address>,
    /// Gas limit (the block gas limit when absent).
    pub gas: Option<u64>,
    /// Price per gas (zero when absent: no fee is charged).
    pub gas_price: Option<u128>,
    /// Value in wei.
    pub value: Option<U256>,
    /// Call data.
    pub input: Bytes,
    /// EIP-2930 access list: accounts and slots warm from the start.
    pub access_list: AccessList,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// Return data.
    pub output: Bytes,
    /// Gas used.
    pub gas_used: u64,
}

/// The bounds of the calls a client asks for (`eth_call`, `eth_estimateGas`): as geth's
/// `--rpc.gascap` and `--rpc.evmtimeout`, plus a gas budget one request (or one batch)
/// shares.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits<'a> {
    /// Most gas one execution may use; a call asking for more is held to it.
    pub gas_cap: u64,
    /// Set (by a timer) to stop the execution: it then ends with [`EvmError::Timeout`].
    pub cancel: Option<&'a AtomicBool>,
    /// What the timeout was, for the error message.
    pub timeout_ms: u64,
    /// Gas left for the request or batch this call belongs to; each execution takes its gas
    /// used from it, and none starts once it is used up ([`EvmError::BudgetExhausted`]).
    pub budget: Option<(&'a AtomicU64, u64)>,
}

impl CallLimits<'_> {
    /// No bounds but the block gas limit (the chain's own calls, tests).
    pub const NONE: CallLimits<'static> = CallLimits {
        gas_cap: u64::MAX,
        cancel: None,
        timeout_ms: 0,
        budget: None,
    };

    fn timed_out(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Takes `gas` from the budget; false once it is used up.
    fn charge(&self, gas: u64) -> bool {
        let Some((left, _)) = self.budget else {
            return true;
        };
        let mut cur = left.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return false;
            }
            match left.compare_exchange_weak(
                cur,
                cur.saturating_sub(gas),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn exhausted(&self) -> Option<EvmError> {
        let (left, total) = self.budget?;
        (left.load(Ordering::Relaxed) == 0).then_some(EvmError::BudgetExhausted(total))
    }
}

/// Executes a call on `state` without changing it: the return data, or
/// [`EvmError::Reverted`] with the revert data, or [`EvmError::Halted`]; within `limits`.
pub fn call(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    req: &CallRequest,
    limits: &CallLimits<'_>,
) -> Result<CallOutcome> {
    if let Some(e) = limits.exhausted() {
        return Err(e);
    }
    let tx = call_env(state, ctx, req, limits);
    let (result, _) = run_limited(state, hashes, ctx, tx, true, limits.cancel)?;
    let gas_used = result.tx_gas_used();
    limits.charge(gas_used);
    if limits.timed_out() {
        return Err(EvmError::Timeout(limits.timeout_ms));
    }
    match result {
        ExecutionResult::Success { output, .. } => Ok(CallOutcome {
            output: output.into_data(),
            gas_used,
        }),
        ExecutionResult::Revert { output, .. } => Err(EvmError::Reverted(output)),
        ExecutionResult::Halt { reason, .. } => Err(EvmError::Halted(format!("{reason:?}"))),
    }
}

/// The transaction a call runs as: from the zero address when `from` is absent, with the
/// sender's nonce, the gas asked for within the block's and the cap, no fee unless a gas
/// price is given.
fn call_env(
    state: &State,
    ctx: &BlockContext,
    req: &CallRequest,
    limits: &CallLimits<'_>,
) -> TxEnv {
    let from = req.from.unwrap_or(Address::ZERO);
    TxEnv {
        tx_type: 2,
        caller: from,
        gas_limit: req
            .gas
            .unwrap_or(ctx.gas_limit)
            .min(ctx.gas_limit)
            .min(limits.gas_cap),
        gas_price: req.gas_price.unwrap_or(0),
        gas_priority_fee: Some(0),
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value.unwrap_or_default(),
        data: req.input.clone(),
        nonce: state.account(&from).map_or(0, |a| a.nonce),
        chain_id: Some(ctx.chain_id),
        access_list: req.access_list.clone(),
        ..TxEnv::default()
    }
}

/// The smallest gas limit with which the call succeeds (binary search, as geth does, from
/// the gas the call used at the cap), or the error of the call at the cap; within `limits`
/// (each probe takes from the same budget and stops at the same deadline).
pub fn estimate_gas(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    req: &CallRequest,
    limits: &CallLimits<'_>,
) -> Result<u64> {
    let cap = req
        .gas
        .unwrap_or(ctx.gas_limit)
        .min(ctx.gas_limit)
        .min(limits.gas_cap);
    let at = |gas: u64| {
        call(
            state,
            hashes,
            ctx,
            &CallRequest {
                gas: Some(gas),
                ..req.clone()
            },
            limits,
        )
    };
    // Whether the call succeeds with `gas` (it fails for want of gas, or ends the search).
    let enough = |gas: u64| match at(gas) {
        Ok(_) => Ok(true),
        Err(EvmError::Reverted(_) | EvmError::Halted(_) | EvmError::IntrinsicGasTooLow { .. }) => {
            Ok(false)
        }
        Err(e) => Err(e),
    };
    let used = at(cap)?.gas_used;
    // What it used is a lower bound: below it the call cannot succeed.
    let (mut lo, mut hi) = (used.saturating_sub(1).max(20_999), cap);
    // Most calls succeed with what they used plus the 1/64 that calls keep back (EIP-150):
    // try that first, as geth does, to skip most of the search.
    let mut probe = used.saturating_mul(64) / 63;
    while hi - lo > 1 {
        if probe <= lo || probe >= hi {
            probe = lo + (hi - lo) / 2;
        }
        if enough(probe)? {
            hi = probe;
        } else {
            lo = probe;
        }
        probe = lo + (hi - lo) / 2;
    }
    Ok(hi)
}

/// What `eth_createAccessList` answers: the accounts and slots a call touches, and the gas
/// it uses with them warm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessListOutcome {
    /// The accounts (other than the sender, the recipient and the precompiles) and storage
    /// slots the call touched, sorted.
    pub access_list: AccessList,
    /// Gas the call used with `access_list` as its access list.
    pub gas_used: u64,
    /// How the call failed when it ran with that list ([`EvmError::Reverted`] with its data,
    /// [`EvmError::Halted`]): the list is still what it touched up to then.
    pub error: Option<EvmError>,
}

/// The access list of a call, as geth's `eth_createAccessList` builds it: run the call with
/// the list so far (first the request's own), collecting every account and slot it touches
/// with revm-inspectors' [`AccessListInspector`] (which leaves out the sender, the recipient
/// and the precompiles, the IoT precompile among them), until a run touches nothing new
/// (warm slots change the gas, which can change the path). Each run is held to `limits`,
/// like [`call`]'s.
pub fn create_access_list(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    req: &CallRequest,
    limits: &CallLimits<'_>,
) -> Result<AccessListOutcome> {
    let never = AtomicBool::new(false);
    let cancel = limits.cancel.unwrap_or(&never);
    let mut list = req.access_list.clone();
    loop {
        if let Some(e) = limits.exhausted() {
            return Err(e);
        }
        let tx = call_env(
            state,
            ctx,
            &CallRequest {
                access_list: list.clone(),
                ..req.clone()
            },
            limits,
        );
        let tracer = AccessListInspector::new(list.clone());
        let (result, tracer) = run_traced(state, hashes, ctx, tx, tracer, cancel)?;
        let gas_used = result.tx_gas_used();
        limits.charge(gas_used);
        if limits.timed_out() {
            return Err(EvmError::Timeout(limits.timeout_ms));
        }
        let touched = tracer.into_access_list();
        if touched == list {
            let error = match result {
                ExecutionResult::Success { .. } => None,
                ExecutionResult::Revert { output, .. } => Some(EvmError::Reverted(output)),
                ExecutionResult::Halt { reason, .. } => {
                    Some(EvmError::Halted(format!("{reason:?}")))
                }
            };
            return Ok(AccessListOutcome {
                access_list: touched,
                gas_used,
                error,
            });
        }
        list = touched;
    }
}

/// Runs a call (no fee, no nonce check) on `state` without changing it under an access-list
/// tracer (stopped when `cancel` is set), and gives the tracer back.
fn run_traced(
    state: &State,
    hashes: &(impl BlockHashes + ?Sized),
    ctx: &BlockContext,
    tx: TxEnv,
    tracer: AccessListInspector,
    cancel: &AtomicBool,
) -> Result<(ExecutionResult, AccessListInspector)> {
    let db = WrapDatabaseRef(StateDb { state, hashes });
    let mut block = ctx.env();
    // As geth's eth_call: a call without a gas price is not held to the base fee.
    block.basefee = 0;
    let mut evm = Context::mainnet()
        .with_db(db)
        .with_block(block)
        .modify_cfg_chained(|cfg| {
            cfg.set_spec_and_mainnet_gas_params(SPEC);
            cfg.chain_id = ctx.chain_id;
            cfg.disable_nonce_check = true;
        })
        .build_mainnet_with_inspector((tracer, Interrupt { cancel, steps: 0 }))
        .with_precompiles(IotPrecompiles::new(SPEC));
    let out = evm
        .inspect_tx(tx.clone())
        .map_err(|e| evm_error(state, &tx, ctx, e))?;
    Ok((out.result, evm.inspector.0))
}
