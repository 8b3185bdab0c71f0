//! Readings on their way into a block: decoded once, their device's key attached, their
//! signatures checked in batches, and applied to a state.

use std::sync::Arc;

use alloy_primitives::{B256, Bytes, I256};
use iotchain_crypto::{DevicePublicKey, SignatureCheck, verify_signatures};
use iotchain_reading::{Alg, DeviceAddress};
use iotchain_state::{AppliedReading, State, StateError, StreamHead};

use crate::ItemError;

/// What block production needs of a reading, kept so it is not decoded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingMeta {
    /// The device (the protected header's `kid`).
    pub device: DeviceAddress,
    /// The device's sequence number.
    pub seq: u64,
    /// The device's time, ms since the Unix epoch.
    pub ts: u64,
    /// The stream; shared, so cloning a queued reading's meta does not copy it.
    pub stream: Arc<str>,
    /// `data` in micro-units when it is a CBOR number.
    pub value: Option<I256>,
}

impl From<&iotchain_reading::Reading<'_>> for ReadingMeta {
    fn from(r: &iotchain_reading::Reading<'_>) -> Self {
        Self {
            device: r.device,
            seq: r.seq,
            ts: r.ts,
            stream: r.stream.into(),
            value: iotchain_state::micro_units(r.data),
        }
    }
}

impl ReadingMeta {
    /// Decodes a reading's meta and id (a stored reading: its size was checked when it was
    /// accepted).
    pub fn decode(bytes: &[u8]) -> Result<(Self, B256), ItemError> {
        let r = iotchain_reading::decode(bytes)?;
        Ok((Self::from(&r), B256::from(r.id())))
    }

    /// The stream head this reading makes.
    pub fn head(&self, id: B256) -> StreamHead {
        StreamHead {
            stream: self.stream.to_string(),
            seq: self.seq,
            ts: self.ts,
            id,
            value: self.value,
        }
    }
}

/// A reading decoded (outside any lock), its signature not yet checked.
#[derive(Debug, Clone)]
pub struct DecodedReading {
    /// The algorithm the reading names.
    pub alg: Alg,
    /// What block production needs.
    pub meta: ReadingMeta,
    /// Its id: the leaf hash of its canonical message ([`iotchain_reading::reading_id`]).
    pub id: B256,
    /// The bytes the device signed (COSE `Sig_structure`).
    pub sig_structure: Vec<u8>,
    /// The signature.
    pub signature: [u8; 64],
    /// The canonical message: as received when it was canonical (what devices send), else
    /// re-encoded (a relay's copy without the tag, say), so what is kept, put in blocks and
    /// proven hashes to the id.
    pub bytes: Bytes,
}

impl DecodedReading {
    /// Decodes a message of at most `max` bytes, of a chain whose readings sign
    /// `reading_aad` as COSE `external_aad` ([`Genesis::reading_aad`](iotchain_block::Genesis::reading_aad)).
    pub fn decode(message: Bytes, max: usize, reading_aad: &[u8]) -> Result<Self, ItemError> {
        if message.len() > max {
            return Err(ItemError::TooLarge {
                size: message.len(),
                limit: max,
            });
        }
        let r = iotchain_reading::decode(&message)?;
        let bytes = if r.is_canonical_encoding(&message) {
            message.clone()
        } else {
            Bytes::from(r.to_canonical())
        };
        Ok(Self {
            alg: r.alg,
            meta: ReadingMeta::from(&r),
            id: B256::from(r.id()),
            sig_structure: iotchain_reading::sig_structure(r.protected, reading_aad, r.payload),
            signature: *r.signature,
            bytes,
        })
    }

    /// Looks up the device's key in `state` and makes the checks that need no signature:
    /// registered, active, the right algorithm and key version, a seq it may take.
    pub fn attach_key(self, state: &State) -> Result<CheckedReading, ItemError> {
        let device = self.meta.device;
        let record = state
            .device(&device)
            .ok_or(ItemError::State(StateError::UnknownDevice(device)))?;
        if record.public_key.alg() != self.alg {
            return Err(ItemError::WrongAlg {
                device,
                registered: record.public_key.alg(),
                got: self.alg,
            });
        }
        state.check_reading(&device, record.key_version(), self.meta.seq)?;
        Ok(CheckedReading {
            key_version: record.key_version(),
            key: record.public_key.clone(),
            reading: self,
        })
    }
}

/// A decoded reading with the key that must verify it.
#[derive(Debug, Clone)]
pub struct CheckedReading {
    /// The reading.
    pub reading: DecodedReading,
    /// The device's key version it was checked against.
    pub key_version: u32,
    /// The device's current key.
    pub key: DevicePublicKey,
}

impl CheckedReading {
    fn check(&self) -> SignatureCheck<'_> {
        SignatureCheck {
            key: &self.key,
            message: &self.reading.sig_structure,
            signature: &self.reading.signature,
        }
    }
}

/// Verifies the signatures of `readings` in batches: one verdict per reading, in order.
pub fn verify_readings(readings: &[CheckedReading]) -> Vec<bool> {
    let checks: Vec<SignatureCheck<'_>> = readings.iter().map(CheckedReading::check).collect();
    verify_signatures(&checks)
}

/// Whether one of `keys` signed `reading` (a key the device used before, say).
pub fn signed_by_any(reading: &DecodedReading, keys: &[DevicePublicKey]) -> bool {
    keys.iter().any(|k| {
        verify_signatures(&[SignatureCheck {
            key: k,
            message: &reading.sig_structure,
            signature: &reading.signature,
        }])[0]
    })
}

/// Applies a reading (verified when accepted) to a state: the device's `seq` (a gap it opens
/// or fills), its counters and its stream's head.
pub fn apply_reading(
    state: &mut State,
    meta: &ReadingMeta,
    id: B256,
    key_version: u32,
) -> Result<AppliedReading, ItemError> {
    let applied = state.apply_reading(&meta.device, key_version, meta.seq, meta.ts, id)?;
    state.record_stream(
        &meta.device,
        &StreamHead {
            stream: &*meta.stream,
            seq: meta.seq,
            ts: meta.ts,
            id,
            value: meta.value,
        },
    );
    Ok(applied)
}
