//! The export loop: connect, check the database, then fetch batches of final blocks in one
//! task and write them in another, retrying with backoff while the node or the database is
//! away, and stopping between transactions when asked.

use std::{collections::BTreeSet, time::Duration};

use alloy_primitives::B256;
use iotchain_api::redact_url;
use iotchain_block::{Block, FinalityCertificate};
use serde_json::Value;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_postgres::{Client, NoTls};

use crate::{
    Error, Result,
    rows::{self, BlockRows},
    schema,
    sink::{self, Batch},
    source::{Node, SYNC_MAX, SYNC_WAIT_MS},
};

/// What to export, from where, to where.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's URL.
    pub node: String,
    /// The PostgreSQL connection string (`postgres://user:password@host:port/db`).
    pub db: String,
    /// First height to export into an empty database (default 1).
    pub from_height: Option<u64>,
    /// Most blocks per database transaction.
    pub batch_blocks: u64,
    /// Stop once this height is written.
    pub until_height: Option<u64>,
    /// Stop once the node's head at start is written.
    pub once: bool,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_retries: Option<u32>,
    /// Validators the certificates are checked against (default: `/v1/status`'s).
    pub validators: Option<Vec<B256>>,
}

/// Figures after a committed batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Last height written.
    pub height: u64,
    /// The node's head when the batch was fetched.
    pub head: u64,
    /// Block time of the last block written, ms.
    pub block_time_ms: u64,
    /// Blocks in the batch.
    pub blocks: u64,
    /// Readings in the batch.
    pub readings: u64,
    /// Rows in the batch (every table).
    pub rows: u64,
    /// How long the database transaction took.
    pub write_time: Duration,
}

/// What the export reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// Connected and checked; exporting from `from`.
    Started {
        /// First height to write.
        from: u64,
        /// The node's head.
        head: u64,
        /// Whether the database already held an export (a resume).
        resumed: bool,
    },
    /// A batch was committed.
    Committed(Progress),
    /// An attempt failed; the next starts after `delay`.
    Retrying {
        /// What failed.
        error: String,
        /// Failed attempts in a row.
        attempt: u32,
        /// Wait before the next.
        delay: Duration,
    },
}

/// How an export ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Last height in the database (0: none).
    pub height: u64,
    /// Whether it ended because it was asked to stop.
    pub interrupted: bool,
}

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Device records fetched at once for one batch of blocks.
const DEVICE_FETCHES: usize = 16;

/// Exports until `until_height` (or the head at start with `once`), or until `shutdown`
/// turns true (checked between transactions: a batch is committed whole or not at all).
pub async fn run(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    mut on_event: impl FnMut(Event),
) -> Result<Summary> {
    // A malformed connection string is a usage error: refused before any attempt.
    let _: tokio_postgres::Config = config.db.parse().map_err(|e| Error::BadDbUrl {
        url: redact_url(&config.db),
        reason: format!("{e}"),
    })?;
    let node = Node::new(&config.node)?;
    let mut failures = 0u32;
    // `--once` fixes its end at the first head it sees, across retries.
    let mut until = config.until_height;
    // The last height known written, for the summary of a stop between attempts.
    let mut written = 0u64;
    loop {
        let attempt = session(
            config,
            &node,
            &mut until,
            &mut shutdown,
            &mut on_event,
            &mut failures,
            &mut written,
        );
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_retryable() && config.max_retries.is_none_or(|m| failures < m) => {
                failures += 1;
                let delay = Duration::from_millis(500 << failures.min(6)).min(MAX_BACKOFF);
                on_event(Event::Retrying {
                    error: e.to_string(),
                    attempt: failures,
                    delay,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => {
                        return Ok(Summary { height: written, interrupted: true });
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

async fn session(
    config: &Config,
    node: &Node,
    until: &mut Option<u64>,
    shutdown: &mut watch::Receiver<bool>,
    on_event: &mut impl FnMut(Event),
    failures: &mut u32,
    written: &mut u64,
) -> Result<Summary> {
    let status = node.status().await?;
    let mut db = connect(&config.db).await?;
    schema::prepare(&mut db, status.genesis_hash, status.chain_id).await?;
    let cursor = schema::cursor(&db).await?;
    let from = match (cursor, config.from_height) {
        (Some(c), Some(asked)) if asked != c.height + 1 => {
            return Err(Error::FromHeight {
                asked,
                cursor: c.height,
            });
        }
        (Some(c), _) => c.height + 1,
        (None, asked) => asked.unwrap_or(1).max(1),
    };
    // The parent the first block must name: the cursor's, genesis, or the node's block.
    let parent = match cursor {
        Some(c) => c.hash,
        None if from == 1 => status.genesis_hash,
        None => node.block_hash(from - 1).await?,
    };
    if config.once && until.is_none() {
        *until = Some(status.height);
    }
    on_event(Event::Started {
        from,
        head: status.height,
        resumed: cursor.is_some(),
    });
    let mut last = cursor;
    *written = last.map_or(0, |c| c.height);
    if until.is_some_and(|u| from > u) {
        return Ok(Summary {
            height: last.map_or(0, |c| c.height),
            interrupted: false,
        });
    }
    let validators = config
        .validators
        .clone()
        .unwrap_or_else(|| status.validators.clone());
    let (tx, mut rx) = mpsc::channel(2);
    let fetcher = Fetcher {
        node: node.clone(),
        batch_blocks: config.batch_blocks.max(1),
        until: *until,
        validators,
        next: from,
        parent,
        head: status.height,
        head_polled: Instant::now(),
    };
    let fetch = tokio::spawn(fetcher.run(tx));
    let _abort = AbortOnDrop(fetch);
    let interrupted = loop {
        let batch = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break true,
            b = rx.recv() => b,
        };
        let Some(batch) = batch else { break false };
        let batch = batch?;
        let started = Instant::now();
        sink::write(&mut db, last, &batch).await?;
        let write_time = started.elapsed();
        *failures = 0;
        let end = batch.last();
        let block = &batch.blocks[batch.blocks.len() - 1].block;
        on_event(Event::Committed(Progress {
            height: block.height,
            head: batch.head.max(block.height),
            block_time_ms: block.time_ms,
            blocks: batch.blocks.len() as u64,
            readings: batch.readings() as u64,
            rows: batch.rows() as u64,
            write_time,
        }));
        last = end;
        *written = block.height;
        if *shutdown.borrow() {
            break true;
        }
    };
    Ok(Summary {
        height: last.map_or(0, |c| c.height),
        interrupted,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The fetch side: pages of final blocks, checked and turned into rows, with their receipts
/// and the devices they touch.
struct Fetcher {
    node: Node,
    batch_blocks: u64,
    until: Option<u64>,
    validators: Vec<B256>,
    next: u64,
    parent: B256,
    head: u64,
    head_polled: Instant,
}

impl Fetcher {
    async fn run(mut self, out: mpsc::Sender<Result<Batch>>) {
        loop {
            if self.until.is_some_and(|u| self.next > u) {
                return;
            }
            let batch = self.batch().await;
            let failed = batch.is_err();
            if out.send(batch).await.is_err() || failed {
                return;
            }
        }
    }

    /// The next batch: up to `batch_blocks` blocks, fewer when the chain's end is reached
    /// (waiting for at least one).
    async fn batch(&mut self) -> Result<Batch> {
        let mut blocks: Vec<Block> = Vec::new();
        let mut certified: Vec<FinalityCertificate> = Vec::new();
        loop {
            let mut want = self
                .batch_blocks
                .saturating_sub(blocks.len() as u64)
                .min(SYNC_MAX);
            if let Some(u) = self.until {
                want = want.min((u + 1).saturating_sub(self.next));
            }
            if want == 0 {
                break;
            }
            // Wait on the node only while there is nothing to write.
            let wait = if blocks.is_empty() { SYNC_WAIT_MS } else { 0 };
            let page = self.node.sync(self.next, want, wait).await?;
            let got = page.blocks.len() as u64;
            for b in page.blocks {
                let height = self.next;
                let block = Block::decode_rlp(&b.block).map_err(|e| Error::BadBlock {
                    height,
                    reason: format!("does not decode: {e}"),
                })?;
                self.check(&block)?;
                self.parent = block.header.hash();
                self.next += 1;
                blocks.push(block);
                certified.push(b.certificate);
            }
            if got < want {
                break;
            }
        }
        self.check_certificates(&blocks, &certified)?;
        if self.head_polled.elapsed() > Duration::from_secs(1) || self.head < self.next - 1 {
            self.head = self.node.status().await?.height;
            self.head_polled = Instant::now();
        }
        self.rows(blocks).await
    }

    /// A block follows the exported chain and holds what its header commits to.
    fn check(&self, block: &Block) -> Result<()> {
        let h = &block.header;
        let bad = |reason: String| Error::BadBlock {
            height: self.next,
            reason,
        };
        if h.height != self.next {
            return Err(bad(format!("the node sent height {} instead", h.height)));
        }
        if h.parent_hash != self.parent {
            return Err(bad(format!(
                "its parent is {}, not the exported block {} (the node is on another chain)",
                h.parent_hash, self.parent
            )));
        }
        if !block.body_matches_header() {
            return Err(bad(
                "its items are not the ones its header commits to".into()
            ));
        }
        Ok(())
    }

    /// Each block's certificate is a quorum of the validators over it, or over a later block
    /// of the same answer (a block finalized through a descendant): hashes chain them.
    fn check_certificates(&self, blocks: &[Block], certs: &[FinalityCertificate]) -> Result<()> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        for (block, cert) in blocks.iter().zip(certs) {
            let height = block.header.height;
            let bad = |reason: String| Error::BadBlock { height, reason };
            if cert.height == height {
                if cert.header_hash != block.header.hash() {
                    return Err(bad("its certificate is for another header".into()));
                }
                cert.verify(&self.validators)
                    .map_err(|e| bad(format!("its certificate does not verify: {e}")))?;
            } else if cert.height < height || cert.height > last.header.height {
                return Err(bad(format!(
                    "certified through block {}, which is not in the answer",
                    cert.height
                )));
            }
        }
        Ok(())
    }

    async fn rows(&self, blocks: Vec<Block>) -> Result<Batch> {
        let mut batch = Batch {
            head: self.head,
            ..Batch::default()
        };
        let heights: Vec<u64> = blocks.iter().map(|b| b.header.height).collect();
        // Decoding a page (readings, sender recovery) is CPU work: off the async threads.
        let decoded = tokio::task::spawn_blocking(move || {
            blocks
                .iter()
                .map(rows::block_rows)
                .collect::<Result<Vec<BlockRows>>>()
        })
        .await
        .map_err(|e| Error::BadBlock {
            height: heights[0],
            reason: format!("decoding failed: {e}"),
        })??;
        batch.blocks = decoded;
        let receipts = self.node.receipts(&heights).await?;
        for (rows, receipts) in batch.blocks.iter_mut().zip(&receipts) {
            rows::receipt_rows(rows, receipts, &mut batch.receipts, &mut batch.logs);
        }
        let devices: BTreeSet<[u8; 20]> = batch
            .blocks
            .iter()
            .flat_map(|b| b.owner_txs.iter().flat_map(|t| t.devices.iter().copied()))
            .collect();
        let last = heights[heights.len() - 1];
        // A bulk registration names thousands of devices: fetched several at a time, in
        // address order still.
        use futures::{StreamExt, TryStreamExt};
        let fetched: Vec<(String, Option<Value>)> = futures::stream::iter(devices)
            .map(|d| async move {
                let address = iotchain_block::hex0x(d);
                let v = self.node.device(&address).await?;
                Ok::<_, Error>((address, v))
            })
            .buffered(DEVICE_FETCHES)
            .try_collect()
            .await?;
        for (address, v) in fetched {
            if let Some(v) = v {
                let row = rows::device_row(&v, last).map_err(|reason| Error::NodeAnswer {
                    what: format!("GET /v1/devices/{address}"),
                    reason,
                })?;
                batch.devices.push(row);
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h user=u"), "host=h user=u");
    }
}
