//! The chain store: blocks, headers, certificates, the reading and transaction index, and
//! state records, in one `redb` database with one write transaction per block.

use std::path::Path;

use alloy_primitives::{Address, B256, Bytes, U256};
use iotchain_block::{Block, FinalityCertificate, Header};
use iotchain_state::{
    Account, DeviceRecord, OwnerRecord, StateRecords, StateUndo, StreamAccumulator,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::history::{History, rlp};
use crate::{Result, StorageError, index::HashIndex};

pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const HEADERS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("headers");
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
const CERTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("certificates");
const HASHES: TableDefinition<'_, [u8; 32], u64> = TableDefinition::new("header_hashes");
/// Reading id → location (with the device's `ts`, so a reading's delay is known).
const READING_INDEX: HashIndex = HashIndex::new("reading_index", 32);
/// Transaction hash → height ‖ item.
const TX_INDEX: HashIndex = HashIndex::new("tx_index", 12);
/// Hook call id → the height of its block.
const HOOK_INDEX: HashIndex = HashIndex::new("hook_call_index", 8);
/// Reading id → location, as data directories written before [`READING_INDEX`] hold it:
/// read, never written.
const READINGS: TableDefinition<'_, [u8; 32], [u8; 32]> = TableDefinition::new("reading_locations");
/// The index of data directories written before the device time was kept: read, never
/// written.
const LEGACY_READINGS: TableDefinition<'_, [u8; 32], [u8; 24]> = TableDefinition::new("readings");
/// Transaction hash → location, as data directories written before [`TX_INDEX`] hold it.
const TXS: TableDefinition<'_, [u8; 32], [u8; 12]> = TableDefinition::new("transactions");
const DEVICES: TableDefinition<'_, [u8; 20], &[u8]> = TableDefinition::new("devices");
const OWNERS: TableDefinition<'_, [u8; 20], &[u8]> = TableDefinition::new("owners");
/// Device → its stream accumulators ([`StreamAccumulator::encode_all`]).
const ACCUMULATORS: TableDefinition<'_, [u8; 20], &[u8]> = TableDefinition::new("accumulators");
/// Ethereum accounts: address → RLP `[nonce, balance, code_hash]`.
const ACCOUNTS: TableDefinition<'_, [u8; 20], &[u8]> = TableDefinition::new("accounts");
/// Contract storage: address ‖ slot → value (32 bytes, big-endian); zero values absent.
const STORAGE: TableDefinition<'_, [u8; 52], [u8; 32]> = TableDefinition::new("storage");
/// Contract code by its keccak256.
const CODE: TableDefinition<'_, [u8; 32], &[u8]> = TableDefinition::new("code");
/// Receipts of Ethereum transactions by transaction hash (bytes encoded by the node), as data
/// directories written before [`BLOCK_RECEIPTS`] hold them: read, never written.
const RECEIPTS: TableDefinition<'_, [u8; 32], &[u8]> = TableDefinition::new("receipts");
/// The receipts of a block (its Ethereum transactions' and hook calls', encoded by the node),
/// framed for lookup by hash ([`crate::receipts`]).
const BLOCK_RECEIPTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("block_receipts");
/// Per block: the EIP-1559 base fee and the gas its Ethereum transactions used.
const GAS: TableDefinition<'_, u64, [u8; 16]> = TableDefinition::new("block_gas");
/// Items this node acknowledged that a final block refused for good: id → height (u64 BE) ‖
/// code length (u8) ‖ code ‖ message.
const REFUSED: TableDefinition<'_, [u8; 32], &[u8]> = TableDefinition::new("refused");
/// Blocks built or verified here and not yet final: header hash → height (u64 BE) ‖ the
/// engine's record of the block. Recorded before this validator votes for the block, so that
/// after a crash or a stop of every validator the blocks simplex can build on are still here.
const PENDING_BLOCKS: TableDefinition<'_, [u8; 32], &[u8]> = TableDefinition::new("pending_blocks");

const HEAD: &str = "head";
const DONE: &str = "log_done";
/// The height through which final readings are in the stream index.
pub(crate) const STREAMS_INDEXED: &str = "streams_indexed";
/// The next free stream id of the stream index.
pub(crate) const NEXT_STREAM_ID: &str = "next_stream_id";

/// Where a reading is in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingLocation {
    /// Block height.
    pub height: u64,
    /// Position among the block's readings (the Merkle leaf index).
    pub index: u32,
    /// Position among all items of the block.
    pub item: u32,
    /// When the node accepted it, ms since the Unix epoch.
    pub arrival_ms: u64,
    /// The device's time in the reading (`ts`), ms since the Unix epoch; `None` for readings
    /// indexed before it was kept.
    pub ts: Option<u64>,
}

/// Arrival time minus device time, in ms (negative when the device's clock is ahead).
pub fn delay_ms(arrival_ms: u64, ts: u64) -> i64 {
    (i128::from(arrival_ms) - i128::from(ts)).clamp(i128::from(i64::MIN), i128::from(i64::MAX))
        as i64
}

impl ReadingLocation {
    /// How far the device's clock was behind the node's when the reading arrived: large
    /// for readings a device buffered while offline and sent later.
    pub fn delay_ms(&self) -> Option<i64> {
        self.ts.map(|ts| delay_ms(self.arrival_ms, ts))
    }

    fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..16].copy_from_slice(&self.item.to_be_bytes());
        out[16..24].copy_from_slice(&self.arrival_ms.to_be_bytes());
        out[24..].copy_from_slice(&self.ts.unwrap_or(u64::MAX).to_be_bytes());
        out
    }

    fn decode(b: [u8; 32]) -> Self {
        let mut legacy = [0u8; 24];
        legacy.copy_from_slice(&b[..24]);
        let ts = u64::from_be_bytes(b[24..].try_into().expect("8 bytes"));
        Self {
            ts: (ts != u64::MAX).then_some(ts),
            ..Self::decode_legacy(legacy)
        }
    }

    fn decode_legacy(b: [u8; 24]) -> Self {
        Self {
            height: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            index: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            item: u32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
            arrival_ms: u64::from_be_bytes(b[16..].try_into().expect("8 bytes")),
            ts: None,
        }
    }
}

/// Where a transaction is in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Position among all items of the block.
    pub item: u32,
}

/// Everything one block writes.
#[derive(Debug)]
pub struct BlockCommit<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its certificate.
    pub certificate: &'a FinalityCertificate,
    /// Reading ids with their locations.
    pub readings: &'a [([u8; 32], ReadingLocation)],
    /// Transaction hashes with their locations.
    pub txs: &'a [(B256, TxLocation)],
    /// Changed device, owner and account records, storage slots and code.
    pub state: &'a StateRecords,
    /// Receipts of the block's Ethereum transactions and hook calls (and any other value the
    /// node keeps with them), by hash.
    pub receipts: &'a [(B256, Vec<u8>)],
    /// The ids of the block's hook calls (their receipts are among `receipts`).
    pub hook_calls: &'a [B256],
    /// The block's base fee and the gas its Ethereum transactions used.
    pub gas: BlockGas,
    /// The highest item-log seq this block consumed.
    pub log_done: u64,
    /// Items this node acknowledged that final blocks refused for good (recorded with the
    /// commit that lets the item log's mark pass them).
    pub refused: &'a [RefusedItem],
    /// The records `state` overwrote, as they were (kept for the state history; `None` for
    /// genesis).
    pub undo: Option<&'a StateUndo>,
    /// The trie nodes the block changed, by store key ([`iotchain_state::node_key`]).
    pub nodes: &'a [(Vec<u8>, Vec<u8>)],
}

/// An acknowledged item a final block refused, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedItem {
    /// Reading id or transaction hash.
    pub id: B256,
    /// The height of the block after which it no longer applied.
    pub height: u64,
    /// The reason's stable code.
    pub code: String,
    /// The reason.
    pub message: String,
}

impl RefusedItem {
    fn encode(&self) -> Vec<u8> {
        let code = &self.code.as_bytes()[..self.code.len().min(255)];
        let mut v = self.height.to_be_bytes().to_vec();
        v.push(code.len() as u8);
        v.extend_from_slice(code);
        v.extend_from_slice(self.message.as_bytes());
        v
    }

    fn decode(id: B256, v: &[u8]) -> Result<Self> {
        let bad = || StorageError::Corrupt(format!("refusal record of {id}"));
        let height = u64::from_be_bytes(v.get(..8).ok_or_else(bad)?.try_into().expect("8 bytes"));
        let n = *v.get(8).ok_or_else(bad)? as usize;
        let code = v.get(9..9 + n).ok_or_else(bad)?;
        let message = v.get(9 + n..).ok_or_else(bad)?;
        Ok(Self {
            id,
            height,
            code: String::from_utf8_lossy(code).into_owned(),
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }
}

/// A block's EIP-1559 figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockGas {
    /// The base fee of the block, in wei.
    pub base_fee: u64,
    /// Gas used by its Ethereum transactions.
    pub gas_used: u64,
}

/// Where a final transaction is, in the index or (older data directories) the old table.
fn tx_location(r: &redb::ReadTransaction, hash: &B256) -> Result<Option<TxLocation>> {
    let v: Option<Vec<u8>> = match TX_INDEX.get(r, &hash.0)? {
        Some(v) => Some(v),
        None => r.open_table(TXS)?.get(hash.0)?.map(|v| v.value().to_vec()),
    };
    v.map(|v| {
        let v: [u8; 12] = v
            .try_into()
            .map_err(|_| StorageError::Corrupt("a transaction location is not 12 bytes".into()))?;
        Ok(TxLocation {
            height: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            item: u32::from_be_bytes(v[8..].try_into().expect("4 bytes")),
        })
    })
    .transpose()
}

fn storage_key(a: &Address, slot: &U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(a.as_slice());
    k[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    k
}

/// The chain database.
pub struct ChainStore {
    pub(crate) db: Database,
    /// How much state history commits keep.
    history: History,
    /// Held while the stream index is brought up to the head (one indexer at a time).
    pub(crate) indexing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainStore")
    }
}

impl ChainStore {
    /// Opens or creates the database file.
    /// `cache_bytes` bounds the database's page cache (it grows on demand up to that).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self> {
        // redb panics on some damaged pages instead of answering an error: that is a
        // damaged file too, and it must be named.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Database::builder().set_cache_size(cache_bytes).create(path)
        }))
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            StorageError::Corrupt(format!(
                "{} is damaged ({why}): restore it from a backup, or resync the node from its \
                 peers into an empty data directory",
                path.display()
            ))
        })?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => {
                StorageError::Corrupt(format!(
                    "{} is damaged ({e}): restore it from a backup, or resync the node from \
                         its peers into an empty data directory",
                    path.display()
                ))
            }
            other => StorageError::Db(format!("{}: {other}", path.display())),
        })?;
        let w = db.begin_write()?;
        {
            // Create every table so readers never see a missing one.
            w.open_table(META)?;
            w.open_table(HEADERS)?;
            w.open_table(BLOCKS)?;
            w.open_table(CERTS)?;
            w.open_table(HASHES)?;
            w.open_table(READINGS)?;
            w.open_table(TXS)?;
            w.open_table(DEVICES)?;
            w.open_table(OWNERS)?;
            w.open_table(ACCUMULATORS)?;
            w.open_table(PENDING_BLOCKS)?;
            w.open_table(REFUSED)?;
            w.open_table(ACCOUNTS)?;
            w.open_table(STORAGE)?;
            w.open_table(CODE)?;
            w.open_table(RECEIPTS)?;
            w.open_table(BLOCK_RECEIPTS)?;
            READING_INDEX.create(&w)?;
            TX_INDEX.create(&w)?;
            HOOK_INDEX.create(&w)?;
            w.open_table(GAS)?;
            w.open_table(crate::history::UNDO)?;
            w.open_table(crate::trie_nodes::TRIE_NODES)?;
            w.open_table(crate::streams::STREAMS)?;
            w.open_table(crate::streams::STREAM_READINGS)?;
            w.open_table(crate::streams::STREAM_LATE)?;
            w.open_table(crate::stream_mmr::STREAM_MMR)?;
            w.open_table(crate::streams::STREAM_MINUTES)?;
        }
        w.commit()?;
        let store = Self {
            db,
            history: History::default(),
            indexing: std::sync::Mutex::new(()),
        };
        store.index_streams()?;
        Ok(store)
    }

    /// Keeps `history` of state from the next commit on (the default: [`History::default`]).
    pub fn with_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// How much state history this store keeps.
    pub fn history(&self) -> History {
        self.history
    }

    /// Height of the last committed block, if any (genesis is height 0).
    pub fn head(&self) -> Result<Option<u64>> {
        self.meta(HEAD)
    }

    /// The highest item-log seq consumed by committed blocks.
    pub fn log_done(&self) -> Result<u64> {
        Ok(self.meta(DONE)?.unwrap_or(0))
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<u64>> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(META)?.get(key)?.map(|v| v.value()))
    }

    /// Writes a block and all its effects in one durable transaction (one fsync).
    pub fn commit_block(&self, c: &BlockCommit<'_>) -> Result<()> {
        let height = c.block.header.height;
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        {
            let cert = serde_json::to_vec(c.certificate).expect("certificate serializes");
            w.open_table(HEADERS)?
                .insert(height, c.block.header.encode_rlp().as_slice())?;
            w.open_table(BLOCKS)?
                .insert(height, c.block.encode_rlp().as_slice())?;
            w.open_table(CERTS)?.insert(height, cert.as_slice())?;
            w.open_table(HASHES)?
                .insert(c.block.header.hash().0, height)?;
            let locations: Vec<[u8; 32]> = c.readings.iter().map(|(_, l)| l.encode()).collect();
            let entries: Vec<([u8; 32], &[u8])> = c
                .readings
                .iter()
                .zip(&locations)
                .map(|((id, _), l)| (*id, l.as_slice()))
                .collect();
            READING_INDEX.insert(&w, &entries)?;
            let locations: Vec<[u8; 12]> = c
                .txs
                .iter()
                .map(|(_, loc)| {
                    let mut v = [0u8; 12];
                    v[..8].copy_from_slice(&loc.height.to_be_bytes());
                    v[8..].copy_from_slice(&loc.item.to_be_bytes());
                    v
                })
                .collect();
            let entries: Vec<([u8; 32], &[u8])> = c
                .txs
                .iter()
                .zip(&locations)
                .map(|((h, _), l)| (h.0, l.as_slice()))
                .collect();
            TX_INDEX.insert(&w, &entries)?;
            if let Some(undo) = c.undo {
                crate::history::record(&w, self.history, height, undo)?;
            }
            crate::trie_nodes::write(&w, c.state, c.nodes)?;
            let mut devices = w.open_table(DEVICES)?;
            for d in &c.state.devices {
                devices.insert(d.address.0, d.encode_rlp().as_slice())?;
            }
            let mut accumulators = w.open_table(ACCUMULATORS)?;
            for (d, accs) in &c.state.accumulators {
                accumulators.insert(d.0, StreamAccumulator::encode_all(accs).as_slice())?;
            }
            let mut owners = w.open_table(OWNERS)?;
            for (a, o) in &c.state.owners {
                owners.insert(a.0.0, alloy_rlp::encode(o).as_slice())?;
            }
            let mut accounts = w.open_table(ACCOUNTS)?;
            let mut storage = w.open_table(STORAGE)?;
            for a in &c.state.wiped {
                let (lo, hi) = (storage_key(a, &U256::ZERO), storage_key(a, &U256::MAX));
                storage.retain_in(lo..=hi, |_, _| false)?;
            }
            for (a, account) in &c.state.accounts {
                match account {
                    Some(account) => {
                        accounts.insert(a.0.0, alloy_rlp::encode(account).as_slice())?;
                    }
                    None => {
                        accounts.remove(a.0.0)?;
                        let (lo, hi) = (storage_key(a, &U256::ZERO), storage_key(a, &U256::MAX));
                        storage.retain_in(lo..=hi, |_, _| false)?;
                    }
                }
            }
            for (a, slot, value) in &c.state.storage {
                if value.is_zero() {
                    storage.remove(storage_key(a, slot))?;
                } else {
                    storage.insert(storage_key(a, slot), value.to_be_bytes::<32>())?;
                }
            }
            let mut code = w.open_table(CODE)?;
            for (hash, bytes) in &c.state.code {
                code.insert(hash.0, bytes.as_ref())?;
            }
            if !c.receipts.is_empty() {
                w.open_table(BLOCK_RECEIPTS)?
                    .insert(height, crate::receipts::encode(c.receipts).as_slice())?;
            }
            let at = height.to_be_bytes();
            let entries: Vec<([u8; 32], &[u8])> = c
                .hook_calls
                .iter()
                .map(|id| (id.0, at.as_slice()))
                .collect();
            HOOK_INDEX.insert(&w, &entries)?;
            let mut gas = [0u8; 16];
            gas[..8].copy_from_slice(&c.gas.base_fee.to_be_bytes());
            gas[8..].copy_from_slice(&c.gas.gas_used.to_be_bytes());
            w.open_table(GAS)?.insert(height, gas)?;
            // This block supersedes the pending blocks at or below its height. One above it
            // (built on it while it was only notarized) stays: its finalization may be in the
            // consensus journal already, to be committed after a restart.
            w.open_table(PENDING_BLOCKS)?.retain(|_, v| {
                v.get(..8)
                    .and_then(|h| h.try_into().ok())
                    .is_some_and(|h| u64::from_be_bytes(h) > height)
            })?;
            let mut refused = w.open_table(REFUSED)?;
            for r in c.refused {
                refused.insert(r.id.0, r.encode().as_slice())?;
            }
            let mut meta = w.open_table(META)?;
            meta.insert(HEAD, height)?;
            meta.insert(DONE, c.log_done)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Records a block built or verified here, not yet final, durably (one fsync): `record`
    /// is the engine's encoding of it, kept until a block at its height or above commits.
    pub fn put_pending_block(&self, hash: &B256, height: u64, record: &[u8]) -> Result<()> {
        let mut value = height.to_be_bytes().to_vec();
        value.extend_from_slice(record);
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.open_table(PENDING_BLOCKS)?
            .insert(hash.0, value.as_slice())?;
        w.commit()?;
        Ok(())
    }

    /// The record of a block put by [`ChainStore::put_pending_block`] and not yet superseded.
    pub fn pending_block(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PENDING_BLOCKS)?;
        let Some(v) = t.get(hash.0)? else {
            return Ok(None);
        };
        v.value()
            .get(8..)
            .map(|r| Some(r.to_vec()))
            .ok_or_else(|| StorageError::Corrupt("short pending block record".into()))
    }

    /// Forgets a pending block (one that no longer re-executes).
    pub fn remove_pending_block(&self, hash: &B256) -> Result<()> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.open_table(PENDING_BLOCKS)?.remove(hash.0)?;
        w.commit()?;
        Ok(())
    }

    /// A header by height.
    pub fn header(&self, height: u64) -> Result<Option<Header>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HEADERS)?;
        t.get(height)?
            .map(|v| {
                Header::decode_rlp(v.value()).map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// A block by height.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        t.get(height)?
            .map(|v| Block::decode_rlp(v.value()).map_err(|e| StorageError::Corrupt(e.to_string())))
            .transpose()
    }

    /// A block's height by its header hash.
    pub fn height_of(&self, hash: &B256) -> Result<Option<u64>> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(HASHES)?.get(hash.0)?.map(|v| v.value()))
    }

    /// A block's finality certificate.
    pub fn certificate(&self, height: u64) -> Result<Option<FinalityCertificate>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CERTS)?;
        t.get(height)?
            .map(|v| {
                serde_json::from_slice(v.value()).map_err(|e| StorageError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// Where a final reading is.
    pub fn reading(&self, id: &[u8; 32]) -> Result<Option<ReadingLocation>> {
        let r = self.db.begin_read()?;
        let found = match READING_INDEX.get(&r, id)? {
            Some(v) => Some(v),
            None => r
                .open_table(READINGS)?
                .get(*id)?
                .map(|v| v.value().to_vec()),
        };
        if let Some(v) = found {
            let v: [u8; 32] = v
                .try_into()
                .map_err(|_| StorageError::Corrupt("a reading location is not 32 bytes".into()))?;
            return Ok(Some(ReadingLocation::decode(v)));
        }
        Ok(match r.open_table(LEGACY_READINGS) {
            Ok(t) => t
                .get(*id)?
                .map(|v| ReadingLocation::decode_legacy(v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        })
    }

    /// The refusal of an item this node acknowledged, if a final block refused it.
    pub fn refused(&self, id: &B256) -> Result<Option<RefusedItem>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(REFUSED)?;
        t.get(id.0)?
            .map(|v| RefusedItem::decode(*id, v.value()))
            .transpose()
    }

    /// Where a final transaction is.
    pub fn transaction(&self, hash: &B256) -> Result<Option<TxLocation>> {
        let r = self.db.begin_read()?;
        tx_location(&r, hash)
    }

    /// Every stored device and owner record (to rebuild the state on start).
    pub fn state_records(&self) -> Result<StateRecords> {
        let r = self.db.begin_read()?;
        let mut devices = Vec::new();
        for entry in r.open_table(DEVICES)?.iter()? {
            let (_, v) = entry?;
            devices.push(
                DeviceRecord::decode_rlp(v.value())
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            );
        }
        let mut owners = Vec::new();
        for entry in r.open_table(OWNERS)?.iter()? {
            let (k, v) = entry?;
            owners.push((Address::from(k.value()), rlp::<OwnerRecord>(v.value())?));
        }
        let mut accounts = Vec::new();
        for entry in r.open_table(ACCOUNTS)?.iter()? {
            let (k, v) = entry?;
            accounts.push((Address::from(k.value()), Some(rlp::<Account>(v.value())?)));
        }
        let mut storage = Vec::new();
        for entry in r.open_table(STORAGE)?.iter()? {
            let (k, v) = entry?;
            let k = k.value();
            storage.push((
                Address::from_slice(&k[..20]),
                U256::from_be_slice(&k[20..]),
                U256::from_be_bytes(v.value()),
            ));
        }
        let mut code = Vec::new();
        for entry in r.open_table(CODE)?.iter()? {
            let (k, v) = entry?;
            code.push((B256::from(k.value()), Bytes::copy_from_slice(v.value())));
        }
        let mut accumulators = Vec::new();
        for entry in r.open_table(ACCUMULATORS)?.iter()? {
            let (k, v) = entry?;
            let accs = StreamAccumulator::decode_all(v.value()).ok_or_else(|| {
                StorageError::Corrupt("a stream accumulator record is damaged".into())
            })?;
            accumulators.push((iotchain_reading::DeviceAddress(k.value()), accs));
        }
        Ok(StateRecords {
            devices,
            owners,
            accounts,
            wiped: Vec::new(),
            storage,
            code,
            accumulators,
        })
    }

    /// The stored receipt bytes of an Ethereum transaction or a hook call.
    pub fn receipt(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let height = match tx_location(&r, hash)? {
            Some(loc) => Some(loc.height),
            None => HOOK_INDEX
                .get(&r, &hash.0)?
                .and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))),
        };
        if let Some(height) = height
            && let Some(blob) = r.open_table(BLOCK_RECEIPTS)?.get(height)?
        {
            return Ok(crate::receipts::lookup(blob.value(), hash).map(<[u8]>::to_vec));
        }
        Ok(r.open_table(RECEIPTS)?
            .get(hash.0)?
            .map(|v| v.value().to_vec()))
    }

    /// The stored values under `hashes` among the receipts of the block at `height`, in
    /// order (one read of the block's receipts for all of them).
    pub fn receipts_in(&self, height: u64, hashes: &[B256]) -> Result<Vec<Option<Vec<u8>>>> {
        let r = self.db.begin_read()?;
        if let Some(blob) = r.open_table(BLOCK_RECEIPTS)?.get(height)? {
            let blob = blob.value();
            return Ok(hashes
                .iter()
                .map(|h| crate::receipts::lookup(blob, h).map(<[u8]>::to_vec))
                .collect());
        }
        let legacy = r.open_table(RECEIPTS)?;
        hashes
            .iter()
            .map(|h| Ok(legacy.get(h.0)?.map(|v| v.value().to_vec())))
            .collect()
    }

    /// A block's base fee and gas used (`None` before the contract lane existed).
    pub fn block_gas(&self, height: u64) -> Result<Option<BlockGas>> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(GAS)?.get(height)?.map(|v| {
            let v = v.value();
            BlockGas {
                base_fee: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                gas_used: u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
            }
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn reading_location_round_trips() {
        let loc = ReadingLocation {
            height: 3,
            index: 1,
            item: 2,
            arrival_ms: 1_700_000_000_000,
            ts: Some(1_699_999_000_000),
        };
        assert_eq!(ReadingLocation::decode(loc.encode()), loc);
        assert_eq!(loc.delay_ms(), Some(1_000_000));
        let unknown = ReadingLocation { ts: None, ..loc };
        assert_eq!(ReadingLocation::decode(unknown.encode()), unknown);
        assert_eq!(unknown.delay_ms(), None);
    }

    pub(crate) fn block_at(height: u64) -> Block {
        Block {
            header: Header {
                chain_id: 1,
                height,
                parent_hash: B256::ZERO,
                timestamp_ms: 0,
                proposer: B256::ZERO,
                readings_root: B256::ZERO,
                reading_count: 0,
                transactions_root: B256::ZERO,
                transaction_count: 0,
                state_root: B256::ZERO,
            },
            items: vec![],
        }
    }

    fn commit(
        store: &ChainStore,
        height: u64,
        txs: &[(B256, TxLocation)],
        receipts: &[(B256, Vec<u8>)],
        hooks: &[B256],
    ) {
        commit_with(store, &block_at(height), &[], txs, receipts, hooks);
    }

    /// Commits `block` with these index entries and receipts (no state changes).
    pub(crate) fn commit_with(
        store: &ChainStore,
        block: &Block,
        readings: &[([u8; 32], ReadingLocation)],
        txs: &[(B256, TxLocation)],
        receipts: &[(B256, Vec<u8>)],
        hooks: &[B256],
    ) {
        let height = block.header.height;
        let cert = FinalityCertificate::new(height, block.header.hash(), 0, height, 0);
        store
            .commit_block(&BlockCommit {
                block,
                certificate: &cert,
                readings,
                txs,
                state: &StateRecords::default(),
                receipts,
                hook_calls: hooks,
                gas: BlockGas::default(),
                log_done: 0,
                refused: &[],
                undo: None,
                nodes: &[],
            })
            .unwrap();
    }

    #[test]
    fn readings_and_transactions_of_old_data_directories_are_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChainStore::open(&dir.path().join("chain.redb"), 1 << 20).unwrap();
        let loc = ReadingLocation {
            height: 1,
            index: 0,
            item: 0,
            arrival_ms: 5,
            ts: Some(4),
        };
        let (old_reading, old_tx) = ([1u8; 32], B256::repeat_byte(2));
        {
            // Rows as data directories before the log-structured indexes hold them.
            let w = store.db.begin_write().unwrap();
            w.open_table(READINGS)
                .unwrap()
                .insert(old_reading, loc.encode())
                .unwrap();
            let mut v = [0u8; 12];
            v[..8].copy_from_slice(&1u64.to_be_bytes());
            w.open_table(TXS).unwrap().insert(old_tx.0, v).unwrap();
            w.commit().unwrap();
        }
        let new_reading = [3u8; 32];
        let new_loc = ReadingLocation { height: 2, ..loc };
        commit_with(
            &store,
            &block_at(2),
            &[(new_reading, new_loc)],
            &[(B256::repeat_byte(4), TxLocation { height: 2, item: 1 })],
            &[],
            &[],
        );
        assert_eq!(store.reading(&old_reading).unwrap(), Some(loc));
        assert_eq!(store.reading(&new_reading).unwrap(), Some(new_loc));
        assert_eq!(store.reading(&[9u8; 32]).unwrap(), None);
        assert_eq!(
            store.transaction(&old_tx).unwrap(),
            Some(TxLocation { height: 1, item: 0 })
        );
        assert_eq!(
            store.transaction(&B256::repeat_byte(4)).unwrap(),
            Some(TxLocation { height: 2, item: 1 })
        );
    }

    #[test]
    fn receipts_are_found_by_hash_and_by_block_and_old_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChainStore::open(&dir.path().join("chain.redb"), 1 << 20).unwrap();
        let (tx, hook, extra) = (
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(3),
        );
        // A receipt written the way data directories before per-block receipts hold it.
        let old = B256::repeat_byte(9);
        {
            let w = store.db.begin_write().unwrap();
            w.open_table(RECEIPTS)
                .unwrap()
                .insert(old.0, b"old".as_slice())
                .unwrap();
            w.commit().unwrap();
        }
        commit(
            &store,
            1,
            &[(old, TxLocation { height: 1, item: 0 })],
            &[],
            &[],
        );
        commit(
            &store,
            2,
            &[(tx, TxLocation { height: 2, item: 4 })],
            &[
                (tx, b"tx".to_vec()),
                (hook, b"hook".to_vec()),
                (extra, b"extra".to_vec()),
            ],
            &[hook],
        );
        assert_eq!(
            store.receipt(&tx).unwrap().as_deref(),
            Some(b"tx".as_slice())
        );
        assert_eq!(
            store.receipt(&hook).unwrap().as_deref(),
            Some(b"hook".as_slice())
        );
        assert_eq!(
            store.receipt(&old).unwrap().as_deref(),
            Some(b"old".as_slice())
        );
        // Neither a transaction nor a hook call: reachable through its block only.
        assert_eq!(store.receipt(&extra).unwrap(), None);
        assert_eq!(
            store.receipts_in(2, &[extra, tx, old]).unwrap(),
            vec![Some(b"extra".to_vec()), Some(b"tx".to_vec()), None]
        );
        assert_eq!(
            store.receipts_in(1, &[old]).unwrap(),
            vec![Some(b"old".to_vec())]
        );
        assert_eq!(store.receipts_in(7, &[tx]).unwrap(), vec![None]);
    }
}
