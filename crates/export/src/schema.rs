//! The tables of an export (described column by column in `docs/analytics.md`), created at
//! start when missing, and the checks that a database is this chain's export in this
//! version's layout.

use alloy_primitives::B256;
use tokio_postgres::Client;

use crate::{Error, Result};

/// Version of the table layout. A later layout bumps it and migrates from the one found.
pub const SCHEMA_VERSION: i32 = 1;

/// `CREATE TABLE IF NOT EXISTS` for every table and index, in one statement batch.
pub const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS export_meta (
    id              int PRIMARY KEY CHECK (id = 1),
    schema_version  int NOT NULL,
    genesis_hash    bytea NOT NULL,
    chain_id        bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS export_cursor (
    id          int PRIMARY KEY CHECK (id = 1),
    height      bigint NOT NULL,
    hash        bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS blocks (
    height             bigint PRIMARY KEY,
    hash               bytea NOT NULL UNIQUE,
    parent_hash        bytea NOT NULL,
    time               timestamptz NOT NULL,
    time_ms            bigint NOT NULL,
    proposer           bytea NOT NULL,
    reading_count      int NOT NULL,
    transaction_count  int NOT NULL,
    state_root         bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    id          bytea PRIMARY KEY,
    height      bigint NOT NULL,
    idx         int NOT NULL,
    device      bytea NOT NULL,
    stream      text NOT NULL,
    seq         bigint,
    ts          timestamptz,
    ts_ms       bigint,
    block_time  timestamptz NOT NULL,
    value       double precision,
    data        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_device_stream_ts ON readings (device, stream, ts);
CREATE INDEX IF NOT EXISTS readings_block_time ON readings (block_time);
CREATE INDEX IF NOT EXISTS readings_stream_ts ON readings (stream, ts);
CREATE TABLE IF NOT EXISTS devices (
    address        bytea PRIMARY KEY,
    owner          bytea NOT NULL,
    alg            text NOT NULL,
    public_key     bytea NOT NULL,
    key_version    int NOT NULL,
    status         text NOT NULL,
    model          text NOT NULL,
    firmware_hash  bytea NOT NULL,
    labels         jsonb NOT NULL,
    registered_at  bigint NOT NULL,
    updated_height bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS owner_transactions (
    hash    bytea PRIMARY KEY,
    height  bigint NOT NULL,
    idx     int NOT NULL,
    owner   bytea NOT NULL,
    nonce   bigint NOT NULL,
    kind    text NOT NULL,
    device  bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS owner_transactions_device ON owner_transactions (device);
CREATE TABLE IF NOT EXISTS eth_transactions (
    hash       bytea PRIMARY KEY,
    height     bigint NOT NULL,
    idx        int NOT NULL,
    "from"     bytea NOT NULL,
    "to"       bytea,
    nonce      bigint NOT NULL,
    value      numeric(78, 0) NOT NULL,
    gas_limit  bigint NOT NULL,
    tx_type    smallint NOT NULL,
    input_len  int NOT NULL,
    status     boolean,
    gas_used   bigint
);
CREATE TABLE IF NOT EXISTS receipts (
    tx_hash              bytea PRIMARY KEY,
    height               bigint NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('eth', 'hook')),
    tx_index             int NOT NULL,
    "from"               bytea NOT NULL,
    "to"                 bytea,
    contract_address     bytea,
    gas_used             bigint NOT NULL,
    cumulative_gas_used  bigint NOT NULL,
    status               boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    height     bigint NOT NULL,
    tx_hash    bytea NOT NULL,
    log_index  int NOT NULL,
    address    bytea NOT NULL,
    topics     bytea[] NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS logs_address_height ON logs (address, height);
"#;

/// Where an export stands: the last height written and its block hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Last height written (0: nothing but the genesis block, which is not exported).
    pub height: u64,
    /// Its header hash (the next block's parent).
    pub hash: B256,
}

/// Creates the tables when missing and checks (or, on a new database, records) the schema
/// version and the chain's genesis hash. Serialised against another exporter starting on
/// the same database by a transaction-level advisory lock.
pub async fn prepare(db: &mut Client, genesis_hash: B256, chain_id: u64) -> Result<()> {
    let tx = db.transaction().await?;
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide on the catalog.
    tx.execute("SELECT pg_advisory_xact_lock(73081070)", &[])
        .await?;
    tx.batch_execute(DDL).await?;
    tx.execute(
        "INSERT INTO export_meta (id, schema_version, genesis_hash, chain_id) \
         VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
        &[
            &SCHEMA_VERSION,
            &genesis_hash.as_slice(),
            &(chain_id as i64),
        ],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT schema_version, genesis_hash FROM export_meta WHERE id = 1",
            &[],
        )
        .await?;
    let (version, hash): (i32, Vec<u8>) = (row.get(0), row.get(1));
    if version != SCHEMA_VERSION {
        return Err(Error::SchemaVersion {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if hash.as_slice() != genesis_hash.as_slice() {
        return Err(Error::OtherChain {
            db: B256::try_from(hash.as_slice()).unwrap_or_default(),
            node: genesis_hash,
        });
    }
    tx.commit().await?;
    Ok(())
}

/// The cursor, `None` while no block has been written.
pub async fn cursor(db: &Client) -> Result<Option<Cursor>> {
    let row = db
        .query_opt("SELECT height, hash FROM export_cursor WHERE id = 1", &[])
        .await?;
    Ok(row.map(|r| Cursor {
        height: r.get::<_, i64>(0) as u64,
        hash: B256::try_from(r.get::<_, &[u8]>(1)).unwrap_or_default(),
    }))
}
