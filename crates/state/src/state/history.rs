//! Going back a block: what a block overwrote, as it was before ([`StateUndo`]), and a state
//! turned back by it ([`State::revert`]). The node keeps one undo per recent block, so the
//! state at an older block is the committed state reverted block by block, and its root
//! (rehashed only along the reverted paths) can be checked against that block's header.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_primitives::{Address, U256};
use iotchain_reading::DeviceAddress;

use super::{State, StateRecords, owner_key};
use crate::{Account, DeviceRecord, OwnerRecord, StreamAccumulator, accumulator_key};

/// The records a block changed, with the values they had before it: applied to the state
/// after the block by [`State::revert`], it gives the state before the block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateUndo {
    /// Device records; `None` for a device the block registered.
    pub devices: Vec<(DeviceAddress, Option<Arc<DeviceRecord>>)>,
    /// Owner records; `None` for an owner the block created.
    pub owners: Vec<(Address, Option<OwnerRecord>)>,
    /// Accounts; `None` for an account the block created.
    pub accounts: Vec<(Address, Option<Account>)>,
    /// Storage slots: `(account, slot, value before)`, zero for a slot the block set first.
    /// Every slot of an account the block wiped or deleted is here.
    pub storage: Vec<(Address, U256, U256)>,
    /// Each changed device's stream accumulators; empty for a device that had none.
    pub accumulators: Vec<(DeviceAddress, Arc<Vec<StreamAccumulator>>)>,
}

impl StateUndo {
    /// The undo of a block whose changed records are `changed`, applied to `before` (the
    /// state of its parent).
    pub fn of(before: &State, changed: &StateRecords) -> Self {
        let mut storage: BTreeMap<(Address, U256), U256> = BTreeMap::new();
        let cleared = changed.wiped.iter().chain(
            changed
                .accounts
                .iter()
                .filter(|(_, a)| a.is_none())
                .map(|(a, _)| a),
        );
        for a in cleared {
            for (slot, value) in before.storage.get(a).into_iter().flatten() {
                storage.insert((*a, *slot), *value);
            }
        }
        for (a, slot, _) in &changed.storage {
            storage
                .entry((*a, *slot))
                .or_insert_with(|| before.storage_slot(a, slot));
        }
        Self {
            devices: changed
                .devices
                .iter()
                .map(|d| (d.address, before.devices.get(&d.address).cloned()))
                .collect(),
            owners: changed
                .owners
                .iter()
                .map(|(a, _)| (*a, before.owners.get(a).cloned()))
                .collect(),
            accounts: changed
                .accounts
                .iter()
                .map(|(a, _)| (*a, before.accounts.get(a).copied()))
                .collect(),
            storage: storage.into_iter().map(|((a, s), v)| (a, s, v)).collect(),
            accumulators: changed
                .accumulators
                .iter()
                .map(|(a, _)| (*a, before.accumulators.get(a).cloned().unwrap_or_default()))
                .collect(),
        }
    }

    /// Whether the block changed nothing.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.owners.is_empty()
            && self.accounts.is_empty()
            && self.storage.is_empty()
            && self.accumulators.is_empty()
    }
}

impl State {
    /// Turns this state back by one block's undo. Call [`State::root`] after the last undo
    /// to fold the changes into the tries (only the reverted paths are rehashed).
    pub fn revert(&mut self, undo: &StateUndo) {
        for (a, accs) in &undo.accumulators {
            // The leaves of streams the block opened go; the others are rewritten below.
            if let Some(now) = self.accumulators.get(a) {
                for acc in now.iter() {
                    if !accs.iter().any(|p| p.stream == acc.stream) {
                        self.pending_trie
                            .insert(accumulator_key(a, &acc.stream), None);
                    }
                }
            }
            if accs.is_empty() {
                self.accumulators.remove(a);
                self.dirty_accumulators.remove(a);
            } else {
                self.accumulators.insert(*a, accs.clone());
                self.dirty_accumulators.insert(*a);
            }
        }
        for (a, d) in &undo.devices {
            match d {
                Some(d) => {
                    self.devices.insert(*a, d.clone());
                }
                None => {
                    self.devices.remove(a);
                }
            }
            self.dirty_devices.insert(*a);
        }
        for (a, o) in &undo.owners {
            match o {
                Some(o) => {
                    self.owners.insert(*a, o.clone());
                    self.dirty_owners.insert(*a);
                }
                None => {
                    self.owners.remove(a);
                    self.dirty_owners.remove(a);
                    self.pending_trie.insert(owner_key(a), None);
                }
            }
        }
        for (a, account) in &undo.accounts {
            match account {
                // Restored without touching its storage: the slots come back below.
                Some(account) => {
                    self.accounts.insert(*a, *account);
                    self.dirty_accounts.insert(*a);
                }
                None => self.set_account(*a, None),
            }
        }
        for (a, slot, value) in &undo.storage {
            self.set_storage(*a, *slot, *value);
        }
    }
}
