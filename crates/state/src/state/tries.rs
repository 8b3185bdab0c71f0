//! The state's tries: folding changes into them ([`State::root`]), saving their changed
//! nodes with a block and bounding what stays in memory, starting from a stored root, and
//! EIP-1186 proofs.

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256, keccak256};
use imbl::{OrdMap, OrdSet};

use super::{AccountProof, KEPT_DEPTH, State, device_key, owner_key};
use crate::{
    account::storage_key,
    accumulator_key,
    trie::{NodeSource, Trie, TrieError},
};

impl State {
    /// The state root: an Ethereum-compatible Merkle Patricia trie root over all records.
    /// Folds the changes since the last call into the tries and rehashes only their paths.
    /// Fails only when a saved node cannot be read from the store.
    pub fn root(&mut self) -> std::result::Result<B256, TrieError> {
        for (key, value) in std::mem::take(&mut self.pending_trie) {
            match value {
                Some(v) => self.trie.insert(key.as_slice(), v)?,
                None => {
                    self.trie.remove(key.as_slice())?;
                }
            }
        }
        for a in std::mem::take(&mut self.dirty_devices) {
            let key = device_key(&a);
            match self.devices.get(&a) {
                Some(d) => self.trie.insert(key.as_slice(), d.encode_rlp())?,
                None => {
                    self.trie.remove(key.as_slice())?;
                }
            }
        }
        for a in std::mem::take(&mut self.dirty_accumulators) {
            for acc in self.accumulators[&a].iter() {
                self.trie.insert(
                    accumulator_key(&a, &acc.stream).as_slice(),
                    acc.trie_value(),
                )?;
            }
        }
        for a in std::mem::take(&mut self.dirty_owners) {
            self.trie.insert(
                owner_key(&a).as_slice(),
                alloy_rlp::encode(&self.owners[&a]),
            )?;
        }
        for a in std::mem::take(&mut self.wiped) {
            self.storage_tries.insert(a, Trie::new());
            self.unsaved_storage.insert(a);
        }
        for (a, slot) in std::mem::take(&mut self.dirty_slots) {
            let value = self.storage_slot(&a, &slot);
            let key = storage_key(slot);
            let trie = self.storage_trie_mut(a)?;
            if value.is_zero() {
                trie.remove(key.as_slice())?;
            } else {
                trie.insert(key.as_slice(), alloy_rlp::encode(value))?;
            }
            self.unsaved_storage.insert(a);
        }
        self.new_code.clear();
        for a in std::mem::take(&mut self.dirty_accounts) {
            let key = keccak256(a);
            match self.accounts.get(&a) {
                Some(account) => {
                    let value = account.trie_value(self.storage_root(&a)?);
                    self.trie.insert(key.as_slice(), value)?;
                }
                None => {
                    self.storage_tries.insert(a, Trie::new());
                    self.trie.remove(key.as_slice())?;
                }
            }
        }
        Ok(self.trie.root())
    }

    /// An account's storage trie, loaded (as a reference to its stored root) when it is not
    /// in memory.
    fn storage_trie_mut(&mut self, address: Address) -> std::result::Result<&mut Trie, TrieError> {
        if !self.storage_tries.contains_key(&address) {
            let trie = self.stored_storage_trie(&address)?;
            self.storage_tries.insert(address, trie);
        }
        Ok(self
            .storage_tries
            .get_mut(&address)
            .expect("inserted above"))
    }

    /// An account's storage trie as the state trie's leaf of the account has it: the root
    /// it names, in the store (empty for a state all in memory, which keeps every storage
    /// trie in `storage_tries`).
    fn stored_storage_trie(&self, address: &Address) -> std::result::Result<Trie, TrieError> {
        let Some(nodes) = &self.nodes else {
            return Ok(Trie::new());
        };
        let root = match self.trie.get(keccak256(address).as_slice())? {
            None => alloy_trie::EMPTY_ROOT_HASH,
            Some(leaf) => alloy_rlp::Decodable::decode(&mut leaf.as_slice())
                .map(|a: alloy_trie::TrieAccount| a.storage_root)
                .map_err(|e| TrieError {
                    trie: "state trie".into(),
                    path: format!("account {address}"),
                    reason: format!("undecodable account leaf: {e}"),
                })?,
        };
        Ok(Trie::stored(root, nodes.clone(), Some(*address)))
    }

    /// The root of an account's storage trie as of the last [`State::root`].
    fn storage_root(&self, address: &Address) -> std::result::Result<B256, TrieError> {
        match self.storage_tries.get(address) {
            Some(t) => Ok(t.root()),
            None => Ok(self.stored_storage_trie(address)?.root()),
        }
    }

    /// The trie nodes changed since they were saved, as `(store key, encoding)`, for the
    /// block's commit (the state must be clean: [`State::root`] first).
    pub fn unsaved_nodes(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.trie.unsaved(|path, node| {
            out.push((crate::trie::node_key(None, path), node));
        });
        for a in &self.unsaved_storage {
            if let Some(t) = self.storage_tries.get(a) {
                t.unsaved(|path, node| {
                    out.push((crate::trie::node_key(Some(a), path), node));
                });
            }
        }
        out
    }

    /// Records that [`State::unsaved_nodes`] are in the store, reads the nodes not in memory
    /// from `nodes` (the store's version with them) from now on, and drops from memory the
    /// nodes below the top levels once more than `max_resident` are in it.
    pub fn saved(&mut self, nodes: Arc<dyn NodeSource>, max_resident: usize) {
        self.trie.mark_saved();
        for a in std::mem::take(&mut self.unsaved_storage) {
            if let Some(t) = self.storage_tries.get_mut(&a) {
                t.mark_saved();
            }
        }
        self.trie.set_source(nodes.clone(), None);
        // The estimate only grows; count exactly before dropping anything.
        if self.trie.resident() > max_resident && self.trie.recount() > max_resident {
            self.trie.prune(KEPT_DEPTH);
        }
        let mut in_storage: usize = self.storage_tries.values().map(Trie::resident).sum();
        if in_storage > max_resident / 4 {
            in_storage = 0;
            self.storage_tries = std::mem::take(&mut self.storage_tries)
                .into_iter()
                .map(|(a, mut t)| {
                    in_storage += t.recount();
                    (a, t)
                })
                .collect();
        }
        if in_storage > max_resident / 4 {
            // Each is loaded again, from its root in the account's leaf, when it is needed.
            self.storage_tries.clear();
        } else {
            self.storage_tries = std::mem::take(&mut self.storage_tries)
                .into_iter()
                .map(|(a, mut t)| {
                    t.set_source(nodes.clone(), Some(a));
                    (a, t)
                })
                .collect();
        }
        self.nodes = Some(nodes);
    }

    /// About how many trie nodes this state holds in memory (the state trie's and the storage
    /// tries'): an overestimate that [`State::saved`] brings back under its bound.
    pub fn resident_nodes(&self) -> usize {
        self.trie.resident()
            + self
                .storage_tries
                .values()
                .map(Trie::resident)
                .sum::<usize>()
    }

    /// Reads the state trie's root node from the store and checks it against the root (for
    /// a state over stored tries; a state all in memory has nothing to read).
    pub fn check_stored(&self) -> std::result::Result<(), TrieError> {
        self.trie.get(&[0; 32]).map(|_| ())
    }

    /// This state's records over the tries saved in `nodes` under `root` (a restart): the
    /// changes the constructors recorded are dropped, and nothing is loaded until a change
    /// or a proof reaches it.
    pub fn with_stored_tries(mut self, nodes: Arc<dyn NodeSource>, root: B256) -> Self {
        self.trie = Trie::stored(root, nodes.clone(), None);
        self.storage_tries = OrdMap::new();
        self.dirty_devices = OrdSet::new();
        self.dirty_accumulators = OrdSet::new();
        self.dirty_owners = OrdSet::new();
        self.dirty_accounts = OrdSet::new();
        self.dirty_slots = OrdSet::new();
        self.wiped = OrdSet::new();
        self.new_code = OrdSet::new();
        self.pending_trie = OrdMap::new();
        self.unsaved_storage = OrdSet::new();
        self.nodes = Some(nodes);
        self
    }

    /// An EIP-1186 proof of `address` and `slots` against [`State::root`]. The state must be
    /// clean (see [`State::is_clean`]): the committed state always is.
    pub fn account_proof(
        &self,
        address: &Address,
        slots: &[U256],
    ) -> std::result::Result<AccountProof, TrieError> {
        debug_assert!(self.is_clean(), "proof of a state with unfolded changes");
        let proof = self.trie.proof(keccak256(address).as_slice())?;
        let stored;
        let storage_trie = match self.storage_tries.get(address) {
            Some(t) => t,
            None => {
                stored = self.stored_storage_trie(address)?;
                &stored
            }
        };
        let storage = slots
            .iter()
            .map(|slot| {
                let nodes = storage_trie.proof(storage_key(*slot).as_slice())?;
                Ok((*slot, self.storage_slot(address, slot), nodes))
            })
            .collect::<std::result::Result<_, TrieError>>()?;
        Ok(AccountProof {
            account: self.accounts.get(address).copied(),
            storage_root: storage_trie.root(),
            proof,
            storage,
        })
    }
}
