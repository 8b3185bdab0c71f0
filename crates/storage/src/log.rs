//! The accepted-item log: append-only segment files with length, checksum and sequence.
//!
//! Record layout: `len: u32 LE ‖ crc32(body): u32 LE ‖ body`, where body is
//! `seq: u64 LE ‖ kind: u8 ‖ arrival_ms: u64 LE ‖ key_version: u32 LE ‖ bytes`.
//! A crash can leave a torn record at the end of the last segment; opening the log cuts it
//! off (it was never acknowledged, since acknowledgement follows the sync).

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use crate::{Result, StorageError};

/// Start a new segment once the current one exceeds this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 8;
const BODY_FIXED: usize = 8 + 1 + 8 + 4;
/// Longest record body looked for past damage (an item is at most a request body).
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// What a log item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A COSE_Sign1 reading.
    Reading,
    /// An RLP owner transaction.
    Tx,
    /// An Ethereum transaction (EIP-2718 bytes).
    EthTx,
}

/// One accepted item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogItem {
    /// Position in acceptance order, from 1.
    pub seq: u64,
    /// Reading or transaction.
    pub kind: ItemKind,
    /// When the node accepted it, ms since the Unix epoch.
    pub arrival_ms: u64,
    /// For readings: the device key version that verified it.
    pub key_version: u32,
    /// The item's bytes as received (shared, not copied, with the node's queue).
    pub bytes: alloy_primitives::Bytes,
}

struct Segment {
    path: PathBuf,
    last_seq: u64,
}

/// The append-only log of accepted items.
pub struct ItemLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    file_len: u64,
    buf: Vec<u8>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ItemLog {
    /// Opens (or creates) the log in `dir` and returns it with every item whose seq is
    /// greater than `after`, in order.
    pub fn open(dir: &Path, after: u64) -> Result<(Self, Vec<LogItem>)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_suffix(".log")?.parse::<u64>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        names.sort();
        let mut items = Vec::new();
        let mut segments = Vec::new();
        let mut prev_last = after;
        let count = names.len();
        for (i, (_, path)) in names.into_iter().enumerate() {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path))?;
            let (parsed, valid_len) = parse(&bytes);
            if valid_len < bytes.len() {
                if i + 1 < count {
                    return Err(StorageError::Corrupt(format!(
                        "{} is damaged at byte {valid_len} and is not the last segment",
                        path.display()
                    )));
                }
                // A crash tears only the end of the last write: whole records after the
                // damage mean the file was damaged in the middle, and cutting there would drop
                // acknowledged items.
                if let Some(at) = record_after(&bytes, valid_len) {
                    return Err(StorageError::Corrupt(format!(
                        "{} is damaged at byte {valid_len}, and holds whole records after it (from                          byte {at}): this is not a torn tail from a crash. Items acknowledged after                          the damage would be lost if it were cut; restore the file from a backup,                          or move it aside to start without them",
                        path.display()
                    )));
                }
                tracing::warn!(path = %path.display(), at = valid_len, "cutting a torn record off the item log");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(valid_len as u64).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            let mut last = prev_last;
            for item in parsed {
                if item.seq <= last && item.seq > after {
                    return Err(StorageError::Corrupt(format!(
                        "item log seq {} out of order",
                        item.seq
                    )));
                }
                last = last.max(item.seq);
                if item.seq > after {
                    items.push(item);
                }
            }
            prev_last = last;
            segments.push(Segment {
                path,
                last_seq: last,
            });
        }
        let mut log = if let Some(seg) = segments.last() {
            let path = seg.path.clone();
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let file_len = file.metadata().map_err(io_err(&path))?.len();
            Self {
                dir: dir.to_path_buf(),
                segments,
                file,
                file_len,
                buf: Vec::new(),
            }
        } else {
            let (file, path) = create_segment(dir, 1)?;
            Self {
                dir: dir.to_path_buf(),
                segments: vec![Segment {
                    path,
                    last_seq: after,
                }],
                file,
                file_len: 0,
                buf: Vec::new(),
            }
        };
        log.prune(after)?;
        Ok((log, items))
    }

    /// Appends items and syncs them to disk (one `fdatasync`). Returns once they are durable.
    pub fn append(&mut self, items: &[LogItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        if self.file_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.buf.clear();
        for item in items {
            encode(item, &mut self.buf);
        }
        let path = self.segments.last().expect("one segment").path.clone();
        self.file.write_all(&self.buf).map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        self.file_len += self.buf.len() as u64;
        let seg = self.segments.last_mut().expect("one segment");
        seg.last_seq = seg.last_seq.max(items.last().map(|i| i.seq).unwrap_or(0));
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let next = self.segments.len() as u64 + segment_number(&self.segments[0].path);
        let (file, path) = create_segment(&self.dir, next)?;
        let last = self.segments.last().map_or(0, |s| s.last_seq);
        self.segments.push(Segment {
            path,
            last_seq: last,
        });
        self.file = file;
        self.file_len = 0;
        Ok(())
    }

    /// Deletes whole segments whose items are all at or below `done` (included in blocks).
    /// The segment being written is kept.
    pub fn prune(&mut self, done: u64) -> Result<()> {
        while self.segments.len() > 1 && self.segments[0].last_seq <= done {
            let seg = self.segments.remove(0);
            std::fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        Ok(())
    }
}

fn segment_number(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn create_segment(dir: &Path, n: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(format!("{n:012}.log"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // Make the new file's directory entry durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok((file, path))
}

fn encode(item: &LogItem, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED + item.bytes.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&item.seq.to_le_bytes());
    out.push(match item.kind {
        ItemKind::Reading => 0,
        ItemKind::Tx => 1,
        ItemKind::EthTx => 2,
    });
    out.extend_from_slice(&item.arrival_ms.to_le_bytes());
    out.extend_from_slice(&item.key_version.to_le_bytes());
    out.extend_from_slice(&item.bytes);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Parses records until the end or the first damaged one; returns them and the valid length.
/// The offset of a whole, well-formed record that starts after `from`, if any.
fn record_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from + 1..bytes.len().saturating_sub(HEADER)).find(|&pos| {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if !(BODY_FIXED..=MAX_RECORD).contains(&len) {
            return false;
        }
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        bytes
            .get(pos + HEADER..pos + HEADER + len)
            .is_some_and(|body| body[8] <= 2 && crc32fast::hash(body) == crc)
    })
}

fn parse(bytes: &[u8]) -> (Vec<LogItem>, usize) {
    let mut items = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= HEADER {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if len < BODY_FIXED || crc32fast::hash(body) != crc {
            break;
        }
        let kind = match body[8] {
            0 => ItemKind::Reading,
            1 => ItemKind::Tx,
            2 => ItemKind::EthTx,
            _ => break,
        };
        items.push(LogItem {
            seq: u64::from_le_bytes(body[0..8].try_into().expect("8 bytes")),
            kind,
            arrival_ms: u64::from_le_bytes(body[9..17].try_into().expect("8 bytes")),
            key_version: u32::from_le_bytes(body[17..21].try_into().expect("4 bytes")),
            bytes: alloy_primitives::Bytes::copy_from_slice(&body[BODY_FIXED..]),
        });
        pos += HEADER + len;
    }
    (items, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64) -> LogItem {
        LogItem {
            seq,
            kind: if seq.is_multiple_of(2) {
                ItemKind::Tx
            } else {
                ItemKind::Reading
            },
            arrival_ms: seq * 10,
            key_version: 1,
            bytes: vec![seq as u8; (seq % 7) as usize].into(),
        }
    }

    #[test]
    fn reopen_returns_items_after_done_and_cuts_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, items) = ItemLog::open(dir.path(), 0).unwrap();
        assert!(items.is_empty());
        log.append(&(1..=5).map(item).collect::<Vec<_>>()).unwrap();
        drop(log);
        let (_, items) = ItemLog::open(dir.path(), 2).unwrap();
        assert_eq!(items, (3..=5).map(item).collect::<Vec<_>>());
        // Tear the last record: it disappears, the others stay, and appends continue.
        let seg = dir.path().join("000000000001.log");
        let len = std::fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut log, items) = ItemLog::open(dir.path(), 0).unwrap();
        assert_eq!(items, (1..=4).map(item).collect::<Vec<_>>());
        log.append(&[item(6)]).unwrap();
        drop(log);
        let (_, items) = ItemLog::open(dir.path(), 4).unwrap();
        assert_eq!(items, vec![item(6)]);
    }

    #[test]
    fn damage_in_the_middle_is_refused_and_in_the_last_record_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = ItemLog::open(dir.path(), 0).unwrap();
        log.append(&(1..=3).map(item).collect::<Vec<_>>()).unwrap();
        drop(log);
        let seg = dir.path().join("000000000001.log");
        let pristine = std::fs::read(&seg).unwrap();
        // A flipped byte in the second of three records: the third is whole, so this is no
        // torn tail, and cutting would lose it. Opening refuses and names the file.
        let mut bytes = pristine.clone();
        let second = HEADER + BODY_FIXED + 1 + HEADER + 2;
        bytes[second] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let Err(e) = ItemLog::open(dir.path(), 0) else {
            panic!("a log damaged in the middle was opened");
        };
        let e = e.to_string();
        assert!(
            e.contains("000000000001.log") && e.contains("not a torn tail"),
            "{e}"
        );
        // A flipped byte in the last record is what a torn write can leave: it is cut.
        let mut bytes = pristine.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let (_, items) = ItemLog::open(dir.path(), 0).unwrap();
        assert_eq!(items, vec![item(1), item(2)]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let (_, len) = parse(&bytes);
            proptest::prop_assert!(len <= bytes.len());
        }
    }
}
