//! A write-once index from 32-byte hashes to fixed-size values, log-structured inside redb.
//!
//! Reading ids and transaction hashes are uniformly random. In one B-tree, each of a block's
//! thousands of inserts lands on its own leaf page, so a commit rewrote (copied, checksummed,
//! wrote and synced) a page per reading: about 8 µs of CPU per reading on a 2-core machine,
//! on every node. Here a block's keys go into a small level-0 table instead, whose few
//! hundred pages stay the same ones commit after commit. When it is full it is written out
//! as a *run*: an immutable table of sorted entries packed [`CHUNK`] to a value, keyed by
//! each chunk's first key (a few page writes per thousand entries). Every [`FANOUT`] runs of
//! one level are merged into one run of the next, a bounded step in each later commit, so no
//! commit stalls for a large merge.
//!
//! Everything happens in the caller's write transaction: a block's index entries are
//! durable exactly when the block is, and a crash leaves the index as of the last commit.
//! A lookup checks level 0, then the runs from the newest (keys are written once, so the
//! first hit is the answer): a handful of B-tree lookups.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

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
pub(crate) struct HashIndex {
    name: &'static str,
    value_len: usize,
    chunk: usize,
    fanout: usize,
    level0_max: u64,
    min_merge_step: usize,
}

/// A complete run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    id: u64,
    level: u8,
    len: u64,
}

/// A merge in progress: `sources` (runs of `level - 1`) into the run `target` of `level`,
/// written up to and including the key `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Merge {
    target: u64,
    level: u8,
    sources: Vec<u64>,
    written: u64,
    after: Option<[u8; 32]>,
}

/// Where the index stands: stored under [`LAYOUT_KEY`] in the layout table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Layout {
    next_run: u64,
    level0: u64,
    /// Complete runs, oldest first.
    runs: Vec<Run>,
    merge: Option<Merge>,
}

const LAYOUT_KEY: &str = "layout";

impl Layout {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next_run.to_be_bytes());
        out.extend_from_slice(&self.level0.to_be_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.id.to_be_bytes());
            out.push(r.level);
            out.extend_from_slice(&r.len.to_be_bytes());
        }
        match &self.merge {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                out.extend_from_slice(&m.target.to_be_bytes());
                out.push(m.level);
                out.extend_from_slice(&m.written.to_be_bytes());
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
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let next_run = r.u64()?;
        let level0 = r.u64()?;
        let runs = (0..r.u32()?)
            .map(|_| {
                Some(Run {
                    id: r.u64()?,
                    level: r.u8()?,
                    len: r.u64()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let merge = match r.u8()? {
            0 => None,
            1 => {
                let target = r.u64()?;
                let level = r.u8()?;
                let written = r.u64()?;
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
                })
            }
            _ => return None,
        };
        r.0.is_empty().then_some(Self {
            next_run,
            level0,
            runs,
            merge,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

type Table<'a> = TableDefinition<'a, [u8; 32], &'static [u8]>;

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
    pub(crate) const fn new(name: &'static str, value_len: usize) -> Self {
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

    fn corrupt(&self, what: &str) -> StorageError {
        StorageError::Corrupt(format!("index {}: {what}", self.name))
    }

    /// Creates the index's tables, if new.
    pub(crate) fn create(&self, w: &WriteTransaction) -> Result<()> {
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

    /// The value under `key`, if any.
    pub(crate) fn get(&self, r: &ReadTransaction, key: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        let layout_table = self.layout_table();
        let layout = {
            let t = r.open_table(TableDefinition::<&str, &[u8]>::new(&layout_table))?;
            let v = t.get(LAYOUT_KEY)?;
            self.load(v.as_ref().map(|v| v.value()))?
        };
        if let Some(v) = r.open_table(Table::new(&self.level0_table()))?.get(key)? {
            return Ok(Some(v.value().to_vec()));
        }
        for run in layout.runs.iter().rev() {
            let name = self.run_table(run.id);
            let t = r.open_table(Table::new(&name))?;
            let found = t.range(..=*key)?.next_back().transpose()?;
            if let Some((_, chunk)) = found
                && let Some(v) = self.find_in_chunk(chunk.value(), key)
            {
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(None)
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
    /// a merge in progress forward by a bounded step.
    pub(crate) fn insert(&self, w: &WriteTransaction, entries: &[([u8; 32], &[u8])]) -> Result<()> {
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
        if layout.merge.is_none() {
            layout.merge = self.next_merge(w, &mut layout)?;
        }
        if layout.merge.is_some() {
            let budget = (4 * entries.len()).max(self.min_merge_step);
            self.merge_step(w, &mut layout, budget)?;
        }
        w.open_table(TableDefinition::<&str, &[u8]>::new(&layout_table))?
            .insert(LAYOUT_KEY, layout.encode().as_slice())?;
        Ok(())
    }

    /// Writes level 0 out as a run of level 0 and empties it.
    fn flush_level0(&self, w: &WriteTransaction, layout: &mut Layout) -> Result<()> {
        let level0_name = self.level0_table();
        let id = layout.next_run;
        layout.next_run += 1;
        let run_name = self.run_table(id);
        let mut len = 0u64;
        {
            let level0 = w.open_table(Table::new(&level0_name))?;
            let mut run = w.open_table(Table::new(&run_name))?;
            let mut chunk = Vec::with_capacity(self.chunk * self.entry_len());
            let mut first = None;
            for entry in level0.iter()? {
                let (k, v) = entry?;
                let k = k.value();
                first.get_or_insert(k);
                chunk.extend_from_slice(&k);
                chunk.extend_from_slice(v.value());
                len += 1;
                if chunk.len() == self.chunk * self.entry_len() {
                    run.insert(first.take().expect("set above"), chunk.as_slice())?;
                    chunk.clear();
                }
            }
            if let Some(first) = first {
                run.insert(first, chunk.as_slice())?;
            }
        }
        w.delete_table(Table::new(&level0_name))?;
        w.open_table(Table::new(&level0_name))?;
        layout.level0 = 0;
        layout.runs.push(Run { id, level: 0, len });
        Ok(())
    }

    /// Starts merging the oldest `fanout` runs of the lowest level that has that many.
    fn next_merge(&self, w: &WriteTransaction, layout: &mut Layout) -> Result<Option<Merge>> {
        let Some(level) = (0..=u8::MAX)
            .find(|l| layout.runs.iter().filter(|r| r.level == *l).count() >= self.fanout)
        else {
            return Ok(None);
        };
        let sources: Vec<u64> = layout
            .runs
            .iter()
            .filter(|r| r.level == level)
            .take(self.fanout)
            .map(|r| r.id)
            .collect();
        let target = layout.next_run;
        layout.next_run += 1;
        w.open_table(Table::new(&self.run_table(target)))?;
        Ok(Some(Merge {
            target,
            level: level.saturating_add(1),
            sources,
            written: 0,
            after: None,
        }))
    }

    /// Moves the merge in progress forward by about `budget` entries; completes it when its
    /// sources are exhausted.
    fn merge_step(&self, w: &WriteTransaction, layout: &mut Layout, budget: usize) -> Result<()> {
        let Some(merge) = layout.merge.as_mut() else {
            return Ok(());
        };
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
        {
            let mut target = w.open_table(Table::new(&self.run_table(merge.target)))?;
            for chunk in out.chunks(self.chunk * e) {
                let first: [u8; 32] = chunk[..32].try_into().expect("32 bytes");
                target.insert(first, chunk)?;
            }
        }
        if let Some(last) = out.len().checked_sub(e).map(|at| &out[at..at + 32]) {
            merge.after = Some(last.try_into().expect("32 bytes"));
        }
        merge.written += moved as u64;
        if exhausted {
            let merge = layout.merge.take().expect("in progress");
            layout.runs.retain(|r| !merge.sources.contains(&r.id));
            for id in &merge.sources {
                w.delete_table(Table::new(&self.run_table(*id)))?;
            }
            layout.runs.push(Run {
                id: merge.target,
                level: merge.level,
                len: merge.written,
            });
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

    #[test]
    fn layout_round_trips_and_damage_is_refused() {
        let layout = Layout {
            next_run: 9,
            level0: 3,
            runs: vec![
                Run {
                    id: 1,
                    level: 0,
                    len: 10,
                },
                Run {
                    id: 4,
                    level: 1,
                    len: 30,
                },
            ],
            merge: Some(Merge {
                target: 8,
                level: 1,
                sources: vec![2, 3, 5],
                written: 7,
                after: Some([5; 32]),
            }),
        };
        let bytes = layout.encode();
        assert_eq!(Layout::decode(&bytes), Some(layout.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(Layout::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Layout::decode(&longer), None);
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
                let layout = {
                    let t = r.open_table(TableDefinition::<&str, &[u8]>::new(&index.layout_table())).unwrap();
                    Layout::decode(t.get(LAYOUT_KEY).unwrap().unwrap().value()).unwrap()
                };
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
