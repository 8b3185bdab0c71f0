//! The durable record of a block built or verified here and not yet final: its header and,
//! for each item, either the item-log seq of this node's copy (the item log holds it until the
//! block commits) or the item itself. A block whose items the pool holds (every block built
//! here, most blocks of peers once forwarding has run) is recorded in a few bytes per item
//! instead of being written out twice.
//!
//! Layout: `header_len: u32 LE ‖ header RLP ‖ count: u32 LE ‖ count × entry`, an entry being
//! `0x00 ‖ seq: u64 LE` (a pool item) or `0x01 ‖ len: u32 LE ‖ item RLP` (the item).

use alloy_rlp::{Decodable, Encodable};
use iotchain_block::{Block, BlockItem, Header};

/// One item of a recorded block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The pool's item with this item-log seq.
    Pool(u64),
    /// The item itself.
    Item(BlockItem),
}

/// The record of `block`, whose items have these pool seqs where the pool holds them.
pub(crate) fn encode(block: &Block, sources: &[Option<u64>]) -> Vec<u8> {
    let header = block.header.encode_rlp();
    let mut out = Vec::with_capacity(header.len() + 8 + block.items.len() * 9);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(block.items.len() as u32).to_le_bytes());
    for (i, item) in block.items.iter().enumerate() {
        match sources.get(i).copied().flatten() {
            Some(seq) => {
                out.push(0);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            None => {
                out.push(1);
                let mut rlp = Vec::with_capacity(item.length());
                item.encode(&mut rlp);
                out.extend_from_slice(&(rlp.len() as u32).to_le_bytes());
                out.extend_from_slice(&rlp);
            }
        }
    }
    out
}

/// The header and entries of a record.
pub(crate) fn decode(mut bytes: &[u8]) -> Result<(Header, Vec<Entry>), String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("truncated block record".into());
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn u32_le(bytes: &mut &[u8]) -> Result<usize, String> {
        Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes")) as usize)
    }
    let header_len = u32_le(&mut bytes)?;
    let header = Header::decode_rlp(take(&mut bytes, header_len)?).map_err(|e| e.to_string())?;
    let count = u32_le(&mut bytes)?;
    let mut entries = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        match take(&mut bytes, 1)?[0] {
            0 => entries.push(Entry::Pool(u64::from_le_bytes(
                take(&mut bytes, 8)?.try_into().expect("8 bytes"),
            ))),
            1 => {
                let len = u32_le(&mut bytes)?;
                let mut rlp = take(&mut bytes, len)?;
                let item = BlockItem::decode(&mut rlp).map_err(|e| e.to_string())?;
                entries.push(Entry::Item(item));
            }
            t => return Err(format!("unknown block record entry {t}")),
        }
    }
    if !bytes.is_empty() {
        return Err("trailing bytes after a block record".into());
    }
    Ok((header, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{B256, Bytes};

    #[test]
    fn a_record_round_trips_and_refuses_damage() {
        let block = Block {
            header: Header {
                chain_id: 1,
                height: 7,
                parent_hash: B256::repeat_byte(1),
                timestamp_ms: 9,
                proposer: B256::repeat_byte(2),
                readings_root: B256::repeat_byte(3),
                reading_count: 2,
                transactions_root: B256::repeat_byte(4),
                transaction_count: 1,
                state_root: B256::repeat_byte(5),
            },
            items: vec![
                BlockItem::Reading(Bytes::from_static(b"one")),
                BlockItem::Tx(Bytes::from_static(b"two")),
                BlockItem::Reading(Bytes::from_static(b"three")),
            ],
        };
        let record = encode(&block, &[Some(41), None, Some(43)]);
        let (header, entries) = decode(&record).unwrap();
        assert_eq!(header, block.header);
        assert_eq!(
            entries,
            vec![
                Entry::Pool(41),
                Entry::Item(block.items[1].clone()),
                Entry::Pool(43)
            ]
        );
        for cut in [1, 10, record.len() - 1] {
            assert!(decode(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad = record;
        let at = 4 + block.header.encode_rlp().len() + 4;
        bad[at] = 9;
        assert!(decode(&bad).is_err());
    }
}
