//! The state and its transition rules.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, B256, keccak256};
use alloy_trie::{HashBuilder, Nibbles};
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_reading::DeviceAddress;

use crate::{DeviceRecord, DeviceStatus, OwnerRecord, Result, StateError};

/// Trie key prefix of device records.
const DEVICE_PREFIX: u8 = 0x01;
/// Trie key prefix of owner records.
const OWNER_PREFIX: u8 = 0x02;

/// A run of seq values a device skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// First missing seq.
    pub from: u64,
    /// Last missing seq (inclusive).
    pub to: u64,
}

/// Device and owner records, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateRecords {
    /// Device records.
    pub devices: Vec<DeviceRecord>,
    /// Owner records.
    pub owners: Vec<(Address, OwnerRecord)>,
}

/// What applying a reading did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedReading {
    /// The seq values skipped before this reading, if any.
    pub gap: Option<Gap>,
}

/// Device registry, owners and reading heads, with a Merkle Patricia trie root.
///
/// Trie keys are `keccak256(0x01 ‖ device address)` for devices and
/// `keccak256(0x02 ‖ owner address)` for owners; values are the records' RLP.
#[derive(Debug, Clone, Default)]
pub struct State {
    devices: BTreeMap<DeviceAddress, DeviceRecord>,
    owners: BTreeMap<Address, OwnerRecord>,
    /// Encoded trie leaves, kept up to date lazily from `dirty_*`.
    leaves: BTreeMap<B256, Vec<u8>>,
    dirty_devices: BTreeSet<DeviceAddress>,
    dirty_owners: BTreeSet<Address>,
}

fn device_key(a: &DeviceAddress) -> B256 {
    let mut buf = [0u8; 21];
    buf[0] = DEVICE_PREFIX;
    buf[1..].copy_from_slice(&a.0);
    keccak256(buf)
}

fn owner_key(a: &Address) -> B256 {
    let mut buf = [0u8; 21];
    buf[0] = OWNER_PREFIX;
    buf[1..].copy_from_slice(a.as_slice());
    keccak256(buf)
}

impl State {
    /// The state at genesis: the authorised owners, no devices.
    pub fn genesis(genesis: &Genesis) -> Self {
        Self::from_records(
            [],
            genesis.owners.iter().map(|o| (*o, OwnerRecord::default())),
        )
    }

    /// Rebuilds a state from stored records.
    pub fn from_records(
        devices: impl IntoIterator<Item = DeviceRecord>,
        owners: impl IntoIterator<Item = (Address, OwnerRecord)>,
    ) -> Self {
        let mut state = Self::default();
        for d in devices {
            state.dirty_devices.insert(d.address);
            state.devices.insert(d.address, d);
        }
        for (a, o) in owners {
            state.dirty_owners.insert(a);
            state.owners.insert(a, o);
        }
        state
    }

    /// A device's record.
    pub fn device(&self, address: &DeviceAddress) -> Option<&DeviceRecord> {
        self.devices.get(address)
    }

    /// All devices, by address.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// An owner's record, if the owner is authorised.
    pub fn owner(&self, address: &Address) -> Option<&OwnerRecord> {
        self.owners.get(address)
    }

    /// Checks that a reading signed with key version `key_version` of `device` may be
    /// accepted with `seq`.
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
        {
            return Err(StateError::Replay {
                device: *device,
                seq,
                last,
            });
        }
        Ok(())
    }

    /// Checks and applies a reading: advances the device's `last_seq` and reading head.
    pub fn apply_reading(
        &mut self,
        device: &DeviceAddress,
        key_version: u32,
        seq: u64,
        ts: u64,
        id: B256,
    ) -> Result<AppliedReading> {
        self.check_reading(device, key_version, seq)?;
        let record = self.devices.get_mut(device).expect("checked above");
        let expected = record.last_seq.map_or(0, |s| s + 1);
        let gap = (seq > expected && record.last_seq.is_some()).then(|| Gap {
            from: expected,
            to: seq - 1,
        });
        if let Some(g) = gap {
            record.gap_count += 1;
            record.missing_count += g.to - g.from + 1;
        }
        record.last_seq = Some(seq);
        record.last_ts = ts;
        record.last_reading_id = id;
        record.reading_count += 1;
        self.dirty_devices.insert(*device);
        Ok(AppliedReading { gap })
    }

    /// Checks an owner transaction against the state without applying it.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<()> {
        self.validate_tx(tx)
    }

    /// Checks and applies an owner transaction at block `height`.
    pub fn apply_tx(&mut self, tx: &SignedTx, height: u64) -> Result<()> {
        self.validate_tx(tx)?;
        match &tx.op {
            DeviceOp::Register {
                public_key,
                model,
                firmware_hash,
                labels,
            } => {
                let address = public_key.address();
                self.devices.insert(
                    address,
                    DeviceRecord {
                        address,
                        owner: tx.owner,
                        public_key: public_key.clone(),
                        previous_keys: vec![],
                        status: DeviceStatus::Active,
                        model: model.clone(),
                        firmware_hash: firmware_hash.clone(),
                        labels: labels.clone(),
                        registered_at: height,
                        last_seq: None,
                        last_ts: 0,
                        last_reading_id: B256::ZERO,
                        reading_count: 0,
                        gap_count: 0,
                        missing_count: 0,
                    },
                );
                self.dirty_devices.insert(address);
                self.owners
                    .get_mut(&tx.owner)
                    .expect("validated")
                    .device_count += 1;
            }
            DeviceOp::Rotate { device, public_key } => {
                let record = self.devices.get_mut(device).expect("validated");
                let old = std::mem::replace(&mut record.public_key, public_key.clone());
                record.previous_keys.push(old);
                self.dirty_devices.insert(*device);
            }
            DeviceOp::Revoke { device } => {
                self.devices.get_mut(device).expect("validated").status = DeviceStatus::Revoked;
                self.dirty_devices.insert(*device);
            }
        }
        self.owners.get_mut(&tx.owner).expect("validated").nonce += 1;
        self.dirty_owners.insert(tx.owner);
        Ok(())
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
        let owned = |device: &DeviceAddress| -> Result<&DeviceRecord> {
            let record = self
                .devices
                .get(device)
                .ok_or(StateError::UnknownDevice(*device))?;
            if record.owner != tx.owner {
                return Err(StateError::NotOwner {
                    device: *device,
                    owner: record.owner,
                });
            }
            if record.status == DeviceStatus::Revoked {
                return Err(StateError::RevokedDevice(*device));
            }
            Ok(record)
        };
        match &tx.op {
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
                .map(|a| self.devices[a].clone())
                .collect(),
            owners: self
                .dirty_owners
                .iter()
                .map(|a| (*a, self.owners[a].clone()))
                .collect(),
        }
    }

    /// The state root: an Ethereum-compatible Merkle Patricia trie root over all records.
    pub fn root(&mut self) -> B256 {
        for a in std::mem::take(&mut self.dirty_devices) {
            self.leaves
                .insert(device_key(&a), self.devices[&a].encode_rlp());
        }
        for a in std::mem::take(&mut self.dirty_owners) {
            self.leaves
                .insert(owner_key(&a), alloy_rlp::encode(&self.owners[&a]));
        }
        let mut hb = HashBuilder::default();
        for (k, v) in &self.leaves {
            hb.add_leaf(Nibbles::unpack(k), v);
        }
        hb.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;
    use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};

    fn setup() -> (State, OwnerKey, DeviceSigner) {
        let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
        let genesis = Genesis::single_validator(1, 0, B256::repeat_byte(9), vec![owner.address()]);
        (
            State::genesis(&genesis),
            owner,
            DeviceSigner::from_secret(KeyAlg::Ed25519, &[2; 32]).unwrap(),
        )
    }

    fn register(
        state: &mut State,
        owner: &OwnerKey,
        device: &DeviceSigner,
        nonce: u64,
    ) -> Result<()> {
        let op = DeviceOp::Register {
            public_key: device.public_key(),
            model: "m".into(),
            firmware_hash: Bytes::new(),
            labels: vec![],
        };
        state.apply_tx(&SignedTx::sign(owner, 1, nonce, op).unwrap(), 1)
    }

    #[test]
    fn registry_rules() {
        let (mut state, owner, device) = setup();
        let root0 = state.root();
        register(&mut state, &owner, &device, 0).unwrap();
        assert_ne!(state.root(), root0);
        assert_eq!(
            register(&mut state, &owner, &device, 0).unwrap_err().code(),
            "bad_nonce"
        );
        assert_eq!(
            register(&mut state, &owner, &device, 1).unwrap_err().code(),
            "device_exists"
        );
        let stranger = OwnerKey::from_secret(&[5; 32]).unwrap();
        let other = DeviceSigner::from_secret(KeyAlg::P256, &[6; 32]).unwrap();
        assert_eq!(
            register(&mut state, &stranger, &other, 0)
                .unwrap_err()
                .code(),
            "unauthorised_owner"
        );

        let a = device.address();
        state
            .apply_reading(&a, 0, 5, 10, B256::repeat_byte(1))
            .unwrap();
        assert_eq!(
            state
                .apply_reading(&a, 0, 5, 11, B256::ZERO)
                .unwrap_err()
                .code(),
            "replayed_seq"
        );
        let applied = state
            .apply_reading(&a, 0, 9, 12, B256::repeat_byte(2))
            .unwrap();
        assert_eq!(applied.gap, Some(Gap { from: 6, to: 8 }));
        assert_eq!(state.device(&a).unwrap().missing_count, 3);

        let rotate = DeviceOp::Rotate {
            device: a,
            public_key: other.public_key(),
        };
        state
            .apply_tx(&SignedTx::sign(&owner, 1, 1, rotate).unwrap(), 2)
            .unwrap();
        assert_eq!(
            state.check_reading(&a, 0, 10).unwrap_err().code(),
            "rotated_key"
        );
        state.check_reading(&a, 1, 10).unwrap();
        let revoke = DeviceOp::Revoke { device: a };
        state
            .apply_tx(&SignedTx::sign(&owner, 1, 2, revoke.clone()).unwrap(), 3)
            .unwrap();
        assert_eq!(
            state.check_reading(&a, 1, 10).unwrap_err().code(),
            "revoked_device"
        );
        assert_eq!(
            state
                .apply_tx(&SignedTx::sign(&owner, 1, 3, revoke).unwrap(), 3)
                .unwrap_err()
                .code(),
            "revoked_device"
        );
    }

    #[test]
    fn root_is_independent_of_insertion_order_and_rebuild() {
        let (mut state, owner, device) = setup();
        register(&mut state, &owner, &device, 0).unwrap();
        state
            .apply_reading(&device.address(), 0, 1, 1, B256::repeat_byte(3))
            .unwrap();
        let root = state.root();
        let (devices, owners) = {
            let mut s = state.clone();
            s.dirty_devices = s.devices.keys().copied().collect();
            s.dirty_owners = s.owners.keys().copied().collect();
            let r = s.changed_records();
            (r.devices, r.owners)
        };
        let decoded: Vec<DeviceRecord> = devices
            .iter()
            .map(|d| DeviceRecord::decode_rlp(&d.encode_rlp()).unwrap())
            .collect();
        let mut rebuilt = State::from_records(decoded, owners);
        assert_eq!(rebuilt.root(), root);
    }
}
