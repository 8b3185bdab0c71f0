//! Finality certificates: a quorum of simplex finalize votes over a header hash.
//!
//! A certificate is Commonware simplex's `Finalization` in a self-describing form: the
//! proposal it finalizes (round and parent view, with the header hash as the payload) and the
//! finalize votes, each an Ed25519 signature by a validator over the bytes simplex signs. It
//! can be checked with nothing but the validator set: no consensus code is needed.

use alloy_primitives::{B256, Bytes};
use iotchain_crypto::ValidatorKey;
use serde::{Deserialize, Serialize};

/// The namespace simplex signs every iotchain vote under.
pub const SIMPLEX_NAMESPACE: &[u8] = b"iotchain/simplex/v1";

/// Suffix simplex appends to the namespace for finalize votes.
pub const FINALIZE_SUFFIX: &[u8] = b"_FINALIZE";

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
    /// keccak256 of the finalized header's RLP (the simplex proposal's payload).
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

/// Number of distinct validator signatures that finalize a block among `n` validators:
/// `n - f` where `f = (n - 1) / 3` faults are tolerated.
pub fn quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

/// Appends `value` as an unsigned LEB128 varint (Commonware's `UInt` encoding).
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

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
        let ns_len = SIMPLEX_NAMESPACE.len() + FINALIZE_SUFFIX.len();
        let mut out = Vec::with_capacity(ns_len + 64);
        put_varint(&mut out, ns_len as u64);
        out.extend_from_slice(SIMPLEX_NAMESPACE);
        out.extend_from_slice(FINALIZE_SUFFIX);
        put_varint(&mut out, epoch);
        put_varint(&mut out, view);
        put_varint(&mut out, parent_view);
        out.extend_from_slice(header_hash.as_slice());
        out
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
        let message = self.message();
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
    fn varints_are_leb128() {
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        put_varint(&mut out, 127);
        put_varint(&mut out, 128);
        put_varint(&mut out, 300);
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02]);
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
