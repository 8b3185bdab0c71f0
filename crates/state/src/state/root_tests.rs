//! The incremental root against a root built from scratch, over random changes to devices,
//! accumulators, owners, accounts and storage, across blocks and restarts from the stored
//! records or from the stored trie nodes (pruned to random sizes between blocks); and every
//! block's undo turning the state back to the root it had before the block.

use std::collections::BTreeMap;

use alloy_trie::{HashBuilder, Nibbles};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};
use proptest::prelude::*;

use super::*;
use crate::{account::storage_root, accumulator_key, trie::MemNodes};

/// The root as the state computed it before the tries were incremental: every leaf, sorted,
/// through alloy-trie's `HashBuilder`, with each storage root likewise.
fn from_scratch(s: &State) -> B256 {
    let mut leaves: BTreeMap<B256, Vec<u8>> = BTreeMap::new();
    for d in s.devices.values() {
        leaves.insert(device_key(&d.address), d.encode_rlp());
    }
    for (a, accs) in &s.accumulators {
        for acc in accs.iter() {
            leaves.insert(accumulator_key(a, &acc.stream), acc.trie_value());
        }
    }
    for (a, o) in &s.owners {
        leaves.insert(owner_key(a), alloy_rlp::encode(o));
    }
    for (a, account) in &s.accounts {
        let root = storage_root(s.storage.get(a).into_iter().flatten());
        leaves.insert(keccak256(a), account.trie_value(root));
    }
    let mut hb = HashBuilder::default();
    for (k, v) in &leaves {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    hb.root()
}

/// What the chain store keeps: the changed records of each block, applied as the store does.
#[derive(Default)]
struct Store {
    devices: BTreeMap<DeviceAddress, DeviceRecord>,
    owners: BTreeMap<Address, OwnerRecord>,
    accounts: BTreeMap<Address, Account>,
    storage: BTreeMap<(Address, U256), U256>,
    accumulators: BTreeMap<DeviceAddress, Vec<StreamAccumulator>>,
    nodes: Arc<MemNodes>,
}

impl Store {
    fn apply(&mut self, r: StateRecords) {
        for d in r.devices {
            self.devices.insert(d.address, d);
        }
        self.owners.extend(r.owners);
        for a in r.wiped {
            self.storage.retain(|(x, _), _| *x != a);
        }
        for (a, acc) in r.accounts {
            match acc {
                Some(acc) => {
                    self.accounts.insert(a, acc);
                }
                None => {
                    self.accounts.remove(&a);
                    self.storage.retain(|(x, _), _| *x != a);
                }
            }
        }
        for (a, slot, v) in r.storage {
            if v.is_zero() {
                self.storage.remove(&(a, slot));
            } else {
                self.storage.insert((a, slot), v);
            }
        }
        self.accumulators.extend(r.accumulators);
    }

    /// Saves a clean state's changed trie nodes, as a block's commit does, and lets the
    /// state keep at most `max_resident` nodes in memory.
    fn save_nodes(&self, state: &mut State, max_resident: usize) {
        let mut nodes = self.nodes.nodes.lock().unwrap();
        for (k, v) in state.unsaved_nodes() {
            nodes.insert(k, v);
        }
        drop(nodes);
        state.saved(self.nodes.clone(), max_resident);
    }

    /// The state a node rebuilds on start.
    fn load(&self) -> State {
        State::from_records(self.devices.values().cloned(), self.owners.clone())
            .with_accounts(
                self.accounts.clone(),
                self.storage.iter().map(|((a, s), v)| (*a, *s, *v)),
                [],
            )
            .with_accumulators(self.accumulators.clone())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Register(usize),
    Reading(usize, usize),
    Account(usize, Option<u64>),
    Storage(usize, u8, u8),
    Wipe(usize),
    /// A block's commit; then at most this many trie nodes stay in memory.
    Block(usize),
    /// A restart from the records alone (`false`) or from the stored trie nodes.
    Restart(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..6usize).prop_map(Op::Register),
        6 => (0..6usize, 0..3usize).prop_map(|(d, s)| Op::Reading(d, s)),
        2 => (0..4usize, prop::option::weighted(0.8, 1..1000u64)).prop_map(|(a, b)| Op::Account(a, b)),
        4 => (0..4usize, 0..5u8, 0..3u8).prop_map(|(a, s, v)| Op::Storage(a, s, v)),
        1 => (0..4usize).prop_map(Op::Wipe),
        3 => prop::sample::select(vec![0usize, 4, 40, usize::MAX]).prop_map(Op::Block),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn incremental_root_equals_from_scratch(ops in prop::collection::vec(op(), 1..60)) {
        let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
        let genesis = Genesis::single_validator(1, 0, B256::repeat_byte(9), vec![owner.address()]);
        let signers: Vec<DeviceSigner> = (0..6u8)
            .map(|i| DeviceSigner::from_secret(KeyAlg::Ed25519, &[i + 10; 32]).unwrap())
            .collect();
        let accounts: Vec<Address> = (0..4u8).map(|i| Address::repeat_byte(i + 1)).collect();
        let mut state = State::genesis(&genesis);
        let mut store = Store::default();
        store.apply(state.changed_records());
        let mut root = state.root().unwrap();
        store.save_nodes(&mut state, usize::MAX);
        let mut previous = (state.clone(), root);
        let mut history: Vec<(B256, StateUndo)> = Vec::new();
        let (mut nonce, mut height) = (0, 1);
        for op in ops {
            match op {
                Op::Register(d) => {
                    let tx = DeviceOp::Register {
                        public_key: signers[d].public_key(),
                        model: "m".into(),
                        firmware_hash: Bytes::new(),
                        labels: vec![],
                    };
                    if state.apply_tx(&SignedTx::sign(&owner, 1, nonce, tx).unwrap(), height).is_ok() {
                        nonce += 1;
                    }
                }
                Op::Reading(d, stream) => {
                    let a = signers[d].address();
                    let Some(seq) = state.device(&a).map(|r| r.last_seq.map_or(0, |s| s + 1)) else {
                        continue;
                    };
                    let id = keccak256([d as u8, seq as u8, stream as u8]);
                    state.apply_reading(&a, 0, seq, seq * 10, id).unwrap();
                    let name = format!("s{stream}");
                    let head = StreamHead { stream: name.as_str(), seq, ts: seq * 10, id, value: Some(alloy_primitives::I256::try_from(seq).unwrap()) };
                    state.record_stream(&a, &head);
                    state.accumulate(&a, &name, id, (seq, seq * 10), LeafPlace { height, block_time_ms: height * 1000 });
                }
                Op::Account(a, balance) => {
                    state.set_account(accounts[a], balance.map(|b| Account::with_balance(U256::from(b))));
                }
                Op::Storage(a, slot, value) => {
                    if state.account(&accounts[a]).is_none() {
                        state.set_account(accounts[a], Some(Account::with_balance(U256::from(1))));
                    }
                    state.set_storage(accounts[a], U256::from(slot), U256::from(value));
                }
                Op::Wipe(a) => state.wipe_storage(accounts[a]),
                Op::Block(max_resident) => {
                    let changed = state.changed_records();
                    history.push((previous.1, StateUndo::of(&previous.0, &changed)));
                    store.apply(changed);
                    root = state.root().unwrap();
                    prop_assert_eq!(root, from_scratch(&state));
                    prop_assert!(state.is_clean());
                    store.save_nodes(&mut state, max_resident);
                    prop_assert_eq!(state.root().unwrap(), root);
                    // The previous block's state, a copy sharing nodes with this one, kept its
                    // root through this block's changes.
                    prop_assert_eq!(previous.0.trie.root(), previous.1);
                    previous = (state.clone(), root);
                    height += 1;
                }
                Op::Restart(stored) => {
                    // Unfinished changes are lost, as in a crash before the block's commit.
                    state = store.load();
                    if stored {
                        state = state.with_stored_tries(store.nodes.clone(), root);
                    }
                    prop_assert_eq!(state.root().unwrap(), root);
                }
            }
        }
        // Back from the last block, one undo at a time: each block's parent state, root and
        // all, as a node answers a query at an older block.
        let mut back = previous.0.clone();
        for (before, undo) in history.iter().rev() {
            back.revert(undo);
            prop_assert_eq!(back.root().unwrap(), *before);
            prop_assert_eq!(from_scratch(&back), *before);
        }
        store.apply(state.changed_records());
        let root = state.root().unwrap();
        prop_assert_eq!(root, from_scratch(&state));
        prop_assert_eq!(store.load().root().unwrap(), root);
    }
}
