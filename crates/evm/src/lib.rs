//! The iotchain contract lane: Ethereum transactions executed by revm against the one
//! authenticated state.
//!
//! An Ethereum transaction (legacy with EIP-155, EIP-2930 or EIP-1559, secp256k1) is decoded
//! and its sender recovered once ([`EthTx::decode`]), then executed by a [`BlockExecutor`]
//! directly against an [`iotchain_state::State`]: revm reads accounts, code and storage from
//! it and its changes are written back into it, so the device registry and the accounts stay
//! under one state root. Fees follow EIP-1559: the base fee ([`next_base_fee`]) is burned, the
//! priority fee goes to the proposer's fee recipient.

mod error;
mod execute;
mod fees;
mod tx;

pub use error::{EvmError, Result};
pub use execute::{
    BlockContext, BlockExecutor, BlockHashes, CallOutcome, CallRequest, Receipt, call, estimate_gas,
};
pub use fees::next_base_fee;
pub use tx::{EthTx, key_address, sign_tx};

/// The hard fork whose rules the EVM follows.
pub const SPEC: revm::primitives::hardfork::SpecId = revm::primitives::hardfork::SpecId::PRAGUE;
