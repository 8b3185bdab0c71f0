//! The environment a block executes in: its EVM context and fees, derived from the chain so
//! that the proposer building it and every validator verifying it derive the same.

use alloy_primitives::B256;
use iotchain_block::Genesis;
use iotchain_evm::BlockContext;
use iotchain_storage::BlockGas;

/// The base fee of the block after a block with `parent` gas figures.
pub fn next_base_fee(genesis: &Genesis, parent: BlockGas) -> u64 {
    iotchain_evm::next_base_fee(
        parent.base_fee,
        parent.gas_used,
        genesis.params.block_gas_limit,
        genesis.params.min_base_fee,
    )
}

/// The execution context of a block at `height` on `parent_hash`, proposed by `proposer`,
/// after a parent with `parent_gas`.
pub fn block_context(
    genesis: &Genesis,
    height: u64,
    timestamp_ms: u64,
    parent_hash: B256,
    proposer: &B256,
    parent_gas: BlockGas,
) -> BlockContext {
    BlockContext {
        chain_id: genesis.chain_id,
        number: height,
        timestamp: timestamp_ms / 1000,
        timestamp_ms,
        beneficiary: genesis.fee_recipient(proposer),
        base_fee: next_base_fee(genesis, parent_gas),
        gas_limit: genesis.params.block_gas_limit,
        prevrandao: parent_hash,
    }
}
