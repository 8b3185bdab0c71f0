//! Signature verification on the node's hot path: Ed25519 batches and P-256 with ring.
//!
//! Ed25519 is measured twice: with 32 devices (a gateway's batch holds several readings of
//! each device, whose key terms merge) and with a distinct device per signature (no merging).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iotchain_crypto::{DevicePublicKey, DeviceSigner, KeyAlg, SignatureCheck, verify_signatures};

fn setup(
    alg: KeyAlg,
    n: usize,
    devices: usize,
) -> (Vec<DevicePublicKey>, Vec<Vec<u8>>, Vec<[u8; 64]>) {
    let signers: Vec<DeviceSigner> = (0..devices as u32)
        .map(|i| {
            let mut secret = [1u8; 32];
            secret[..4].copy_from_slice(&(i + 1).to_be_bytes());
            DeviceSigner::from_secret(alg, &secret).unwrap()
        })
        .collect();
    let keys = signers.iter().map(|s| s.public_key()).collect();
    let messages: Vec<Vec<u8>> = (0..n as u32)
        .map(|i| [&i.to_be_bytes()[..], &[9u8; 100]].concat())
        .collect();
    let sigs = messages
        .iter()
        .enumerate()
        .map(|(i, m)| signers[i % devices].sign(m))
        .collect();
    (keys, messages, sigs)
}

fn bench(c: &mut Criterion) {
    for (alg, n, devices) in [
        (KeyAlg::Ed25519, 4096, 32),
        (KeyAlg::Ed25519, 4096, 4096),
        (KeyAlg::P256, 1024, 32),
    ] {
        let (keys, messages, sigs) = setup(alg, n, devices);
        let checks: Vec<SignatureCheck<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| SignatureCheck {
                key: &keys[i % devices],
                message: m,
                signature: &sigs[i],
            })
            .collect();
        let mut g = c.benchmark_group(format!("verify_signatures/{alg}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(20);
        g.bench_function(
            format!("{n} signatures of {devices} devices, all cores"),
            |b| b.iter(|| verify_signatures(std::hint::black_box(&checks))),
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
