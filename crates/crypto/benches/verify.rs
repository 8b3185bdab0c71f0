//! Signature verification on the node's hot path: Ed25519 batches and P-256 with ring.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iotchain_crypto::{DevicePublicKey, DeviceSigner, KeyAlg, SignatureCheck, verify_signatures};

fn setup(alg: KeyAlg, n: usize) -> (Vec<DevicePublicKey>, Vec<Vec<u8>>, Vec<[u8; 64]>) {
    let signers: Vec<DeviceSigner> = (0..32u8)
        .map(|i| DeviceSigner::from_secret(alg, &[i + 1; 32]).unwrap())
        .collect();
    let keys = signers.iter().map(|s| s.public_key()).collect();
    let messages: Vec<Vec<u8>> = (0..n as u32)
        .map(|i| [&i.to_be_bytes()[..], &[9u8; 100]].concat())
        .collect();
    let sigs = messages
        .iter()
        .enumerate()
        .map(|(i, m)| signers[i % 32].sign(m))
        .collect();
    (keys, messages, sigs)
}

fn bench(c: &mut Criterion) {
    for (alg, n) in [(KeyAlg::Ed25519, 4096), (KeyAlg::P256, 1024)] {
        let (keys, messages, sigs) = setup(alg, n);
        let checks: Vec<SignatureCheck<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| SignatureCheck {
                key: &keys[i % 32],
                message: m,
                signature: &sigs[i],
            })
            .collect();
        let mut g = c.benchmark_group(format!("verify_signatures/{alg}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(20);
        g.bench_function(format!("{n} signatures, all cores"), |b| {
            b.iter(|| verify_signatures(std::hint::black_box(&checks)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
