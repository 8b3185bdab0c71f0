//! The node's side of the contract lane: block contexts, block hashes for `BLOCKHASH`, and
//! receipts as stored.

use alloy_primitives::{Address, B256};
use iotchain_block::Genesis;
use iotchain_evm::{BlockContext, BlockHashes, Receipt};
use iotchain_storage::{BlockGas, ChainStore};
use serde::{Deserialize, Serialize};

/// A receipt with its place in the block, as stored (among its block's receipts, by
/// transaction hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Block height.
    pub height: u64,
    /// Position among the block's Ethereum transactions.
    pub tx_index: u32,
    /// Index of its first log among the block's logs.
    pub first_log_index: u32,
}

impl StoredReceipt {
    /// JSON bytes for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("receipts serialize")
    }

    /// Decodes [`StoredReceipt::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The key under which the receipts table keeps the ids of a block's hook calls
/// (concatenated 32-byte [`iotchain_evm::hook_call_id`]s, in call order).
pub(crate) fn hooks_key(height: u64) -> B256 {
    let mut buf = [0u8; 22];
    buf[..14].copy_from_slice(b"iotchain-hooks");
    buf[14..].copy_from_slice(&height.to_be_bytes());
    alloy_primitives::keccak256(buf)
}

/// The ids of the hook calls a block made, in order.
pub(crate) fn hook_ids(store: &ChainStore, height: u64) -> iotchain_storage::Result<Vec<B256>> {
    Ok(store
        .receipts_in(height, &[hooks_key(height)])?
        .pop()
        .flatten()
        .unwrap_or_default()
        .chunks_exact(32)
        .map(B256::from_slice)
        .collect())
}

/// Receipts of the block being built or verified: Ethereum transactions first, in order,
/// then the hook calls.
#[derive(Debug, Default)]
pub(crate) struct BlockReceipts {
    /// (hash, encoded [`StoredReceipt`]), plus the hook index entry once hooks ran.
    pub(crate) encoded: Vec<(B256, Vec<u8>)>,
    /// The ids of the hook calls made.
    pub(crate) hook_calls: Vec<B256>,
    log_count: u32,
    count: u32,
}

impl BlockReceipts {
    /// Adds a receipt of the block at `height`.
    pub(crate) fn push(&mut self, height: u64, receipt: Receipt) {
        let stored = StoredReceipt {
            height,
            tx_index: self.count,
            first_log_index: self.log_count,
            receipt,
        };
        self.count += 1;
        self.log_count += stored.receipt.logs.len() as u32;
        self.encoded.push((stored.receipt.tx_hash, stored.encode()));
    }

    /// Calls the hooks of `calls` (readings of hooked streams, in block order) after the
    /// block's items, and records their receipts and the block's hook index.
    pub(crate) fn run_hooks<H: BlockHashes + ?Sized>(
        &mut self,
        executor: &mut iotchain_evm::BlockExecutor<'_, H>,
        state: &mut iotchain_state::State,
        calls: &[(iotchain_reading::DeviceAddress, iotchain_state::StreamHead)],
        height: u64,
    ) {
        let mut ids = Vec::new();
        for (device, head) in calls {
            if let Some(receipt) = executor.run_hook(state, device, head) {
                ids.extend_from_slice(receipt.tx_hash.as_slice());
                self.hook_calls.push(receipt.tx_hash);
                self.push(height, receipt);
            }
        }
        if !ids.is_empty() {
            self.encoded.push((hooks_key(height), ids));
        }
    }
}

/// Block hashes from the chain store, for heights below the block being executed (the 256
/// most recent, as the `BLOCKHASH` opcode allows).
pub(crate) struct StoreHashes<'a> {
    pub(crate) store: &'a ChainStore,
    pub(crate) number: u64,
    /// Blocks between the last final block and `number`, not yet in the store.
    pub(crate) branch: &'a [(u64, B256)],
}

impl BlockHashes for StoreHashes<'_> {
    fn block_hash(&self, number: u64) -> B256 {
        if number >= self.number || self.number - number > 256 {
            return B256::ZERO;
        }
        if let Some((_, hash)) = self.branch.iter().find(|(n, _)| *n == number) {
            return *hash;
        }
        self.store
            .header(number)
            .ok()
            .flatten()
            .map(|h| h.hash())
            .unwrap_or_default()
    }
}

/// The base fee of the block after a block with `parent` gas figures.
pub(crate) fn next_base_fee(genesis: &Genesis, parent: BlockGas) -> u64 {
    iotchain_evm::next_base_fee(
        parent.base_fee,
        parent.gas_used,
        genesis.params.block_gas_limit,
        genesis.params.min_base_fee,
    )
}

/// The execution context of a block at `height` on `parent_hash`, proposed by `proposer`.
pub(crate) fn block_context(
    genesis: &Genesis,
    height: u64,
    timestamp_ms: u64,
    parent_hash: B256,
    proposer: &B256,
    base_fee: u64,
) -> BlockContext {
    BlockContext {
        chain_id: genesis.chain_id,
        number: height,
        timestamp: timestamp_ms / 1000,
        beneficiary: fee_recipient(genesis, proposer),
        base_fee,
        gas_limit: genesis.params.block_gas_limit,
        prevrandao: parent_hash,
    }
}

fn fee_recipient(genesis: &Genesis, proposer: &B256) -> Address {
    genesis.fee_recipient(proposer)
}
