//! State history: each committed block's undo (the records it overwrote, as they were), kept
//! for the last [`History::Blocks`] blocks or for ever ([`History::Archive`]). The state at
//! an older block is the committed state turned back by the undos above it
//! ([`iotchain_state::State::revert`]).
//!
//! An undo is written in the block's own commit (the same write transaction, so a crash
//! keeps or loses both), and the commit drops the undo that falls out of the window.

use std::sync::Arc;

use alloy_primitives::{Address, U256};
use alloy_rlp::Decodable;
use iotchain_reading::DeviceAddress;
use iotchain_state::{Account, DeviceRecord, OwnerRecord, StateUndo, StreamAccumulator};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::index::Reader;
use crate::{ChainStore, Result, StorageError};

/// Block height → the block's undo.
pub(crate) const UNDO: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("state_undo");

/// Undo encoding version (the first byte).
const UNDO_V1: u8 = 1;

/// How much state history a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// The state of the head and of the `n` blocks below it.
    Blocks(u64),
    /// The state of every block since this node's store was created.
    Archive,
}

impl Default for History {
    /// An hour of blocks at the busy block interval of 200 ms (more when blocks are slower).
    fn default() -> Self {
        Self::Blocks(DEFAULT_HISTORY_BLOCKS)
    }
}

/// Blocks of state history a node keeps unless configured otherwise.
pub const DEFAULT_HISTORY_BLOCKS: u64 = 18_000;

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("state undo: {what}"))
}

/// An RLP record as stored.
pub(crate) fn rlp<T: Decodable>(mut bytes: &[u8]) -> Result<T> {
    T::decode(&mut bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn take_bytes<'a>(r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    match r.u8()? {
        0 => Some(None),
        1 => {
            let n = r.u32()? as usize;
            Some(Some(r.take(n)?))
        }
        _ => None,
    }
}

/// The stored form of an undo: records in their table encodings.
pub(crate) fn encode(undo: &StateUndo) -> Vec<u8> {
    let mut out = vec![UNDO_V1];
    let count = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u32).to_be_bytes());
    count(&mut out, undo.devices.len());
    for (a, d) in &undo.devices {
        out.extend_from_slice(&a.0);
        put_bytes(&mut out, d.as_ref().map(|d| d.encode_rlp()).as_deref());
    }
    count(&mut out, undo.owners.len());
    for (a, o) in &undo.owners {
        out.extend_from_slice(a.as_slice());
        put_bytes(&mut out, o.as_ref().map(alloy_rlp::encode).as_deref());
    }
    count(&mut out, undo.accounts.len());
    for (a, account) in &undo.accounts {
        out.extend_from_slice(a.as_slice());
        put_bytes(&mut out, account.as_ref().map(alloy_rlp::encode).as_deref());
    }
    count(&mut out, undo.storage.len());
    for (a, slot, value) in &undo.storage {
        out.extend_from_slice(a.as_slice());
        out.extend_from_slice(&slot.to_be_bytes::<32>());
        out.extend_from_slice(&value.to_be_bytes::<32>());
    }
    count(&mut out, undo.accumulators.len());
    for (a, accs) in &undo.accumulators {
        out.extend_from_slice(&a.0);
        let bytes = (!accs.is_empty()).then(|| StreamAccumulator::encode_all(accs));
        put_bytes(&mut out, bytes.as_deref());
    }
    out
}

/// An undo from its stored form.
pub(crate) fn decode(bytes: &[u8]) -> Result<StateUndo> {
    let mut r = Reader(bytes);
    if r.u8() != Some(UNDO_V1) {
        return Err(corrupt("unknown encoding"));
    }
    let short = || corrupt("truncated");
    let address = |r: &mut Reader<'_>| -> Result<[u8; 20]> {
        r.take(20).and_then(|b| b.try_into().ok()).ok_or_else(short)
    };
    let mut undo = StateUndo::default();
    for _ in 0..r.u32().ok_or_else(short)? {
        let a = DeviceAddress(address(&mut r)?);
        let d = match take_bytes(&mut r).ok_or_else(short)? {
            None => None,
            Some(b) => Some(Arc::new(
                DeviceRecord::decode_rlp(b).map_err(|e| corrupt(e.to_string()))?,
            )),
        };
        undo.devices.push((a, d));
    }
    // An account's owner record or account, present or not.
    fn records<T: Decodable>(
        r: &mut Reader<'_>,
        address: impl Fn(&mut Reader<'_>) -> Result<[u8; 20]>,
    ) -> Result<Vec<(Address, Option<T>)>> {
        let n = r.u32().ok_or_else(|| corrupt("truncated"))?;
        (0..n)
            .map(|_| {
                let a = Address::from(address(r)?);
                let bytes = take_bytes(r).ok_or_else(|| corrupt("truncated"))?;
                Ok((a, bytes.map(rlp::<T>).transpose()?))
            })
            .collect()
    }
    undo.owners = records::<OwnerRecord>(&mut r, address)?;
    undo.accounts = records::<Account>(&mut r, address)?;
    for _ in 0..r.u32().ok_or_else(short)? {
        let a = Address::from(address(&mut r)?);
        let slot = U256::from_be_slice(r.take(32).ok_or_else(short)?);
        let value = U256::from_be_slice(r.take(32).ok_or_else(short)?);
        undo.storage.push((a, slot, value));
    }
    for _ in 0..r.u32().ok_or_else(short)? {
        let a = DeviceAddress(address(&mut r)?);
        let accs = match take_bytes(&mut r).ok_or_else(short)? {
            None => Vec::new(),
            Some(b) => StreamAccumulator::decode_all(b).ok_or_else(|| corrupt("an accumulator"))?,
        };
        undo.accumulators.push((a, Arc::new(accs)));
    }
    if !r.0.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(undo)
}

/// Writes block `height`'s undo and drops the one that falls out of the window.
pub(crate) fn record(
    w: &WriteTransaction,
    history: History,
    height: u64,
    undo: &StateUndo,
) -> Result<()> {
    let mut t = w.open_table(UNDO)?;
    t.insert(height, encode(undo).as_slice())?;
    if let History::Blocks(n) = history
        && let Some(below) = height.checked_sub(n)
    {
        // Undos up to `height - n` only served states below `height - n`.
        t.retain_in(..=below, |_, _| false)?;
    }
    Ok(())
}

/// How a walk back through the undos ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoWalk {
    /// Every undo was given.
    Done,
    /// Some are no longer kept (see [`ChainStore::oldest_state`]).
    Missing,
    /// Going back `blocks` blocks reads more than the bound.
    TooMuch {
        /// Blocks between the start and the block asked for.
        blocks: u64,
    },
}

impl ChainStore {
    /// Calls `f` with the undos of blocks `to` down to `from + 1`, newest first, one at a time,
    /// reading at most `max_bytes` of them (a query's bound on the work of going back).
    pub fn walk_undos(
        &self,
        from: u64,
        to: u64,
        max_bytes: u64,
        mut f: impl FnMut(&StateUndo),
    ) -> Result<UndoWalk> {
        let r = self.db.begin_read()?;
        let t = r.open_table(UNDO)?;
        let (mut expect, mut bytes) = (to, 0u64);
        for entry in t.range(from + 1..=to)?.rev() {
            let (k, v) = entry?;
            if k.value() != expect {
                return Ok(UndoWalk::Missing);
            }
            bytes += v.value().len() as u64;
            if bytes > max_bytes {
                return Ok(UndoWalk::TooMuch { blocks: to - from });
            }
            f(&decode(v.value())?);
            expect -= 1;
        }
        Ok(if expect == from {
            UndoWalk::Done
        } else {
            UndoWalk::Missing
        })
    }

    /// The oldest block whose state the kept undos can give (the head's when none are kept).
    pub fn oldest_state(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        match r.open_table(UNDO)?.first()? {
            Some((k, _)) => Ok(k.value().saturating_sub(1)),
            None => Ok(self.head()?.unwrap_or(0)),
        }
    }

    /// The undos kept and their bytes in all.
    pub fn undo_totals(&self) -> Result<(u64, u64)> {
        let r = self.db.begin_read()?;
        let (mut blocks, mut bytes) = (0, 0);
        for entry in r.open_table(UNDO)?.iter()? {
            let (_, v) = entry?;
            blocks += 1;
            bytes += v.value().len() as u64;
        }
        Ok((blocks, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateUndo {
        let d = DeviceAddress([3; 20]);
        let last = iotchain_reading::StreamLeaf::next(None, [1; 32], 0, 10, 1, 1_000);
        let mut peaks = iotchain_merkle::mmr::Peaks::default();
        peaks.push(last.hash());
        let acc = StreamAccumulator {
            stream: "temp".into(),
            peaks,
            last,
        };
        StateUndo {
            devices: vec![(DeviceAddress([1; 20]), None)],
            owners: vec![(Address::repeat_byte(2), Some(OwnerRecord::default()))],
            accounts: vec![
                (
                    Address::repeat_byte(4),
                    Some(Account::with_balance(U256::from(7))),
                ),
                (Address::repeat_byte(5), None),
            ],
            storage: vec![(Address::repeat_byte(4), U256::from(1), U256::from(9))],
            accumulators: vec![
                (d, Arc::new(vec![acc])),
                (DeviceAddress([6; 20]), Arc::default()),
            ],
        }
    }

    #[test]
    fn an_undo_round_trips_and_damage_is_refused() {
        let undo = sample();
        let bytes = encode(&undo);
        assert_eq!(decode(&bytes).unwrap(), undo);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other = bytes;
        other[0] = 9;
        assert!(decode(&other).is_err());
    }
}
