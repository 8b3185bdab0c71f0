//! The crate's error type.

use alloy_primitives::{Address, Bytes, U256};

/// Result alias for this crate.
pub type Result<T, E = EvmError> = std::result::Result<T, E>;

/// Why an Ethereum transaction or call is refused. `code()` gives a stable machine-readable
/// code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// The bytes are not an EIP-2718 transaction envelope.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The transaction is larger than the chain accepts.
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A transaction type this chain does not execute (blob, set-code).
    #[error("transaction type {0} is not supported")]
    UnsupportedType(u8),
    /// Signed for another chain, or without a chain id (pre-EIP-155).
    #[error("transaction chain id {got:?} is not this chain's {expected}")]
    WrongChainId {
        /// The chain id in the transaction, if any.
        got: Option<u64>,
        /// This chain's id.
        expected: u64,
    },
    /// The signature does not recover a sender.
    #[error("invalid transaction signature")]
    BadSignature,
    /// The nonce was already used.
    #[error("nonce too low: address {sender}, tx nonce {got}, state nonce {expected}")]
    NonceTooLow {
        /// Sender.
        sender: Address,
        /// The transaction's nonce.
        got: u64,
        /// The sender's next nonce.
        expected: u64,
    },
    /// The nonce leaves a gap after the sender's next nonce.
    #[error("nonce too high: address {sender}, tx nonce {got}, state nonce {expected}")]
    NonceTooHigh {
        /// Sender.
        sender: Address,
        /// The transaction's nonce.
        got: u64,
        /// The sender's next nonce.
        expected: u64,
    },
    /// The sender cannot pay `gas_limit × max_fee + value`.
    #[error(
        "insufficient funds for gas * price + value: address {sender} have {balance} want {cost}"
    )]
    InsufficientFunds {
        /// Sender.
        sender: Address,
        /// Its balance.
        balance: U256,
        /// What the transaction may cost.
        cost: U256,
    },
    /// The transaction's gas limit is above the block gas limit.
    #[error("exceeds block gas limit: tx gas limit {gas} above block gas limit {limit}")]
    GasAboveBlockLimit {
        /// The transaction's gas limit.
        gas: u64,
        /// The block gas limit.
        limit: u64,
    },
    /// The block has no gas left for the transaction.
    #[error("block gas limit reached: {left} gas left, the transaction needs up to {gas}")]
    BlockFull {
        /// Gas left in the block.
        left: u64,
        /// The transaction's gas limit.
        gas: u64,
    },
    /// The fee cap is below the block's base fee.
    #[error("max fee per gas less than block base fee: maxFeePerGas {max_fee}, baseFee {base_fee}")]
    FeeCapTooLow {
        /// The transaction's fee cap.
        max_fee: u128,
        /// The base fee.
        base_fee: u64,
    },
    /// The gas limit does not cover the intrinsic gas.
    #[error("intrinsic gas too low: gas {gas}, minimum needed {needed}")]
    IntrinsicGasTooLow {
        /// The transaction's gas limit.
        gas: u64,
        /// The intrinsic gas.
        needed: u64,
    },
    /// Another validity rule of the EVM failed.
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// A call (eth_call, eth_estimateGas) reverted; carries the revert data.
    #[error("execution reverted")]
    Reverted(Bytes),
    /// A call halted (out of gas, invalid opcode, …).
    #[error("execution halted: {0}")]
    Halted(String),
    /// A call ran past the node's time limit for calls (`rpc_call_timeout_ms`) and was
    /// stopped.
    #[error("execution aborted (timeout = {0} ms)")]
    Timeout(u64),
    /// A request (or a batch) used up the gas the node lets one request run
    /// (`rpc_batch_gas`).
    #[error("request exceeds the node's work budget of {0} gas; split it up")]
    BudgetExhausted(u64),
}

impl EvmError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_transaction",
            Self::TooLarge { .. } => "transaction_too_large",
            Self::UnsupportedType(_) => "unsupported_transaction_type",
            Self::WrongChainId { .. } => "wrong_chain_id",
            Self::BadSignature => "bad_signature",
            Self::NonceTooLow { .. } => "nonce_too_low",
            Self::NonceTooHigh { .. } => "nonce_too_high",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::GasAboveBlockLimit { .. } => "gas_above_block_limit",
            Self::BlockFull { .. } => "block_full",
            Self::FeeCapTooLow { .. } => "fee_cap_too_low",
            Self::IntrinsicGasTooLow { .. } => "intrinsic_gas_too_low",
            Self::Invalid(_) => "invalid_transaction",
            Self::Reverted(_) => "execution_reverted",
            Self::Halted(_) => "execution_halted",
            Self::Timeout(_) => "execution_timeout",
            Self::BudgetExhausted(_) => "work_budget_exhausted",
        }
    }
}
