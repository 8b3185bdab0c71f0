//! Owner transactions: device-registry operations signed by an owner's secp256k1 key.

use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_rlp::{Decodable, RlpDecodable, RlpEncodable};
use iotchain_crypto::{DevicePublicKey, OwnerKey, recover_owner};
use iotchain_reading::{Alg, DeviceAddress};
use serde::Serialize;

use crate::{BlockError, DeviceCertificate, Result};

/// Domain separation prefix of the hash an owner signs.
pub const TX_DOMAIN: &[u8] = b"iotchain/device-op/v1";

/// Longest model string, firmware hash, label key or value accepted.
const MAX_FIELD: usize = 256;
/// Most labels on one device.
const MAX_LABELS: usize = 32;
/// Most devices one batch registration may register.
pub const MAX_BATCH_DEVICES: usize = 10_000;
/// Largest owner transaction accepted, in bytes (a full batch with certificates is about
/// 1.1 MB).
pub const MAX_OWNER_TX_BYTES: usize = 2 << 20;
/// Most bytes of owner transactions one block may carry: what bounds a block's size and
/// its registration work now that one transaction may register thousands of devices.
pub const MAX_OWNER_TX_BYTES_PER_BLOCK: usize = 4 << 20;

/// A device-registry operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceOp {
    /// Register a new device under the signing owner.
    Register {
        /// The device key (Ed25519 32 bytes; P-256 uncompressed SEC1 65 bytes).
        #[serde(serialize_with = "key_hex")]
        public_key: DevicePublicKey,
        /// Device model.
        model: String,
        /// Firmware hash (free-form bytes, typically 32).
        firmware_hash: Bytes,
        /// Free-form labels.
        labels: Vec<(String, String)>,
    },
    /// Replace a device's key; its address stays.
    Rotate {
        /// The device.
        #[serde(serialize_with = "address_hex")]
        device: DeviceAddress,
        /// The new key.
        #[serde(serialize_with = "key_hex")]
        public_key: DevicePublicKey,
    },
    /// Revoke a device: its readings are rejected from then on.
    Revoke {
        /// The device.
        #[serde(serialize_with = "address_hex")]
        device: DeviceAddress,
    },
    /// Register up to [`MAX_BATCH_DEVICES`] devices at once (all or none: one that cannot be
    /// registered refuses the transaction, naming its index).
    RegisterMany {
        /// The devices, each with its own key and metadata.
        devices: Vec<NewDevice>,
    },
    /// Trust (or stop trusting) a manufacturer's certificates for this owner's registrations.
    Manufacturer {
        /// The manufacturer's certificate-signing address (secp256k1, as an owner's).
        manufacturer: Address,
        /// `true` to authorise, `false` to withdraw.
        authorised: bool,
    },
}

/// One device of a [`DeviceOp::RegisterMany`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDevice {
    /// The device key.
    #[serde(serialize_with = "key_hex")]
    pub public_key: DevicePublicKey,
    /// Device model.
    pub model: String,
    /// Firmware hash.
    pub firmware_hash: Bytes,
    /// Free-form labels.
    pub labels: Vec<(String, String)>,
    /// The manufacturer's certificate of the key and model, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<DeviceCertificate>,
}

impl NewDevice {
    /// A device with a key and a model, no firmware hash, labels or certificate.
    pub fn new(public_key: DevicePublicKey, model: impl Into<String>) -> Self {
        Self {
            public_key,
            model: model.into(),
            firmware_hash: Bytes::new(),
            labels: vec![],
            certificate: None,
        }
    }
}

fn key_hex<S: serde::Serializer>(
    key: &DevicePublicKey,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::hex0x(key.to_bytes()))
}

fn address_hex<S: serde::Serializer>(
    a: &DeviceAddress,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&a.to_string())
}

/// The RLP shape of an operation: `[kind, device, alg, public_key, model, firmware_hash,
/// labels, devices?]`; `devices` only for a batch registration (so every other operation keeps
/// its encoding).
#[derive(RlpEncodable, RlpDecodable)]
#[rlp(trailing)]
struct OpRlp {
    kind: u8,
    device: Address,
    alg: u8,
    public_key: Bytes,
    model: String,
    firmware_hash: Bytes,
    labels: Vec<LabelRlp>,
    devices: Option<Vec<NewDeviceRlp>>,
}

/// One device of a batch: `[alg, public_key, model, firmware_hash, labels, certificate]`
/// (`certificate` empty or 65 bytes).
#[derive(RlpEncodable, RlpDecodable)]
struct NewDeviceRlp {
    alg: u8,
    public_key: Bytes,
    model: String,
    firmware_hash: Bytes,
    labels: Vec<LabelRlp>,
    certificate: Bytes,
}

#[derive(RlpEncodable, RlpDecodable)]
struct LabelRlp {
    key: String,
    value: String,
}

#[derive(RlpEncodable)]
struct UnsignedRlp<'a> {
    owner: Address,
    nonce: u64,
    op: &'a OpRlp,
}

#[derive(RlpEncodable, RlpDecodable)]
struct SignedRlp {
    owner: Address,
    nonce: u64,
    op: OpRlp,
    signature: Bytes,
}

const REGISTER: u8 = 1;
const ROTATE: u8 = 2;
const REVOKE: u8 = 3;
const REGISTER_MANY: u8 = 4;
const AUTHORISE_MANUFACTURER: u8 = 5;
const WITHDRAW_MANUFACTURER: u8 = 6;

fn alg_code(alg: Alg) -> u8 {
    // Negated COSE value: 8 = EdDSA, 7 = ES256.
    (-alg.cose_value()) as u8
}

fn invalid(field: &'static str, reason: impl Into<String>) -> BlockError {
    BlockError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl DeviceOp {
    fn to_rlp(&self) -> OpRlp {
        let empty = || OpRlp {
            kind: 0,
            device: Address::ZERO,
            alg: 0,
            public_key: Bytes::new(),
            model: String::new(),
            firmware_hash: Bytes::new(),
            labels: vec![],
            devices: None,
        };
        match self {
            Self::Register {
                public_key,
                model,
                firmware_hash,
                labels,
            } => OpRlp {
                kind: REGISTER,
                alg: alg_code(public_key.alg()),
                public_key: public_key.to_bytes().into(),
                model: model.clone(),
                firmware_hash: firmware_hash.clone(),
                labels: labels_rlp(labels),
                ..empty()
            },
            Self::Rotate { device, public_key } => OpRlp {
                kind: ROTATE,
                device: Address::from(device.0),
                alg: alg_code(public_key.alg()),
                public_key: public_key.to_bytes().into(),
                ..empty()
            },
            Self::Revoke { device } => OpRlp {
                kind: REVOKE,
                device: Address::from(device.0),
                ..empty()
            },
            Self::RegisterMany { devices } => OpRlp {
                kind: REGISTER_MANY,
                devices: Some(
                    devices
                        .iter()
                        .map(|d| NewDeviceRlp {
                            alg: alg_code(d.public_key.alg()),
                            public_key: d.public_key.to_bytes().into(),
                            model: d.model.clone(),
                            firmware_hash: d.firmware_hash.clone(),
                            labels: labels_rlp(&d.labels),
                            certificate: d
                                .certificate
                                .map(|c| Bytes::copy_from_slice(&c.signature))
                                .unwrap_or_default(),
                        })
                        .collect(),
                ),
                ..empty()
            },
            Self::Manufacturer {
                manufacturer,
                authorised,
            } => OpRlp {
                kind: if *authorised {
                    AUTHORISE_MANUFACTURER
                } else {
                    WITHDRAW_MANUFACTURER
                },
                device: *manufacturer,
                ..empty()
            },
        }
    }

    fn from_rlp(op: OpRlp) -> Result<Self> {
        let op = match op.kind {
            REGISTER => {
                check_metadata(&op.model, &op.firmware_hash, &op.labels)?;
                Self::Register {
                    public_key: device_key(op.alg, &op.public_key)?,
                    model: op.model,
                    firmware_hash: op.firmware_hash,
                    labels: op.labels.into_iter().map(|l| (l.key, l.value)).collect(),
                }
            }
            ROTATE => Self::Rotate {
                device: DeviceAddress(op.device.0.0),
                public_key: device_key(op.alg, &op.public_key)?,
            },
            REVOKE => Self::Revoke {
                device: DeviceAddress(op.device.0.0),
            },
            REGISTER_MANY => {
                let devices = op.devices.unwrap_or_default();
                if devices.is_empty() || devices.len() > MAX_BATCH_DEVICES {
                    return Err(invalid(
                        "devices",
                        format!(
                            "a batch registers 1 to {MAX_BATCH_DEVICES} devices, not {}",
                            devices.len()
                        ),
                    ));
                }
                let devices = devices
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| {
                        new_device(d).map_err(|e| match e {
                            BlockError::InvalidField { field, reason } => {
                                BlockError::InvalidField {
                                    field: "devices",
                                    reason: format!("device {i}: {field}: {reason}"),
                                }
                            }
                            e => invalid("devices", format!("device {i}: {e}")),
                        })
                    })
                    .collect::<Result<_>>()?;
                Self::RegisterMany { devices }
            }
            k @ (AUTHORISE_MANUFACTURER | WITHDRAW_MANUFACTURER) => Self::Manufacturer {
                manufacturer: op.device,
                authorised: k == AUTHORISE_MANUFACTURER,
            },
            k => return Err(invalid("kind", format!("unknown operation kind {k}"))),
        };
        Ok(op)
    }

    /// Short name: `register`, `rotate`, `revoke`, `register_many` or `manufacturer`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Rotate { .. } => "rotate",
            Self::Revoke { .. } => "revoke",
            Self::RegisterMany { .. } => "register_many",
            Self::Manufacturer { .. } => "manufacturer",
        }
    }

    /// The devices the operation registers or changes, in order.
    pub fn devices(&self) -> Vec<DeviceAddress> {
        match self {
            Self::Register { public_key, .. } => vec![public_key.address()],
            Self::Rotate { device, .. } | Self::Revoke { device } => vec![*device],
            Self::RegisterMany { devices } => {
                devices.iter().map(|d| d.public_key.address()).collect()
            }
            Self::Manufacturer { .. } => vec![],
        }
    }
}

fn labels_rlp(labels: &[(String, String)]) -> Vec<LabelRlp> {
    labels
        .iter()
        .map(|(k, v)| LabelRlp {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn device_key(alg: u8, bytes: &[u8]) -> Result<DevicePublicKey> {
    let alg = Alg::from_cose(-(alg as i64))
        .ok_or_else(|| invalid("alg", format!("unknown device key algorithm code {alg}")))?;
    Ok(DevicePublicKey::from_bytes(alg, bytes)?)
}

fn check_metadata(model: &str, firmware_hash: &[u8], labels: &[LabelRlp]) -> Result<()> {
    if model.len() > MAX_FIELD || firmware_hash.len() > MAX_FIELD {
        return Err(invalid(
            "metadata",
            format!("model and firmware hash are limited to {MAX_FIELD} bytes"),
        ));
    }
    if labels.len() > MAX_LABELS
        || labels
            .iter()
            .any(|l| l.key.len() > MAX_FIELD || l.value.len() > MAX_FIELD)
    {
        return Err(invalid(
            "labels",
            format!("at most {MAX_LABELS} labels of at most {MAX_FIELD} bytes"),
        ));
    }
    Ok(())
}

fn new_device(d: NewDeviceRlp) -> Result<NewDevice> {
    check_metadata(&d.model, &d.firmware_hash, &d.labels)?;
    let public_key = device_key(d.alg, &d.public_key)?;
    let certificate = match d.certificate.len() {
        0 => None,
        65 => {
            let sig: [u8; 65] = d.certificate.as_ref().try_into().expect("65 bytes");
            Some(
                DeviceCertificate::recover(&sig, &public_key, &d.model).map_err(|e| {
                    invalid(
                        "certificate",
                        format!("does not recover a manufacturer ({e})"),
                    )
                })?,
            )
        }
        n => {
            return Err(invalid(
                "certificate",
                format!("must be empty or 65 bytes, not {n}"),
            ));
        }
    };
    Ok(NewDevice {
        public_key,
        model: d.model,
        firmware_hash: d.firmware_hash,
        labels: d.labels.into_iter().map(|l| (l.key, l.value)).collect(),
        certificate,
    })
}

/// A signed owner transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The owner (recovered from the signature and checked to match).
    pub owner: Address,
    /// The owner's transaction counter: must equal the owner's nonce in state.
    pub nonce: u64,
    /// The operation.
    pub op: DeviceOp,
    /// 65-byte recoverable secp256k1 signature over [`SignedTx::signing_hash`].
    pub signature: [u8; 65],
}

impl SignedTx {
    /// `keccak256(TX_DOMAIN ‖ chain_id (u64 BE) ‖ rlp([owner, nonce, op]))`.
    pub fn signing_hash(chain_id: u64, owner: Address, nonce: u64, op: &DeviceOp) -> B256 {
        let op = op.to_rlp();
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(TX_DOMAIN);
        buf.extend_from_slice(&chain_id.to_be_bytes());
        alloy_rlp::Encodable::encode(
            &UnsignedRlp {
                owner,
                nonce,
                op: &op,
            },
            &mut buf,
        );
        keccak256(buf)
    }

    /// Builds and signs a transaction.
    pub fn sign(key: &OwnerKey, chain_id: u64, nonce: u64, op: DeviceOp) -> Result<Self> {
        let owner = key.address();
        let signature = key.sign_hash(&Self::signing_hash(chain_id, owner, nonce, &op))?;
        Ok(Self {
            owner,
            nonce,
            op,
            signature,
        })
    }

    /// RLP bytes: `[owner, nonce, op, signature]`.
    pub fn encode_rlp(&self) -> Vec<u8> {
        alloy_rlp::encode(SignedRlp {
            owner: self.owner,
            nonce: self.nonce,
            op: self.op.to_rlp(),
            signature: Bytes::copy_from_slice(&self.signature),
        })
    }

    /// Transaction hash: keccak256 of the RLP bytes.
    pub fn hash(&self) -> B256 {
        keccak256(self.encode_rlp())
    }

    /// Decodes RLP bytes and checks that the signature recovers to `owner` for `chain_id`.
    ///
    /// Only the canonical encoding is accepted (the one [`SignedTx::encode_rlp`] writes: its
    /// hash is keccak256 of exactly these bytes): not the fields an operation leaves empty
    /// filled in, not another encoding of a device key, not a signature with `v` other than
    /// 27/28 or a high `s`. Each transaction has one hash.
    pub fn decode_and_check(bytes: &[u8], chain_id: u64) -> Result<Self> {
        if bytes.len() > MAX_OWNER_TX_BYTES {
            return Err(invalid(
                "size",
                format!(
                    "{} bytes: an owner transaction is at most {MAX_OWNER_TX_BYTES} bytes",
                    bytes.len()
                ),
            ));
        }
        let mut rest = bytes;
        let raw = SignedRlp::decode(&mut rest)?;
        if !rest.is_empty() {
            return Err(BlockError::TrailingBytes(rest.len()));
        }
        let signature: [u8; 65] = raw
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| invalid("signature", "must be 65 bytes"))?;
        let op = DeviceOp::from_rlp(raw.op)?;
        let hash = Self::signing_hash(chain_id, raw.owner, raw.nonce, &op);
        let signer = recover_owner(&hash, &signature)?;
        if signer != raw.owner {
            return Err(invalid(
                "signature",
                format!(
                    "signed by {signer}, not by the owner {} (wrong key or wrong chain id)",
                    raw.owner
                ),
            ));
        }
        let tx = Self {
            owner: raw.owner,
            nonce: raw.nonce,
            op,
            signature,
        };
        if tx.encode_rlp() != bytes {
            return Err(invalid(
                "encoding",
                "not the canonical encoding of the transaction (a field the operation does \
                 not use is set, or a key is encoded another way)",
            ));
        }
        Ok(tx)
    }
}

#[cfg(test)]
mod batch_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use iotchain_crypto::{DeviceSigner, KeyAlg};

    #[test]
    fn signed_tx_round_trips_and_rejects_forgery() {
        let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
        let device = DeviceSigner::from_secret(KeyAlg::P256, &[4; 32]).unwrap();
        let op = DeviceOp::Register {
            public_key: device.public_key(),
            model: "tsensor-1".into(),
            firmware_hash: Bytes::from(vec![0xaa; 32]),
            labels: vec![("site".into(), "dock 4".into())],
        };
        let tx = SignedTx::sign(&owner, 1337, 0, op).unwrap();
        let raw = tx.encode_rlp();
        assert_eq!(SignedTx::decode_and_check(&raw, 1337).unwrap(), tx);
        assert!(
            SignedTx::decode_and_check(&raw, 1338).is_err(),
            "replay on another chain"
        );
        let mut tampered = raw.clone();
        let n = tampered.len();
        tampered[n - 70] ^= 1; // inside the op or signature
        assert!(SignedTx::decode_and_check(&tampered, 1337).is_err());
        for cut in 0..raw.len() {
            assert!(SignedTx::decode_and_check(&raw[..cut], 1337).is_err());
        }
        let revoke = SignedTx::sign(
            &owner,
            1337,
            1,
            DeviceOp::Revoke {
                device: device.address(),
            },
        )
        .unwrap();
        assert_eq!(
            SignedTx::decode_and_check(&revoke.encode_rlp(), 1337).unwrap(),
            revoke
        );
    }

    fn register(owner: &OwnerKey, nonce: u64) -> SignedTx {
        let device =
            DeviceSigner::from_secret(KeyAlg::Ed25519, &[(nonce % 251) as u8 + 1; 32]).unwrap();
        let op = DeviceOp::Register {
            public_key: device.public_key(),
            model: "m".into(),
            firmware_hash: Bytes::new(),
            labels: vec![],
        };
        SignedTx::sign(owner, 7, nonce, op).unwrap()
    }

    /// RLP of a transaction with its signature bytes replaced.
    fn with_signature(tx: &SignedTx, op: OpRlp, signature: Vec<u8>) -> Vec<u8> {
        alloy_rlp::encode(SignedRlp {
            owner: tx.owner,
            nonce: tx.nonce,
            op,
            signature: signature.into(),
        })
    }

    #[test]
    fn another_encoding_of_the_signature_is_refused() {
        let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
        let tx = register(&owner, 0);
        // The same signature with v = 0/1 instead of 27/28: it would recover the same owner
        // under another hash.
        let mut sig = tx.signature.to_vec();
        sig[64] -= 27;
        let resent = with_signature(&tx, tx.op.to_rlp(), sig);
        assert_ne!(keccak256(&resent), tx.hash());
        let err = SignedTx::decode_and_check(&resent, 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be 27 or 28"), "{err}");
        // n - s with the other v (the high-s twin, EIP-2).
        let low = k256::ecdsa::Signature::from_slice(&tx.signature[..64]).unwrap();
        let (r, s) = low.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let mut sig = high.to_bytes().to_vec();
        sig.push(55 - tx.signature[64]);
        let err = SignedTx::decode_and_check(&with_signature(&tx, tx.op.to_rlp(), sig), 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("high-s"), "{err}");
    }

    #[test]
    fn fields_an_operation_does_not_use_are_refused() {
        let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
        let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[4; 32]).unwrap();
        let revoke = SignedTx::sign(
            &owner,
            7,
            1,
            DeviceOp::Revoke {
                device: device.address(),
            },
        )
        .unwrap();
        // The owner signed the canonical operation: a relay that fills in a field a revoke
        // ignores keeps the signature valid, and would get another hash.
        let mut op = revoke.op.to_rlp();
        op.model = "padding".into();
        let padded = with_signature(&revoke, op, revoke.signature.to_vec());
        let err = SignedTx::decode_and_check(&padded, 7)
            .unwrap_err()
            .to_string();
        assert!(err.contains("canonical"), "{err}");
        // A register naming a device address (the address derives from the key).
        let tx = register(&owner, 0);
        let mut op = tx.op.to_rlp();
        op.device = Address::repeat_byte(1);
        let named = with_signature(&tx, op, tx.signature.to_vec());
        assert!(SignedTx::decode_and_check(&named, 7).is_err());
    }

    /// `[owner, nonce, op, signature]` with `nonce` given as raw RLP, in a list whose head
    /// is `list_head` (or the canonical one).
    fn hand_encoded(tx: &SignedTx, nonce: &[u8], list_head: Option<&[u8]>) -> Vec<u8> {
        use alloy_rlp::Encodable;
        let mut payload = Vec::new();
        tx.owner.encode(&mut payload);
        payload.extend_from_slice(nonce);
        tx.op.to_rlp().encode(&mut payload);
        Bytes::copy_from_slice(&tx.signature).encode(&mut payload);
        let mut out = Vec::new();
        match list_head {
            Some(h) => out.extend_from_slice(h),
            None => alloy_rlp::Header {
                list: true,
                payload_length: payload.len(),
            }
            .encode(&mut out),
        }
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn non_canonical_rlp_is_refused() {
        let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
        let tx = register(&owner, 5);
        let canonical = hand_encoded(&tx, &[0x05], None);
        assert_eq!(canonical, tx.encode_rlp());
        assert!(SignedTx::decode_and_check(&canonical, 7).is_ok());
        // The nonce 5 as a one-byte string, with a leading zero, in a long-form head.
        for nonce in [
            &[0x81u8, 0x05][..],
            &[0x82, 0x00, 0x05],
            &[0xb8, 0x01, 0x05],
        ] {
            let other = hand_encoded(&tx, nonce, None);
            assert!(SignedTx::decode_and_check(&other, 7).is_err(), "{nonce:x?}");
        }
        // The list's length in a longer head than it needs.
        let n = canonical.len() - if canonical[0] == 0xf8 { 2 } else { 3 };
        let mut long = vec![0xfa, 0x00];
        long.extend_from_slice(&(n as u16).to_be_bytes());
        assert!(SignedTx::decode_and_check(&hand_encoded(&tx, &[0x05], Some(&long)), 7).is_err());
    }

    proptest::proptest! {
        /// Whatever bytes are accepted are their own canonical encoding: a transaction has
        /// one hash (keccak256 of the bytes as received), however it is mangled.
        #[test]
        fn accepted_bytes_are_canonical(
            nonce in 0u64..1_000_000,
            edits in proptest::collection::vec((0usize..400, 0u8..=255), 1..4),
        ) {
            let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
            let mut raw = register(&owner, nonce).encode_rlp();
            for (at, b) in edits {
                let n = raw.len();
                raw[at % n] = b;
            }
            if let Ok(tx) = SignedTx::decode_and_check(&raw, 7) {
                proptest::prop_assert_eq!(tx.encode_rlp(), raw.clone());
                proptest::prop_assert_eq!(tx.hash(), keccak256(&raw));
            }
        }
    }
}
