//! Ethereum accounts of the contract lane: balance, nonce, code and storage, and their
//! Merkle Patricia trie encodings.
//!
//! Accounts live in the same trie as the device registry, under the key Ethereum uses,
//! `keccak256(address)`, with the value Ethereum uses, the RLP of
//! `[nonce, balance, storage_root, code_hash]`. Registry records are keyed by
//! `keccak256(prefix ‖ address)` with a 21-byte preimage, so the two namespaces cannot meet,
//! and an account proof of this trie is an ordinary EIP-1186 proof.

use alloy_primitives::{B256, Bytes, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, HashBuilder, KECCAK_EMPTY, Nibbles, TrieAccount};

/// An Ethereum account (without its storage).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    alloy_rlp::RlpEncodable,
    alloy_rlp::RlpDecodable,
)]
pub struct Account {
    /// Transactions sent (or contracts created, for a contract).
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// keccak256 of the code; [`KECCAK_EMPTY`] for an account without code.
    pub code_hash: B256,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK_EMPTY,
        }
    }
}

impl Account {
    /// An account with only a balance.
    pub fn with_balance(balance: U256) -> Self {
        Self {
            balance,
            ..Self::default()
        }
    }

    /// EIP-161 emptiness: no nonce, no balance, no code.
    pub fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balance.is_zero() && self.code_hash == KECCAK_EMPTY
    }

    /// The trie leaf value: RLP of `[nonce, balance, storage_root, code_hash]`.
    pub fn trie_value(&self, storage_root: B256) -> Vec<u8> {
        alloy_rlp::encode(TrieAccount::new(
            self.nonce,
            self.balance,
            storage_root,
            self.code_hash,
        ))
    }
}

/// A storage slot's trie key: `keccak256(slot as 32 bytes)`.
pub fn storage_key(slot: U256) -> B256 {
    keccak256(B256::from(slot))
}

/// The root of one account's storage trie (values are the RLP of the non-zero word).
pub fn storage_root<'a>(slots: impl IntoIterator<Item = (&'a U256, &'a U256)>) -> B256 {
    let mut leaves: Vec<(B256, Vec<u8>)> = slots
        .into_iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(k, v)| (storage_key(*k), alloy_rlp::encode(v)))
        .collect();
    if leaves.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    leaves.sort_unstable_by_key(|(k, _)| *k);
    let mut hb = HashBuilder::default();
    for (k, v) in &leaves {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    hb.root()
}

/// Code bytes with their hash.
pub fn code_hash(code: &Bytes) -> B256 {
    if code.is_empty() {
        KECCAK_EMPTY
    } else {
        keccak256(code)
    }
}
