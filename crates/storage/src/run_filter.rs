//! Membership filters of the hash index's runs: a Bloom filter per run, cut into pages by key
//! prefix, so a lookup of a key a run does not hold reads one small page instead of the run.
//!
//! A run's keys are sorted, and a key's page is chosen by its leading bits, so the pages of a
//! run are written in order as the run is written (once each, whether the run is written in one
//! go or by a merge over many commits) and a lookup reads exactly one of them. Within its page a
//! key sets [`PROBES`] bits chosen by double hashing. At [`BITS_PER_KEY`] bits per key the
//! false-positive rate is about 1 %.

/// Filter bits per key of a run.
pub(crate) const BITS_PER_KEY: u64 = 10;
/// Bytes of one filter page (one stored value).
pub(crate) const PAGE_BYTES: usize = 4096;
const PAGE_BITS: u64 = PAGE_BYTES as u64 * 8;
/// Bits a key sets in its page (optimal for 10 bits per key is about 7).
const PROBES: u64 = 7;

/// Pages of the filter of a run of `keys` keys (at least one).
pub(crate) fn pages_for(keys: u64) -> u32 {
    u32::try_from(keys.saturating_mul(BITS_PER_KEY).div_ceil(PAGE_BITS).max(1)).unwrap_or(u32::MAX)
}

/// The page holding `key`'s bits, in a filter of `pages` pages: monotonic in the key's order.
pub(crate) fn page_of(key: &[u8; 32], pages: u32) -> u32 {
    let prefix = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    ((u128::from(prefix) * u128::from(pages)) >> 64) as u32
}

/// Splitmix64's finaliser: spreads keys that are not uniformly random.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn bits(key: &[u8; 32]) -> impl Iterator<Item = usize> {
    let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let h1 = mix(word(0) ^ mix(word(8) ^ mix(word(16) ^ mix(word(24)))));
    let h2 = mix(h1 ^ word(8)) | 1;
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % PAGE_BITS) as usize)
}

/// Sets `key`'s bits in its page.
pub(crate) fn insert(page: &mut [u8], key: &[u8; 32]) {
    for b in bits(key) {
        page[b / 8] |= 1 << (b % 8);
    }
}

/// Whether `key` may be in the run whose page this is (`false` is certain). A damaged page
/// (of the wrong length) answers `true`, so the run itself is searched.
pub(crate) fn may_contain(page: &[u8], key: &[u8; 32]) -> bool {
    page.len() != PAGE_BYTES || bits(key).all(|b| page[b / 8] & (1 << (b % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u64) -> [u8; 32] {
        let mut k = [0u8; 32];
        for (n, c) in k.chunks_mut(8).enumerate() {
            c.copy_from_slice(&mix(i.wrapping_mul(4).wrapping_add(n as u64)).to_be_bytes());
        }
        k
    }

    proptest! {
        /// No false negatives, pages in key order, a page inside the filter.
        #[test]
        fn inserted_keys_are_always_found(keys in proptest::collection::vec(any::<[u8; 32]>(), 1..200)) {
            let pages = pages_for(keys.len() as u64);
            let mut filter = vec![vec![0u8; PAGE_BYTES]; pages as usize];
            let mut sorted = keys.clone();
            sorted.sort();
            let mut last = 0;
            for k in &sorted {
                let p = page_of(k, pages);
                prop_assert!(p < pages && p >= last);
                last = p;
                insert(&mut filter[p as usize], k);
            }
            for k in &keys {
                prop_assert!(may_contain(&filter[page_of(k, pages) as usize], k));
            }
        }
    }

    #[test]
    fn false_positives_are_about_one_percent() {
        let n = 100_000u64;
        let pages = pages_for(n);
        let mut filter = vec![vec![0u8; PAGE_BYTES]; pages as usize];
        for i in 0..n {
            let k = key(i);
            insert(&mut filter[page_of(&k, pages) as usize], &k);
        }
        let tries = 100_000u64;
        let hits = (n..n + tries)
            .filter(|i| {
                let k = key(*i);
                may_contain(&filter[page_of(&k, pages) as usize], &k)
            })
            .count();
        let rate = hits as f64 / tries as f64;
        assert!(rate < 0.02, "false-positive rate {rate}");
        // A damaged (short) page sends the lookup to the run rather than miss a key.
        assert!(may_contain(&filter[0][..10], &key(n + 1)));
    }
}
