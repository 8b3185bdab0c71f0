//! Owner keys: secp256k1 accounts (Ethereum addresses) that sign device-registry operations.

use alloy_primitives::{Address, B256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::{CryptoError, Result};

/// A 65-byte recoverable secp256k1 signature `r‖s‖v` with `v` in {27, 28} (as Ethereum's
/// `personal_sign`; {0, 1} is accepted too).
pub type OwnerSignature = [u8; 65];

/// An owner's secp256k1 signing key.
#[derive(Clone)]
pub struct OwnerKey(SigningKey);

impl std::fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnerKey({})", self.address())
    }
}

impl OwnerKey {
    /// From a 32-byte secret scalar.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self> {
        SigningKey::from_slice(secret)
            .map(Self)
            .map_err(|_| CryptoError::InvalidSecretKey { alg: "secp256k1" })
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        Address::from_public_key(self.0.verifying_key())
    }

    /// The uncompressed public key (65 bytes).
    pub fn public_key_uncompressed(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Signs a 32-byte hash, returning `r‖s‖v` with `v` in {27, 28}.
    pub fn sign_hash(&self, hash: &B256) -> Result<OwnerSignature> {
        let (sig, recid) = self
            .0
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| CryptoError::Signing(e.to_string()))?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        Ok(out)
    }
}

/// Recovers the owner address that signed `hash`; rejects malleable (high-s) signatures.
pub fn recover_owner(hash: &B256, signature: &OwnerSignature) -> Result<Address> {
    let v = match signature[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        v => {
            return Err(CryptoError::InvalidOwnerSignature(format!(
                "bad recovery id v={v}"
            )));
        }
    };
    let sig = Signature::from_slice(&signature[..64])
        .map_err(|e| CryptoError::InvalidOwnerSignature(e.to_string()))?;
    if sig.normalize_s().is_some() {
        return Err(CryptoError::InvalidOwnerSignature(
            "high-s signature".into(),
        ));
    }
    let recid = RecoveryId::from_byte(v).expect("v is 0 or 1");
    let key = VerifyingKey::recover_from_prehash(hash.as_slice(), &sig, recid)
        .map_err(|e| CryptoError::InvalidOwnerSignature(e.to_string()))?;
    Ok(Address::from_public_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn sign_and_recover() {
        let key = OwnerKey::from_secret(&[7u8; 32]).unwrap();
        let hash = keccak256(b"register");
        let sig = key.sign_hash(&hash).unwrap();
        assert_eq!(recover_owner(&hash, &sig).unwrap(), key.address());
        let other = keccak256(b"revoke");
        assert_ne!(recover_owner(&other, &sig).ok(), Some(key.address()));
        let mut bad = sig;
        bad[64] = 5;
        assert!(recover_owner(&hash, &bad).is_err());
    }

    #[test]
    fn known_address() {
        // Well-known test vector: secret 0x...01 is address 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf.
        let mut secret = [0u8; 32];
        secret[31] = 1;
        let key = OwnerKey::from_secret(&secret).unwrap();
        assert_eq!(
            key.address().to_string(),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
    }
}
