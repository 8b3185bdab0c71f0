//! Block hashes for the `BLOCKHASH` opcode: final ones from the store, uncommitted ones from
//! the branch being built on.

use alloy_primitives::B256;
use iotchain_evm::BlockHashes;
use iotchain_storage::ChainStore;

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
