//! Batch signature verification for readings: the node's hot path.
//!
//! Ed25519 signatures are checked with the cofactored equation `[8][s]B = [8]R + [8][k]A`
//! (`k = SHA-512(R ‖ A ‖ M)`, `s` canonical), the rule of ZIP-215 that Commonware's simplex
//! uses for votes too. Unlike the cofactorless equation, it gives the same verdict whether a
//! signature is checked alone or in any batch, so every validator reaches the same verdict on
//! every reading however its batches were formed. The light client checks device signatures
//! with the same rule ([`iotchain_light::verify_ed25519`]).
//!
//! A batch is one multiscalar multiplication over random 128-bit combinations of its
//! equations, with the terms of signatures by the same key merged into one (a device's
//! readings in a batch cost one key term): about 3 times as fast per signature as checking
//! one by one. A batch that fails is split in halves until the forged signatures are found.

use std::collections::HashMap;

use curve25519_dalek::{
    constants::ED25519_BASEPOINT_POINT,
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::Scalar,
    traits::{IsIdentity, VartimeMultiscalarMul},
};
use rand::RngExt;
use rayon::prelude::*;
use sha2::{Digest, Sha512};

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

/// Fewest Ed25519 signatures in a batch when the work is spread over threads: a batch of a
/// few hundred costs less per signature than two halves (the node's own requests and
/// forwards are mostly of this size, and under load every core is busy anyway).
const MIN_BATCH: usize = 512;
/// Most Ed25519 signatures in one batch (the multiscalar multiplication gains little past
/// this, and a forged signature costs a re-check of its batch's halves).
const MAX_BATCH: usize = 1024;
/// A batch this small is checked one signature at a time, not as a batch.
const SINGLES_BELOW: usize = 8;
/// A failing batch of at most this many signatures is settled one signature at a time.
const SINGLES_AT_MOST: usize = 64;

/// Verifies many signatures, in parallel on all cores, and returns one verdict per check.
///
/// Ed25519 signatures are verified in batches (see the module doc); P-256 signatures one by
/// one with `ring`.
pub fn verify_signatures(checks: &[SignatureCheck<'_>]) -> Vec<bool> {
    let mut verdicts = vec![false; checks.len()];
    // Split by algorithm, keeping positions.
    let (ed, p256): (Vec<usize>, Vec<usize>) =
        (0..checks.len()).partition(|&i| matches!(checks[i].key, DevicePublicKey::Ed25519(_)));

    let batch = ed
        .len()
        .div_ceil(rayon::current_num_threads())
        .clamp(MIN_BATCH, MAX_BATCH);
    let ed_results: Vec<(usize, bool)> = ed
        .par_chunks(batch)
        .flat_map_iter(|chunk| verify_ed25519_batch(checks, chunk))
        .collect();
    let p_results: Vec<(usize, bool)> = p256
        .par_iter()
        .with_min_len(16)
        .map(|&i| (i, verify_p256(&checks[i])))
        .collect();
    for (i, ok) in ed_results.into_iter().chain(p_results) {
        verdicts[i] = ok;
    }
    verdicts
}

/// An Ed25519 signature parsed for the verification equation.
struct Prepared {
    /// Position in the caller's checks.
    index: usize,
    /// The key's encoding (terms of equal keys are merged) and its point.
    key: [u8; 32],
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    /// `SHA-512(R ‖ A ‖ M)` reduced.
    k: Scalar,
}

impl Prepared {
    /// Parses a signature: `None` when `R` is not a curve point or `s` is not canonical (the
    /// signature is invalid whatever the equation says).
    fn new(index: usize, check: &SignatureCheck<'_>) -> Option<Self> {
        let DevicePublicKey::Ed25519(key) = check.key else {
            return None;
        };
        let (r_bytes, s_bytes) = check.signature.split_at(32);
        let r = CompressedEdwardsY::from_slice(r_bytes).ok()?.decompress()?;
        let s = Scalar::from_canonical_bytes(s_bytes.try_into().ok()?).into_option()?;
        let digest = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key.as_bytes())
            .chain_update(check.message)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&digest.into());
        Some(Self {
            index,
            key: key.to_bytes(),
            a: key.to_edwards(),
            r,
            s,
            k,
        })
    }

    /// The equation of this signature alone: `[8]([s]B − [k]A − R) = 0`.
    fn holds(&self) -> bool {
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        (sb_minus_ka - self.r).mul_by_cofactor().is_identity()
    }
}

/// Whether every equation of `batch` holds: `[8]([−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ) = 0`
/// for random 128-bit `zᵢ`, the `Aᵢ` terms of one key merged. A false equation makes the
/// sum non-zero except with probability about 2⁻¹²⁵.
fn batch_holds(batch: &[&Prepared]) -> bool {
    let mut rng = rand::rng();
    let mut scalars = Vec::with_capacity(2 * batch.len() + 1);
    let mut points = Vec::with_capacity(2 * batch.len() + 1);
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    let mut b = Scalar::ZERO;
    let mut key_terms: HashMap<[u8; 32], usize> = HashMap::with_capacity(batch.len());
    for p in batch {
        let z = Scalar::from(rng.random::<u128>());
        b -= z * p.s;
        scalars.push(z);
        points.push(p.r);
        let zk = z * p.k;
        match key_terms.entry(p.key) {
            std::collections::hash_map::Entry::Occupied(e) => scalars[*e.get()] += zk,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(scalars.len());
                scalars.push(zk);
                points.push(p.a);
            }
        }
    }
    scalars[0] = b;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Verdicts for `batch`: all true when the batch holds, else found by [`settle_failing`].
fn settle(batch: &[&Prepared], out: &mut Vec<(usize, bool)>) {
    if batch.len() < SINGLES_BELOW {
        singles(batch, out);
    } else if batch_holds(batch) {
        out.extend(batch.iter().map(|p| (p.index, true)));
    } else {
        settle_failing(batch, out);
    }
}

/// Verdicts for a batch known not to hold. Halving finds a few forgeries cheaply; when both
/// halves fail, or the failing batch is small, forgeries are dense and each signature is
/// checked alone, so a flood of forged readings costs at most about twice what checking
/// every signature alone would (halving down to a few signatures cost several times that).
fn settle_failing(batch: &[&Prepared], out: &mut Vec<(usize, bool)>) {
    if batch.len() <= SINGLES_AT_MOST {
        return singles(batch, out);
    }
    let (left, right) = batch.split_at(batch.len() / 2);
    // Valid signatures always pass, so when one half holds the other half holds a forgery.
    if batch_holds(left) {
        out.extend(left.iter().map(|p| (p.index, true)));
        settle_failing(right, out);
    } else if batch_holds(right) {
        out.extend(right.iter().map(|p| (p.index, true)));
        settle_failing(left, out);
    } else {
        singles(batch, out);
    }
}

fn singles(batch: &[&Prepared], out: &mut Vec<(usize, bool)>) {
    out.extend(batch.iter().map(|p| (p.index, p.holds())));
}

fn verify_ed25519_batch(checks: &[SignatureCheck<'_>], chunk: &[usize]) -> Vec<(usize, bool)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut prepared = Vec::with_capacity(chunk.len());
    for &i in chunk {
        match Prepared::new(i, &checks[i]) {
            Some(p) => prepared.push(p),
            None => out.push((i, false)),
        }
    }
    let refs: Vec<&Prepared> = prepared.iter().collect();
    settle(&refs, &mut out);
    out
}

/// Verifies one P-256 signature.
fn verify_p256(check: &SignatureCheck<'_>) -> bool {
    match check.key {
        DevicePublicKey::P256(pk) => {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, pk)
                .verify(check.message, check.signature)
                .is_ok()
        }
        DevicePublicKey::Ed25519(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceSigner, KeyAlg};
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

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

    /// `n` numbered messages, signed round-robin by `signers`.
    fn numbered_signed(signers: &[DeviceSigner], n: usize) -> (Vec<Vec<u8>>, Vec<[u8; 64]>) {
        let messages: Vec<Vec<u8>> = (0..n as u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let sigs = messages
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % signers.len()].sign(m))
            .collect();
        (messages, sigs)
    }

    /// Ed25519 signers from fixed seeds.
    fn ed_signers(n: u8) -> Vec<DeviceSigner> {
        (0..n)
            .map(|i| DeviceSigner::from_secret(KeyAlg::Ed25519, &[i + 1; 32]).unwrap())
            .collect()
    }

    /// A signature by the key of `seed` that holds under the cofactored equation only: its
    /// `R` carries a point of order 8 (`R = [r]B + T`, `s = r + k·a`), so `[s]B − [k]A − R`
    /// is `−T`. A cofactorless verifier rejects it; a device could make one on purpose.
    fn torsion_signature(seed: u8, message: &[u8]) -> [u8; 64] {
        let expanded = Sha512::digest([seed; 32]);
        let mut a_bytes = [0u8; 32];
        a_bytes.copy_from_slice(&expanded[..32]);
        a_bytes[0] &= 248;
        a_bytes[31] &= 127;
        a_bytes[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a_bytes);
        let public = EdwardsPoint::mul_base(&a).compress();
        let r = Scalar::from(0x1234_5678_9abc_def0_u64 + u64::from(seed));
        let big_r = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1]).compress();
        let digest = Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(public.as_bytes())
            .chain_update(message)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&digest.into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn a_torsion_signature_gets_one_verdict_alone_and_in_every_batch() {
        let signers = ed_signers(4);
        let keys: Vec<DevicePublicKey> = signers.iter().map(|s| s.public_key()).collect();
        let message = b"reading with a torsioned R".to_vec();
        let odd = torsion_signature(1, &message);
        let DevicePublicKey::Ed25519(vk) = &keys[0] else {
            unreachable!()
        };
        // Cofactorless verification (RFC 8032's strict check) refuses it ...
        assert!(
            vk.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&odd))
                .is_err()
        );
        // ... the cofactored rule accepts it, alone, in the light client, and in batches of
        // every size, wherever it sits.
        assert!(iotchain_light::verify_ed25519(
            &vk.to_bytes(),
            &message,
            &odd
        ));
        for n in [1usize, 2, 7, 8, 64, 65, 300, 2100] {
            let (mut messages, mut sigs) = numbered_signed(&signers, n);
            let at = n / 2;
            messages[at] = message.clone();
            sigs[at] = odd;
            let checks: Vec<SignatureCheck<'_>> = (0..n)
                .map(|i| SignatureCheck {
                    key: &keys[if i == at { 0 } else { i % 4 }],
                    message: &messages[i],
                    signature: &sigs[i],
                })
                .collect();
            assert!(
                verify_signatures(&checks).iter().all(|v| *v),
                "batch of {n}"
            );
        }
    }

    /// Forgeries spread densely (one in every 8, and one in every 100) through full batches:
    /// each one is found, and no valid signature is refused.
    #[test]
    fn dense_forgeries_get_exact_verdicts() {
        let signers = ed_signers(16);
        let keys: Vec<DevicePublicKey> = signers.iter().map(|s| s.public_key()).collect();
        for every in [8usize, 100] {
            let n = 2 * MAX_BATCH;
            let (messages, mut sigs) = numbered_signed(&signers, n);
            for sig in sigs.iter_mut().skip(3).step_by(every) {
                sig[40] ^= 1;
            }
            let checks: Vec<SignatureCheck<'_>> = (0..n)
                .map(|i| SignatureCheck {
                    key: &keys[i % 16],
                    message: &messages[i],
                    signature: &sigs[i],
                })
                .collect();
            let verdicts = verify_signatures(&checks);
            for (i, v) in verdicts.iter().enumerate() {
                assert_eq!(
                    *v,
                    i < 3 || (i - 3) % every != 0,
                    "signature {i}, one in {every} forged"
                );
            }
        }
    }

    #[test]
    fn non_canonical_s_and_off_curve_r_are_refused_everywhere() {
        let signers = ed_signers(1);
        let key = signers[0].public_key();
        let DevicePublicKey::Ed25519(vk) = &key else {
            unreachable!()
        };
        let message = b"m".to_vec();
        let good = signers[0].sign(&message);
        // s + ℓ: the same equation, but a second encoding of s (malleability).
        let mut malleable = good;
        malleable[32..].copy_from_slice(&add_order(good[32..].try_into().unwrap()));
        // An R that is no curve point (y = 2 has no x on the curve).
        let mut off_curve = good;
        off_curve[..32].copy_from_slice(&{
            let mut y = [0u8; 32];
            y[0] = 2;
            y
        });
        for (what, sig, ok) in [
            ("good", good, true),
            ("s + ℓ", malleable, false),
            ("R off the curve", off_curve, false),
        ] {
            let checks = vec![
                SignatureCheck {
                    key: &key,
                    message: &message,
                    signature: &sig,
                };
                70
            ];
            assert!(
                verify_signatures(&checks).iter().all(|v| *v == ok),
                "{what} in a batch"
            );
            assert_eq!(
                iotchain_light::verify_ed25519(&vk.to_bytes(), &message, &sig),
                ok,
                "{what} alone"
            );
        }
    }

    /// `s + ℓ` for a canonical `s` (little-endian; no overflow since `s + ℓ < 2²⁵⁶`).
    fn add_order(s: [u8; 32]) -> [u8; 32] {
        // ℓ = 2²⁵² + 27742317777372353535851937790883648493
        const ORDER: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(ORDER[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the batch (size, keys repeated or not, forgeries anywhere), each verdict is
        /// the verdict of that signature checked alone by the light client's rule.
        #[test]
        fn batch_verdicts_are_single_verdicts(
            n in 1usize..400,
            devices in 1u8..40,
            forged in proptest::collection::vec((0usize..400, 0usize..64), 0..6),
        ) {
            let signers = ed_signers(devices);
            let keys: Vec<DevicePublicKey> = signers.iter().map(|s| s.public_key()).collect();
            let messages: Vec<Vec<u8>> = (0..n as u32).map(|i| [&i.to_be_bytes()[..], b"reading"].concat()).collect();
            let mut sigs: Vec<[u8; 64]> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| signers[i % devices as usize].sign(m))
                .collect();
            for (at, byte) in forged {
                sigs[at % n][byte] ^= 0x10;
            }
            let checks: Vec<SignatureCheck<'_>> = (0..n)
                .map(|i| SignatureCheck { key: &keys[i % devices as usize], message: &messages[i], signature: &sigs[i] })
                .collect();
            let verdicts = verify_signatures(&checks);
            for (i, c) in checks.iter().enumerate() {
                let DevicePublicKey::Ed25519(vk) = c.key else { unreachable!() };
                prop_assert_eq!(verdicts[i], iotchain_light::verify_ed25519(&vk.to_bytes(), c.message, c.signature), "signature {}", i);
            }
        }
    }
}
