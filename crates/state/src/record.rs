//! Records stored in the state trie and their RLP encodings.

use alloy_primitives::{Address, B256, Bytes, I256, U256};
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
    /// Number of gaps opened (a reading whose seq skipped values).
    pub gap_count: u64,
    /// Seq values skipped and not filled since.
    pub missing_count: u64,
    /// The latest reading of each stream, by stream name (at most [`MAX_STREAMS`]).
    pub streams: Vec<StreamHead>,
    /// Contracts called when a block includes a reading of a stream, by stream name.
    pub hooks: Vec<Hook>,
    /// Seq ranges the device skipped that a reading may still fill, oldest first; at most
    /// [`MAX_OPEN_GAPS`] (opening one more closes the oldest).
    pub open_gaps: Vec<Gap>,
    /// Every seq at or below this was in a gap that was closed to make room for newer ones:
    /// such a seq can no longer be accepted.
    pub gaps_closed_through: Option<u64>,
    /// The manufacturer whose certificate of the key the registration carried, if any.
    pub manufacturer: Option<Address>,
}

/// A run of seq values a device skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// First missing seq.
    pub from: u64,
    /// Last missing seq (inclusive).
    pub to: u64,
}

/// Most open gaps a device record keeps: a reading may fill any of them, in any order, from
/// any node; opening one more closes the oldest.
pub const MAX_OPEN_GAPS: usize = 64;

/// Most streams whose latest reading a device record keeps; readings of further streams
/// are accepted, and not tracked.
pub const MAX_STREAMS: usize = 32;

/// The latest reading of a device stream, as the IoT precompile shows it to contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamHead<S = String> {
    /// Stream name.
    pub stream: S,
    /// The reading's seq.
    pub seq: u64,
    /// The reading's device time, ms since the Unix epoch.
    pub ts: u64,
    /// The reading's id.
    pub id: B256,
    /// The reading's `data` in micro-units, when it is a CBOR integer or float that fits.
    pub value: Option<I256>,
}

/// A reading hook: a contract the chain calls with each reading of a device stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    /// Stream name.
    pub stream: String,
    /// The contract called (`onReading`).
    pub contract: Address,
    /// Gas limit of each call.
    pub gas_limit: u64,
    /// What is left of the owner's deposit, in wei (held by the IoT precompile's account).
    pub deposit: U256,
}

impl DeviceRecord {
    /// The key's version: 0 for the registered key, +1 per rotation.
    pub fn key_version(&self) -> u32 {
        self.previous_keys.len() as u32
    }
}

/// An authorised owner. RLP: `[nonce, device_count, manufacturers?]`, the list left out
/// while empty (so records written before it existed keep their encoding).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, RlpEncodable, RlpDecodable)]
#[rlp(trailing)]
pub struct OwnerRecord {
    /// Next transaction nonce.
    pub nonce: u64,
    /// Devices registered by this owner.
    pub device_count: u64,
    /// Manufacturers whose certificates this owner accepts, sorted (`None` while none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturers: Option<Vec<Address>>,
}

impl OwnerRecord {
    /// Whether this owner authorised `manufacturer`.
    pub fn trusts(&self, manufacturer: &Address) -> bool {
        self.manufacturers
            .as_ref()
            .is_some_and(|m| m.binary_search(manufacturer).is_ok())
    }
}

#[derive(RlpEncodable, RlpDecodable)]
struct KeyRlp {
    alg: u8,
    key: Bytes,
}

#[derive(RlpEncodable, RlpDecodable)]
struct StreamRlp {
    stream: String,
    seq: u64,
    ts: u64,
    id: B256,
    has_value: bool,
    value: U256,
}

#[derive(RlpEncodable, RlpDecodable)]
struct HookRlp {
    stream: String,
    contract: Address,
    gas_limit: u64,
    deposit: U256,
}

#[derive(RlpEncodable, RlpDecodable)]
struct LabelRlp {
    key: String,
    value: String,
}

#[derive(RlpEncodable, RlpDecodable)]
struct GapRlp {
    from: u64,
    to: u64,
}

#[derive(RlpEncodable, RlpDecodable)]
struct GapsRlp {
    open: Vec<GapRlp>,
    has_closed: bool,
    closed_through: u64,
}

/// RLP shape: `[address, owner, key, previous_keys, status, model, firmware_hash, labels,
/// registered_at, has_seq, last_seq, last_ts, last_reading_id, reading_count, gap_count,
/// missing_count, streams?, hooks?, gaps?, manufacturer?]`; trailing fields are left out
/// while they and all after them are empty (so records written before they existed keep their
/// encoding).
#[derive(RlpEncodable, RlpDecodable)]
#[rlp(trailing)]
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
    streams: Option<Vec<StreamRlp>>,
    hooks: Option<Vec<HookRlp>>,
    gaps: Option<GapsRlp>,
    manufacturer: Option<Address>,
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
        let has_maker = self.manufacturer.is_some();
        let has_gaps =
            !self.open_gaps.is_empty() || self.gaps_closed_through.is_some() || has_maker;
        let has_hooks = !self.hooks.is_empty() || has_gaps;
        let has_streams = !self.streams.is_empty() || has_hooks;
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
            streams: has_streams.then(|| {
                self.streams
                    .iter()
                    .map(|h| StreamRlp {
                        stream: h.stream.clone(),
                        seq: h.seq,
                        ts: h.ts,
                        id: h.id,
                        has_value: h.value.is_some(),
                        value: h.value.map_or(U256::ZERO, |v| v.into_raw()),
                    })
                    .collect()
            }),
            hooks: has_hooks.then(|| {
                self.hooks
                    .iter()
                    .map(|h| HookRlp {
                        stream: h.stream.clone(),
                        contract: h.contract,
                        gas_limit: h.gas_limit,
                        deposit: h.deposit,
                    })
                    .collect()
            }),
            gaps: has_gaps.then(|| GapsRlp {
                open: self
                    .open_gaps
                    .iter()
                    .map(|g| GapRlp {
                        from: g.from,
                        to: g.to,
                    })
                    .collect(),
                has_closed: self.gaps_closed_through.is_some(),
                closed_through: self.gaps_closed_through.unwrap_or(0),
            }),
            manufacturer: self.manufacturer,
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
            streams: r
                .streams
                .unwrap_or_default()
                .into_iter()
                .map(|h| StreamHead {
                    stream: h.stream,
                    seq: h.seq,
                    ts: h.ts,
                    id: h.id,
                    value: h.has_value.then(|| I256::from_raw(h.value)),
                })
                .collect(),
            hooks: r
                .hooks
                .unwrap_or_default()
                .into_iter()
                .map(|h| Hook {
                    stream: h.stream,
                    contract: h.contract,
                    gas_limit: h.gas_limit,
                    deposit: h.deposit,
                })
                .collect(),
            open_gaps: r
                .gaps
                .as_ref()
                .map(|g| {
                    g.open
                        .iter()
                        .map(|g| Gap {
                            from: g.from,
                            to: g.to,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            gaps_closed_through: r
                .gaps
                .and_then(|g| g.has_closed.then_some(g.closed_through)),
            manufacturer: r.manufacturer,
        })
    }
}

/// A reading's `data` in micro-units (× 10⁶), when it is a single CBOR integer or float
/// (half, single or double precision) whose scaled value fits in 128 bits; `None` otherwise
/// (maps, strings, NaN, infinities, trailing bytes).
pub fn micro_units(data: &[u8]) -> Option<I256> {
    const SCALE: i128 = 1_000_000;
    let (&first, rest) = data.split_first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    if rest.len() != width {
        return None;
    }
    let mut arg = u64::from(info);
    if width > 0 {
        let mut buf = [0u8; 8];
        buf[8 - width..].copy_from_slice(rest);
        arg = u64::from_be_bytes(buf);
    }
    let value: f64 = match (major, width) {
        (0, _) => return I256::try_from(i128::from(arg) * SCALE).ok(),
        (1, _) => return I256::try_from((-1 - i128::from(arg)) * SCALE).ok(),
        (7, 2) => half_to_f64(arg as u16),
        (7, 4) => f64::from(f32::from_bits(arg as u32)),
        (7, 8) => f64::from_bits(arg),
        _ => return None,
    };
    let scaled = (value * SCALE as f64).round();
    // 2^120 keeps well inside i128 and inside f64's exact range for the check.
    if !scaled.is_finite() || scaled.abs() >= 2f64.powi(120) {
        return None;
    }
    I256::try_from(scaled as i128).ok()
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(v: i128) -> Option<I256> {
        Some(I256::try_from(v).unwrap())
    }

    #[test]
    fn cbor_numbers_become_micro_units() {
        assert_eq!(micro_units(&[0x05]), micro(5_000_000));
        assert_eq!(micro_units(&[0x18, 0x64]), micro(100_000_000));
        assert_eq!(micro_units(&[0x20]), micro(-1_000_000));
        assert_eq!(micro_units(&[0x38, 0x63]), micro(-100_000_000));
        // 4.5 as half, single and double precision.
        assert_eq!(micro_units(&[0xf9, 0x44, 0x80]), micro(4_500_000));
        assert_eq!(micro_units(&[0xfa, 0x40, 0x90, 0, 0]), micro(4_500_000));
        let mut d = vec![0xfb];
        d.extend_from_slice(&(-8.25f64).to_bits().to_be_bytes());
        assert_eq!(micro_units(&d), micro(-8_250_000));
        let mut max = vec![0x1b];
        max.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(micro_units(&max), micro(i128::from(u64::MAX) * 1_000_000));
    }

    #[test]
    fn other_data_has_no_value() {
        for data in [
            &[][..],
            &[0x05, 0x00],       // trailing byte
            &[0x18],             // truncated
            &[0x61, 0x61],       // text
            &[0xa0],             // map
            &[0xf9, 0x7e, 0x00], // NaN
            &[0xf9, 0x7c, 0x00], // infinity
            &[0xf5],             // true
            &[0x1c],             // reserved
        ] {
            assert_eq!(micro_units(data), None, "{data:02x?}");
        }
        let mut huge = vec![0xfb];
        huge.extend_from_slice(&1e300f64.to_bits().to_be_bytes());
        assert_eq!(micro_units(&huge), None);
    }
}
