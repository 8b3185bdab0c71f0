//! Decoding a reading and building its Sig_structure: per-reading work before verification.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iotchain_reading::{Alg, DeviceAddress, UnsignedReading, decode, reading_id, sig_structure};

fn bench(c: &mut Criterion) {
    let data = [
        0xa1, 0x67, b't', b'e', b'm', b'p', b'_', b'm', b'c', 0x19, 0x10, 0x68,
    ];
    let m = UnsignedReading::new(
        Alg::EdDsa,
        DeviceAddress([7; 20]),
        42,
        1_700_000_000_000,
        Some("temperature"),
        &data,
    )
    .into_message(&[1; 64]);
    let mut g = c.benchmark_group("reading");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| decode(std::hint::black_box(&m)).unwrap())
    });
    g.bench_function("decode + sig_structure + id", |b| {
        b.iter(|| {
            let r = decode(std::hint::black_box(&m)).unwrap();
            (
                sig_structure(r.protected, &[0x42; 32], r.payload),
                reading_id(&m),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
