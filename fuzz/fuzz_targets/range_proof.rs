//! Fuzzes what a complete-range proof rests on (crates/merkle `mmr`, crates/light `mpt`), from
//! untrusted bytes.
//!
//! Two modes, by the first byte (mod 2):
//! 0. an honest accumulator of up to 300 leaves and a range proof of a range of it, then a
//!    list of mutations (flip a byte of a leaf or proof hash, drop, duplicate or swap one,
//!    shift the range, change the count): whatever verifies is exactly the honest range;
//! 1. arbitrary trie nodes against the hash of the first one and an arbitrary key: the
//!    verifier answers (a value borrowed from a node, absence, or an error) and never panics;
//!    what it proves present is inside one of the nodes.
#![no_main]

use iotchain_fuzz::Input;
use iotchain_merkle::{
    leaf_hash,
    mmr::{Peaks, range_proof, subtree, verify_range},
};

fn accumulator(input: &mut Input<'_>) {
    let n = 1 + u64::from(input.u8()) + u64::from(input.u8() % 45);
    let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut peaks = Peaks::default();
    for l in &leaves {
        peaks.push(*l);
    }
    let root = peaks.root();
    let (mut first, mut last) = (input.u64() % n, input.u64() % n);
    if first > last {
        std::mem::swap(&mut first, &mut last);
    }
    let proof = range_proof(n, first, last, |level, index| {
        Ok::<_, ()>(subtree(&leaves, level, index))
    })
    .unwrap();
    let honest: Vec<[u8; 32]> = leaves[first as usize..=last as usize].to_vec();
    assert!(verify_range(n, first, last, honest.iter().copied(), &proof, &root).is_ok());
    let (mut shown, mut hashes, mut count, mut from, mut to) =
        (honest.clone(), proof.clone(), n, first, last);
    while !input.is_empty() {
        let (op, at, x) = (input.u8(), input.u8() as usize, input.u8() | 1);
        match op % 8 {
            0 if !shown.is_empty() => {
                let i = at % shown.len();
                shown[i][at % 32] ^= x;
            }
            1 if !hashes.is_empty() => {
                let i = at % hashes.len();
                hashes[i][at % 32] ^= x;
            }
            2 if !shown.is_empty() => {
                shown.remove(at % shown.len());
            }
            3 if !shown.is_empty() => {
                let i = at % shown.len();
                shown.insert(i, shown[i]);
            }
            4 if shown.len() > 1 => {
                let (i, j) = (at % shown.len(), x as usize % shown.len());
                shown.swap(i, j);
            }
            5 if !hashes.is_empty() => {
                hashes.remove(at % hashes.len());
            }
            6 => count = count.wrapping_add(u64::from(x) % 3).wrapping_sub(1),
            _ => {
                from = from.wrapping_add(u64::from(at as u8 % 3)).wrapping_sub(1);
                to = to.wrapping_add(u64::from(x % 3)).wrapping_sub(1);
            }
        }
    }
    if verify_range(count, from, to, shown.iter().copied(), &hashes, &root).is_ok() {
        assert_eq!((count, from, to), (n, first, last));
        assert_eq!(shown, honest);
    }
}

fn trie(input: &mut Input<'_>) {
    let key: [u8; 32] = input.array();
    let mut nodes: Vec<&[u8]> = Vec::new();
    while !input.is_empty() && nodes.len() < 12 {
        let len = input.u8() as usize * 2;
        nodes.push(input.bytes(len));
    }
    let root: [u8; 32] = match nodes.first() {
        Some(n) => alloy_primitives::keccak256(n).0,
        None => [0; 32],
    };
    if let Ok(Some(value)) = iotchain_light::verify_mpt(&root, &key, &nodes) {
        let inside = nodes.iter().any(|n| {
            let (lo, hi) = (n.as_ptr() as usize, n.as_ptr() as usize + n.len());
            value.as_ptr() as usize >= lo && value.as_ptr() as usize + value.len() <= hi
        });
        assert!(inside, "a proven value is a slice of a proof node");
    }
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("range_proof"), |data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8() % 2 == 0 {
        accumulator(&mut input);
    } else {
        trie(&mut input);
    }
});
