//! Receipts of a block's Ethereum transactions and hook calls, as the store keeps them.

use alloy_primitives::B256;
use iotchain_evm::{BlockExecutor, BlockHashes, Receipt};
use iotchain_reading::DeviceAddress;
use iotchain_state::{State, StreamHead};
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

/// The key under which a block's receipts keep the ids of its hook calls (concatenated
/// 32-byte [`iotchain_evm::hook_call_id`]s, in call order).
pub fn hooks_key(height: u64) -> B256 {
    let mut buf = [0u8; 22];
    buf[..14].copy_from_slice(b"iotchain-hooks");
    buf[14..].copy_from_slice(&height.to_be_bytes());
    alloy_primitives::keccak256(buf)
}

/// Splits the value stored under [`hooks_key`] into hook call ids.
pub fn hook_ids_of(value: &[u8]) -> Vec<B256> {
    value.chunks_exact(32).map(B256::from_slice).collect()
}

/// Receipts of the block being executed: Ethereum transactions first, in order, then the
/// hook calls.
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
        executor: &mut BlockExecutor<'_, H>,
        state: &mut State,
        calls: &[(DeviceAddress, StreamHead)],
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
