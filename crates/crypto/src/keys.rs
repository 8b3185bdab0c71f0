//! Key generation, key files and device public keys.

use std::{fmt, path::Path, str::FromStr};

use alloy_primitives::keccak256;
use iotchain_reading::{Alg, DeviceAddress};
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{self as ring_sig, KeyPair as _},
};
use serde::{Deserialize, Serialize};

use crate::{CryptoError, Result};

/// Fills a fresh array with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random source failed");
    out
}

/// The algorithm of a key in a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlg {
    /// Ed25519: devices and validators.
    Ed25519,
    /// ECDSA over P-256 with SHA-256: devices (secure elements, TPMs).
    P256,
    /// ECDSA over secp256k1: owners (Ethereum accounts).
    Secp256k1,
}

impl KeyAlg {
    /// Lowercase name as used on the command line and in key files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::P256 => "p256",
            Self::Secp256k1 => "secp256k1",
        }
    }

    /// The COSE algorithm a device key of this kind signs readings with.
    pub fn device_alg(self) -> Option<Alg> {
        match self {
            Self::Ed25519 => Some(Alg::EdDsa),
            Self::P256 => Some(Alg::Es256),
            Self::Secp256k1 => None,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" | "eddsa" => Ok(Self::Ed25519),
            "p256" | "p-256" | "es256" | "secp256r1" => Ok(Self::P256),
            "secp256k1" => Ok(Self::Secp256k1),
            other => Err(format!(
                "unknown key algorithm {other:?} (expected ed25519, p256 or secp256k1)"
            )),
        }
    }
}

/// A key file: JSON `{"alg", "public_key", "secret_key", "address"}` with 0x-hex values.
///
/// - `ed25519`: `public_key` is the 32-byte key, `secret_key` the 32-byte seed, `address` the
///   device address (last 20 bytes of keccak256 of the public key).
/// - `p256`: `public_key` is the 65-byte uncompressed SEC1 point `04‖x‖y`, `secret_key` the
///   32-byte scalar, `address` the last 20 bytes of keccak256 of `x‖y`.
/// - `secp256k1`: `public_key` is the 65-byte uncompressed point, `secret_key` the 32-byte
///   scalar, `address` the Ethereum address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key algorithm.
    pub alg: KeyAlg,
    /// Public key, 0x-hex.
    pub public_key: String,
    /// Secret key, 0x-hex. Keep this file private.
    pub secret_key: String,
    /// Device address or Ethereum address, 0x-hex.
    pub address: String,
}

impl KeyFile {
    /// Generates a new key of the given algorithm.
    pub fn generate(alg: KeyAlg) -> Self {
        loop {
            let secret: [u8; 32] = random_bytes();
            if let Ok(file) = Self::from_secret(alg, &secret) {
                return file;
            }
        }
    }

    /// Builds the key file for a given secret (deterministic; used by tests and the devnet).
    pub fn from_secret(alg: KeyAlg, secret: &[u8; 32]) -> Result<Self> {
        let (public_key, address) = match alg {
            KeyAlg::Ed25519 | KeyAlg::P256 => {
                let signer = DeviceSigner::from_secret(alg, secret)?;
                let pk = signer.public_key();
                (pk.to_bytes(), pk.address().to_string())
            }
            KeyAlg::Secp256k1 => {
                let owner = crate::OwnerKey::from_secret(secret)?;
                (owner.public_key_uncompressed(), owner.address().to_string())
            }
        };
        Ok(Self {
            alg,
            public_key: format!("0x{}", hex::encode(public_key)),
            secret_key: format!("0x{}", hex::encode(secret)),
            address,
        })
    }

    /// Reads and checks a key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CryptoError::KeyFile(format!("cannot read {}: {e}", path.display())))?;
        let file: Self = serde_json::from_str(&text).map_err(|e| {
            CryptoError::KeyFile(format!("{} is not a key file: {e}", path.display()))
        })?;
        // Re-derive everything from the secret so a hand-edited file cannot lie.
        let derived = Self::from_secret(file.alg, &file.secret()?)?;
        if !derived.public_key.eq_ignore_ascii_case(&file.public_key)
            || !derived.address.eq_ignore_ascii_case(&file.address)
        {
            return Err(CryptoError::KeyFile(format!(
                "{}: public key or address does not match the secret key",
                path.display()
            )));
        }
        Ok(derived)
    }

    /// Writes the key file, readable by the owner only on Unix.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("key file serializes");
        let io = |e: std::io::Error| {
            CryptoError::KeyFile(format!("cannot write {}: {e}", path.display()))
        };
        #[cfg(unix)]
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        #[cfg(not(unix))]
        std::fs::write(path, text + "\n").map_err(io)?;
        Ok(())
    }

    /// The 32 secret bytes.
    pub fn secret(&self) -> Result<[u8; 32]> {
        let bytes = decode_hex(&self.secret_key)
            .map_err(|e| CryptoError::KeyFile(format!("secret_key: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| CryptoError::KeyFile("secret_key must be 32 bytes".into()))
    }

    /// The public key bytes.
    pub fn public_key_bytes(&self) -> Result<Vec<u8>> {
        decode_hex(&self.public_key).map_err(|e| CryptoError::KeyFile(format!("public_key: {e}")))
    }

    /// A device signer for an `ed25519` or `p256` key file.
    pub fn device_signer(&self) -> Result<DeviceSigner> {
        DeviceSigner::from_secret(self.alg, &self.secret()?)
    }

    /// An owner key for a `secp256k1` key file.
    pub fn owner_key(&self) -> Result<crate::OwnerKey> {
        if self.alg != KeyAlg::Secp256k1 {
            return Err(CryptoError::WrongKeyAlg {
                expected: "secp256k1",
                found: self.alg.as_str(),
            });
        }
        crate::OwnerKey::from_secret(&self.secret()?)
    }

    /// A validator key for an `ed25519` key file.
    pub fn validator_key(&self) -> Result<ValidatorKey> {
        if self.alg != KeyAlg::Ed25519 {
            return Err(CryptoError::WrongKeyAlg {
                expected: "ed25519",
                found: self.alg.as_str(),
            });
        }
        Ok(ValidatorKey::from_secret(&self.secret()?))
    }
}

/// Decodes hex with or without a `0x` prefix.
fn decode_hex(s: &str) -> std::result::Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|e| format!("not hex: {e}"))
}

/// A device's public key, as registered on chain.
#[derive(Clone, PartialEq, Eq)]
pub enum DevicePublicKey {
    /// Ed25519 public key, kept decompressed: verification then skips a point decompression
    /// (a field exponentiation) per signature.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// P-256 public key, uncompressed SEC1 (`04‖x‖y`, 65 bytes).
    P256([u8; 65]),
}

impl fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:0x{}", self.alg(), hex::encode(self.to_bytes()))
    }
}

impl DevicePublicKey {
    /// Parses a public key: Ed25519 as 32 bytes; P-256 as SEC1, compressed (33 bytes) or
    /// uncompressed (65 bytes). The point is checked to be valid on the curve.
    pub fn from_bytes(alg: Alg, bytes: &[u8]) -> Result<Self> {
        match alg {
            Alg::EdDsa => {
                let arr: [u8; 32] =
                    bytes
                        .try_into()
                        .map_err(|_| CryptoError::InvalidPublicKey {
                            alg: "ed25519",
                            reason: format!("expected 32 bytes, got {}", bytes.len()),
                        })?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|_| {
                    CryptoError::InvalidPublicKey {
                        alg: "ed25519",
                        reason: "not a curve point".into(),
                    }
                })?;
                if key.is_weak() {
                    return Err(CryptoError::InvalidPublicKey {
                        alg: "ed25519",
                        reason: "a small-order (weak) key".into(),
                    });
                }
                Ok(Self::Ed25519(key))
            }
            Alg::Es256 => {
                let key = p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| {
                    CryptoError::InvalidPublicKey {
                        alg: "p256",
                        reason: format!(
                            "expected a SEC1 point (33 or 65 bytes) on the curve, got {} bytes",
                            bytes.len()
                        ),
                    }
                })?;
                let point = p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&key, false);
                let mut out = [0u8; 65];
                out.copy_from_slice(point.as_bytes());
                Ok(Self::P256(out))
            }
        }
    }

    /// The COSE algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::EdDsa,
            Self::P256(_) => Alg::Es256,
        }
    }

    /// Canonical bytes: 32 for Ed25519, 65 (uncompressed SEC1) for P-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.as_bytes().to_vec(),
            Self::P256(k) => k.to_vec(),
        }
    }

    /// The device address: last 20 bytes of keccak256 of the key (Ed25519: 32 bytes;
    /// P-256: the 64-byte `x‖y`).
    pub fn address(&self) -> DeviceAddress {
        match self {
            Self::Ed25519(k) => device_address(k.as_bytes()),
            Self::P256(k) => device_address(&k[1..]),
        }
    }
}

/// Last 20 bytes of keccak256 of the given key bytes.
pub fn device_address(key_bytes: &[u8]) -> DeviceAddress {
    let hash = keccak256(key_bytes);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    DeviceAddress(out)
}

/// A device's signing key (used by the CLI, the devnet's simulated devices and tests;
/// real devices use the `no_std` device SDK).
pub enum DeviceSigner {
    /// Ed25519.
    Ed25519(Box<ed25519_dalek::SigningKey>),
    /// ECDSA P-256 (SHA-256), signed with `ring`.
    P256(Box<ring_sig::EcdsaKeyPair>),
}

impl fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceSigner({:?})", self.public_key())
    }
}

impl DeviceSigner {
    /// Builds a signer from 32 secret bytes.
    pub fn from_secret(alg: KeyAlg, secret: &[u8; 32]) -> Result<Self> {
        match alg {
            KeyAlg::Ed25519 => Ok(Self::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_bytes(secret),
            ))),
            KeyAlg::P256 => {
                let sk = p256::SecretKey::from_slice(secret)
                    .map_err(|_| CryptoError::InvalidSecretKey { alg: "p256" })?;
                let public =
                    p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&sk.public_key(), false);
                let pair = ring_sig::EcdsaKeyPair::from_private_key_and_public_key(
                    &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    secret,
                    public.as_bytes(),
                    &SystemRandom::new(),
                )
                .map_err(|_| CryptoError::InvalidSecretKey { alg: "p256" })?;
                Ok(Self::P256(Box::new(pair)))
            }
            KeyAlg::Secp256k1 => Err(CryptoError::WrongKeyAlg {
                expected: "ed25519 or p256",
                found: "secp256k1",
            }),
        }
    }

    /// Generates a fresh device key.
    pub fn generate(alg: KeyAlg) -> Result<Self> {
        KeyFile::generate(alg).device_signer()
    }

    /// The COSE algorithm of this key.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::EdDsa,
            Self::P256(_) => Alg::Es256,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> DevicePublicKey {
        match self {
            Self::Ed25519(k) => DevicePublicKey::Ed25519(k.verifying_key()),
            Self::P256(k) => {
                let mut out = [0u8; 65];
                out.copy_from_slice(k.public_key().as_ref());
                DevicePublicKey::P256(out)
            }
        }
    }

    /// The device address.
    pub fn address(&self) -> DeviceAddress {
        self.public_key().address()
    }

    /// Signs a message (a COSE Sig_structure): 64 bytes, Ed25519 or P-256 raw `r‖s` with the
    /// low `s` (the canonical form a reading's id is over).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            Self::Ed25519(k) => ed25519_dalek::Signer::sign(k.as_ref(), message).to_bytes(),
            Self::P256(k) => {
                let sig = k
                    .sign(&SystemRandom::new(), message)
                    .expect("P-256 signing with a valid key does not fail");
                let mut out = [0u8; 64];
                out.copy_from_slice(sig.as_ref());
                iotchain_reading::canonical_signature(iotchain_reading::Alg::Es256, &out)
            }
        }
    }

    /// Builds and signs a complete reading (tagged COSE_Sign1, canonical) for the chain whose
    /// readings sign `external_aad` (its genesis hash, `Genesis::reading_aad`).
    pub fn sign_reading(
        &self,
        external_aad: &[u8],
        seq: u64,
        ts: u64,
        stream: Option<&str>,
        data_cbor: &[u8],
    ) -> Vec<u8> {
        let unsigned = iotchain_reading::UnsignedReading::new(
            self.alg(),
            self.address(),
            seq,
            ts,
            stream,
            data_cbor,
        );
        let signature = self.sign(&unsigned.sig_structure(external_aad));
        unsigned.into_message(&signature)
    }
}

/// A validator's Ed25519 key, which signs block headers.
#[derive(Clone)]
pub struct ValidatorKey(ed25519_dalek::SigningKey);

impl fmt::Debug for ValidatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValidatorKey(0x{})", hex::encode(self.public_key()))
    }
}

impl ValidatorKey {
    /// From a 32-byte seed.
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// The 32-byte seed (for handing the key to the consensus engine).
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        ed25519_dalek::Signer::sign(&self.0, message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_reject_tampering() {
        let dir = std::env::temp_dir().join(format!("iotchain-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
            let file = KeyFile::generate(alg);
            let path = dir.join(format!("{alg}.json"));
            file.write(&path).unwrap();
            let back = KeyFile::read(&path).unwrap();
            assert_eq!(back.address, file.address);
            let mut forged = file.clone();
            forged.address = format!("0x{}", "00".repeat(20));
            forged.write(&path).unwrap();
            assert!(
                KeyFile::read(&path).is_err(),
                "{alg}: forged address accepted"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// ring's P-256 signatures have a random `s`: the signer keeps the low one, so what it
    /// signs is a canonical message whose id is the hash of its bytes.
    #[test]
    fn p256_readings_are_canonical() {
        let signer = DeviceSigner::from_secret(KeyAlg::P256, &[8; 32]).unwrap();
        for seq in 0..32 {
            let m = signer.sign_reading(&[7; 32], seq, 1, None, &[0x01]);
            let r = iotchain_reading::decode(&m).unwrap();
            assert!(r.is_canonical_encoding(&m), "seq {seq}");
            assert_eq!(iotchain_reading::reading_id(&m), leaf_hash_of(&m));
        }
    }

    fn leaf_hash_of(m: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::new()
            .chain_update([0u8])
            .chain_update(m)
            .finalize()
            .into()
    }

    #[test]
    fn p256_compressed_and_uncompressed_give_one_address() {
        let signer = DeviceSigner::generate(KeyAlg::P256).unwrap();
        let DevicePublicKey::P256(uncompressed) = signer.public_key() else {
            panic!()
        };
        let pk = p256::PublicKey::from_sec1_bytes(&uncompressed).unwrap();
        let compressed = p256::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&pk, true);
        let a = DevicePublicKey::from_bytes(Alg::Es256, compressed.as_bytes()).unwrap();
        assert_eq!(a, signer.public_key());
        assert_eq!(a.address(), device_address(&uncompressed[1..]));
        assert!(DevicePublicKey::from_bytes(Alg::Es256, &[4u8; 65]).is_err());
        assert!(DevicePublicKey::from_bytes(Alg::EdDsa, &[1u8; 31]).is_err());
    }
}
