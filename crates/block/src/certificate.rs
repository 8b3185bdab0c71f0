//! Finality certificates: validator signatures over a header hash.

use alloy_primitives::{B256, Bytes};
use iotchain_crypto::ValidatorKey;
use serde::{Deserialize, Serialize};

/// Domain separation prefix of the bytes a validator signs to finalize a header.
pub const FINALITY_DOMAIN: &[u8] = b"iotchain/finality/v1";

/// One validator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSignature {
    /// The validator's Ed25519 public key.
    pub validator: B256,
    /// Ed25519 signature over [`FinalityCertificate::signing_bytes`].
    pub signature: Bytes,
}

/// Proof that a quorum of validators finalized a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityCertificate {
    /// Height of the finalized header.
    pub height: u64,
    /// keccak256 of the finalized header's RLP.
    pub header_hash: B256,
    /// Signatures of distinct validators.
    pub signatures: Vec<ValidatorSignature>,
}

/// Number of distinct validator signatures that finalize a block among `n` validators:
/// `n - f` where `f = (n - 1) / 3` faults are tolerated.
pub fn quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

impl FinalityCertificate {
    /// The bytes a validator signs: `FINALITY_DOMAIN ‖ chain_id (u64 BE) ‖ height (u64 BE) ‖ header_hash`.
    pub fn signing_bytes(chain_id: u64, height: u64, header_hash: &B256) -> Vec<u8> {
        let mut out = Vec::with_capacity(FINALITY_DOMAIN.len() + 48);
        out.extend_from_slice(FINALITY_DOMAIN);
        out.extend_from_slice(&chain_id.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(header_hash.as_slice());
        out
    }

    /// Signs a header as one validator.
    pub fn sign(key: &ValidatorKey, chain_id: u64, height: u64, header_hash: B256) -> Self {
        let sig = key.sign(&Self::signing_bytes(chain_id, height, &header_hash));
        Self {
            height,
            header_hash,
            signatures: vec![ValidatorSignature {
                validator: B256::from(key.public_key()),
                signature: Bytes::copy_from_slice(&sig),
            }],
        }
    }

    /// Checks the certificate against a validator set: every signature is by a distinct member
    /// of the set and valid, and there are at least [`quorum`] of them.
    pub fn verify(&self, chain_id: u64, validators: &[B256]) -> Result<(), String> {
        let message = Self::signing_bytes(chain_id, self.height, &self.header_hash);
        let mut seen: Vec<B256> = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            if !validators.contains(&s.validator) {
                return Err(format!(
                    "signer {} is not a validator of this chain",
                    s.validator
                ));
            }
            if seen.contains(&s.validator) {
                return Err(format!("validator {} signed twice", s.validator));
            }
            let sig: [u8; 64] = s
                .signature
                .as_ref()
                .try_into()
                .map_err(|_| format!("signature of {} is not 64 bytes", s.validator))?;
            if !ValidatorKey::verify(&s.validator.0, &message, &sig) {
                return Err(format!("signature of validator {} is invalid", s.validator));
            }
            seen.push(s.validator);
        }
        let need = quorum(validators.len());
        if seen.len() < need {
            return Err(format!(
                "{} valid signatures, {need} of {} validators needed",
                seen.len(),
                validators.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_two_thirds_plus() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(3), 3);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(7), 5);
    }

    #[test]
    fn certificate_checks() {
        let key = ValidatorKey::from_secret(&[9; 32]);
        let other = ValidatorKey::from_secret(&[8; 32]);
        let set = [B256::from(key.public_key())];
        let cert = FinalityCertificate::sign(&key, 7, 3, B256::repeat_byte(1));
        cert.verify(7, &set).unwrap();
        assert!(cert.verify(8, &set).is_err(), "other chain");
        let mut wrong = cert.clone();
        wrong.header_hash = B256::repeat_byte(2);
        assert!(wrong.verify(7, &set).is_err());
        let forged = FinalityCertificate::sign(&other, 7, 3, B256::repeat_byte(1));
        assert!(
            forged
                .verify(7, &set)
                .unwrap_err()
                .contains("not a validator")
        );
        let mut twice = cert.clone();
        twice.signatures.push(cert.signatures[0].clone());
        assert!(twice.verify(7, &set).is_err());
        let empty = FinalityCertificate {
            signatures: vec![],
            ..cert
        };
        assert!(empty.verify(7, &set).unwrap_err().contains("needed"));
    }
}
