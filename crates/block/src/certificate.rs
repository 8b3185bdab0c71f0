//! Finality certificates: a quorum of simplex finalize votes over a header hash.
//!
//! A certificate is Commonware simplex's `Finalization` in a self-describing form: the
//! proposal it finalizes (round and parent view, with the header hash as the payload) and the
//! finalize votes, each an Ed25519 signature by a validator over the bytes simplex signs. It
//! can be checked with nothing but the validator set: no consensus code is needed.

use alloy_primitives::{B256, Bytes};
use iotchain_crypto::ValidatorKey;
use serde::{Deserialize, Serialize};

pub use iotchain_light::{FINALIZE_SUFFIX, SIMPLEX_NAMESPACE};

/// One validator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidatorSignature {
    /// The validator's Ed25519 public key.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub validator: B256,
    /// Ed25519 signature over [`FinalityCertificate::signing_bytes`].
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x([0-9a-f]{2})*$"))]
    pub signature: Bytes,
}

/// Proof that a quorum of validators finalized a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FinalityCertificate {
    /// Height of the finalized header.
    pub height: u64,
    /// keccak256 of the finalized header's RLP (the simplex proposal's payload).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub header_hash: B256,
    /// Simplex epoch of the proposal (0: the validator set never changes).
    #[serde(default)]
    pub epoch: u64,
    /// Simplex view the header was proposed in.
    #[serde(default)]
    pub view: u64,
    /// Simplex view of the parent's proposal.
    #[serde(default)]
    pub parent_view: u64,
    /// Finalize votes of distinct validators.
    pub signatures: Vec<ValidatorSignature>,
}

pub use iotchain_light::quorum;

impl FinalityCertificate {
    /// A certificate with no signatures yet, for the proposal at `(epoch, view)` on a parent
    /// proposed in `parent_view`.
    pub fn new(height: u64, header_hash: B256, epoch: u64, view: u64, parent_view: u64) -> Self {
        Self {
            height,
            header_hash,
            epoch,
            view,
            parent_view,
            signatures: Vec::new(),
        }
    }

    /// The bytes a validator signs to finalize: simplex's finalize message,
    /// `varint(len(ns)) ‖ ns ‖ varint(epoch) ‖ varint(view) ‖ varint(parent_view) ‖ header_hash`
    /// with `ns = SIMPLEX_NAMESPACE ‖ FINALIZE_SUFFIX` (varints are unsigned LEB128).
    pub fn signing_bytes(epoch: u64, view: u64, parent_view: u64, header_hash: &B256) -> Vec<u8> {
        let mut out = [0u8; iotchain_light::MAX_SIGNING_BYTES];
        let n = iotchain_light::signing_bytes(epoch, view, parent_view, &header_hash.0, &mut out);
        out[..n].to_vec()
    }

    /// This certificate's signed bytes.
    pub fn message(&self) -> Vec<u8> {
        Self::signing_bytes(self.epoch, self.view, self.parent_view, &self.header_hash)
    }

    /// Adds `key`'s finalize vote.
    pub fn signed_by(mut self, key: &ValidatorKey) -> Self {
        let sig = key.sign(&self.message());
        self.signatures.push(ValidatorSignature {
            validator: B256::from(key.public_key()),
            signature: Bytes::copy_from_slice(&sig),
        });
        self
    }

    /// Checks the certificate against a validator set: every signature is by a distinct member
    /// of the set and valid, and there are at least [`quorum`] of them.
    pub fn verify(&self, validators: &[B256]) -> Result<(), String> {
        let signatures = self.light_signatures()?;
        let validators: Vec<[u8; 32]> = validators.iter().map(|v| v.0).collect();
        iotchain_light::verify_certificate(&self.as_light(&signatures), &validators)
            .map_err(|e| e.to_string())
    }

    /// The signatures as the light client takes them (each 64 bytes, or an error naming the
    /// validator whose signature is not).
    pub(crate) fn light_signatures(
        &self,
    ) -> Result<Vec<iotchain_light::ValidatorSignature>, String> {
        self.signatures
            .iter()
            .map(|s| {
                let signature: [u8; 64] = s
                    .signature
                    .as_ref()
                    .try_into()
                    .map_err(|_| format!("signature of {} is not 64 bytes", s.validator))?;
                Ok(iotchain_light::ValidatorSignature {
                    validator: s.validator.0,
                    signature,
                })
            })
            .collect()
    }

    /// This certificate for the light client, over `signatures` (its own, converted).
    pub(crate) fn as_light<'a>(
        &self,
        signatures: &'a [iotchain_light::ValidatorSignature],
    ) -> iotchain_light::Certificate<'a> {
        iotchain_light::Certificate {
            height: self.height,
            header_hash: self.header_hash.0,
            epoch: self.epoch,
            view: self.view,
            parent_view: self.parent_view,
            signatures,
        }
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
    fn varints_are_leb128() {
        let bytes = FinalityCertificate::signing_bytes(128, 300, 0, &B256::ZERO);
        let ns = SIMPLEX_NAMESPACE.len() + FINALIZE_SUFFIX.len();
        assert_eq!(&bytes[1 + ns..1 + ns + 5], [0x80, 0x01, 0xac, 0x02, 0x00]);
    }

    #[test]
    fn certificate_checks() {
        let key = ValidatorKey::from_secret(&[9; 32]);
        let other = ValidatorKey::from_secret(&[8; 32]);
        let set = [B256::from(key.public_key())];
        let cert = FinalityCertificate::new(3, B256::repeat_byte(1), 0, 5, 4).signed_by(&key);
        cert.verify(&set).unwrap();
        let mut wrong = cert.clone();
        wrong.header_hash = B256::repeat_byte(2);
        assert!(wrong.verify(&set).is_err());
        let mut other_view = cert.clone();
        other_view.view = 6;
        assert!(other_view.verify(&set).is_err(), "the round is signed");
        let forged = FinalityCertificate::new(3, B256::repeat_byte(1), 0, 5, 4).signed_by(&other);
        assert!(forged.verify(&set).unwrap_err().contains("not a validator"));
        let mut twice = cert.clone();
        twice.signatures.push(cert.signatures[0].clone());
        assert!(twice.verify(&set).is_err());
        let empty = FinalityCertificate {
            signatures: vec![],
            ..cert
        };
        assert!(empty.verify(&set).unwrap_err().contains("needed"));
    }

    #[test]
    fn below_quorum_is_refused() {
        let keys: Vec<ValidatorKey> = (1..=4u8)
            .map(|i| ValidatorKey::from_secret(&[i; 32]))
            .collect();
        let set: Vec<B256> = keys.iter().map(|k| B256::from(k.public_key())).collect();
        let mut cert = FinalityCertificate::new(9, B256::repeat_byte(7), 0, 12, 11);
        for k in &keys[..2] {
            cert = cert.signed_by(k);
        }
        assert!(cert.verify(&set).unwrap_err().contains("3 of 4"));
        cert.signed_by(&keys[3]).verify(&set).unwrap();
    }
}
