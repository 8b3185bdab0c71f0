//! Owner keys: secp256k1 accounts (Ethereum addresses) that sign device-registry operations.

use alloy_primitives::{Address, B256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

use crate::{CryptoError, Result};

/// A 65-byte recoverable secp256k1 signature `r‖s‖v` with `v` in {27, 28} (as Ethereum's
/// `personal_sign`) and a low `s` (EIP-2). Nothing else is accepted: each signature has one
/// encoding, so a transaction cannot be re-sent under another hash.
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

/// Recovers the owner address that signed `hash`. Refuses the other encodings of a
/// signature, which would recover the same owner: `v` other than 27 or 28 (0 and 1
/// included), and a high `s` (`n - s` signs the same hash, EIP-2).
pub fn recover_owner(hash: &B256, signature: &OwnerSignature) -> Result<Address> {
    let v = match signature[64] {
        v @ (27 | 28) => v - 27,
        v => {
            return Err(CryptoError::InvalidOwnerSignature(format!(
                "recovery id v={v}: it must be 27 or 28"
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

    /// The other encodings of a valid signature (`v` 0/1, all other `v`, `n - s` with the
    /// flipped `v`) all recover to the same owner if accepted: each is refused.
    #[test]
    fn only_one_encoding_of_a_signature_is_accepted() {
        let key = OwnerKey::from_secret(&[9u8; 32]).unwrap();
        for i in 0u8..16 {
            let hash = keccak256([i]);
            let sig = key.sign_hash(&hash).unwrap();
            assert!(matches!(sig[64], 27 | 28));
            assert_eq!(recover_owner(&hash, &sig).unwrap(), key.address());
            for v in (0..=255u8).filter(|v| *v != sig[64]) {
                let mut other = sig;
                other[64] = v;
                match recover_owner(&hash, &other) {
                    // The other recovery id names another key (or none): not this owner.
                    Ok(a) if v == 55 - sig[64] => assert_ne!(a, key.address()),
                    Err(_) if v == 55 - sig[64] => {}
                    Ok(a) => panic!("v={v} accepted, recovering {a}"),
                    Err(e) => assert!(e.to_string().contains("must be 27 or 28"), "v={v}: {e}"),
                }
            }
            // High s: n - s with the other recovery id recovers the same key.
            let low = Signature::from_slice(&sig[..64]).unwrap();
            let (r, s) = low.split_scalars();
            let high = Signature::from_scalars(r, -*s).unwrap();
            assert!(high.normalize_s().is_some(), "n - s is high");
            // (k256 itself refuses to recover from it; other libraries take it.)
            assert_eq!(high.normalize_s(), Some(low), "the twin of the signature");
            let mut flipped = [0u8; 65];
            flipped[..64].copy_from_slice(&high.to_bytes());
            flipped[64] = 55 - sig[64];
            let err = recover_owner(&hash, &flipped).unwrap_err().to_string();
            assert!(err.contains("high-s"), "{err}");
        }
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
