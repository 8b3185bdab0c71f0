//! Fuzzes proof bundles (`iotchain verify`, the light client's input): parsing from JSON and
//! `ProofBundle::verify` against a fixed genesis of four validators.
//!
//! Two modes, by the first byte:
//! - JSON (`{` or whitespace first): the input is a bundle file. What parses re-serializes to
//!   the same bundle, and what verifies is one of the fixtures' bundles (nothing else is
//!   signed: a bundle that verifies and is not a fixture is a forgery).
//! - structured (anything else): a fixture bundle, then a list of mutations of its fields
//!   (flip a byte, drop, duplicate, swap, truncate). What verifies is still a fixture.
#![no_main]

use alloy_primitives::{B256, Bytes};
use iotchain_block::{Header, ProofBundle};
use iotchain_fuzz::{Input, fixtures, is_fixture_bundle};

fn check(bundle: &ProofBundle) {
    let f = fixtures();
    match bundle.verify(&f.genesis, &iotchain_fuzz::GENESIS_HASH) {
        Ok(v) => {
            assert!(
                is_fixture_bundle(bundle),
                "a bundle that is not a fixture verifies: {}",
                serde_json::to_string(bundle).unwrap()
            );
            let reading = iotchain_reading::decode(&bundle.message).unwrap();
            assert_eq!(v.seq, reading.seq);
            assert_eq!(v.stream, reading.stream);
            assert_eq!(v.height, bundle.header.height);
            assert_eq!(v.header_hash, bundle.header.hash());
            assert!(v.key_is_original);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn flip_header(h: &mut Header, field: u8, at: usize, x: u8) {
    let x64 = u64::from(x) << (8 * (at % 8));
    match field % 10 {
        0 => h.chain_id ^= x64,
        1 => h.height ^= x64,
        2 => h.parent_hash.0[at % 32] ^= x,
        3 => h.timestamp_ms ^= x64,
        4 => h.proposer.0[at % 32] ^= x,
        5 => h.readings_root.0[at % 32] ^= x,
        6 => h.reading_count ^= x64,
        7 => h.transactions_root.0[at % 32] ^= x,
        8 => h.transaction_count ^= x64,
        _ => h.state_root.0[at % 32] ^= x,
    }
}

fn flip_bytes(b: &mut Bytes, at: usize, x: u8) {
    if !b.is_empty() {
        let mut v = b.to_vec();
        let i = at % v.len();
        v[i] ^= x;
        *b = v.into();
    }
}

fn flip_hash(hs: &mut [B256], at: usize, x: u8) {
    if !hs.is_empty() {
        let n = hs.len();
        hs[at % n].0[(at / n) % 32] ^= x;
    }
}

/// Drops (op 0), duplicates (1) or swaps with the next (2) element `at`.
fn reshape<T: Clone>(v: &mut Vec<T>, op: u8, at: usize) {
    if v.is_empty() {
        return;
    }
    let i = at % v.len();
    match op % 3 {
        0 => {
            v.remove(i);
        }
        1 => v.insert(i, v[i].clone()),
        _ => {
            let j = (i + 1) % v.len();
            v.swap(i, j);
        }
    }
}

fn mutate(b: &mut ProofBundle, input: &mut Input<'_>) {
    let what = input.u8();
    let at = usize::from(input.u8()) | usize::from(input.u8()) << 8;
    let x = input.u8();
    let x64 = u64::from(x) << (8 * (at % 8));
    match what % 16 {
        0 => b.version ^= u32::from(x),
        1 => b.reading_id.0[at % 32] ^= x,
        2 => flip_bytes(&mut b.message, at, x),
        3 => {
            // truncate or extend the message
            let mut m = b.message.to_vec();
            if x & 1 == 0 {
                m.truncate(at % (m.len() + 1));
            } else {
                m.push(x);
            }
            b.message = m.into();
        }
        4 => b.index ^= x64,
        5 => flip_hash(&mut b.audit_path, at, x),
        6 => reshape(&mut b.audit_path, x, at),
        7 => flip_bytes(&mut b.device_key.public_key, at, x),
        8 => {
            b.device_key.alg = match x % 3 {
                0 => "EdDSA".into(),
                1 => "ES256".into(),
                _ => "eddsa".into(),
            }
        }
        9 => flip_header(&mut b.header, x, at, x | 1),
        10 => {
            if !b.descendants.is_empty() {
                let n = b.descendants.len();
                flip_header(&mut b.descendants[at % n], x, at / n, x | 1);
            }
        }
        11 => reshape(&mut b.descendants, x, at),
        12 => {
            let c = &mut b.certificate;
            match at % 5 {
                0 => c.height ^= x64,
                1 => c.header_hash.0[(at / 5) % 32] ^= x,
                2 => c.epoch ^= x64,
                3 => c.view ^= x64,
                _ => c.parent_view ^= x64,
            }
        }
        13 => {
            let sigs = &mut b.certificate.signatures;
            if !sigs.is_empty() {
                let n = sigs.len();
                let s = &mut sigs[at % n];
                if x & 1 == 0 {
                    flip_bytes(&mut s.signature, at / n, x | 1);
                } else {
                    s.validator.0[(at / n) % 32] ^= x;
                }
            }
        }
        14 => reshape(&mut b.certificate.signatures, x, at),
        _ => {
            // another fixture's certificate, descendants or device key
            let f = fixtures();
            let other = &f.bundles[at % f.bundles.len()];
            match x % 3 {
                0 => b.certificate = other.certificate.clone(),
                1 => b.descendants = other.descendants.clone(),
                _ => b.device_key = other.device_key.clone(),
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("proof_bundle"), |data: &[u8]| {
    match data.first() {
        None => {}
        Some(b'{' | b' ' | b'\t' | b'\n' | b'\r') => {
            let Ok(bundle) = serde_json::from_slice::<ProofBundle>(data) else {
                return;
            };
            let text = serde_json::to_string(&bundle).expect("a bundle serializes");
            let again: ProofBundle = serde_json::from_str(&text).expect("and parses back");
            assert_eq!(again, bundle);
            check(&bundle);
        }
        Some(_) => {
            let mut input = Input::new(&data[1..]);
            let f = fixtures();
            let mut bundle = f.bundles[usize::from(input.u8()) % f.bundles.len()].clone();
            for _ in 0..16 {
                if input.is_empty() {
                    break;
                }
                mutate(&mut bundle, &mut input);
            }
            check(&bundle);
        }
    }
});
