//! Batch signature verification for readings: the node's hot path.

use rayon::prelude::*;

use crate::DevicePublicKey;

/// One signature to check: the key, the signed bytes (a COSE Sig_structure) and the signature.
#[derive(Debug, Clone, Copy)]
pub struct SignatureCheck<'a> {
    /// The device's registered key.
    pub key: &'a DevicePublicKey,
    /// The signed bytes.
    pub message: &'a [u8],
    /// The 64-byte signature.
    pub signature: &'a [u8; 64],
}

/// Ed25519 checks are batched in groups of this many; a failing batch is re-checked one by one.
const ED25519_BATCH: usize = 64;

/// Verifies many signatures, in parallel on all cores, and returns one verdict per check.
///
/// Ed25519 signatures are verified in batches (`ed25519-dalek` batch verification, about
/// twice as fast as one by one); a batch that fails is re-verified one signature at a time so
/// the forged one is named. P-256 signatures are verified with `ring`.
pub fn verify_signatures(checks: &[SignatureCheck<'_>]) -> Vec<bool> {
    let mut verdicts = vec![false; checks.len()];
    // Split by algorithm, keeping positions.
    let (ed, p256): (Vec<usize>, Vec<usize>) =
        (0..checks.len()).partition(|&i| matches!(checks[i].key, DevicePublicKey::Ed25519(_)));

    let ed_results: Vec<(usize, bool)> = ed
        .par_chunks(ED25519_BATCH)
        .flat_map_iter(|chunk| verify_ed25519_chunk(checks, chunk))
        .collect();
    let p_results: Vec<(usize, bool)> = p256
        .par_iter()
        .with_min_len(16)
        .map(|&i| (i, verify_one(&checks[i])))
        .collect();
    for (i, ok) in ed_results.into_iter().chain(p_results) {
        verdicts[i] = ok;
    }
    verdicts
}

fn verify_ed25519_chunk(checks: &[SignatureCheck<'_>], chunk: &[usize]) -> Vec<(usize, bool)> {
    let mut messages = Vec::with_capacity(chunk.len());
    let mut signatures = Vec::with_capacity(chunk.len());
    let mut keys = Vec::with_capacity(chunk.len());
    for &i in chunk {
        let DevicePublicKey::Ed25519(key) = checks[i].key else {
            unreachable!("partitioned")
        };
        messages.push(checks[i].message);
        signatures.push(ed25519_dalek::Signature::from_bytes(checks[i].signature));
        keys.push(*key);
    }
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        chunk.iter().map(|&i| (i, true)).collect()
    } else {
        chunk.iter().map(|&i| (i, verify_one(&checks[i]))).collect()
    }
}

/// Verifies one signature.
fn verify_one(check: &SignatureCheck<'_>) -> bool {
    match check.key {
        DevicePublicKey::Ed25519(key) => key
            .verify_strict(
                check.message,
                &ed25519_dalek::Signature::from_bytes(check.signature),
            )
            .is_ok(),
        DevicePublicKey::P256(pk) => {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, pk)
                .verify(check.message, check.signature)
                .is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceSigner, KeyAlg};

    #[test]
    fn mixed_batch_names_the_forged_signature() {
        let signers: Vec<DeviceSigner> = (0..10)
            .map(|i| {
                DeviceSigner::generate(if i % 3 == 0 {
                    KeyAlg::P256
                } else {
                    KeyAlg::Ed25519
                })
                .unwrap()
            })
            .collect();
        let keys: Vec<DevicePublicKey> = signers.iter().map(|s| s.public_key()).collect();
        let messages: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut sigs: Vec<[u8; 64]> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % 10].sign(m))
            .collect();
        sigs[77][5] ^= 1; // forged Ed25519 (77 % 10 = 7)
        sigs[90][9] ^= 1; // forged P-256 (90 % 10 = 0)
        let checks: Vec<SignatureCheck<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| SignatureCheck {
                key: &keys[i % 10],
                message: m,
                signature: &sigs[i],
            })
            .collect();
        let verdicts = verify_signatures(&checks);
        for (i, ok) in verdicts.iter().enumerate() {
            assert_eq!(*ok, i != 77 && i != 90, "verdict for {i}");
        }
    }
}
