//! Merkle root and audit path over a block-sized batch of readings.

use criterion::{Criterion, criterion_group, criterion_main};
use iotchain_merkle::{audit_path, leaf_hash, root};

fn bench(c: &mut Criterion) {
    let leaves: Vec<_> = (0..10_000u32)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    c.bench_function("root of 10,000 leaves", |b| {
        b.iter(|| root(std::hint::black_box(&leaves)))
    });
    c.bench_function("audit path in 10,000 leaves", |b| {
        b.iter(|| audit_path(std::hint::black_box(&leaves), 4321))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
