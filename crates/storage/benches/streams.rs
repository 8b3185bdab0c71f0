//! The stream index at the scale of a year of minute data: 525,600 readings of one device
//! stream (one per minute), committed in blocks of 1,000. Prints what indexing costs per
//! reading, then criterion measures a page of 1,000 readings at a random position, a
//! device-time range of a day, and the year's chart in minute buckets (525,600 of them).
//!
//! `cargo bench -p iotchain-storage --bench streams` (about two minutes on 2 cores).

use std::time::Instant;

use alloy_primitives::B256;
use criterion::{Criterion, criterion_group, criterion_main};
use iotchain_block::{Block, BlockItem, FinalityCertificate, Header};
use iotchain_reading::{Alg, DeviceAddress, UnsignedReading};
use iotchain_state::StateRecords;
use iotchain_storage::{BlockCommit, BlockGas, ChainStore, StreamCursor, StreamRange};

const DEVICE: [u8; 20] = [7; 20];
const READINGS: u64 = 525_600;
const PER_BLOCK: u64 = 1_000;
const BASE_TS: u64 = 1_700_000_000_000 / 86_400_000 * 86_400_000; // midnight UTC

fn block(height: u64, readings: std::ops::Range<u64>) -> Block {
    let items = readings
        .map(|seq| {
            // A half float such as 21.5, as a thermometer sends.
            let data = [0xf9, 0x4d, (seq % 256) as u8];
            let u = UnsignedReading::new(
                Alg::EdDsa,
                DeviceAddress(DEVICE),
                seq,
                BASE_TS + seq * 60_000,
                Some("temp"),
                &data,
            );
            BlockItem::Reading(u.into_message(&[0; 64]).into())
        })
        .collect();
    Block {
        header: Header {
            chain_id: 1,
            height,
            parent_hash: B256::ZERO,
            timestamp_ms: BASE_TS + height * 1000,
            proposer: B256::ZERO,
            readings_root: B256::ZERO,
            reading_count: PER_BLOCK,
            transactions_root: B256::ZERO,
            transaction_count: 0,
            state_root: B256::ZERO,
        },
        items,
    }
}

fn commit(store: &ChainStore, b: &Block) {
    let cert = FinalityCertificate::new(b.header.height, b.header.hash(), 0, 1, 0);
    store
        .commit_block(&BlockCommit {
            block: b,
            certificate: &cert,
            readings: &[],
            txs: &[],
            state: &StateRecords::default(),
            receipts: &[],
            hook_calls: &[],
            gas: BlockGas::default(),
            log_done: 0,
            refused: &[],
            undo: None,
            nodes: &[],
        })
        .expect("commit");
}

// A benchmark measures wall-clock time: the clock ban of clippy.toml (for consensus code) does
// not apply here.
#[allow(clippy::disallowed_methods)]
fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ChainStore::open(&dir.path().join("chain.redb"), 256 << 20).expect("open");
    commit(&store, &block(0, 0..0));
    let (mut with, mut total) = (std::time::Duration::ZERO, 0u64);
    for h in 1..=READINGS / PER_BLOCK + 1 {
        let start = (h - 1) * PER_BLOCK;
        let b = block(h, start..(start + PER_BLOCK).min(READINGS));
        let t = Instant::now();
        commit(&store, &b);
        with += t.elapsed();
        total += b.items.len() as u64;
    }
    println!(
        "committed {total} readings in {} blocks: {:.2} µs per reading (block blob, index entries, minute buckets, one fsync per block)",
        READINGS / PER_BLOCK + 1,
        with.as_secs_f64() * 1e6 / total as f64
    );
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    c.bench_function("page of 1,000 readings at a random position", |b| {
        b.iter(|| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = rng % (READINGS - PER_BLOCK);
            let (_, page, _) = store
                .stream_page(
                    &DEVICE,
                    "temp",
                    &StreamRange::default(),
                    StreamCursor::Position(at),
                    false,
                    1000,
                )
                .expect("page")
                .expect("stream");
            assert_eq!(page.len(), 1000);
        })
    });
    c.bench_function("a day of device time (1,440 readings, two pages)", |b| {
        b.iter(|| {
            let day = BASE_TS + 200 * 86_400_000;
            let range = StreamRange {
                ts: Some((day, day + 86_400_000 - 1)),
                ..StreamRange::default()
            };
            let (_, page, more) = store
                .stream_page(&DEVICE, "temp", &range, StreamCursor::Start, false, 1000)
                .expect("page")
                .expect("stream");
            assert!(page.len() == 1000 && more);
        })
    });
    let mut g = c.benchmark_group("chart");
    g.sample_size(10);
    g.bench_function("a year in minute buckets (525,600)", |b| {
        b.iter(|| {
            let buckets = store
                .stream_series(&DEVICE, "temp", 0, u64::MAX, 60_000)
                .expect("series")
                .expect("stream");
            assert_eq!(buckets.len() as u64, READINGS);
        })
    });
    g.bench_function("a year in hour buckets (8,760)", |b| {
        b.iter(|| {
            let buckets = store
                .stream_series(&DEVICE, "temp", 0, u64::MAX, 3_600_000)
                .expect("series")
                .expect("stream");
            assert_eq!(buckets.len(), 8_760);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
