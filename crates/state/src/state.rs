//! The state and its transition rules.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use iotchain_block::{DeviceOp, Genesis, NewDevice, SignedTx};
use iotchain_reading::DeviceAddress;

use crate::{
    Account, DeviceRecord, DeviceStatus, Gap, Hook, MAX_OPEN_GAPS, MAX_STREAMS, OwnerRecord,
    Result, StateError, StreamAccumulator, StreamHead,
    account::code_hash,
    trie::{NodeSource, Trie},
};

mod accumulators;
pub use accumulators::LeafPlace;
pub use history::StateUndo;

/// Trie key prefix of device records.
const DEVICE_PREFIX: u8 = 0x01;
/// Trie key prefix of owner records.
const OWNER_PREFIX: u8 = 0x02;
/// Trie key prefix of the manufacturers genesis authorises chain-wide.
const MANUFACTURER_PREFIX: u8 = 0x03;

/// Device, owner and account records, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateRecords {
    /// Device records.
    pub devices: Vec<DeviceRecord>,
    /// Owner records.
    pub owners: Vec<(Address, OwnerRecord)>,
    /// Accounts; `None` for an account that was deleted (its storage is wiped too).
    pub accounts: Vec<(Address, Option<Account>)>,
    /// Accounts whose whole storage is cleared before `storage` is applied.
    pub wiped: Vec<Address>,
    /// Storage slots: `(account, slot, value)`; a zero value deletes the slot.
    pub storage: Vec<(Address, U256, U256)>,
    /// Contract code by hash.
    pub code: Vec<(B256, Bytes)>,
    /// Stream accumulators, all of a device's at once.
    pub accumulators: Vec<(DeviceAddress, Vec<StreamAccumulator>)>,
}

/// An EIP-1186 proof of one account and some of its storage slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account, if it exists.
    pub account: Option<Account>,
    /// The root of its storage trie.
    pub storage_root: B256,
    /// Trie nodes from the state root to the account's leaf (or to where it would be).
    pub proof: Vec<Bytes>,
    /// For each requested slot: the slot, its value and the storage-trie nodes to it.
    pub storage: Vec<(U256, U256, Vec<Bytes>)>,
}

/// Longest stream name a hook may name.
pub const MAX_STREAM_NAME: usize = 64;

/// What applying a reading did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedReading {
    /// The seq values skipped before this reading (a gap it opened), if any.
    pub gap: Option<Gap>,
    /// The reading filled a seq of an open gap (it came after a later reading).
    pub filled: bool,
}

/// Device registry, owners, reading heads and Ethereum accounts, with one Merkle Patricia
/// trie root.
///
/// Trie keys are `keccak256(0x01 ‖ device address)` for devices,
/// `keccak256(0x02 ‖ owner address)` for owners (values: the records' RLP) and, as in
/// Ethereum, `keccak256(address)` for accounts (value: `[nonce, balance, storage_root,
/// code_hash]`, with each account's storage in its own trie).
///
/// Records that change often and are large (devices, their accumulators) are held by `Arc`,
/// so a copy of the state (a snapshot, a block's state built on its parent's) shares them
/// and a change copies only the record it changes. The tries are incremental ([`Trie`]): a
/// block rehashes only the paths it changed.
#[derive(Debug, Clone, Default)]
pub struct State {
    devices: OrdMap<DeviceAddress, Arc<DeviceRecord>>,
    owners: OrdMap<Address, OwnerRecord>,
    /// Manufacturers authorised chain-wide (by genesis).
    manufacturers: OrdSet<Address>,
    accounts: OrdMap<Address, Account>,
    storage: OrdMap<Address, OrdMap<U256, U256>>,
    code: OrdMap<B256, Bytes>,
    /// Each device's stream accumulators, by stream name.
    accumulators: OrdMap<DeviceAddress, Arc<Vec<StreamAccumulator>>>,
    /// The state trie, brought up to date lazily from `dirty_*` by [`State::root`].
    trie: Trie,
    /// Each account's storage trie, likewise.
    storage_tries: OrdMap<Address, Trie>,
    dirty_devices: OrdSet<DeviceAddress>,
    dirty_accumulators: OrdSet<DeviceAddress>,
    dirty_owners: OrdSet<Address>,
    dirty_accounts: OrdSet<Address>,
    dirty_slots: OrdSet<(Address, U256)>,
    wiped: OrdSet<Address>,
    new_code: OrdSet<B256>,
    /// Changes made to the state trie directly (manufacturers, leaves a revert removes),
    /// folded in first by [`State::root`].
    pending_trie: OrdMap<B256, Option<Vec<u8>>>,
    /// Accounts whose storage trie changed since it was last saved.
    unsaved_storage: OrdSet<Address>,
    /// Where the saved tries' nodes are read from, when the state is backed by a store.
    nodes: Option<Arc<dyn NodeSource>>,
}

/// How deep a pruned trie stays in memory: the root and two levels of branches (at most
/// 273 nodes), which every path crosses.
const KEPT_DEPTH: usize = 3;

fn device_key(a: &DeviceAddress) -> B256 {
    let mut buf = [0u8; 21];
    buf[0] = DEVICE_PREFIX;
    buf[1..].copy_from_slice(&a.0);
    keccak256(buf)
}

fn owner_key(a: &Address) -> B256 {
    prefixed_key(OWNER_PREFIX, a)
}

fn manufacturer_key(a: &Address) -> B256 {
    prefixed_key(MANUFACTURER_PREFIX, a)
}

fn prefixed_key(prefix: u8, a: &Address) -> B256 {
    let mut buf = [0u8; 21];
    buf[0] = prefix;
    buf[1..].copy_from_slice(a.as_slice());
    keccak256(buf)
}

impl State {
    /// The state at genesis: the authorised owners, the allocated balances, no devices.
    pub fn genesis(genesis: &Genesis) -> Self {
        let mut state = Self::from_records(
            [],
            genesis.owners.iter().map(|o| (*o, OwnerRecord::default())),
        );
        for (address, balance) in &genesis.alloc {
            state.set_account(*address, Some(Account::with_balance(*balance)));
        }
        state.with_manufacturers(genesis.manufacturers.iter().copied())
    }

    /// Adds the manufacturers genesis authorises chain-wide (each a trie leaf
    /// `keccak256(0x03 ‖ address)` → `0x01`); a rebuilt state takes them from genesis again.
    pub fn with_manufacturers(mut self, manufacturers: impl IntoIterator<Item = Address>) -> Self {
        for m in manufacturers {
            if self.manufacturers.insert(m).is_none() {
                self.pending_trie
                    .insert(manufacturer_key(&m), Some(alloy_rlp::encode(1u8)));
            }
        }
        self
    }

    /// Whether `owner`'s registrations may carry certificates of `manufacturer`.
    pub fn trusts_manufacturer(&self, owner: &Address, manufacturer: &Address) -> bool {
        self.manufacturers.contains(manufacturer)
            || self
                .owners
                .get(owner)
                .is_some_and(|o| o.trusts(manufacturer))
    }

    /// Rebuilds a state from stored records.
    pub fn from_records(
        devices: impl IntoIterator<Item = DeviceRecord>,
        owners: impl IntoIterator<Item = (Address, OwnerRecord)>,
    ) -> Self {
        let mut state = Self::default();
        for d in devices {
            state.dirty_devices.insert(d.address);
            state.devices.insert(d.address, Arc::new(d));
        }
        for (a, o) in owners {
            state.dirty_owners.insert(a);
            state.owners.insert(a, o);
        }
        state
    }

    /// Adds stored accounts, storage slots and code (to rebuild the state on start).
    pub fn with_accounts(
        mut self,
        accounts: impl IntoIterator<Item = (Address, Account)>,
        storage: impl IntoIterator<Item = (Address, U256, U256)>,
        code: impl IntoIterator<Item = (B256, Bytes)>,
    ) -> Self {
        self.put_accounts(
            accounts.into_iter().map(|(a, account)| (a, Some(account))),
            storage,
            code,
        );
        self
    }

    /// Sets accounts (`None` deletes one), storage slots and code.
    fn put_accounts(
        &mut self,
        accounts: impl IntoIterator<Item = (Address, Option<Account>)>,
        storage: impl IntoIterator<Item = (Address, U256, U256)>,
        code: impl IntoIterator<Item = (B256, Bytes)>,
    ) {
        for (a, account) in accounts {
            self.set_account(a, account);
        }
        for (a, slot, value) in storage {
            self.set_storage(a, slot, value);
        }
        for (_, c) in code {
            self.insert_code(c);
        }
    }

    /// An account, if it exists.
    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.accounts.get(address)
    }

    /// A storage slot of an account (zero when unset).
    pub fn storage_slot(&self, address: &Address, slot: &U256) -> U256 {
        self.storage
            .get(address)
            .and_then(|s| s.get(slot))
            .copied()
            .unwrap_or(U256::ZERO)
    }

    /// Contract code by hash.
    pub fn code(&self, hash: &B256) -> Option<&Bytes> {
        self.code.get(hash)
    }

    /// The code of an account (empty when it has none).
    pub fn account_code(&self, address: &Address) -> Bytes {
        self.accounts
            .get(address)
            .and_then(|a| self.code.get(&a.code_hash))
            .cloned()
            .unwrap_or_default()
    }

    /// Creates, updates or (with `None`) deletes an account; deleting also clears its
    /// storage.
    pub fn set_account(&mut self, address: Address, account: Option<Account>) {
        match account {
            Some(a) => {
                self.accounts.insert(address, a);
            }
            None => {
                self.accounts.remove(&address);
                self.wipe_storage(address);
            }
        }
        self.dirty_accounts.insert(address);
    }

    /// Clears an account's whole storage (a contract created anew at a used address).
    pub fn wipe_storage(&mut self, address: Address) {
        if self.storage.remove(&address).is_some() {
            self.wiped.insert(address);
            let of_account: Vec<_> = self
                .dirty_slots
                .range((address, U256::ZERO)..=(address, U256::MAX))
                .copied()
                .collect();
            for k in of_account {
                self.dirty_slots.remove(&k);
            }
        }
        self.dirty_accounts.insert(address);
    }

    /// Sets one storage slot; zero deletes it.
    pub fn set_storage(&mut self, address: Address, slot: U256, value: U256) {
        if value.is_zero() {
            if let Some(s) = self.storage.get_mut(&address) {
                s.remove(&slot);
                if s.is_empty() {
                    self.storage.remove(&address);
                }
            }
        } else {
            self.storage.entry(address).or_default().insert(slot, value);
        }
        self.dirty_slots.insert((address, slot));
        self.dirty_accounts.insert(address);
    }

    /// Stores contract code; returns its hash.
    pub fn insert_code(&mut self, code: Bytes) -> B256 {
        let hash = code_hash(&code);
        if !code.is_empty() && !self.code.contains_key(&hash) {
            self.code.insert(hash, code);
            self.new_code.insert(hash);
        }
        hash
    }

    /// A device's record.
    pub fn device(&self, address: &DeviceAddress) -> Option<&DeviceRecord> {
        self.devices.get(address).map(|d| &**d)
    }

    /// All devices, by address.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values().map(|d| &**d)
    }

    /// Device records by address, from just after `after` (from the first without it).
    pub fn devices_after(
        &self,
        after: Option<&DeviceAddress>,
    ) -> impl Iterator<Item = &DeviceRecord> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.devices
            .range((from, Bound::Unbounded))
            .map(|(_, d)| &**d)
    }

    /// A device's record to change (copied first when a snapshot shares it).
    fn device_mut(&mut self, address: &DeviceAddress) -> Option<&mut DeviceRecord> {
        self.devices.get_mut(address).map(Arc::make_mut)
    }

    /// An owner's record, if the owner is authorised.
    pub fn owner(&self, address: &Address) -> Option<&OwnerRecord> {
        self.owners.get(address)
    }

    /// Checks that a reading signed with key version `key_version` of `device` may be
    /// accepted with `seq`: above the device's last accepted seq, or in one of its open gaps
    /// (a reading that arrives after later ones, from any node, is accepted once).
    pub fn check_reading(&self, device: &DeviceAddress, key_version: u32, seq: u64) -> Result<()> {
        let record = self
            .devices
            .get(device)
            .ok_or(StateError::UnknownDevice(*device))?;
        if record.status == DeviceStatus::Revoked {
            return Err(StateError::RevokedDevice(*device));
        }
        if record.key_version() != key_version {
            return Err(StateError::RotatedKey(*device));
        }
        if let Some(last) = record.last_seq
            && seq <= last
            && !record
                .open_gaps
                .iter()
                .any(|g| g.from <= seq && seq <= g.to)
        {
            return Err(match record.gaps_closed_through {
                Some(through) if seq <= through => StateError::GapClosed {
                    device: *device,
                    seq,
                    through,
                },
                _ => StateError::Replay {
                    device: *device,
                    seq,
                    last,
                },
            });
        }
        Ok(())
    }

    /// Checks and applies a reading: a seq above the last advances the device's `last_seq`
    /// and reading head (opening a gap when it skips seqs; seqs start at 0, so a first reading
    /// above 0 opens one below it); a seq in an open gap fills it (the head, the latest by
    /// seq, stays).
    pub fn apply_reading(
        &mut self,
        device: &DeviceAddress,
        key_version: u32,
        seq: u64,
        ts: u64,
        id: B256,
    ) -> Result<AppliedReading> {
        self.check_reading(device, key_version, seq)?;
        self.dirty_devices.insert(*device);
        let record = self.device_mut(device).expect("checked above");
        record.reading_count += 1;
        if record.last_seq.is_some_and(|last| seq <= last) {
            // In an open gap (checked above): split it around `seq`.
            let i = record
                .open_gaps
                .iter()
                .position(|g| g.from <= seq && seq <= g.to)
                .expect("checked above");
            let g = record.open_gaps.remove(i);
            if seq < g.to {
                record.open_gaps.insert(
                    i,
                    Gap {
                        from: seq + 1,
                        to: g.to,
                    },
                );
            }
            if seq > g.from {
                record.open_gaps.insert(
                    i,
                    Gap {
                        from: g.from,
                        to: seq - 1,
                    },
                );
            }
            record.missing_count = record.missing_count.saturating_sub(1);
            close_oldest_gaps(record);
            return Ok(AppliedReading {
                gap: None,
                filled: true,
            });
        }
        // Seqs start at 0: a first reading above 0 opens a gap below it too, so readings
        // acknowledged elsewhere that arrive after it are still accepted.
        let expected = record.last_seq.map_or(0, |s| s + 1);
        let gap = (seq > expected).then(|| Gap {
            from: expected,
            to: seq - 1,
        });
        if let Some(g) = gap {
            record.gap_count += 1;
            record.missing_count += g.to - g.from + 1;
            record.open_gaps.push(g);
            close_oldest_gaps(record);
        }
        record.last_seq = Some(seq);
        record.last_ts = ts;
        record.last_reading_id = id;
        Ok(AppliedReading { gap, filled: false })
    }

    /// Records `head` as the latest reading of its stream on `device` (a registered device;
    /// a device already tracking [`MAX_STREAMS`] other streams keeps them and skips this one).
    /// Takes the head by reference: a stream already tracked is updated in place, without
    /// allocating (this runs for every reading).
    pub fn record_stream(&mut self, device: &DeviceAddress, head: &StreamHead<&str>) {
        let Some(record) = self.devices.get(device) else {
            return;
        };
        let at = record
            .streams
            .binary_search_by(|h| h.stream.as_str().cmp(head.stream));
        match at {
            // The head is the latest reading by seq: one that fills an earlier gap leaves it.
            Ok(i) if record.streams[i].seq > head.seq => return,
            Err(_) if record.streams.len() >= MAX_STREAMS => return,
            _ => {}
        }
        let record = self.device_mut(device).expect("present");
        match at {
            Ok(i) => {
                let h = &mut record.streams[i];
                (h.seq, h.ts, h.id, h.value) = (head.seq, head.ts, head.id, head.value);
            }
            Err(i) => {
                record.streams.insert(
                    i,
                    StreamHead {
                        stream: head.stream.to_string(),
                        seq: head.seq,
                        ts: head.ts,
                        id: head.id,
                        value: head.value,
                    },
                );
            }
        }
        self.dirty_devices.insert(*device);
    }

    /// Makes `device`'s record what it is in `other` (for a pending view rebuilt one device
    /// at a time).
    pub fn copy_device_from(&mut self, other: &State, device: &DeviceAddress) {
        match other.devices.get(device) {
            Some(r) => {
                self.devices.insert(*device, r.clone());
            }
            None => {
                self.devices.remove(device);
            }
        }
        self.dirty_devices.insert(*device);
    }

    /// Takes the accounts, storage slots and code of `records`, changes made to another copy
    /// of this state (for a pending view that follows the committed state's accounts).
    pub fn absorb_accounts(&mut self, records: &StateRecords) {
        for a in &records.wiped {
            self.wipe_storage(*a);
        }
        self.put_accounts(
            records.accounts.iter().copied(),
            records.storage.iter().copied(),
            records.code.iter().cloned(),
        );
    }

    /// The hook on a device stream, if any.
    pub fn hook(&self, device: &DeviceAddress, stream: &str) -> Option<&Hook> {
        self.devices
            .get(device)?
            .hooks
            .iter()
            .find(|h| h.stream == stream)
    }

    /// Attaches (or replaces) the hook on a device stream for `owner`, adding `deposit` to
    /// what is left of an earlier deposit on that stream.
    pub fn attach_hook(
        &mut self,
        owner: Address,
        device: &DeviceAddress,
        stream: &str,
        contract: Address,
        gas_limit: u64,
        deposit: U256,
    ) -> Result<()> {
        self.check_hook(owner, device, stream)?;
        let record = self.device_mut(device).expect("checked");
        match record.hooks.iter_mut().find(|h| h.stream == stream) {
            Some(h) => {
                h.contract = contract;
                h.gas_limit = gas_limit;
                h.deposit = h.deposit.saturating_add(deposit);
            }
            None => {
                record.hooks.push(Hook {
                    stream: stream.to_string(),
                    contract,
                    gas_limit,
                    deposit,
                });
                record.hooks.sort_by(|a, b| a.stream.cmp(&b.stream));
            }
        }
        self.dirty_devices.insert(*device);
        Ok(())
    }

    /// Checks that `owner` may attach a hook to a stream of `device`: it owns the active
    /// device, and the stream name is a valid one.
    pub fn check_hook(&self, owner: Address, device: &DeviceAddress, stream: &str) -> Result<()> {
        let record = self.owned_active(owner, device)?;
        if stream.is_empty() || stream.len() > MAX_STREAM_NAME {
            return Err(StateError::BadStream(stream.len()));
        }
        if record.hooks.len() >= MAX_STREAMS && !record.hooks.iter().any(|h| h.stream == stream) {
            return Err(StateError::TooManyHooks(*device));
        }
        Ok(())
    }

    /// Takes `amount` from the deposit of the hook on a device stream (all that is left when
    /// it is less); returns what was taken.
    pub fn charge_hook(&mut self, device: &DeviceAddress, stream: &str, amount: U256) -> U256 {
        if self.hook(device, stream).is_none() {
            return U256::ZERO;
        }
        let hook = self
            .device_mut(device)
            .and_then(|r| r.hooks.iter_mut().find(|h| h.stream == stream))
            .expect("found above");
        let taken = amount.min(hook.deposit);
        hook.deposit -= taken;
        self.dirty_devices.insert(*device);
        taken
    }

    /// Checks and applies an owner transaction at block `height`.
    pub fn apply_tx(&mut self, tx: &SignedTx, height: u64) -> Result<()> {
        self.validate_tx(tx)?;
        self.apply_valid_op(tx.owner, &tx.op, height);
        self.owners.get_mut(&tx.owner).expect("validated").nonce += 1;
        self.dirty_owners.insert(tx.owner);
        Ok(())
    }

    /// Checks a registry operation by `owner` made from a contract call (the owner is the
    /// caller; Ethereum's account nonce, not the owner record's, orders these).
    pub fn check_op(&self, owner: Address, op: &DeviceOp) -> Result<()> {
        self.validate_op(owner, op)
    }

    /// Checks and applies a registry operation by `owner` made from a contract call.
    pub fn apply_op(&mut self, owner: Address, op: &DeviceOp, height: u64) -> Result<()> {
        self.validate_op(owner, op)?;
        self.apply_valid_op(owner, op, height);
        self.dirty_owners.insert(owner);
        Ok(())
    }

    fn apply_valid_op(&mut self, owner: Address, op: &DeviceOp, height: u64) {
        match op {
            DeviceOp::Register {
                public_key,
                model,
                firmware_hash,
                labels,
            } => {
                let device = NewDevice {
                    public_key: public_key.clone(),
                    model: model.clone(),
                    firmware_hash: firmware_hash.clone(),
                    labels: labels.clone(),
                    certificate: None,
                };
                self.register(owner, device, height);
            }
            DeviceOp::RegisterMany { devices } => {
                for d in devices {
                    self.register(owner, d.clone(), height);
                }
            }
            DeviceOp::Rotate { device, public_key } => {
                let record = self.device_mut(device).expect("validated");
                let old = std::mem::replace(&mut record.public_key, public_key.clone());
                record.previous_keys.push(old);
                self.dirty_devices.insert(*device);
            }
            DeviceOp::Revoke { device } => {
                self.device_mut(device).expect("validated").status = DeviceStatus::Revoked;
                self.dirty_devices.insert(*device);
            }
            DeviceOp::Manufacturer {
                manufacturer,
                authorised,
            } => {
                let record = self.owners.get_mut(&owner).expect("validated");
                let mut list = record.manufacturers.take().unwrap_or_default();
                match (list.binary_search(manufacturer), authorised) {
                    (Err(i), true) => list.insert(i, *manufacturer),
                    (Ok(i), false) => {
                        list.remove(i);
                    }
                    _ => {}
                }
                record.manufacturers = (!list.is_empty()).then_some(list);
            }
        }
    }

    /// Registers a (validated) new device under `owner`.
    fn register(&mut self, owner: Address, d: NewDevice, height: u64) {
        let address = d.public_key.address();
        self.devices.insert(
            address,
            Arc::new(DeviceRecord {
                address,
                owner,
                public_key: d.public_key,
                previous_keys: vec![],
                status: DeviceStatus::Active,
                model: d.model,
                firmware_hash: d.firmware_hash,
                labels: d.labels,
                registered_at: height,
                last_seq: None,
                last_ts: 0,
                last_reading_id: B256::ZERO,
                reading_count: 0,
                gap_count: 0,
                missing_count: 0,
                streams: vec![],
                hooks: vec![],
                open_gaps: vec![],
                gaps_closed_through: None,
                manufacturer: d.certificate.map(|c| c.manufacturer),
            }),
        );
        self.dirty_devices.insert(address);
        self.owners.get_mut(&owner).expect("validated").device_count += 1;
    }

    /// Checks an owner transaction: authorised owner, next nonce, and the operation's rules.
    fn validate_tx(&self, tx: &SignedTx) -> Result<()> {
        let owner = self
            .owners
            .get(&tx.owner)
            .ok_or(StateError::UnauthorisedOwner(tx.owner))?;
        if tx.nonce != owner.nonce {
            return Err(StateError::BadNonce {
                owner: tx.owner,
                got: tx.nonce,
                expected: owner.nonce,
            });
        }
        self.validate_op(tx.owner, &tx.op)
    }

    /// The record of an active device that `owner` owns.
    fn owned_active(&self, owner: Address, device: &DeviceAddress) -> Result<&DeviceRecord> {
        let record = self
            .devices
            .get(device)
            .ok_or(StateError::UnknownDevice(*device))?;
        if record.owner != owner {
            return Err(StateError::NotOwner {
                device: *device,
                owner: record.owner,
            });
        }
        if record.status == DeviceStatus::Revoked {
            return Err(StateError::RevokedDevice(*device));
        }
        Ok(record)
    }

    /// Checks an operation's rules: an authorised owner that owns the (active) device.
    fn validate_op(&self, owner: Address, op: &DeviceOp) -> Result<()> {
        if !self.owners.contains_key(&owner) {
            return Err(StateError::UnauthorisedOwner(owner));
        }
        let owned = |device: &DeviceAddress| self.owned_active(owner, device);
        match op {
            DeviceOp::Register { public_key, .. } => {
                let address = public_key.address();
                if self.devices.contains_key(&address) {
                    return Err(StateError::DeviceExists(address));
                }
            }
            DeviceOp::Rotate { device, public_key } => {
                let record = owned(device)?;
                if record.public_key == *public_key || record.previous_keys.contains(public_key) {
                    return Err(StateError::BadRotation(
                        "the new key was already used by this device".into(),
                    ));
                }
                if public_key.address() != *device
                    && self.devices.contains_key(&public_key.address())
                {
                    return Err(StateError::BadRotation(
                        "the new key belongs to another registered device".into(),
                    ));
                }
            }
            DeviceOp::Revoke { device } => {
                owned(device)?;
            }
            DeviceOp::RegisterMany { devices } => {
                let mut seen = std::collections::BTreeSet::new();
                for (index, d) in devices.iter().enumerate() {
                    let address = d.public_key.address();
                    let refused = if self.devices.contains_key(&address) || !seen.insert(address) {
                        Some(StateError::DeviceExists(address))
                    } else {
                        d.certificate
                            .filter(|c| !self.trusts_manufacturer(&owner, &c.manufacturer))
                            .map(|c| StateError::UnknownManufacturer {
                                device: address,
                                manufacturer: c.manufacturer,
                            })
                    };
                    if let Some(error) = refused {
                        return Err(StateError::InBatch {
                            index,
                            error: Box::new(error),
                        });
                    }
                }
            }
            DeviceOp::Manufacturer { .. } => {}
        }
        Ok(())
    }

    /// Records changed since the last [`State::root`] call, for persistence: call it before
    /// `root()`, which folds the changes into the trie cache.
    pub fn changed_records(&self) -> StateRecords {
        StateRecords {
            devices: self
                .dirty_devices
                .iter()
                .map(|a| DeviceRecord::clone(&self.devices[a]))
                .collect(),
            owners: self
                .dirty_owners
                .iter()
                .map(|a| (*a, self.owners[a].clone()))
                .collect(),
            accounts: self
                .dirty_accounts
                .iter()
                .map(|a| (*a, self.accounts.get(a).copied()))
                .collect(),
            wiped: self.wiped.iter().copied().collect(),
            storage: self
                .dirty_slots
                .iter()
                .map(|(a, slot)| (*a, *slot, self.storage_slot(a, slot)))
                .collect(),
            code: self
                .new_code
                .iter()
                .map(|h| (*h, self.code[h].clone()))
                .collect(),
            accumulators: self
                .dirty_accumulators
                .iter()
                .map(|a| (*a, self.accumulators[a].to_vec()))
                .collect(),
        }
    }

    /// Whether every change has been folded into the trie by [`State::root`].
    pub fn is_clean(&self) -> bool {
        self.dirty_devices.is_empty()
            && self.pending_trie.is_empty()
            && self.dirty_accumulators.is_empty()
            && self.dirty_owners.is_empty()
            && self.dirty_accounts.is_empty()
    }
}

/// Closes a record's oldest open gaps while it has more than [`MAX_OPEN_GAPS`]: their seqs
/// can no longer be accepted.
fn close_oldest_gaps(record: &mut DeviceRecord) {
    while record.open_gaps.len() > MAX_OPEN_GAPS {
        let g = record.open_gaps.remove(0);
        record.gaps_closed_through = Some(record.gaps_closed_through.map_or(g.to, |c| c.max(g.to)));
    }
}

#[cfg(test)]
mod batch_tests;
mod history;
#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod tests;
mod tries;
