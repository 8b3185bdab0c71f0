//! Authenticated relays between nodes. A node relays what it accepted to its peers marked
//! [`FORWARDED_HEADER`]; the receiver neither relays it again nor holds it to a follower's
//! "can I hand this on" check. So the mark is signed: `v1 <key> <signature>`, an Ed25519
//! signature by the relaying node's key over
//! `"iotchain/forwarded/v1" ‖ genesis hash ‖ SHA-256(body)`, and only a genesis validator's
//! key or one the receiving node lists in `forwarders` is taken. Replaying a signed relay
//! only submits the same items again (acknowledged as duplicates).

use alloy_primitives::B256;
use iotchain_crypto::ValidatorKey;
use sha2::{Digest, Sha256};

/// Header marking a submission another node relayed (signed, see the module docs).
pub const FORWARDED_HEADER: &str = "x-iotchain-forwarded";

const DOMAIN: &[u8] = b"iotchain/forwarded/v1";

fn message(genesis: &B256, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 64);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(genesis.as_slice());
    m.extend_from_slice(&Sha256::digest(body));
    m
}

/// The [`FORWARDED_HEADER`] value with which `key` relays `body` on the chain of `genesis`.
pub fn sign_forwarded(key: &ValidatorKey, genesis: &B256, body: &[u8]) -> String {
    let signature = key.sign(&message(genesis, body));
    format!(
        "v1 {} {}",
        hex::encode(key.public_key()),
        hex::encode(signature)
    )
}

/// Why a [`FORWARDED_HEADER`] is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Not `v1 <64 hex> <128 hex>`.
    #[error("x-iotchain-forwarded must be `v1 <node key> <signature>` (relays between nodes only)")]
    Malformed,
    /// The key is neither a validator's nor listed in `forwarders`.
    #[error(
        "x-iotchain-forwarded names key {0}, which is neither a validator's nor in this node's `forwarders`"
    )]
    Untrusted(B256),
    /// The signature does not verify over this body.
    #[error("x-iotchain-forwarded is not signed over this body by key {0}")]
    BadSignature(B256),
}

/// Checks a [`FORWARDED_HEADER`] value over `body`: the relaying node's key if it is one of
/// `trusted` and its signature holds.
pub fn verify_forwarded(
    value: &str,
    genesis: &B256,
    body: &[u8],
    trusted: &[B256],
) -> Result<B256, ForwardError> {
    let mut parts = value.split(' ');
    let (Some("v1"), Some(key), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ForwardError::Malformed);
    };
    let key: [u8; 32] = hex::decode(key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(ForwardError::Malformed)?;
    let sig: [u8; 64] = hex::decode(sig)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(ForwardError::Malformed)?;
    let who = B256::from(key);
    if !trusted.contains(&who) {
        return Err(ForwardError::Untrusted(who));
    }
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| ForwardError::BadSignature(who))?;
    vk.verify_strict(
        &message(genesis, body),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|_| ForwardError::BadSignature(who))?;
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_key_signing_this_body_on_this_chain_is_taken() {
        let key = ValidatorKey::from_secret(&[7; 32]);
        let other = ValidatorKey::from_secret(&[8; 32]);
        let genesis = B256::repeat_byte(1);
        let trusted = [B256::from(key.public_key())];
        let body = b"[readings]";
        let v = sign_forwarded(&key, &genesis, body);
        assert_eq!(
            verify_forwarded(&v, &genesis, body, &trusted),
            Ok(trusted[0])
        );
        // Another body, another chain, a key nobody configured, a bare mark: refused.
        assert!(matches!(
            verify_forwarded(&v, &genesis, b"[other]", &trusted),
            Err(ForwardError::BadSignature(_))
        ));
        assert!(matches!(
            verify_forwarded(&v, &B256::repeat_byte(2), body, &trusted),
            Err(ForwardError::BadSignature(_))
        ));
        let stranger = sign_forwarded(&other, &genesis, body);
        assert!(matches!(
            verify_forwarded(&stranger, &genesis, body, &trusted),
            Err(ForwardError::Untrusted(_))
        ));
        for bad in ["1", "", "v1", "v1 00 00", &format!("{v} x")] {
            assert_eq!(
                verify_forwarded(bad, &genesis, body, &trusted),
                Err(ForwardError::Malformed),
                "{bad}"
            );
        }
    }
}
