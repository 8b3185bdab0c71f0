//! Fuzzes the light client's inputs (crates/light): header chains, finality certificates,
//! reading proofs and Ed25519 signatures, all from untrusted bytes.
//!
//! Three modes, by the first byte (mod 3):
//! 0. differential: a header from the input hashes the same in the light client (its own
//!    no-alloc RLP) and in iotchain-block (alloy-rlp), and its RLP decodes back;
//! 1. a fixture chain (blocks 5..=7, certificates of 5 and 7 by four validators) under a
//!    list of mutations: only an unchanged chain (or another real sub-chain ending at a
//!    certified header) with a subset of at least a quorum of the real signatures verifies;
//! 2. arbitrary headers, certificates, proofs and signatures against a non-empty validator
//!    set: nothing was signed, so nothing verifies, and nothing panics.
#![no_main]

use iotchain_fuzz::{Input, fixtures};
use iotchain_light::{
    Certificate, ChainError, Hash, Header, Proof, ValidatorSignature, verify_certificate,
    verify_ed25519, verify_header_chain, verify_proof,
};

fn header(input: &mut Input<'_>) -> Header {
    Header {
        chain_id: input.u64(),
        height: input.u64(),
        parent_hash: input.array(),
        timestamp_ms: input.u64(),
        proposer: input.array(),
        readings_root: input.array(),
        reading_count: input.u64(),
        transactions_root: input.array(),
        transaction_count: input.u64(),
        state_root: input.array(),
    }
}

fn to_block(h: &Header) -> iotchain_block::Header {
    iotchain_block::Header {
        chain_id: h.chain_id,
        height: h.height,
        parent_hash: h.parent_hash.into(),
        timestamp_ms: h.timestamp_ms,
        proposer: h.proposer.into(),
        readings_root: h.readings_root.into(),
        reading_count: h.reading_count,
        transactions_root: h.transactions_root.into(),
        transaction_count: h.transaction_count,
        state_root: h.state_root.into(),
    }
}

fn differential(input: &mut Input<'_>) {
    let h = header(input);
    let b = to_block(&h);
    assert_eq!(
        h.hash(),
        b.hash().0,
        "light and node hash {h:?} differently"
    );
    assert_eq!(b.to_light(), h);
    let rlp = b.encode_rlp();
    assert_eq!(iotchain_block::Header::decode_rlp(&rlp).unwrap(), b);
}

/// A light certificate's owned parts.
#[derive(Clone, PartialEq)]
struct Cert {
    height: u64,
    header_hash: Hash,
    epoch: u64,
    view: u64,
    parent_view: u64,
    signatures: Vec<ValidatorSignature>,
}

impl Cert {
    fn of(c: &iotchain_block::FinalityCertificate) -> Self {
        Self {
            height: c.height,
            header_hash: c.header_hash.0,
            epoch: c.epoch,
            view: c.view,
            parent_view: c.parent_view,
            signatures: c
                .signatures
                .iter()
                .map(|s| ValidatorSignature {
                    validator: s.validator.0,
                    signature: s.signature.as_ref().try_into().unwrap(),
                })
                .collect(),
        }
    }

    fn light(&self) -> Certificate<'_> {
        Certificate {
            height: self.height,
            header_hash: self.header_hash,
            epoch: self.epoch,
            view: self.view,
            parent_view: self.parent_view,
            signatures: &self.signatures,
        }
    }

    /// Same proposal, a subset of `real`'s signatures with no repeat.
    fn within(&self, real: &Cert) -> bool {
        self.height == real.height
            && self.header_hash == real.header_hash
            && self.epoch == real.epoch
            && self.view == real.view
            && self.parent_view == real.parent_view
            && self
                .signatures
                .iter()
                .enumerate()
                .all(|(i, s)| real.signatures.contains(s) && !self.signatures[..i].contains(s))
    }
}

fn flip_header(h: &mut Header, field: u8, at: usize, x: u8) {
    let x64 = u64::from(x) << (8 * (at % 8));
    match field % 10 {
        0 => h.chain_id ^= x64,
        1 => h.height ^= x64,
        2 => h.parent_hash[at % 32] ^= x,
        3 => h.timestamp_ms ^= x64,
        4 => h.proposer[at % 32] ^= x,
        5 => h.readings_root[at % 32] ^= x,
        6 => h.reading_count ^= x64,
        7 => h.transactions_root[at % 32] ^= x,
        8 => h.transaction_count ^= x64,
        _ => h.state_root[at % 32] ^= x,
    }
}

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

fn mutated_chain(input: &mut Input<'_>) {
    let f = fixtures();
    let all: Vec<Header> = f.blocks.iter().map(|b| b.header.to_light()).collect();
    // The certified tips: block 5 (index 0) and block 7 (index 2).
    let certs = [(0usize, Cert::of(&f.cert5)), (2, Cert::of(&f.cert7))];
    let validators: Vec<Hash> = f.validators.iter().map(|v| v.public_key()).collect();
    let (mut trusted, mut headers, mut cert) = match input.u8() % 3 {
        0 => (all[0], vec![], certs[0].1.clone()),
        1 => (all[0], vec![all[1], all[2]], certs[1].1.clone()),
        _ => (all[1], vec![all[2]], certs[1].1.clone()),
    };
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let what = input.u8();
        let at = usize::from(input.u8()) | usize::from(input.u8()) << 8;
        let x = input.u8() | 1;
        let x64 = u64::from(x) << (8 * (at % 8));
        match what % 8 {
            0 => flip_header(&mut trusted, x, at, x),
            1 => {
                if !headers.is_empty() {
                    let n = headers.len();
                    flip_header(&mut headers[at % n], x, at / n, x);
                }
            }
            2 => reshape(&mut headers, x, at),
            3 => match at % 5 {
                0 => cert.height ^= x64,
                1 => cert.header_hash[(at / 5) % 32] ^= x,
                2 => cert.epoch ^= x64,
                3 => cert.view ^= x64,
                _ => cert.parent_view ^= x64,
            },
            4 => {
                if !cert.signatures.is_empty() {
                    let n = cert.signatures.len();
                    let s = &mut cert.signatures[at % n];
                    if x & 2 == 0 {
                        s.signature[(at / n) % 64] ^= x;
                    } else {
                        s.validator[(at / n) % 32] ^= x;
                    }
                }
            }
            5 => reshape(&mut cert.signatures, x, at),
            6 => cert = certs[at % 2].1.clone(),
            _ => {
                // a real header in place of one of the chain
                let h = all[at % 3];
                if x & 2 == 0 || headers.is_empty() {
                    trusted = h;
                } else {
                    let n = headers.len();
                    headers[(at / 3) % n] = h;
                }
            }
        }
    }
    let verdict = verify_header_chain(&trusted, &headers, &cert.light(), &validators);
    let cert_alone = verify_certificate(&cert.light(), &validators);
    match verdict {
        Ok(()) => {
            assert_eq!(cert_alone, Ok(()));
            // A real sub-chain ending at a certified tip, with that tip's signatures.
            let start = all
                .iter()
                .position(|h| *h == trusted)
                .expect("trusted is real");
            let tip = start + headers.len();
            assert!(
                tip < all.len() && headers == all[start + 1..=tip],
                "a fake chain"
            );
            let (_, real) = certs
                .iter()
                .find(|(i, _)| *i == tip)
                .expect("a certified tip");
            assert!(cert.within(real), "a fake certificate verifies");
        }
        Err(ChainError::Certificate(e)) => assert_eq!(cert_alone, Err(e)),
        Err(ChainError::Header(_)) => {}
    }
}

/// Whether a signature is one of the fixtures' (certificates or readings): the only ones
/// that can verify, since the fuzzer may copy them from what it saw compared.
fn known(sig: &[u8; 64]) -> bool {
    let f = fixtures();
    f.cert5
        .signatures
        .iter()
        .chain(&f.cert7.signatures)
        .any(|s| s.signature.as_ref() == sig)
        || f.readings
            .iter()
            .any(|m| iotchain_reading::decode(m).is_ok_and(|r| r.signature == sig))
}

fn arbitrary(input: &mut Input<'_>) {
    let f = fixtures();
    let validators: Vec<Hash> = match input.u8() % 6 {
        0 => f.validators.iter().map(|v| v.public_key()).collect(),
        n => (0..n).map(|_| input.array()).collect(),
    };
    let trusted = header(input);
    let headers: Vec<Header> = (0..input.u8() % 4).map(|_| header(input)).collect();
    let signatures: Vec<ValidatorSignature> = (0..input.u8() % 6)
        .map(|_| ValidatorSignature {
            validator: if input.u8() & 1 == 0 {
                validators[usize::from(input.u8()) % validators.len()]
            } else {
                input.array()
            },
            signature: input.array(),
        })
        .collect();
    let cert = Certificate {
        height: input.u64(),
        header_hash: if input.u8() & 1 == 0 {
            headers.last().unwrap_or(&trusted).hash()
        } else {
            input.array()
        },
        epoch: input.u64(),
        view: input.u64(),
        parent_view: input.u64(),
        signatures: &signatures,
    };
    let all_known = |c: &Certificate<'_>| c.signatures.iter().all(|s| known(&s.signature));
    match verify_certificate(&cert, &validators) {
        Ok(()) => assert!(all_known(&cert), "a forged certificate"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match verify_header_chain(&trusted, &headers, &cert, &validators) {
        Ok(()) => assert!(all_known(&cert), "a forged certificate"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // A proof of an arbitrary message with an arbitrary key, path and (small) scratch.
    let key_alg = if input.u8() & 1 == 0 {
        iotchain_reading::Alg::EdDsa
    } else {
        iotchain_reading::Alg::Es256
    };
    let key_len = [32usize, 33, 65, 0, 64][usize::from(input.u8()) % 5];
    let device_key = input.bytes(key_len).to_vec();
    let audit_path: Vec<Hash> = (0..input.u8() % 8).map(|_| input.array()).collect();
    let index = input.u64();
    let scratch_len = usize::from(input.u8()) * 4;
    // The fixtures' chain, or (on the input's say) none or another: only the fixtures' verifies.
    let aad: &[u8] = match input.u8() % 3 {
        0 => iotchain_fuzz::GENESIS_HASH.as_slice(),
        1 => &[],
        _ => &[0x9f; 32],
    };
    let ed_key: [u8; 32] = input.array();
    let ed_sig: [u8; 64] = input.array();
    let message = input.rest();
    let proof = Proof {
        reading_id: iotchain_reading::reading_id(message),
        message,
        index,
        audit_path: &audit_path,
        key_alg,
        device_key: &device_key,
        header: trusted,
        descendants: &headers,
        certificate: cert,
    };
    let mut scratch = vec![0u8; scratch_len];
    match verify_proof(&proof, trusted.chain_id, &validators, aad, &mut scratch) {
        Ok(v) => assert!(
            all_known(&cert)
                && iotchain_fuzz::is_fixture_reading(message)
                && aad == iotchain_fuzz::GENESIS_HASH.as_slice(),
            "a forged proof verifies: {v:?}"
        ),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = iotchain_light::device_address(key_alg, &device_key);
    // The fuzzer holds no secret key: only a signature it copied from the fixtures verifies.
    assert!(
        !verify_ed25519(&ed_key, message, &ed_sig) || known(&ed_sig),
        "a forged signature"
    );
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("light"), |data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => differential(&mut input),
        1 => mutated_chain(&mut input),
        _ => arbitrary(&mut input),
    }
});
