//! The iotchain contract lane: Ethereum transactions executed by revm against the one
//! authenticated state.
//!
//! An Ethereum transaction (legacy with EIP-155, EIP-2930 or EIP-1559, secp256k1) is decoded
//! and its sender recovered once ([`EthTx::decode`]), then executed by a [`BlockExecutor`]
//! directly against an [`iotchain_state::State`]: revm reads accounts, code and storage from
//! it and its changes are written back into it, so the device registry and the accounts stay
//! under one state root. Fees follow EIP-1559: the base fee ([`next_base_fee`]) is burned, the
//! priority fee goes to the proposer's fee recipient.
//!
//! Contracts reach the device registry and the latest readings through the IoT precompile
//! at [`IOT_ADDRESS`], and a block calls the reading hooks of the streams whose readings it
//! includes ([`BlockExecutor::run_hook`]).

mod error;
mod execute;
mod fees;
mod iot;
mod tx;

pub use error::{EvmError, Result};
pub use execute::{
    AccessListOutcome, BlockContext, BlockExecutor, BlockHashes, CallLimits, CallOutcome,
    CallRequest, QueuedSender, Receipt, call, check_next, create_access_list, estimate_gas,
    hook_call_id,
};
pub use fees::next_base_fee;
pub use iot::{IIoT, IOT_ADDRESS, IReadingHook};
pub use tx::{EthTx, key_address, sign_tx};

/// The hard fork whose rules the EVM follows.
pub const SPEC: revm::primitives::hardfork::SpecId = revm::primitives::hardfork::SpecId::PRAGUE;
