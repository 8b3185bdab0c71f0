//! The hash index (reading id → location) as it grows: ids are committed in blocks of
//! 10,000, as a busy chain commits readings, and at each tenth of the way the benchmark prints
//! the insert cost per id over the last stretch, the index's runs and levels, and the time
//! and runs searched of a lookup that hits and of one that misses. Flat is the goal: the
//! lookup figures must not grow with the runs, and the insert cost only with the levels.
//!
//! `cargo bench -p iotchain-storage --bench index` builds 10 million ids (about four minutes
//! on 2 cores, 1.3 GB of temporary disk); `IOTCHAIN_INDEX_IDS=100000000` the long form.

use std::time::{Duration, Instant};

use iotchain_storage::HashIndex;
use redb::{Database, Durability, ReadableDatabase};

const PER_COMMIT: u64 = 10_000;
const INDEX: HashIndex = HashIndex::new("bench_index", 32);
const LOOKUPS: u64 = 20_000;

/// A uniformly spread 32-byte id for `i` (as reading ids, which are hashes, are).
fn id(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for c in k.chunks_mut(8) {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        c.copy_from_slice(&x.to_be_bytes());
    }
    k
}

#[expect(clippy::disallowed_methods, reason = "the benchmark's stopwatch")]
fn now() -> Instant {
    Instant::now()
}

fn main() {
    let total: u64 = std::env::var("IOTCHAIN_INDEX_IDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Database::builder()
        .set_cache_size(256 << 20)
        .create(dir.path().join("index.redb"))
        .expect("a database");
    {
        let w = db.begin_write().expect("a write");
        INDEX.create(&w).expect("tables");
        w.commit().expect("commit");
    }
    println!("hash index, {total} ids in commits of {PER_COMMIT}, 32-byte values");
    println!(
        "{:>12} {:>14} {:>6} {:>7} {:>11} {:>10} {:>12} {:>11}",
        "ids", "insert µs/id", "runs", "levels", "hit µs", "hit runs", "miss µs", "miss runs"
    );
    let value = [7u8; 32];
    let step = (total / 10).max(PER_COMMIT);
    let mut next = 0u64;
    let mut stretch = Duration::ZERO;
    let mut stretch_ids = 0u64;
    while next < total {
        let n = PER_COMMIT.min(total - next);
        let ids: Vec<[u8; 32]> = (next..next + n).map(id).collect();
        let entries: Vec<([u8; 32], &[u8])> = ids.iter().map(|k| (*k, value.as_slice())).collect();
        let t = now();
        let mut w = db.begin_write().expect("a write");
        w.set_durability(Durability::Immediate).expect("durability");
        INDEX.insert(&w, &entries).expect("insert");
        w.commit().expect("commit");
        stretch += t.elapsed();
        stretch_ids += n;
        next += n;
        if next.is_multiple_of(step) || next == total {
            report(&db, next, stretch, stretch_ids);
            stretch = Duration::ZERO;
            stretch_ids = 0;
        }
    }
}

fn report(db: &Database, ids: u64, stretch: Duration, stretch_ids: u64) {
    let r = db.begin_read().expect("a read");
    let shape = INDEX.shape(&r).expect("shape");
    let lookup = |keys: &mut dyn Iterator<Item = u64>, expect_hit: bool| {
        let (mut runs, mut took) = (0u64, Duration::ZERO);
        for i in keys {
            let t = now();
            let (v, p) = INDEX.lookup(&r, &id(i)).expect("lookup");
            took += t.elapsed();
            assert_eq!(v.is_some(), expect_hit, "id {i}");
            runs += u64::from(p.runs);
        }
        (
            took.as_secs_f64() * 1e6 / LOOKUPS as f64,
            runs as f64 / LOOKUPS as f64,
        )
    };
    // Spread over all the ids so far, so lookups land in every level.
    let spacing = (ids / LOOKUPS).max(1);
    let (hit_us, hit_runs) = lookup(&mut (0..LOOKUPS).map(|k| (k * spacing) % ids), true);
    let (miss_us, miss_runs) = lookup(&mut (0..LOOKUPS).map(|k| u64::MAX - k), false);
    println!(
        "{:>12} {:>14.2} {:>6} {:>7} {:>11.1} {:>10.3} {:>12.1} {:>11.3}",
        ids,
        stretch.as_secs_f64() * 1e6 / stretch_ids as f64,
        shape.runs,
        shape.levels,
        hit_us,
        hit_runs,
        miss_us,
        miss_runs
    );
}
