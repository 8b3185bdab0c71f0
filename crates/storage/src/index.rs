//! A write-once index from 32-byte hashes to fixed-size values, log-structured inside redb.
//!
//! Reading ids and transaction hashes are uniformly random. In one B-tree, each of a block's
//! thousands of inserts lands on its own leaf page, so a commit rewrote (copied, checksummed,
//! wrote and synced) a page per reading: about 8 µs of CPU per reading on a 2-core machine,
//! on every node. Here a block's keys go into a small level-0 table instead, whose few
//! hundred pages stay the same ones commit after commit. When it is full it is written out
//! as a *run*: an immutable table of sorted entries packed [`CHUNK`] to a value, keyed by
//! each chunk's first key (a few page writes per thousand entries). Every [`FANOUT`] runs of
//! one level are merged into one run of the next. Each level has at most one merge in
//! progress, and every commit moves each of them forward by a bounded step of at least four
//! times the entries it inserts, so no commit stalls for a large merge and no level falls
//! behind: a level holds fewer than `2 × FANOUT` runs, and `n` entries make about
//! `log_FANOUT(n / LEVEL0_MAX)` levels (a billion ids: nine levels, at most 63 runs).
//!
//! Each run has a Bloom filter ([`crate::run_filter`]) written with it, a page per range of
//! keys, so a lookup reads one small filter page per run and searches only the runs whose
//! filter claims the key (the one holding it, plus about 1 % of the others).
//!
//! Everything happens in the caller's write transaction: a block's index entries are
//! durable exactly when the block is, and a crash leaves the index as of the last commit.
//! A lookup checks level 0, then the runs from the newest (keys are written once, so the
//! first hit is the answer).

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::run_filter;
use crate::{Result, StorageError};

/// Entries of a run packed into one stored value.
const CHUNK: usize = 128;
/// Runs of one level merged into one run of the next.
const FANOUT: usize = 4;
/// Entries level 0 holds before it is written out as a run.
const LEVEL0_MAX: u64 = 8_192;
/// Fewest entries a commit moves forward in a merge in progress (it moves at least four
/// times as many as it inserts, so merges keep up with the inflow).
const MIN_MERGE_STEP: usize = 8 * CHUNK;

/// An index of one kind of key (its tables are named after it).
#[derive(Debug, Clone, Copy)]
pub struct HashIndex {
    name: &'static str,
    value_len: usize,
    chunk: usize,
    fanout: usize,
    level0_max: u64,
    min_merge_step: usize,
}

/// A complete run. `filter` is the number of its filter's pages (0: written before runs had
/// filters, always searched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    id: u64,
    level: u8,
    len: u64,
    filter: u32,
}

/// A merge in progress: `sources` (runs of `level - 1`) into the run `target` of `level`,
/// written up to and including the key `after`, with a filter of `filter` pages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Merge {
    target: u64,
    level: u8,
    sources: Vec<u64>,
    written: u64,
    after: Option<[u8; 32]>,
    filter: u32,
}

/// Where the index stands: stored under [`LAYOUT_KEY`] in the layout table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Layout {
    next_run: u64,
    level0: u64,
    /// Complete runs, oldest first.
    runs: Vec<Run>,
    /// Merges in progress, at most one per target level, lowest level first.
    merges: Vec<Merge>,
}

const LAYOUT_KEY: &str = "layout";
/// First byte of a layout in the current encoding. Layouts written before per-level merges
/// and filters start with the high byte of `next_run`, which is zero.
const LAYOUT_V2: u8 = 2;

/// What one lookup read, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probes {
    /// Filter pages read.
    pub filters: u32,
    /// Runs searched.
    pub runs: u32,
    /// Complete runs the index has.
    pub of_runs: u32,
}

/// How big the index is, for benchmarks and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexShape {
    /// Complete runs.
    pub runs: usize,
    /// Levels that have runs.
    pub levels: usize,
    /// Merges in progress.
    pub merges: usize,
    /// Entries in complete runs and level 0.
    pub entries: u64,
}

impl Layout {
    /// The levels that have runs, lowest first.
    fn levels(&self) -> Vec<u8> {
        let mut levels: Vec<u8> = self.runs.iter().map(|r| r.level).collect();
        levels.sort_unstable();
        levels.dedup();
        levels
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![LAYOUT_V2];
        out.extend_from_slice(&self.next_run.to_be_bytes());
        out.extend_from_slice(&self.level0.to_be_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.id.to_be_bytes());
            out.push(r.level);
            out.extend_from_slice(&r.len.to_be_bytes());
            out.extend_from_slice(&r.filter.to_be_bytes());
        }
        out.extend_from_slice(&(self.merges.len() as u32).to_be_bytes());
        for m in &self.merges {
            out.extend_from_slice(&m.target.to_be_bytes());
            out.push(m.level);
            out.extend_from_slice(&m.written.to_be_bytes());
            out.extend_from_slice(&m.filter.to_be_bytes());
            match &m.after {
                None => out.push(0),
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(k);
                }
            }
            out.extend_from_slice(&(m.sources.len() as u32).to_be_bytes());
            for s in &m.sources {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let v2 = bytes.first() == Some(&LAYOUT_V2);
        let mut r = Reader(if v2 { &bytes[1..] } else { bytes });
        let next_run = r.u64()?;
        let level0 = r.u64()?;
        let runs = (0..r.u32()?)
            .map(|_| {
                Some(Run {
                    id: r.u64()?,
                    level: r.u8()?,
                    len: r.u64()?,
                    filter: if v2 { r.u32()? } else { 0 },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let merge = |r: &mut Reader<'_>| -> Option<Merge> {
            let target = r.u64()?;
            let level = r.u8()?;
            let written = r.u64()?;
            let filter = if v2 { r.u32()? } else { 0 };
            let after = match r.u8()? {
                0 => None,
                1 => Some(r.take(32)?.try_into().ok()?),
                _ => return None,
            };
            let sources = (0..r.u32()?).map(|_| r.u64()).collect::<Option<Vec<_>>>()?;
            Some(Merge {
                target,
                level,
                sources,
                written,
                after,
                filter,
            })
        };
        let merges = if v2 {
            (0..r.u32()?)
                .map(|_| merge(&mut r))
                .collect::<Option<Vec<_>>>()?
        } else {
            match r.u8()? {
                0 => Vec::new(),
                1 => vec![merge(&mut r)?],
                _ => return None,
            }
        };
        r.0.is_empty().then_some(Self {
            next_run,
            level0,
            runs,
            merges,
        })
    }
}

/// Reads big-endian fields off a byte slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

type Table<'a> = TableDefinition<'a, [u8; 32], &'static [u8]>;
type FilterTable<'a> = TableDefinition<'a, u32, &'static [u8]>;

/// Reads a run's entries in key order, a chunk at a time, from just after a key.
struct RunCursor {
    table: String,
    chunk: Vec<u8>,
    pos: usize,
    chunk_key: Option<[u8; 32]>,
    done: bool,
}

impl HashIndex {
    /// An index whose tables start with `name`, of values of `value_len` bytes.
    pub const fn new(name: &'static str, value_len: usize) -> Self {
        Self {
            name,
            value_len,
            chunk: CHUNK,
            fanout: FANOUT,
            level0_max: LEVEL0_MAX,
            min_merge_step: MIN_MERGE_STEP,
        }
    }

    fn entry_len(&self) -> usize {
        32 + self.value_len
    }

    fn layout_table(&self) -> String {
        format!("{}.layout", self.name)
    }

    fn level0_table(&self) -> String {
        format!("{}.level0", self.name)
    }

    fn run_table(&self, id: u64) -> String {
        format!("{}.run.{id:016x}", self.name)
    }

    fn filter_table(&self, id: u64) -> String {
        format!("{}.filter.{id:016x}", self.name)
    }

    fn corrupt(&self, what: &str) -> StorageError {
        StorageError::Corrupt(format!("index {}: {what}", self.name))
    }

    /// Creates the index's tables, if new.
    pub fn create(&self, w: &WriteTransaction) -> Result<()> {
        w.open_table(TableDefinition::<&str, &[u8]>::new(&self.layout_table()))?;
        w.open_table(Table::new(&self.level0_table()))?;
        Ok(())
    }

    fn load(&self, bytes: Option<&[u8]>) -> Result<Layout> {
        match bytes {
            None => Ok(Layout::default()),
            Some(b) => Layout::decode(b).ok_or_else(|| self.corrupt("undecodable layout")),
        }
    }

    fn read_layout(&self, r: &ReadTransaction) -> Result<Layout> {
        let layout_table = self.layout_table();
        let t = r.open_table(TableDefinition::<&str, &[u8]>::new(&layout_table))?;
        let v = t.get(LAYOUT_KEY)?;
        self.load(v.as_ref().map(|v| v.value()))
    }

    /// The value under `key`, if any.
    pub fn get(&self, r: &ReadTransaction, key: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self.lookup(r, key)?.0)
    }

    /// The value under `key`, if any, and what finding it read.
    pub fn lookup(&self, r: &ReadTransaction, key: &[u8; 32]) -> Result<(Option<Vec<u8>>, Probes)> {
        let layout = self.read_layout(r)?;
        let mut probes = Probes {
            of_runs: layout.runs.len() as u32,
            ..Probes::default()
        };
        if let Some(v) = r.open_table(Table::new(&self.level0_table()))?.get(key)? {
            return Ok((Some(v.value().to_vec()), probes));
        }
        for run in layout.runs.iter().rev() {
            if run.filter > 0 {
                probes.filters += 1;
                let t = r.open_table(FilterTable::new(&self.filter_table(run.id)))?;
                // A page no key of the run falls in is not written: the key is not there.
                let claimed = t
                    .get(run_filter::page_of(key, run.filter))?
                    .is_some_and(|page| run_filter::may_contain(page.value(), key));
                if !claimed {
                    continue;
                }
            }
            probes.runs += 1;
            let t = r.open_table(Table::new(&self.run_table(run.id)))?;
            let found = t.range(..=*key)?.next_back().transpose()?;
            if let Some((_, chunk)) = found
                && let Some(v) = self.find_in_chunk(chunk.value(), key)
            {
                return Ok((Some(v.to_vec()), probes));
            }
        }
        Ok((None, probes))
    }

    /// The index's runs, levels and merges.
    pub fn shape(&self, r: &ReadTransaction) -> Result<IndexShape> {
        let layout = self.read_layout(r)?;
        Ok(IndexShape {
            runs: layout.runs.len(),
            levels: layout.levels().len(),
            merges: layout.merges.len(),
            entries: layout.level0 + layout.runs.iter().map(|r| r.len).sum::<u64>(),
        })
    }

    fn find_in_chunk<'c>(&self, chunk: &'c [u8], key: &[u8; 32]) -> Option<&'c [u8]> {
        let e = self.entry_len();
        let n = chunk.len() / e;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = &chunk[mid * e..(mid + 1) * e];
            match entry[..32].cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(&entry[32..]),
            }
        }
        None
    }

    /// Adds `entries` (keys not in the index yet; values of the index's length), then moves
    /// each merge in progress forward by a bounded step.
    pub fn insert(&self, w: &WriteTransaction, entries: &[([u8; 32], &[u8])]) -> Result<()> {
        let layout_table = self.layout_table();
        let mut layout = {
            let t = w.open_table(TableDefinition::<&str, &[u8]>::new(&layout_table))?;
            let v = t.get(LAYOUT_KEY)?;
            self.load(v.as_ref().map(|v| v.value()))?
        };
        if !entries.is_empty() {
            let mut sorted: Vec<&([u8; 32], &[u8])> = entries.iter().collect();
            sorted.sort_unstable_by_key(|(k, _)| *k);
            let mut level0 = w.open_table(Table::new(&self.level0_table()))?;
            for (k, v) in sorted {
                if v.len() != self.value_len {
                    return Err(self.corrupt("a value of the wrong length"));
                }
                level0.insert(k, *v)?;
            }
            layout.level0 += entries.len() as u64;
        }
        if layout.level0 >= self.level0_max {
            self.flush_level0(w, &mut layout)?;
        }
        self.start_merges(w, &mut layout)?;
        let budget = (4 * entries.len()).max(self.min_merge_step);
        for at in 0..layout.merges.len() {
            self.merge_step(w, &mut layout, at, budget)?;
        }
        layout.merges.retain(|m| !m.sources.is_empty());
        w.open_table(TableDefinition::<&str, &[u8]>::new(&layout_table))?
            .insert(LAYOUT_KEY, layout.encode().as_slice())?;
        Ok(())
    }

    /// Writes level 0 out as a run of level 0 and empties it.
    fn flush_level0(&self, w: &WriteTransaction, layout: &mut Layout) -> Result<()> {
        let level0_name = self.level0_table();
        let id = layout.next_run;
        layout.next_run += 1;
        let filter = run_filter::pages_for(layout.level0);
        let mut out = Vec::with_capacity(layout.level0 as usize * self.entry_len());
        {
            let level0 = w.open_table(Table::new(&level0_name))?;
            for entry in level0.iter()? {
                let (k, v) = entry?;
                out.extend_from_slice(&k.value());
                out.extend_from_slice(v.value());
            }
        }
        self.write_entries(w, id, filter, &out)?;
        w.delete_table(Table::new(&level0_name))?;
        w.open_table(Table::new(&level0_name))?;
        layout.level0 = 0;
        layout.runs.push(Run {
            id,
            level: 0,
            len: (out.len() / self.entry_len()) as u64,
            filter,
        });
        Ok(())
    }

    /// Appends sorted `entries` (packed key‖value) to run `id`, in whole chunks but for the
    /// last, and adds their keys to the run's filter of `filter` pages (none if 0).
    fn write_entries(
        &self,
        w: &WriteTransaction,
        id: u64,
        filter: u32,
        entries: &[u8],
    ) -> Result<()> {
        let e = self.entry_len();
        let mut run = w.open_table(Table::new(&self.run_table(id)))?;
        for chunk in entries.chunks(self.chunk * e) {
            let first: [u8; 32] = chunk[..32].try_into().expect("32 bytes");
            run.insert(first, chunk)?;
        }
        if filter == 0 {
            return Ok(());
        }
        let mut pages = w.open_table(FilterTable::new(&self.filter_table(id)))?;
        let mut current: Option<(u32, Vec<u8>)> = None;
        for entry in entries.chunks(e) {
            let key: &[u8; 32] = entry[..32].try_into().expect("32 bytes");
            let p = run_filter::page_of(key, filter);
            if current.as_ref().is_none_or(|(at, _)| *at != p) {
                if let Some((at, page)) = current.take() {
                    pages.insert(at, page.as_slice())?;
                }
                // Only the first page of a merge step can hold bits already.
                let page = match pages.get(p)? {
                    Some(v) => v.value().to_vec(),
                    None => vec![0; run_filter::PAGE_BYTES],
                };
                current = Some((p, page));
            }
            let (_, page) = current.as_mut().expect("set above");
            run_filter::insert(page, key);
        }
        if let Some((at, page)) = current {
            pages.insert(at, page.as_slice())?;
        }
        Ok(())
    }

    /// Starts, at each level with [`FANOUT`] runs not yet in a merge and no merge into the
    /// next level in progress, a merge of its oldest such runs.
    fn start_merges(&self, w: &WriteTransaction, layout: &mut Layout) -> Result<()> {
        for level in layout.levels() {
            let target_level = level.saturating_add(1);
            if layout.merges.iter().any(|m| m.level == target_level) {
                continue;
            }
            let sources: Vec<&Run> = layout
                .runs
                .iter()
                .filter(|r| r.level == level)
                .take(self.fanout)
                .collect();
            if sources.len() < self.fanout {
                continue;
            }
            let len: u64 = sources.iter().map(|r| r.len).sum();
            let sources: Vec<u64> = sources.iter().map(|r| r.id).collect();
            let target = layout.next_run;
            layout.next_run += 1;
            w.open_table(Table::new(&self.run_table(target)))?;
            layout.merges.push(Merge {
                target,
                level: target_level,
                sources,
                written: 0,
                after: None,
                filter: run_filter::pages_for(len),
            });
        }
        layout.merges.sort_by_key(|m| m.level);
        Ok(())
    }

    /// Moves merge `at` forward by about `budget` entries; completes it when its sources are
    /// exhausted (and then empties its `sources`, for the caller to drop it).
    fn merge_step(
        &self,
        w: &WriteTransaction,
        layout: &mut Layout,
        at: usize,
        budget: usize,
    ) -> Result<()> {
        let merge = &mut layout.merges[at];
        let e = self.entry_len();
        let mut cursors: Vec<RunCursor> = merge
            .sources
            .iter()
            .map(|id| RunCursor {
                table: self.run_table(*id),
                chunk: Vec::new(),
                pos: 0,
                chunk_key: None,
                done: false,
            })
            .collect();
        for c in &mut cursors {
            self.seek(w, c, merge.after.as_ref())?;
        }
        // Whole chunks, so the target's chunks are full but for its last.
        let want = budget.div_ceil(self.chunk) * self.chunk;
        let mut out: Vec<u8> = Vec::with_capacity(want * e);
        let mut moved = 0;
        while moved < want {
            let next = cursors
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.done)
                .min_by_key(|(_, c)| &c.chunk[c.pos..c.pos + 32])
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let c = &mut cursors[i];
            out.extend_from_slice(&c.chunk[c.pos..c.pos + e]);
            c.pos += e;
            moved += 1;
            if c.pos == c.chunk.len() {
                self.next_chunk(w, c)?;
            }
        }
        let exhausted = cursors.iter().all(|c| c.done);
        self.write_entries(w, merge.target, merge.filter, &out)?;
        if let Some(last) = out.len().checked_sub(e).map(|at| &out[at..at + 32]) {
            merge.after = Some(last.try_into().expect("32 bytes"));
        }
        merge.written += moved as u64;
        if exhausted {
            let sources = std::mem::take(&mut merge.sources);
            let done = Run {
                id: merge.target,
                level: merge.level,
                len: merge.written,
                filter: merge.filter,
            };
            layout.runs.retain(|r| !sources.contains(&r.id));
            for id in &sources {
                w.delete_table(Table::new(&self.run_table(*id)))?;
                w.delete_table(FilterTable::new(&self.filter_table(*id)))?;
            }
            layout.runs.push(done);
            layout.runs.sort_by_key(|r| r.id);
        }
        Ok(())
    }

    /// Positions `c` on the first entry after `after` (or on the first entry).
    fn seek(
        &self,
        w: &WriteTransaction,
        c: &mut RunCursor,
        after: Option<&[u8; 32]>,
    ) -> Result<()> {
        let found = {
            let t = w.open_table(Table::new(&c.table))?;
            let found = match after {
                Some(a) => t.range(..=*a)?.next_back().transpose()?,
                None => t.iter()?.next().transpose()?,
            };
            found.map(|(k, v)| (k.value(), v.value().to_vec()))
        };
        match found {
            None => {
                // Nothing at or before `after`: start from the run's first chunk.
                c.chunk_key = None;
                self.next_chunk(w, c)?;
            }
            Some((key, chunk)) => {
                if chunk.is_empty() || chunk.len() % self.entry_len() != 0 {
                    return Err(self.corrupt("a chunk of a run is damaged"));
                }
                c.chunk_key = Some(key);
                c.chunk = chunk;
                c.pos = 0;
                c.done = false;
            }
        }
        if let Some(a) = after {
            let e = self.entry_len();
            while !c.done && c.chunk[c.pos..c.pos + 32] <= a[..] {
                c.pos += e;
                if c.pos == c.chunk.len() {
                    self.next_chunk(w, c)?;
                }
            }
        }
        Ok(())
    }

    /// Loads the chunk after `c`'s current one; marks `c` done when there is none.
    fn next_chunk(&self, w: &WriteTransaction, c: &mut RunCursor) -> Result<()> {
        let t = w.open_table(Table::new(&c.table))?;
        let next = match c.chunk_key {
            None => t.iter()?.next().transpose()?,
            Some(k) => t
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))?
                .next()
                .transpose()?,
        };
        match next {
            None => c.done = true,
            Some((k, v)) => {
                let chunk = v.value();
                if chunk.is_empty() || chunk.len() % self.entry_len() != 0 {
                    return Err(self.corrupt("a chunk of a run is damaged"));
                }
                c.chunk_key = Some(k.value());
                c.chunk = chunk.to_vec();
                c.pos = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};

    fn small() -> HashIndex {
        HashIndex {
            name: "test",
            value_len: 4,
            chunk: 4,
            fanout: 3,
            level0_max: 10,
            min_merge_step: 4,
        }
    }

    fn key(i: u32) -> [u8; 32] {
        // Spread keys over the key space in an order unrelated to `i`.
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        k[4..8].copy_from_slice(&i.to_be_bytes());
        k
    }

    fn sample_layout() -> Layout {
        Layout {
            next_run: 9,
            level0: 3,
            runs: vec![
                Run {
                    id: 1,
                    level: 0,
                    len: 10,
                    filter: 1,
                },
                Run {
                    id: 4,
                    level: 1,
                    len: 30,
                    filter: 0,
                },
            ],
            merges: vec![
                Merge {
                    target: 8,
                    level: 1,
                    sources: vec![2, 3, 5],
                    written: 7,
                    after: Some([5; 32]),
                    filter: 2,
                },
                Merge {
                    target: 7,
                    level: 2,
                    sources: vec![6],
                    written: 0,
                    after: None,
                    filter: 1,
                },
            ],
        }
    }

    #[test]
    fn layout_round_trips_and_damage_is_refused() {
        let layout = sample_layout();
        let bytes = layout.encode();
        assert_eq!(Layout::decode(&bytes), Some(layout.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(Layout::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Layout::decode(&longer), None);
    }

    /// A layout as data directories written before per-level merges and filters hold it
    /// (one merge at most, runs without filters) still reads, as a layout whose runs are
    /// always searched.
    #[test]
    fn a_layout_of_the_first_encoding_still_reads() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(&9u64.to_be_bytes());
        v1.extend_from_slice(&3u64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&4u64.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&30u64.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&8u64.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&7u64.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&[5; 32]);
        v1.extend_from_slice(&2u32.to_be_bytes());
        v1.extend_from_slice(&2u64.to_be_bytes());
        v1.extend_from_slice(&3u64.to_be_bytes());
        let layout = Layout::decode(&v1).expect("a first-encoding layout");
        assert_eq!(
            layout.runs,
            vec![Run {
                id: 4,
                level: 1,
                len: 30,
                filter: 0
            }]
        );
        assert_eq!(
            layout.merges,
            vec![Merge {
                target: 8,
                level: 1,
                sources: vec![2, 3],
                written: 7,
                after: Some([5; 32]),
                filter: 0,
            }]
        );
        // Written back, it takes the current encoding.
        assert_eq!(layout.encode()[0], LAYOUT_V2);
    }

    fn layout_of(db: &Database, index: &HashIndex) -> Layout {
        index.read_layout(&db.begin_read().unwrap()).unwrap()
    }

    /// Many commits of one size: every level keeps fewer than two fanouts of runs, at most
    /// one merge per level is in progress, and a lookup searches about one run.
    #[test]
    fn levels_stay_bounded_and_filters_spare_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("index.redb")).unwrap();
        let index = HashIndex {
            name: "bounded",
            value_len: 4,
            chunk: 8,
            fanout: 3,
            level0_max: 64,
            min_merge_step: 8,
        };
        let per_commit = 40u32;
        let commits = 600u32;
        let mut max_levels = 0;
        for c in 0..commits {
            let w = db.begin_write().unwrap();
            index.create(&w).unwrap();
            let values: Vec<[u8; 4]> = (c * per_commit..(c + 1) * per_commit)
                .map(|i| i.to_le_bytes())
                .collect();
            let entries: Vec<([u8; 32], &[u8])> = values
                .iter()
                .zip(c * per_commit..)
                .map(|(v, i)| (key(i), v.as_slice()))
                .collect();
            index.insert(&w, &entries).unwrap();
            w.commit().unwrap();
            let layout = layout_of(&db, &index);
            let mut levels: Vec<u8> = layout.merges.iter().map(|m| m.level).collect();
            let merges = levels.len();
            levels.dedup();
            assert_eq!(
                levels.len(),
                merges,
                "two merges into one level: {:?}",
                layout.merges
            );
            for level in 0..=u8::MAX {
                let n = layout.runs.iter().filter(|r| r.level == level).count();
                assert!(
                    n < 2 * index.fanout,
                    "level {level} has {n} runs after commit {c}"
                );
            }
            max_levels = max_levels.max(layout.runs.iter().map(|r| r.level).max().unwrap_or(0));
        }
        let total = per_commit * commits;
        // 24,000 entries in runs of 64 with fanout 3: levels 0 to about 5.
        assert!(max_levels >= 4, "merges never reached level {max_levels}");
        let r = db.begin_read().unwrap();
        let (mut runs_hit, mut runs_miss, mut of_runs) = (0, 0, 0);
        let tries = 2_000u32;
        for i in (0..total).step_by((total / tries) as usize) {
            let (v, p) = index.lookup(&r, &key(i)).unwrap();
            assert_eq!(v, Some(i.to_le_bytes().to_vec()));
            runs_hit += p.runs;
            of_runs += p.of_runs;
            let (v, p) = index.lookup(&r, &key(total + i)).unwrap();
            assert_eq!(v, None);
            runs_miss += p.runs;
        }
        let (hit, miss, of) = (
            f64::from(runs_hit) / f64::from(tries),
            f64::from(runs_miss) / f64::from(tries),
            f64::from(of_runs) / f64::from(tries),
        );
        assert!(
            of >= 5.0,
            "only {of} runs: the test does not exercise the filters"
        );
        assert!(hit < 1.1, "a hit searched {hit} runs on average (of {of})");
        assert!(
            miss < 0.1,
            "a miss searched {miss} runs on average (of {of})"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the batches, every key is found with its value after every commit, keys
        /// never inserted are not, the index survives a reopen, and merges keep the number
        /// of runs bounded.
        #[test]
        fn every_key_is_found_after_every_commit(batches in proptest::collection::vec(0usize..25, 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index.redb");
            let index = small();
            let mut next = 0u32;
            for (b, size) in batches.iter().enumerate() {
                // Reopen now and then: the layout is in the database.
                let db = Database::create(&path).unwrap();
                let w = db.begin_write().unwrap();
                index.create(&w).unwrap();
                let values: Vec<[u8; 4]> = (next..next + *size as u32).map(|i| i.to_le_bytes()).collect();
                let entries: Vec<([u8; 32], &[u8])> = values.iter().zip(next..).map(|(v, i)| (key(i), v.as_slice())).collect();
                index.insert(&w, &entries).unwrap();
                w.commit().unwrap();
                next += *size as u32;
                let r = db.begin_read().unwrap();
                for i in 0..next {
                    prop_assert_eq!(index.get(&r, &key(i)).unwrap(), Some(i.to_le_bytes().to_vec()), "key {} after batch {}", i, b);
                }
                for i in next..next + 5 {
                    prop_assert_eq!(index.get(&r, &key(i)).unwrap(), None);
                }
                let layout = index.read_layout(&r).unwrap();
                let in_runs: u64 = layout.runs.iter().map(|r| r.len).sum::<u64>();
                prop_assert!(in_runs + layout.level0 >= next as u64);
                prop_assert!(layout.runs.len() <= 12, "{} runs", layout.runs.len());
            }
        }
    }

    #[test]
    fn a_wrong_value_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("i.redb")).unwrap();
        let w = db.begin_write().unwrap();
        let index = small();
        index.create(&w).unwrap();
        assert!(
            index
                .insert(&w, &[(key(1), b"toolong".as_slice())])
                .is_err()
        );
    }
}
