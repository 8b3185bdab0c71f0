//! The database side: one batch of blocks, with its receipts, logs and devices, written by
//! binary COPY in one transaction that also moves the cursor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::pin_mut;
use tokio_postgres::{
    Client, Transaction,
    binary_copy::BinaryCopyInWriter,
    types::{ToSql, Type},
};

use crate::{
    Error, Numeric, Result,
    rows::{BlockRows, DeviceRow, LogRow, MAX_TS_MS, ReceiptRow, bigint},
    schema::Cursor,
};

/// What one transaction writes.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The blocks, consecutive, oldest first.
    pub(crate) blocks: Vec<BlockRows>,
    /// Receipts of their Ethereum transactions and reading hooks.
    pub(crate) receipts: Vec<ReceiptRow>,
    /// Logs of those receipts.
    pub(crate) logs: Vec<LogRow>,
    /// The devices their owner transactions touched.
    pub(crate) devices: Vec<DeviceRow>,
    /// The node's head when the batch was fetched.
    pub(crate) head: u64,
}

impl Batch {
    /// Rows the batch writes.
    pub(crate) fn rows(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| 1 + b.readings.len() + b.owner_txs.len() + b.eth_txs.len())
            .sum::<usize>()
            + self.receipts.len()
            + self.logs.len()
            + self.devices.len()
    }

    /// Readings in the batch.
    pub(crate) fn readings(&self) -> usize {
        self.blocks.iter().map(|b| b.readings.len()).sum()
    }

    /// The cursor after the batch.
    pub(crate) fn last(&self) -> Option<Cursor> {
        self.blocks.last().map(|b| Cursor {
            height: b.block.height,
            hash: b.block.hash,
        })
    }
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

async fn copy(
    tx: &Transaction<'_>,
    statement: &str,
    types: &[Type],
    rows: impl Iterator<Item = Vec<Box<dyn ToSql + Sync + Send>>>,
) -> Result<()> {
    let sink = tx.copy_in(statement).await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    pin_mut!(writer);
    for row in rows {
        let refs: Vec<&(dyn ToSql + Sync)> = row
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        writer.as_mut().write(&refs).await?;
    }
    writer.finish().await?;
    Ok(())
}

type Row = Vec<Box<dyn ToSql + Sync + Send>>;

fn b(v: impl ToSql + Sync + Send + 'static) -> Box<dyn ToSql + Sync + Send> {
    Box::new(v)
}

/// Writes `batch` and moves the cursor from `prev` to its last block, in one transaction.
/// The cursor row is locked first and must still be `prev`: a second exporter on the same
/// database fails here instead of interleaving.
pub(crate) async fn write(db: &mut Client, prev: Option<Cursor>, batch: &Batch) -> Result<()> {
    let Some(last) = batch.last() else {
        return Ok(());
    };
    let tx = db.transaction().await?;
    let found = tx
        .query_opt(
            "SELECT height, hash FROM export_cursor WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?
        .map(|r| r.get::<_, i64>(0) as u64);
    if found != prev.map(|c| c.height) {
        return Err(Error::CursorMoved {
            expected: prev.map_or(0, |c| c.height),
            found: found.unwrap_or(0),
        });
    }

    let blocks = batch.blocks.iter().map(|r| {
        let k = &r.block;
        vec![
            b(k.height as i64),
            b(k.hash.to_vec()),
            b(k.parent_hash.to_vec()),
            b(time(k.time_ms)),
            b(k.time_ms as i64),
            b(k.proposer.to_vec()),
            b(k.reading_count as i32),
            b(k.transaction_count as i32),
            b(k.state_root.to_vec()),
        ] as Row
    });
    copy(
        &tx,
        "COPY blocks (height, hash, parent_hash, time, time_ms, proposer, reading_count, \
         transaction_count, state_root) FROM STDIN BINARY",
        &[
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
            Type::TIMESTAMPTZ,
            Type::INT8,
            Type::BYTEA,
            Type::INT4,
            Type::INT4,
            Type::BYTEA,
        ],
        blocks,
    )
    .await?;

    if batch.readings() > 0 {
        write_readings(&tx, batch).await?;
    }
    write_transactions(&tx, batch).await?;
    write_receipts(&tx, batch).await?;
    for d in &batch.devices {
        tx.execute(
            "INSERT INTO devices (address, owner, alg, public_key, key_version, status, model, \
             firmware_hash, labels, registered_at, updated_height) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (address) DO UPDATE SET owner = excluded.owner, alg = excluded.alg, \
             public_key = excluded.public_key, key_version = excluded.key_version, \
             status = excluded.status, model = excluded.model, \
             firmware_hash = excluded.firmware_hash, labels = excluded.labels, \
             registered_at = excluded.registered_at, updated_height = excluded.updated_height",
            &[
                &d.address.as_slice(),
                &d.owner.as_slice(),
                &d.alg,
                &d.public_key,
                &(d.key_version as i32),
                &d.status,
                &d.model,
                &d.firmware_hash,
                &d.labels,
                &(d.registered_at as i64),
                &(d.updated_height as i64),
            ],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO export_cursor (id, height, hash) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET height = excluded.height, hash = excluded.hash, \
         updated_at = now()",
        &[&(last.height as i64), &last.hash.as_slice()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn write_readings(tx: &Transaction<'_>, batch: &Batch) -> Result<()> {
    let rows = batch
        .blocks
        .iter()
        .flat_map(|r| r.readings.iter())
        .map(|r| {
            vec![
                b(r.id.to_vec()),
                b(r.height as i64),
                b(r.idx as i32),
                b(r.device.to_vec()),
                b(r.stream.clone()),
                b(bigint(r.seq)),
                b((r.ts_ms <= MAX_TS_MS).then(|| time(r.ts_ms))),
                b(bigint(r.ts_ms)),
                b(time(r.block_time_ms)),
                b(r.value),
                b(r.data.clone()),
            ] as Row
        });
    copy(
        tx,
        "COPY readings (id, height, idx, device, stream, seq, ts, ts_ms, block_time, value, \
         data) FROM STDIN BINARY",
        &[
            Type::BYTEA,
            Type::INT8,
            Type::INT4,
            Type::BYTEA,
            Type::TEXT,
            Type::INT8,
            Type::TIMESTAMPTZ,
            Type::INT8,
            Type::TIMESTAMPTZ,
            Type::FLOAT8,
            Type::JSONB,
        ],
        rows,
    )
    .await
}

async fn write_transactions(tx: &Transaction<'_>, batch: &Batch) -> Result<()> {
    let owner: Vec<Row> = batch
        .blocks
        .iter()
        .flat_map(|r| r.owner_txs.iter())
        .map(|t| {
            vec![
                b(t.hash.to_vec()),
                b(t.height as i64),
                b(t.idx as i32),
                b(t.owner.to_vec()),
                b(bigint(t.nonce)),
                b(t.kind.to_owned()),
                b(t.device.to_vec()),
            ]
        })
        .collect();
    if !owner.is_empty() {
        copy(
            tx,
            "COPY owner_transactions (hash, height, idx, owner, nonce, kind, device) \
             FROM STDIN BINARY",
            &[
                Type::BYTEA,
                Type::INT8,
                Type::INT4,
                Type::BYTEA,
                Type::INT8,
                Type::TEXT,
                Type::BYTEA,
            ],
            owner.into_iter(),
        )
        .await?;
    }
    let eth: Vec<Row> = batch
        .blocks
        .iter()
        .flat_map(|r| r.eth_txs.iter())
        .map(|t| {
            vec![
                b(t.hash.to_vec()),
                b(t.height as i64),
                b(t.idx as i32),
                b(t.from.to_vec()),
                b(t.to.map(|a| a.to_vec())),
                b(bigint(t.nonce)),
                b(Numeric(t.value)),
                b(bigint(t.gas_limit)),
                b(i16::from(t.tx_type)),
                b(t.input_len as i32),
                b(t.status),
                b(t.gas_used.and_then(bigint)),
            ]
        })
        .collect();
    if !eth.is_empty() {
        copy(
            tx,
            "COPY eth_transactions (hash, height, idx, \"from\", \"to\", nonce, value, gas_limit, \
             tx_type, input_len, status, gas_used) FROM STDIN BINARY",
            &[
                Type::BYTEA,
                Type::INT8,
                Type::INT4,
                Type::BYTEA,
                Type::BYTEA,
                Type::INT8,
                Type::NUMERIC,
                Type::INT8,
                Type::INT2,
                Type::INT4,
                Type::BOOL,
                Type::INT8,
            ],
            eth.into_iter(),
        )
        .await?;
    }
    Ok(())
}

async fn write_receipts(tx: &Transaction<'_>, batch: &Batch) -> Result<()> {
    if !batch.receipts.is_empty() {
        let rows = batch.receipts.iter().map(|r| {
            vec![
                b(r.tx_hash.to_vec()),
                b(r.height as i64),
                b(r.kind.to_owned()),
                b(r.tx_index as i32),
                b(r.from.to_vec()),
                b(r.to.map(|a| a.to_vec())),
                b(r.contract_address.map(|a| a.to_vec())),
                b(bigint(r.gas_used)),
                b(bigint(r.cumulative_gas_used)),
                b(r.status),
            ] as Row
        });
        copy(
            tx,
            "COPY receipts (tx_hash, height, kind, tx_index, \"from\", \"to\", contract_address, \
             gas_used, cumulative_gas_used, status) FROM STDIN BINARY",
            &[
                Type::BYTEA,
                Type::INT8,
                Type::TEXT,
                Type::INT4,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::INT8,
                Type::INT8,
                Type::BOOL,
            ],
            rows,
        )
        .await?;
    }
    if !batch.logs.is_empty() {
        let rows = batch.logs.iter().map(|l| {
            vec![
                b(l.height as i64),
                b(l.tx_hash.to_vec()),
                b(l.log_index as i32),
                b(l.address.to_vec()),
                b(l.topics.iter().map(|t| t.to_vec()).collect::<Vec<_>>()),
                b(l.data.to_vec()),
            ] as Row
        });
        copy(
            tx,
            "COPY logs (height, tx_hash, log_index, address, topics, data) FROM STDIN BINARY",
            &[
                Type::INT8,
                Type::BYTEA,
                Type::INT4,
                Type::BYTEA,
                Type::BYTEA_ARRAY,
                Type::BYTEA,
            ],
            rows,
        )
        .await?;
    }
    Ok(())
}
