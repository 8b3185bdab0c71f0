//! The iotchain device SDK: a device's key, address and `seq`, and readings built and signed
//! into a buffer the caller provides.
//!
//! `#![no_std]` and no allocator: everything happens in the caller's buffer and on the stack,
//! so it runs on a microcontroller. The output is byte for byte the reading the node expects
//! (docs/formats.md): a tagged COSE_Sign1 with protected header `{1: alg, 4: address}` over the
//! CBOR payload `{"seq", "ts", "stream"?, "data"}`, signed with Ed25519 or ECDSA P-256
//! (RFC 6979 deterministic nonces: no random number generator needed).
//!
//! The device keeps its next `seq` in [`Device`]; the caller persists it (flash, EEPROM) and
//! gives it back after a reboot: the chain refuses a `seq` that is not greater than the last.
//!
//! A reading names its chain: the device signs the chain's genesis hash as COSE
//! `external_aad` ([`Device::set_chain`], from `GET /v1/status` `genesis_hash` or
//! `iotchain status`), so a key registered on two chains cannot have its readings replayed
//! from one on the other. A device of a chain created before readings named their chain
//! (genesis without `params.reading_aad`) leaves it unset.
//!
//! What it signs is a reading's canonical message (ECDSA signatures with the low `s`), so the
//! id the node acknowledges, [`reading_id`], is `SHA-256(0x00 ‖ message)`, whoever carries
//! the message on and however they re-encode it (docs/formats.md, "Reading id").
//!
//! ```
//! let genesis_hash = [0x5a; 32]; // GET /v1/status: "genesis_hash"
//! let mut device = iotchain_device::Device::ed25519(&[7; 32], 0).unwrap();
//! device.set_chain(&genesis_hash);
//! let mut buf = [0u8; 512];
//! let n = device
//!     .sign_reading(1_700_000_000_000, Some("temp"), &[0xf9, 0x4d, 0x00], &mut buf)
//!     .unwrap();
//! assert_eq!(device.next_seq(), 1);
//! assert!(iotchain_reading::decode(&buf[..n]).is_ok());
//! ```
#![no_std]

use ed25519_dalek::Signer as _;
pub use iotchain_reading::reading_id;
use iotchain_reading::{Alg, DeviceAddress, ReadingError};
use sha3::{Digest as _, Keccak256};

/// Why a reading could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The output buffer is smaller than [`buffer_len`] for this data and stream.
    BufferTooSmall,
    /// The secret is not a usable key (P-256: zero or not below the group order).
    InvalidKey,
    /// `data` is not exactly one well-formed CBOR item, or the stream name is empty or longer
    /// than 64 bytes.
    InvalidInput(ReadingError),
    /// `seq` reached `u64::MAX`: the device cannot sign further readings.
    SeqExhausted,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::InvalidKey => f.write_str("invalid secret key"),
            Self::InvalidInput(e) => write!(f, "invalid reading: {e}"),
            Self::SeqExhausted => f.write_str("seq exhausted"),
        }
    }
}

/// Bytes of payload beyond `data` and `stream`: map and key heads, `seq`, `ts`.
const PAYLOAD_OVERHEAD: usize = 48;
/// Bytes of a message (or Sig_structure) beyond the protected header and payload.
const MESSAGE_OVERHEAD: usize = 96;
/// Length of the protected header `{1: alg, 4: h'address'}`.
const PROTECTED_LEN: usize = 25;

/// The buffer [`Device::sign_reading`] needs for `data_len` bytes of data and a stream name of
/// `stream_len` bytes: twice the largest message (the signed Sig_structure is built in the
/// second half).
pub const fn buffer_len(data_len: usize, stream_len: usize) -> usize {
    2 * (PROTECTED_LEN + data_len + stream_len + PAYLOAD_OVERHEAD + MESSAGE_OVERHEAD)
}

enum Key {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A device: its signing key, address and next `seq`.
pub struct Device {
    key: Key,
    public: [u8; 65],
    public_len: usize,
    address: DeviceAddress,
    next_seq: u64,
    /// The chain's genesis hash, signed as `external_aad` (unset: empty).
    chain: Option<[u8; 32]>,
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("address", &self.address)
            .field("next_seq", &self.next_seq)
            .field("chain", &self.chain.map(|_| "genesis hash"))
            .finish_non_exhaustive()
    }
}

fn address_of(key_bytes: &[u8]) -> DeviceAddress {
    let hash = Keccak256::digest(key_bytes);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    DeviceAddress(out)
}

impl Device {
    /// An Ed25519 device from its 32-byte secret seed; `next_seq` is the `seq` of the next
    /// reading (0 for a new device, the persisted value after a reboot).
    pub fn ed25519(secret: &[u8; 32], next_seq: u64) -> Result<Self, Error> {
        let key = ed25519_dalek::SigningKey::from_bytes(secret);
        let mut public = [0u8; 65];
        public[..32].copy_from_slice(key.verifying_key().as_bytes());
        Ok(Self {
            address: address_of(&public[..32]),
            key: Key::Ed25519(key),
            public,
            public_len: 32,
            next_seq,
            chain: None,
        })
    }

    /// A P-256 device from its 32-byte secret scalar (big-endian).
    pub fn p256(secret: &[u8; 32], next_seq: u64) -> Result<Self, Error> {
        let key = p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| Error::InvalidKey)?;
        let point = key.verifying_key().to_sec1_point(false);
        let mut public = [0u8; 65];
        public.copy_from_slice(point.as_bytes());
        Ok(Self {
            address: address_of(&public[1..]),
            key: Key::P256(key),
            public,
            public_len: 65,
            next_seq,
            chain: None,
        })
    }

    /// The COSE algorithm.
    pub fn alg(&self) -> Alg {
        match self.key {
            Key::Ed25519(_) => Alg::EdDsa,
            Key::P256(_) => Alg::Es256,
        }
    }

    /// The public key to register: Ed25519 32 bytes, P-256 uncompressed SEC1 (65 bytes).
    pub fn public_key(&self) -> &[u8] {
        &self.public[..self.public_len]
    }

    /// The device address (last 20 bytes of keccak256 of the key; P-256: of `x‖y`).
    pub fn address(&self) -> [u8; 20] {
        self.address.0
    }

    /// The `seq` the next reading gets; persist it after each reading.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sets the next `seq` (after a reboot, from persistent storage).
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Binds the device's readings to a chain: they sign its 32-byte genesis hash as COSE
    /// `external_aad` (what a chain whose genesis has `params.reading_aad = "genesis_hash"`,
    /// the default for new chains, requires). Without it readings sign an empty
    /// `external_aad`, as chains created before readings named their chain expect.
    pub fn set_chain(&mut self, genesis_hash: &[u8; 32]) {
        self.chain = Some(*genesis_hash);
    }

    /// The genesis hash the readings sign, if set ([`Device::set_chain`]).
    pub fn chain(&self) -> Option<&[u8; 32]> {
        self.chain.as_ref()
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        match &self.key {
            Key::Ed25519(k) => k.sign(message).to_bytes(),
            Key::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                let mut out = [0u8; 64];
                out.copy_from_slice(&sig.to_bytes());
                // The low-s form: the message is then canonical, its id the hash of its bytes.
                iotchain_reading::canonical_signature(Alg::Es256, &out)
            }
        }
    }

    /// Builds the reading `{seq: next_seq, ts: ts_ms, stream, data}` (`data_cbor` is one
    /// encoded CBOR item), signs it and writes the COSE_Sign1 message to the start of `out`;
    /// returns its length and advances `seq`. `out` must hold [`buffer_len`] bytes; on error
    /// `seq` is unchanged.
    pub fn sign_reading(
        &mut self,
        ts_ms: u64,
        stream: Option<&str>,
        data_cbor: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        if self.next_seq == u64::MAX {
            return Err(Error::SeqExhausted);
        }
        let stream_len = stream.map_or(0, str::len);
        let need = buffer_len(data_cbor.len(), stream_len);
        if out.len() < need {
            return Err(Error::BufferTooSmall);
        }
        let (a, b) = out[..need].split_at_mut(need / 2);
        let mut protected = [0u8; PROTECTED_LEN + 7];
        let n_pr = iotchain_reading::encode_protected(self.alg(), &self.address, &mut protected)
            .map_err(Error::InvalidInput)?;
        let protected = &protected[..n_pr];
        // The payload, then the Sig_structure over it (payload last), then the signature.
        let n_p = iotchain_reading::encode_payload(self.next_seq, ts_ms, stream, data_cbor, a)
            .map_err(Error::InvalidInput)?;
        let aad: &[u8] = self.chain.as_ref().map_or(&[], |h| &h[..]);
        let n_s = iotchain_reading::write_sig_structure(protected, aad, &a[..n_p], b)
            .map_err(|_| Error::BufferTooSmall)?;
        let signature = self.sign(&b[..n_s]);
        let payload = &b[n_s - n_p..n_s];
        let n_m = iotchain_reading::encode_message(protected, payload, &signature, a)
            .map_err(|_| Error::BufferTooSmall)?;
        self.next_seq += 1;
        Ok(n_m)
    }
}

#[cfg(test)]
mod tests;
