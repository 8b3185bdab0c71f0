//! The index of final readings by device stream: what range queries read.
//!
//! Each (device, stream) has a summary in [`STREAMS`] (its id here, count, first and last
//! `seq` and `ts`, the position of its latest reading by `seq`) and one entry per reading in
//! [`STREAM_READINGS`], keyed by its *position*: its place in the stream in commit order
//! (0, 1, 2, …). An entry keeps the reading's location, `seq`, `ts` and block time, and the
//! highest `seq` and `ts` of the stream up to it. Block time never decreases along the
//! positions, and neither do those running maxima, so a range of block time, or the start of a
//! range of `seq` or `ts`, is found by binary search. A reading whose `seq` (or `ts`) is below
//! the running maximum came late (it filled a gap, or its device's clock went back): those
//! are listed again in [`STREAM_LATE`], so that a range of `seq` or `ts` also finds the late
//! ones after the stretch of positions it covers without scanning the rest of the stream.
//!
//! The index follows the head off the commit path ([`ChainStore::index_streams`], which the
//! node runs after commits on its blocking pool, in batches of blocks): every query of it
//! first indexes what became final since, so an answer holds every final reading. An older
//! data directory is indexed the same way when it is opened.
//!
//! [`ChainStore::index_streams`]: crate::ChainStore::index_streams

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Result, StorageError};

/// (device ‖ stream name) → [`StreamInfo`].
pub(crate) const STREAMS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("streams");
/// (device ‖ stream id ‖ position) → [`StreamEntry`] (its figures, then the signed message:
/// a page of readings reads its entries and nothing else, whatever the size of their blocks).
pub(crate) const STREAM_READINGS: TableDefinition<'_, [u8; 32], &[u8]> =
    TableDefinition::new("stream_readings");
/// (device ‖ stream id ‖ key kind ‖ position) → () for readings below the running maximum of
/// that key (`seq` or `ts`).
pub(crate) const STREAM_LATE: TableDefinition<'_, [u8; 33], ()> =
    TableDefinition::new("stream_late");

/// (device ‖ stream id ‖ minute of device time) → [`Bucket`] of the readings whose `data` is a
/// number: charts of any bucket size (a multiple of a minute) merge these.
pub(crate) const STREAM_MINUTES: TableDefinition<'_, [u8; 32], [u8; 64]> =
    TableDefinition::new("stream_minutes");

const ENTRY_LEN: usize = 56;
/// One minute, ms: the grain of the per-minute buckets that charts merge.
pub const MINUTE_MS: u64 = 60_000;
const LATE_SEQ: u8 = 0;
const LATE_TS: u8 = 1;

/// One stream of one device, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream name.
    pub stream: String,
    /// Its id in this store.
    pub id: u32,
    /// Final readings in it.
    pub count: u64,
    /// Lowest and highest `seq`.
    pub first_seq: u64,
    /// Highest `seq`.
    pub last_seq: u64,
    /// Lowest device time.
    pub first_ts: u64,
    /// Highest device time.
    pub last_ts: u64,
    /// Position of the reading with the highest `seq`.
    pub latest: u64,
}

impl StreamInfo {
    fn encode(&self) -> [u8; 52] {
        let mut out = [0u8; 52];
        out[..4].copy_from_slice(&self.id.to_be_bytes());
        for (i, v) in [
            self.count,
            self.first_seq,
            self.last_seq,
            self.first_ts,
            self.last_ts,
            self.latest,
        ]
        .into_iter()
        .enumerate()
        {
            out[4 + 8 * i..12 + 8 * i].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(stream: String, v: &[u8]) -> Result<Self> {
        if v.len() != 52 {
            return Err(StorageError::Corrupt(format!(
                "stream record of {stream:?}"
            )));
        }
        let u =
            |i: usize| u64::from_be_bytes(v[4 + 8 * i..12 + 8 * i].try_into().expect("8 bytes"));
        Ok(Self {
            id: u32::from_be_bytes(v[..4].try_into().expect("4 bytes")),
            count: u(0),
            first_seq: u(1),
            last_seq: u(2),
            first_ts: u(3),
            last_ts: u(4),
            latest: u(5),
            stream,
        })
    }
}

/// A final reading as the stream index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its position in the stream (commit order).
    pub position: u64,
    /// Block height.
    pub height: u64,
    /// Position among the block's readings.
    pub index: u32,
    /// Position among the block's items.
    pub item: u32,
    /// The device's `seq`.
    pub seq: u64,
    /// The device's time.
    pub ts: u64,
    /// The block's time, ms.
    pub block_time_ms: u64,
    /// Highest `seq` of the stream up to this reading.
    max_seq: u64,
    /// Highest `ts` of the stream up to this reading.
    max_ts: u64,
    /// The reading's canonical message (as in its block).
    pub message: Vec<u8>,
}

impl StreamEntry {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; ENTRY_LEN];
        out[..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..16].copy_from_slice(&self.item.to_be_bytes());
        for (i, v) in [
            self.seq,
            self.ts,
            self.block_time_ms,
            self.max_seq,
            self.max_ts,
        ]
        .into_iter()
        .enumerate()
        {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.message);
        out
    }

    pub(crate) fn decode(position: u64, v: &[u8]) -> Result<Self> {
        if v.len() < ENTRY_LEN {
            return Err(StorageError::Corrupt(format!(
                "stream index entry at position {position}"
            )));
        }
        let u =
            |i: usize| u64::from_be_bytes(v[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes"));
        Ok(Self {
            position,
            height: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            index: u32::from_be_bytes(v[8..12].try_into().expect("4 bytes")),
            item: u32::from_be_bytes(v[12..16].try_into().expect("4 bytes")),
            seq: u(0),
            ts: u(1),
            block_time_ms: u(2),
            max_seq: u(3),
            max_ts: u(4),
            message: v[ENTRY_LEN..].to_vec(),
        })
    }
}

impl StreamEntry {
    /// The highest `seq` and `ts` of the stream up to and including this reading.
    pub fn running_max(&self) -> (u64, u64) {
        (self.max_seq, self.max_ts)
    }

    /// The leaf this reading is in its stream's accumulator.
    pub fn leaf(&self) -> iotchain_reading::StreamLeaf {
        iotchain_reading::StreamLeaf {
            // The message is kept canonical, as in its block: its id is its leaf hash.
            id: iotchain_reading::reading_id(&self.message),
            seq: self.seq,
            ts: self.ts,
            height: self.height,
            block_time_ms: self.block_time_ms,
            max_seq: self.max_seq,
            max_ts: self.max_ts,
        }
    }
}

/// Where a page of a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCursor {
    /// At the start (descending: the end).
    Start,
    /// After (descending: before) this position.
    Position(u64),
    /// After (descending: before) the reading at this block height and index, which need not
    /// be of this stream (a page over several streams).
    Location(u64, u32),
}

/// Which readings of a stream a page takes (all bounds inclusive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamRange {
    /// `seq` range.
    pub seq: Option<(u64, u64)>,
    /// Device time range, ms.
    pub ts: Option<(u64, u64)>,
    /// Block time range, ms.
    pub block_time: Option<(u64, u64)>,
}

impl StreamRange {
    /// Whether the range takes a reading with these figures.
    pub fn takes_leaf(&self, seq: u64, ts: u64, block_time_ms: u64) -> bool {
        let within = |r: Option<(u64, u64)>, v: u64| r.is_none_or(|(lo, hi)| lo <= v && v <= hi);
        within(self.seq, seq) && within(self.ts, ts) && within(self.block_time, block_time_ms)
    }

    fn takes(&self, e: &StreamEntry) -> bool {
        self.takes_leaf(e.seq, e.ts, e.block_time_ms)
    }

    /// The one bound a proof of this range is over: block time, else `seq`, else `ts`, else
    /// none (the whole stream). The stream window and the proof's claimed range both follow it.
    pub fn proof_bound(&self) -> ProofBound {
        match (self.block_time, self.seq, self.ts) {
            (Some(b), _, _) => ProofBound::BlockTime(b),
            (None, Some(b), _) => ProofBound::Seq(b),
            (None, None, Some(b)) => ProofBound::Ts(b),
            (None, None, None) => ProofBound::All,
        }
    }
}

/// What a complete-range proof is over (bounds inclusive), see [`StreamRange::proof_bound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofBound {
    /// The whole stream.
    All,
    /// Device `seq`.
    Seq((u64, u64)),
    /// Device time, ms.
    Ts((u64, u64)),
    /// Block time, ms.
    BlockTime((u64, u64)),
}

fn stream_key(device: &[u8; 20], stream: &str) -> Vec<u8> {
    [&device[..], stream.as_bytes()].concat()
}

pub(crate) fn entry_key(device: &[u8; 20], id: u32, position: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..20].copy_from_slice(device);
    k[20..24].copy_from_slice(&id.to_be_bytes());
    k[24..].copy_from_slice(&position.to_be_bytes());
    k
}

fn late_key(device: &[u8; 20], id: u32, kind: u8, position: u64) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..20].copy_from_slice(device);
    k[20..24].copy_from_slice(&id.to_be_bytes());
    k[24] = kind;
    k[25..].copy_from_slice(&position.to_be_bytes());
    k
}

/// A final reading to index.
#[derive(Debug, Clone)]
pub(crate) struct NewReading<'a> {
    pub(crate) device: [u8; 20],
    pub(crate) stream: &'a str,
    pub(crate) seq: u64,
    pub(crate) ts: u64,
    pub(crate) height: u64,
    pub(crate) index: u32,
    pub(crate) item: u32,
    pub(crate) block_time_ms: u64,
    /// The reading id.
    pub(crate) id: [u8; 32],
    pub(crate) message: &'a [u8],
    /// `data`, when it is a number.
    pub(crate) value: Option<f64>,
}

/// The aggregate of the numeric readings of a time bucket (by device time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, ms (device time).
    pub start_ms: u64,
    /// Readings in it.
    pub count: u64,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
    /// Sum of the values (the mean is `sum / count`).
    pub sum: f64,
    /// Device time and value of the earliest reading.
    pub first: (u64, f64),
    /// Device time and value of the latest reading.
    pub last: (u64, f64),
}

impl Bucket {
    /// The bucket starting at `start_ms` of one reading.
    pub fn of(start_ms: u64, ts: u64, v: f64) -> Self {
        Self {
            start_ms,
            count: 1,
            min: v,
            max: v,
            sum: v,
            first: (ts, v),
            last: (ts, v),
        }
    }

    /// Adds another bucket's readings (of the same or a finer grain) to this one.
    pub fn merge(&mut self, o: &Self) {
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        if o.first.0 < self.first.0 {
            self.first = o.first;
        }
        if o.last.0 >= self.last.0 {
            self.last = o.last;
        }
    }

    fn encode(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let words = [
            self.count,
            self.min.to_bits(),
            self.max.to_bits(),
            self.sum.to_bits(),
            self.first.0,
            self.first.1.to_bits(),
            self.last.0,
            self.last.1.to_bits(),
        ];
        for (i, w) in words.into_iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    fn decode(start_ms: u64, v: &[u8; 64]) -> Self {
        let w = |i: usize| u64::from_be_bytes(v[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        let f = |i: usize| f64::from_bits(w(i));
        Self {
            start_ms,
            count: w(0),
            min: f(1),
            max: f(2),
            sum: f(3),
            first: (w(4), f(5)),
            last: (w(6), f(7)),
        }
    }
}

/// The buckets of `bucket_ms` (a multiple of [`MINUTE_MS`]) that hold numeric readings of a
/// stream with device time in `from..=to`, oldest first: whole buckets (a bucket that
/// overlaps the range counts all its readings).
pub(crate) fn series(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    from: u64,
    to: u64,
    bucket_ms: u64,
) -> Result<Vec<Bucket>> {
    let t = r.open_table(STREAM_MINUTES)?;
    let first = from / bucket_ms * bucket_ms / MINUTE_MS;
    let last = (to / bucket_ms * bucket_ms).saturating_add(bucket_ms - 1) / MINUTE_MS;
    let mut out: Vec<Bucket> = Vec::new();
    for row in t.range(entry_key(device, info.id, first)..=entry_key(device, info.id, last))? {
        let (k, v) = row?;
        let minute = u64::from_be_bytes(k.value()[24..].try_into().expect("8 bytes"));
        let start = minute * MINUTE_MS / bucket_ms * bucket_ms;
        let b = Bucket::decode(start, &v.value());
        match out.last_mut() {
            Some(l) if l.start_ms == start => l.merge(&b),
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// Appends `readings` (in commit order) to their streams, in `w`; `next_id` is the next free
/// stream id, returned advanced.
pub(crate) fn index(
    w: &WriteTransaction,
    readings: &[NewReading<'_>],
    mut next_id: u32,
) -> Result<u32> {
    let mut streams = w.open_table(STREAMS)?;
    let mut entries = w.open_table(STREAM_READINGS)?;
    let mut late = w.open_table(STREAM_LATE)?;
    let mut minutes = w.open_table(STREAM_MINUTES)?;
    let mut nodes = w.open_table(crate::stream_mmr::STREAM_MMR)?;
    let mut last_leaves = crate::stream_mmr::LastLeaves::new();
    let mut cache: std::collections::BTreeMap<Vec<u8>, StreamInfo> = Default::default();
    // The minutes these readings touch, written once at the end.
    let mut minute_cache: std::collections::BTreeMap<[u8; 32], Bucket> = Default::default();
    for r in readings {
        let key = stream_key(&r.device, r.stream);
        if !cache.contains_key(&key) {
            let info = match streams.get(key.as_slice())? {
                Some(v) => StreamInfo::decode(r.stream.to_string(), v.value())?,
                None => {
                    next_id = next_id
                        .checked_add(1)
                        .ok_or_else(|| StorageError::Corrupt("stream ids exhausted".into()))?;
                    StreamInfo {
                        stream: r.stream.to_string(),
                        id: next_id - 1,
                        count: 0,
                        first_seq: r.seq,
                        last_seq: r.seq,
                        first_ts: r.ts,
                        last_ts: r.ts,
                        latest: 0,
                    }
                }
            };
            cache.insert(key.clone(), info);
        }
        let info = cache.get_mut(&key).expect("just cached");
        let position = info.count;
        let (max_seq, max_ts) = if position == 0 {
            (r.seq, r.ts)
        } else {
            (info.last_seq.max(r.seq), info.last_ts.max(r.ts))
        };
        if position > 0 && r.seq < info.last_seq {
            late.insert(late_key(&r.device, info.id, LATE_SEQ, position), ())?;
        }
        if position > 0 && r.ts < info.last_ts {
            late.insert(late_key(&r.device, info.id, LATE_TS, position), ())?;
        }
        let entry = StreamEntry {
            position,
            height: r.height,
            index: r.index,
            item: r.item,
            seq: r.seq,
            ts: r.ts,
            block_time_ms: r.block_time_ms,
            max_seq,
            max_ts,
            message: r.message.to_vec(),
        };
        entries.insert(
            entry_key(&r.device, info.id, position),
            entry.encode().as_slice(),
        )?;
        let leaf = iotchain_reading::StreamLeaf {
            id: r.id,
            seq: r.seq,
            ts: r.ts,
            height: r.height,
            block_time_ms: r.block_time_ms,
            max_seq,
            max_ts,
        };
        crate::stream_mmr::append(
            &mut nodes,
            &entries,
            &mut last_leaves,
            (r.device, info.id),
            position,
            leaf.hash(),
        )?;
        if let Some(v) = r.value.filter(|v| v.is_finite()) {
            let key = entry_key(&r.device, info.id, r.ts / MINUTE_MS);
            let start = r.ts / MINUTE_MS * MINUTE_MS;
            let one = Bucket::of(start, r.ts, v);
            match minute_cache.entry(key) {
                std::collections::btree_map::Entry::Occupied(mut b) => b.get_mut().merge(&one),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let b = match minutes.get(key)? {
                        Some(old) => {
                            let mut b = Bucket::decode(start, &old.value());
                            b.merge(&one);
                            b
                        }
                        None => one,
                    };
                    slot.insert(b);
                }
            }
        }
        if position == 0 || r.seq > info.last_seq {
            info.latest = position;
        }
        info.count += 1;
        info.first_seq = info.first_seq.min(r.seq);
        info.last_seq = max_seq;
        info.first_ts = info.first_ts.min(r.ts);
        info.last_ts = max_ts;
    }
    for (key, info) in cache {
        streams.insert(key.as_slice(), info.encode().as_slice())?;
    }
    for (key, b) in minute_cache {
        minutes.insert(key, b.encode())?;
    }
    Ok(next_id)
}

/// Every stream of `device`, by name.
pub(crate) fn streams_of(r: &ReadTransaction, device: &[u8; 20]) -> Result<Vec<StreamInfo>> {
    let t = r.open_table(STREAMS)?;
    let lo = device.to_vec();
    let mut hi = device.to_vec();
    hi.extend_from_slice(&[0xff; 65]);
    let mut out = Vec::new();
    for row in t.range(lo.as_slice()..hi.as_slice())? {
        let (k, v) = row?;
        let name = String::from_utf8_lossy(&k.value()[20..]).into_owned();
        out.push(StreamInfo::decode(name, v.value())?);
    }
    Ok(out)
}

/// One stream of `device`.
pub(crate) fn stream_of(
    r: &ReadTransaction,
    device: &[u8; 20],
    stream: &str,
) -> Result<Option<StreamInfo>> {
    let t = r.open_table(STREAMS)?;
    t.get(stream_key(device, stream).as_slice())?
        .map(|v| StreamInfo::decode(stream.to_string(), v.value()))
        .transpose()
}

/// The entry at `position` of a stream.
pub(crate) fn entry_at(
    r: &ReadTransaction,
    device: &[u8; 20],
    id: u32,
    position: u64,
) -> Result<Option<StreamEntry>> {
    let t = r.open_table(STREAM_READINGS)?;
    t.get(entry_key(device, id, position))?
        .map(|v| StreamEntry::decode(position, v.value()))
        .transpose()
}

/// The first position in `0..count` whose entry satisfies `pred`, which is false and then
/// true along the positions (`count` if none does).
pub(crate) fn first_where(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    pred: impl Fn(&StreamEntry) -> bool,
) -> Result<u64> {
    let (mut lo, mut hi) = (0u64, info.count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = entry_at(r, device, info.id, mid)?.ok_or_else(|| {
            StorageError::Corrupt(format!("stream {:?} lacks position {mid}", info.stream))
        })?;
        if pred(&e) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The position cursor that equals "after the reading at (`height`, `index`)" in this stream
/// (descending: "before" it): for a page over several streams in commit order.
pub(crate) fn position_of_location(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    location: (u64, u32),
    descending: bool,
) -> Result<Option<u64>> {
    if descending {
        Ok(Some(first_where(r, device, info, |e| {
            (e.height, e.index) >= location
        })?))
    } else {
        let first_after = first_where(r, device, info, |e| (e.height, e.index) > location)?;
        Ok(first_after.checked_sub(1))
    }
}

/// A page of a stream: the entries `range` takes, in position order (`descending`: from the
/// end), strictly after (`descending`: before) position `after`, at most `limit`. Also says
/// whether more may follow.
pub(crate) fn page(
    r: &ReadTransaction,
    device: &[u8; 20],
    info: &StreamInfo,
    range: &StreamRange,
    after: Option<u64>,
    descending: bool,
    limit: usize,
) -> Result<(Vec<StreamEntry>, bool)> {
    // The stretch [lo, hi) of positions that holds every in-range reading except the late
    // ones after it: block time and the running maxima never decrease along the positions.
    let mut lo = 0u64;
    let mut hi = info.count;
    if let Some((from, to)) = range.block_time {
        lo = lo.max(first_where(r, device, info, |e| e.block_time_ms >= from)?);
        hi = hi.min(first_where(r, device, info, |e| e.block_time_ms > to)?);
    }
    let mut late_kinds = Vec::new();
    if let Some((from, to)) = range.seq {
        lo = lo.max(first_where(r, device, info, |e| e.max_seq >= from)?);
        hi = hi.min(first_where(r, device, info, |e| e.max_seq > to)?);
        late_kinds.push(LATE_SEQ);
    }
    if let Some((from, to)) = range.ts {
        lo = lo.max(first_where(r, device, info, |e| e.max_ts >= from)?);
        hi = hi.min(first_where(r, device, info, |e| e.max_ts > to)?);
        late_kinds.push(LATE_TS);
    }
    // Late readings after the stretch (for a block time range, the range ends there anyway).
    let late_after = |from: u64, to: u64| -> Result<Vec<u64>> {
        if late_kinds.is_empty() || from >= to {
            return Ok(Vec::new());
        }
        let t = r.open_table(STREAM_LATE)?;
        let mut positions: Vec<u64> = Vec::new();
        for kind in &late_kinds {
            for row in t.range(
                late_key(device, info.id, *kind, from)..late_key(device, info.id, *kind, to),
            )? {
                let (k, _) = row?;
                positions.push(u64::from_be_bytes(
                    k.value()[25..].try_into().expect("8 bytes"),
                ));
            }
        }
        positions.sort_unstable();
        positions.dedup();
        Ok(positions)
    };
    let end = match range.block_time {
        Some((_, to)) => first_where(r, device, info, |e| e.block_time_ms > to)?,
        None => info.count,
    };
    let entries = r.open_table(STREAM_READINGS)?;
    let mut out = Vec::new();
    let take = |e: StreamEntry, out: &mut Vec<StreamEntry>| {
        if range.takes(&e) {
            out.push(e);
        }
    };
    // Candidates in order: the stretch, then the late ones after it (ascending); reversed for
    // descending. Both parts are bounded by the cursor.
    let (start, stop) = match (after, descending) {
        (Some(a), false) => (a.saturating_add(1), end),
        (Some(b), true) => (0, b.min(end)),
        (None, _) => (0, end),
    };
    let stretch = (lo.max(start), hi.min(stop));
    let tail = late_after(hi.max(start), stop)?;
    let read = |p: u64| -> Result<StreamEntry> {
        entries
            .get(entry_key(device, info.id, p))?
            .map(|v| StreamEntry::decode(p, v.value()))
            .transpose()?
            .ok_or_else(|| {
                StorageError::Corrupt(format!("stream {:?} lacks position {p}", info.stream))
            })
    };
    if !descending {
        if stretch.0 < stretch.1 {
            for row in entries.range(
                entry_key(device, info.id, stretch.0)..entry_key(device, info.id, stretch.1),
            )? {
                let (k, v) = row?;
                let p = u64::from_be_bytes(k.value()[24..].try_into().expect("8 bytes"));
                take(StreamEntry::decode(p, v.value())?, &mut out);
                if out.len() > limit {
                    break;
                }
            }
        }
        for p in tail {
            if out.len() > limit {
                break;
            }
            take(read(p)?, &mut out);
        }
    } else {
        for p in tail.into_iter().rev() {
            if out.len() > limit {
                break;
            }
            take(read(p)?, &mut out);
        }
        if stretch.0 < stretch.1 && out.len() <= limit {
            for row in entries
                .range(
                    entry_key(device, info.id, stretch.0)..entry_key(device, info.id, stretch.1),
                )?
                .rev()
            {
                let (k, v) = row?;
                let p = u64::from_be_bytes(k.value()[24..].try_into().expect("8 bytes"));
                take(StreamEntry::decode(p, v.value())?, &mut out);
                if out.len() > limit {
                    break;
                }
            }
        }
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};

    use super::*;

    const DEVICE: [u8; 20] = [7; 20];

    /// Readings of one stream: (seq, ts) per reading, a few per block, block time rising.
    fn write(db: &Database, readings: &[(u64, u64)], per_block: usize) {
        let w = db.begin_write().unwrap();
        let new: Vec<NewReading<'_>> = readings
            .iter()
            .enumerate()
            .map(|(i, &(seq, ts))| NewReading {
                device: DEVICE,
                stream: "t",
                seq,
                ts,
                height: 1 + (i / per_block) as u64,
                index: (i % per_block) as u32,
                item: (i % per_block) as u32,
                block_time_ms: 1000 * (1 + (i / per_block) as u64),
                id: iotchain_reading::reading_id(&[0xd2, 0x84]),
                message: &[0xd2, 0x84],
                value: Some(seq as f64),
            })
            .collect();
        // Two commits, as two blocks would write them, and another device's stream between.
        let (a, b) = new.split_at(new.len() / 2);
        let next = index(&w, a, 0).unwrap();
        let mut other = a.to_vec();
        for o in &mut other {
            o.device = [8; 20];
        }
        let next = index(&w, &other, next).unwrap();
        index(&w, b, next).unwrap();
        w.commit().unwrap();
    }

    fn all_pages(db: &Database, range: &StreamRange, descending: bool, limit: usize) -> Vec<u64> {
        let r = db.begin_read().unwrap();
        let info = stream_of(&r, &DEVICE, "t").unwrap().unwrap();
        let (mut out, mut after) = (Vec::new(), None);
        loop {
            let (page, more) = page(&r, &DEVICE, &info, range, after, descending, limit).unwrap();
            assert!(page.len() <= limit);
            out.extend(page.iter().map(|e| e.position));
            match (more, page.last()) {
                (true, Some(last)) => after = Some(last.position),
                _ => return out,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Buckets of any size merge the minute aggregates into what a direct computation over
        /// the readings gives.
        #[test]
        fn series_buckets_agree_with_a_direct_computation(
            ts in proptest::collection::vec(0u64..36_000_000, 1..200),
            bucket_minutes in proptest::sample::select(vec![1u64, 5, 60, 1440]),
            from in 0u64..36_000_000,
            span in 0u64..36_000_000,
        ) {
            let readings: Vec<(u64, u64)> = ts.iter().enumerate().map(|(i, t)| (i as u64, *t)).collect();
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("index.redb")).unwrap();
            write(&db, &readings, 3);
            let bucket = bucket_minutes * MINUTE_MS;
            let to = from.saturating_add(span);
            let r = db.begin_read().unwrap();
            let info = stream_of(&r, &DEVICE, "t").unwrap().unwrap();
            let got = series(&r, &DEVICE, &info, from, to, bucket).unwrap();
            let mut want: std::collections::BTreeMap<u64, Bucket> = Default::default();
            for (seq, t) in &readings {
                let start = t / bucket * bucket;
                if start + bucket <= from / bucket * bucket || start > to {
                    continue;
                }
                let one = Bucket::of(start, *t, *seq as f64);
                want.entry(start).and_modify(|b| b.merge(&one)).or_insert(one);
            }
            let want: Vec<Bucket> = want.into_values().collect();
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!((g.start_ms, g.count, g.min, g.max, g.sum), (w.start_ms, w.count, w.min, w.max, w.sum));
                prop_assert_eq!(g.first.0, w.first.0);
                prop_assert_eq!(g.last.0, w.last.0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The union of all pages is exactly the readings the range takes, once each, in
        /// position order (or its reverse), whatever the order of arrival of seqs and times.
        #[test]
        fn pages_cover_the_range_exactly_once_in_order(
            steps in proptest::collection::vec((0u64..40, 0u64..40, any::<bool>()), 1..120),
            per_block in 1usize..9,
            seq_range in proptest::option::of((0u64..300, 0u64..300)),
            ts_range in proptest::option::of((0u64..3000, 0u64..3000)),
            time_range in proptest::option::of((0u64..20_000, 0u64..20_000)),
            descending in any::<bool>(),
            limit in 1usize..12,
        ) {
            // Mostly rising seqs and times, with late ones (a filled gap, a clock going back).
            let mut readings: Vec<(u64, u64)> = Vec::new();
            let mut used = std::collections::BTreeSet::new();
            let (mut seq, mut ts) = (0u64, 100u64);
            for (jump, back, late) in steps {
                let s = if late && seq > back { seq - back } else { seq + jump };
                if !used.insert(s) {
                    continue;
                }
                seq = seq.max(s + 1);
                let t = if late { ts.saturating_sub(back * 10) } else { ts + jump * 10 };
                ts = ts.max(t);
                readings.push((s, t));
            }
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("index.redb")).unwrap();
            write(&db, &readings, per_block);
            let order = |(a, b): (u64, u64)| (a.min(b), a.max(b));
            let range = StreamRange {
                seq: seq_range.map(order),
                ts: ts_range.map(order),
                block_time: time_range.map(order),
            };
            let mut want: Vec<u64> = readings
                .iter()
                .enumerate()
                .filter(|(i, (s, t))| {
                    let bt = 1000 * (1 + (*i / per_block) as u64);
                    range.seq.is_none_or(|(lo, hi)| lo <= *s && *s <= hi)
                        && range.ts.is_none_or(|(lo, hi)| lo <= *t && *t <= hi)
                        && range.block_time.is_none_or(|(lo, hi)| lo <= bt && bt <= hi)
                })
                .map(|(i, _)| i as u64)
                .collect();
            if descending {
                want.reverse();
            }
            prop_assert_eq!(all_pages(&db, &range, descending, limit), want);
            // The summary.
            let r = db.begin_read().unwrap();
            let info = stream_of(&r, &DEVICE, "t").unwrap().unwrap();
            prop_assert_eq!(info.count, readings.len() as u64);
            prop_assert_eq!(info.last_seq, readings.iter().map(|r| r.0).max().unwrap());
            prop_assert_eq!(info.first_ts, readings.iter().map(|r| r.1).min().unwrap());
            let latest = readings.iter().enumerate().max_by_key(|(_, r)| r.0).unwrap().0;
            prop_assert_eq!(info.latest, latest as u64);
            prop_assert_eq!(streams_of(&r, &DEVICE).unwrap().len(), 1);
        }
    }
}
