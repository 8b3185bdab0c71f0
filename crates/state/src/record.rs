//! Records stored in the state trie and their RLP encodings.

use alloy_primitives::{Address, B256, Bytes};
use alloy_rlp::{Decodable, RlpDecodable, RlpEncodable};
use iotchain_crypto::DevicePublicKey;
use iotchain_reading::{Alg, DeviceAddress};
use serde::Serialize;

/// Whether a device's readings are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Readings are accepted.
    Active,
    /// Revoked by its owner: readings are rejected.
    Revoked,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device address (from its first key).
    pub address: DeviceAddress,
    /// The owner account.
    pub owner: Address,
    /// The current key.
    pub public_key: DevicePublicKey,
    /// Keys the device used before, oldest first.
    pub previous_keys: Vec<DevicePublicKey>,
    /// Active or revoked.
    pub status: DeviceStatus,
    /// Model string.
    pub model: String,
    /// Firmware hash.
    pub firmware_hash: Bytes,
    /// Free-form labels.
    pub labels: Vec<(String, String)>,
    /// Height of the block that registered it.
    pub registered_at: u64,
    /// Last accepted seq, if any reading was accepted.
    pub last_seq: Option<u64>,
    /// Device timestamp of the last reading.
    pub last_ts: u64,
    /// Id of the last reading.
    pub last_reading_id: B256,
    /// Number of readings.
    pub reading_count: u64,
    /// Number of gaps (a reading whose seq skipped values).
    pub gap_count: u64,
    /// Total skipped seq values.
    pub missing_count: u64,
}

impl DeviceRecord {
    /// The key's version: 0 for the registered key, +1 per rotation.
    pub fn key_version(&self) -> u32 {
        self.previous_keys.len() as u32
    }
}

/// An authorised owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, RlpEncodable, RlpDecodable)]
pub struct OwnerRecord {
    /// Next transaction nonce.
    pub nonce: u64,
    /// Devices registered by this owner.
    pub device_count: u64,
}

#[derive(RlpEncodable, RlpDecodable)]
struct KeyRlp {
    alg: u8,
    key: Bytes,
}

#[derive(RlpEncodable, RlpDecodable)]
struct LabelRlp {
    key: String,
    value: String,
}

/// RLP shape: `[address, owner, key, previous_keys, status, model, firmware_hash, labels,
/// registered_at, has_seq, last_seq, last_ts, last_reading_id, reading_count, gap_count,
/// missing_count]`.
#[derive(RlpEncodable, RlpDecodable)]
struct DeviceRlp {
    address: Address,
    owner: Address,
    key: KeyRlp,
    previous_keys: Vec<KeyRlp>,
    status: u8,
    model: String,
    firmware_hash: Bytes,
    labels: Vec<LabelRlp>,
    registered_at: u64,
    has_seq: bool,
    last_seq: u64,
    last_ts: u64,
    last_reading_id: B256,
    reading_count: u64,
    gap_count: u64,
    missing_count: u64,
}

fn key_rlp(k: &DevicePublicKey) -> KeyRlp {
    KeyRlp {
        alg: (-k.alg().cose_value()) as u8,
        key: k.to_bytes().into(),
    }
}

fn key_from(k: KeyRlp) -> alloy_rlp::Result<DevicePublicKey> {
    let alg = Alg::from_cose(-(k.alg as i64)).ok_or(alloy_rlp::Error::Custom("bad key alg"))?;
    DevicePublicKey::from_bytes(alg, &k.key).map_err(|_| alloy_rlp::Error::Custom("bad device key"))
}

impl DeviceRecord {
    /// RLP encoding (the trie leaf value).
    pub fn encode_rlp(&self) -> Vec<u8> {
        alloy_rlp::encode(DeviceRlp {
            address: Address::from(self.address.0),
            owner: self.owner,
            key: key_rlp(&self.public_key),
            previous_keys: self.previous_keys.iter().map(key_rlp).collect(),
            status: match self.status {
                DeviceStatus::Active => 0,
                DeviceStatus::Revoked => 1,
            },
            model: self.model.clone(),
            firmware_hash: self.firmware_hash.clone(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| LabelRlp {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            registered_at: self.registered_at,
            has_seq: self.last_seq.is_some(),
            last_seq: self.last_seq.unwrap_or(0),
            last_ts: self.last_ts,
            last_reading_id: self.last_reading_id,
            reading_count: self.reading_count,
            gap_count: self.gap_count,
            missing_count: self.missing_count,
        })
    }

    /// Decodes [`DeviceRecord::encode_rlp`].
    pub fn decode_rlp(mut bytes: &[u8]) -> alloy_rlp::Result<Self> {
        let r = DeviceRlp::decode(&mut bytes)?;
        Ok(Self {
            address: DeviceAddress(r.address.0.0),
            owner: r.owner,
            public_key: key_from(r.key)?,
            previous_keys: r
                .previous_keys
                .into_iter()
                .map(key_from)
                .collect::<Result<_, _>>()?,
            status: if r.status == 0 {
                DeviceStatus::Active
            } else {
                DeviceStatus::Revoked
            },
            model: r.model,
            firmware_hash: r.firmware_hash,
            labels: r.labels.into_iter().map(|l| (l.key, l.value)).collect(),
            registered_at: r.registered_at,
            last_seq: r.has_seq.then_some(r.last_seq),
            last_ts: r.last_ts,
            last_reading_id: r.last_reading_id,
            reading_count: r.reading_count,
            gap_count: r.gap_count,
            missing_count: r.missing_count,
        })
    }
}
