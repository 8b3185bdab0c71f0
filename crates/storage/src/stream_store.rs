//! The chain store's side of the stream index: bringing it up to the head and answering
//! from it (the index itself is in [`crate::streams`]).

use redb::{Durability, ReadableDatabase, ReadableTable};

use crate::{
    ChainStore, Result, StorageError,
    chain::{META, NEXT_STREAM_ID, STREAMS_INDEXED},
};
use iotchain_block::Block;

impl ChainStore {
    /// The height through which final readings are in the stream index.
    pub fn streams_indexed(&self) -> Result<u64> {
        Ok(self.meta(STREAMS_INDEXED)?.unwrap_or(0))
    }

    /// Brings the stream index up to the head, in write transactions of up to 256 blocks
    /// (one indexer at a time; a second caller waits for the first and finds less to do).
    /// Off the commit path: the node calls it after commits, in the background, and before
    /// answering a query, so an answer holds every reading final when it was asked. A data
    /// directory written before the index existed is indexed at open (progress in the log).
    /// Returns the height indexed through.
    pub fn index_streams(&self) -> Result<u64> {
        // Usually nothing is missing (the node indexes after each commit): queries then do not
        // wait on each other for the indexer's lock.
        let done = self.streams_indexed()?;
        if self.head()?.is_none_or(|head| done >= head) {
            return Ok(done);
        }
        let _one = self.indexing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(head) = self.head()? else {
            return Ok(0);
        };
        let mut done = self.meta(STREAMS_INDEXED)?.unwrap_or(0);
        if done >= head {
            return Ok(done);
        }
        let announce = head - done > 10_240;
        if announce {
            tracing::info!(
                from = done + 1,
                to = head,
                "indexing the final readings by device stream"
            );
        }
        while done < head {
            // Up to 256 blocks or about 10,000 readings per write transaction: few page
            // rewrites, and a bounded amount of dirty pages in memory.
            let mut w = self.db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            let (mut blocks, mut readings, mut to) = (Vec::new(), 0u64, done);
            while to < head && blocks.len() < 256 && readings < 10_000 {
                to += 1;
                let block = self
                    .block(to)?
                    .ok_or_else(|| StorageError::Corrupt(format!("final block {to} is missing")))?;
                readings += block.header.reading_count;
                blocks.push(block);
            }
            index_blocks_streams(&w, &blocks)?;
            w.open_table(META)?.insert(STREAMS_INDEXED, to)?;
            w.commit()?;
            done = to;
            if announce && (done % 10_240 == 0 || done == head) {
                tracing::info!(indexed = done, head, "stream index");
            }
        }
        Ok(done)
    }

    /// Every stream of a device with its figures. Like the other queries of the stream index,
    /// it first indexes what became final since the last indexing (usually nothing: the node
    /// indexes after each commit), so it answers for every final block.
    pub fn streams(&self, device: &[u8; 20]) -> Result<Vec<crate::StreamInfo>> {
        self.index_streams()?;
        crate::streams::streams_of(&self.db.begin_read()?, device)
    }

    /// A page of a device stream's final readings: those `range` takes, in position (commit)
    /// order or its reverse, after (before, descending) position `after`, at most `limit`;
    /// `None` for a stream the device never sent. Says whether more follow.
    pub fn stream_page(
        &self,
        device: &[u8; 20],
        stream: &str,
        range: &crate::StreamRange,
        after: crate::StreamCursor,
        descending: bool,
        limit: usize,
    ) -> Result<Option<(crate::StreamInfo, Vec<crate::StreamEntry>, bool)>> {
        self.index_streams()?;
        let r = self.db.begin_read()?;
        let Some(info) = crate::streams::stream_of(&r, device, stream)? else {
            return Ok(None);
        };
        let after = match after {
            crate::StreamCursor::Start => None,
            crate::StreamCursor::Position(p) => Some(p),
            crate::StreamCursor::Location(h, i) => {
                let p =
                    crate::streams::position_of_location(&r, device, &info, (h, i), descending)?;
                // Before position 0, descending: nothing is left.
                if descending && p == Some(0) {
                    return Ok(Some((info, Vec::new(), false)));
                }
                p
            }
        };
        let (entries, more) =
            crate::streams::page(&r, device, &info, range, after, descending, limit)?;
        Ok(Some((info, entries, more)))
    }

    /// Time buckets of a device stream's numeric readings (see [`crate::Bucket`]): the buckets
    /// of `bucket_ms` (a multiple of a minute) overlapping device time `from..=to`; `None` for
    /// a stream the device never sent.
    pub fn stream_series(
        &self,
        device: &[u8; 20],
        stream: &str,
        from: u64,
        to: u64,
        bucket_ms: u64,
    ) -> Result<Option<Vec<crate::Bucket>>> {
        self.index_streams()?;
        let r = self.db.begin_read()?;
        let Some(info) = crate::streams::stream_of(&r, device, stream)? else {
            return Ok(None);
        };
        crate::streams::series(&r, device, &info, from, to, bucket_ms).map(Some)
    }
}

/// Adds the readings of final blocks (consecutive, oldest first) to the stream index, in `w`.
fn index_blocks_streams(w: &redb::WriteTransaction, blocks: &[Block]) -> Result<()> {
    let mut decoded = Vec::new();
    for block in blocks {
        let mut index = 0u32;
        for (item, it) in block.items.iter().enumerate() {
            let iotchain_block::BlockItem::Reading(message) = it else {
                continue;
            };
            let at = index;
            index += 1;
            // A final reading decodes (it was checked when its block was made).
            let Ok(r) = iotchain_reading::decode(message) else {
                continue;
            };
            decoded.push((block, r, at, item as u32));
        }
    }
    if decoded.is_empty() {
        return Ok(());
    }
    let new: Vec<crate::streams::NewReading<'_>> = decoded
        .iter()
        .map(|(block, r, at, item)| crate::streams::NewReading {
            device: r.device.0,
            stream: r.stream,
            seq: r.seq,
            ts: r.ts,
            height: block.header.height,
            index: *at,
            item: *item,
            block_time_ms: block.header.timestamp_ms,
            id: r.id(),
            message: message_of(block, *item),
            value: iotchain_state::micro_units(r.data)
                .and_then(|v| i128::try_from(v).ok())
                .map(|v| v as f64 / 1e6),
        })
        .collect();
    let next = w
        .open_table(META)?
        .get(NEXT_STREAM_ID)?
        .map_or(0, |v| v.value()) as u32;
    let next = crate::streams::index(w, &new, next)?;
    w.open_table(META)?
        .insert(NEXT_STREAM_ID, u64::from(next))?;
    Ok(())
}

fn message_of(block: &Block, item: u32) -> &[u8] {
    match &block.items[item as usize] {
        iotchain_block::BlockItem::Reading(m) => m,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use iotchain_block::Block;

    use crate::{
        ChainStore,
        chain::{
            META, NEXT_STREAM_ID, STREAMS_INDEXED,
            tests::{block_at, commit_with},
        },
    };

    /// A block whose items are readings of device 0x07… (unsigned: the index only decodes).
    fn block_with_readings(height: u64, seqs: &[(u64, &str)]) -> Block {
        let mut block = block_at(height);
        block.header.timestamp_ms = 1000 * height;
        block.items = seqs
            .iter()
            .map(|(seq, stream)| {
                let u = iotchain_reading::UnsignedReading::new(
                    iotchain_reading::Alg::EdDsa,
                    iotchain_reading::DeviceAddress([7; 20]),
                    *seq,
                    *seq * 10,
                    Some(stream),
                    &[0x01],
                );
                iotchain_block::BlockItem::Reading(u.into_message(&[0; 64]).into())
            })
            .collect();
        block
    }

    fn commit_block(store: &ChainStore, block: &Block) {
        commit_with(store, block, &[], &[], &[], &[]);
    }

    /// Final readings are in the stream index as their blocks commit, and a data directory
    /// written before the index existed is indexed when it is opened, to the same answers.
    #[test]
    fn the_stream_index_follows_commits_and_is_built_for_older_data_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.redb");
        let device = [7u8; 20];
        let answers = |store: &ChainStore| {
            let streams = store.streams(&device).unwrap();
            let (_, page, more) = store
                .stream_page(
                    &device,
                    "t",
                    &crate::StreamRange::default(),
                    crate::StreamCursor::Start,
                    false,
                    10,
                )
                .unwrap()
                .unwrap();
            let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
            (
                streams
                    .iter()
                    .map(|s| (s.stream.clone(), s.count))
                    .collect::<Vec<_>>(),
                seqs,
                more,
            )
        };
        let store = ChainStore::open(&path, 1 << 20).unwrap();
        commit_block(&store, &block_at(0));
        commit_block(
            &store,
            &block_with_readings(1, &[(0, "t"), (1, "u"), (2, "t")]),
        );
        commit_block(&store, &block_with_readings(2, &[(5, "t")]));
        commit_block(&store, &block_with_readings(3, &[(3, "t"), (4, "u")]));
        let want = (
            vec![("t".to_string(), 4), ("u".to_string(), 2)],
            vec![0, 2, 5, 3],
            false,
        );
        assert_eq!(answers(&store), want);
        // As an older version left it: no stream index at all.
        {
            let w = store.db.begin_write().unwrap();
            w.delete_table(crate::streams::STREAMS).unwrap();
            w.delete_table(crate::streams::STREAM_READINGS).unwrap();
            w.delete_table(crate::streams::STREAM_LATE).unwrap();
            w.delete_table(crate::streams::STREAM_MINUTES).unwrap();
            w.open_table(META).unwrap().remove(STREAMS_INDEXED).unwrap();
            w.open_table(META).unwrap().remove(NEXT_STREAM_ID).unwrap();
            w.commit().unwrap();
        }
        drop(store);
        let store = ChainStore::open(&path, 1 << 20).unwrap();
        assert_eq!(answers(&store), want);
        commit_block(&store, &block_with_readings(4, &[(6, "t")]));
        assert_eq!(answers(&store).1, vec![0, 2, 5, 3, 6]);
    }
}
