//! Block headers and bodies.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use serde::{Deserialize, Serialize};

use crate::{BlockError, Result};

/// A block header. Its hash is keccak256 of its RLP encoding (a list of the fields in the
/// order below).
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Header {
    /// Chain id from genesis.
    pub chain_id: u64,
    /// Height; genesis is 0.
    pub height: u64,
    /// Hash of the parent header (zero for genesis).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub parent_hash: B256,
    /// Proposer's clock when the block was built, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Ed25519 public key of the proposing validator (zero for genesis).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub proposer: B256,
    /// RFC 6962 Merkle root (SHA-256) over the reading ids of the block, in order.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub readings_root: B256,
    /// Number of readings in the block (the Merkle tree size).
    pub reading_count: u64,
    /// RFC 6962 Merkle root (SHA-256) over the leaf hashes of the block's raw transactions.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub transactions_root: B256,
    /// Number of transactions in the block.
    pub transaction_count: u64,
    /// Ethereum-compatible Merkle Patricia trie root of the state after this block.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub state_root: B256,
}

impl Header {
    /// keccak256 of the RLP encoding.
    pub fn hash(&self) -> B256 {
        keccak256(alloy_rlp::encode(self))
    }

    /// The header as the light client sees it (the same fields, the same hash).
    pub fn to_light(&self) -> iotchain_light::Header {
        iotchain_light::Header {
            chain_id: self.chain_id,
            height: self.height,
            parent_hash: self.parent_hash.0,
            timestamp_ms: self.timestamp_ms,
            proposer: self.proposer.0,
            readings_root: self.readings_root.0,
            reading_count: self.reading_count,
            transactions_root: self.transactions_root.0,
            transaction_count: self.transaction_count,
            state_root: self.state_root.0,
        }
    }

    /// RLP encoding.
    pub fn encode_rlp(&self) -> Vec<u8> {
        alloy_rlp::encode(self)
    }

    /// Decodes an RLP header, rejecting trailing bytes.
    pub fn decode_rlp(mut bytes: &[u8]) -> Result<Self> {
        let header = Self::decode(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(BlockError::TrailingBytes(bytes.len()));
        }
        Ok(header)
    }
}

/// One item of a block body, in the order it was accepted and is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockItem {
    /// A reading: the COSE_Sign1 message bytes exactly as the device sent them.
    Reading(Bytes),
    /// An owner transaction: its RLP bytes.
    Tx(Bytes),
    /// An Ethereum transaction: its EIP-2718 bytes exactly as signed (legacy RLP or a typed
    /// envelope).
    EthTx(Bytes),
}

impl BlockItem {
    const READING: u8 = 0;
    const TX: u8 = 1;
    const ETH_TX: u8 = 2;
}

impl Encodable for BlockItem {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        let (kind, bytes) = match self {
            Self::Reading(b) => (Self::READING, b),
            Self::Tx(b) => (Self::TX, b),
            Self::EthTx(b) => (Self::ETH_TX, b),
        };
        let header = alloy_rlp::Header {
            list: true,
            payload_length: kind.length() + bytes.length(),
        };
        header.encode(out);
        kind.encode(out);
        bytes.encode(out);
    }
    fn length(&self) -> usize {
        let (kind, bytes) = match self {
            Self::Reading(b) => (Self::READING, b),
            Self::Tx(b) => (Self::TX, b),
            Self::EthTx(b) => (Self::ETH_TX, b),
        };
        let payload = kind.length() + bytes.length();
        payload + alloy_rlp::length_of_length(payload)
    }
}

impl Decodable for BlockItem {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let header = alloy_rlp::Header::decode(buf)?;
        if !header.list {
            return Err(alloy_rlp::Error::UnexpectedString);
        }
        let mut body = &buf[..header.payload_length];
        let kind = u8::decode(&mut body)?;
        let bytes = Bytes::decode(&mut body)?;
        if !body.is_empty() {
            return Err(alloy_rlp::Error::ListLengthMismatch {
                expected: header.payload_length,
                got: header.payload_length - body.len(),
            });
        }
        *buf = &buf[header.payload_length..];
        match kind {
            Self::READING => Ok(Self::Reading(bytes)),
            Self::TX => Ok(Self::Tx(bytes)),
            Self::ETH_TX => Ok(Self::EthTx(bytes)),
            _ => Err(alloy_rlp::Error::Custom("unknown block item kind")),
        }
    }
}

/// A block: header and the items it commits to.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Readings and transactions in application order.
    pub items: Vec<BlockItem>,
}

impl Block {
    /// The reading ids of the block, in order: the leaves of `readings_root`.
    pub fn reading_ids(&self) -> Vec<[u8; 32]> {
        self.items
            .iter()
            .filter_map(|i| match i {
                BlockItem::Reading(m) => Some(iotchain_reading::reading_id(m)),
                BlockItem::Tx(_) | BlockItem::EthTx(_) => None,
            })
            .collect()
    }

    /// Whether the items are the ones the header commits to: the reading and transaction
    /// counts and roots match (what a block fetched from an untrusted peer is checked against
    /// before it is kept; the state root takes executing it).
    pub fn body_matches_header(&self) -> bool {
        let ids = self.reading_ids();
        let tx_leaves: Vec<[u8; 32]> = self
            .items
            .iter()
            .filter_map(|i| match i {
                BlockItem::Tx(b) | BlockItem::EthTx(b) => Some(iotchain_merkle::leaf_hash(b)),
                BlockItem::Reading(_) => None,
            })
            .collect();
        let h = &self.header;
        h.reading_count == ids.len() as u64
            && h.transaction_count == tx_leaves.len() as u64
            && h.readings_root == B256::from(iotchain_merkle::root(&ids))
            && h.transactions_root == B256::from(iotchain_merkle::root(&tx_leaves))
    }

    /// RLP encoding.
    pub fn encode_rlp(&self) -> Vec<u8> {
        alloy_rlp::encode(self)
    }

    /// Decodes an RLP block, rejecting trailing bytes.
    pub fn decode_rlp(mut bytes: &[u8]) -> Result<Self> {
        let block = Self::decode(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(BlockError::TrailingBytes(bytes.len()));
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            chain_id: 1337,
            height: 5,
            parent_hash: B256::repeat_byte(1),
            timestamp_ms: 1_700_000_000_000,
            proposer: B256::repeat_byte(2),
            readings_root: B256::repeat_byte(3),
            reading_count: 2,
            transactions_root: B256::repeat_byte(4),
            transaction_count: 1,
            state_root: B256::repeat_byte(5),
        }
    }

    #[test]
    fn block_round_trips_and_rejects_trailing_bytes() {
        let block = Block {
            header: header(),
            items: vec![
                BlockItem::Reading(Bytes::from_static(b"r1")),
                BlockItem::Tx(Bytes::from_static(b"t1")),
                BlockItem::Reading(Bytes::from_static(b"r2")),
            ],
        };
        let bytes = block.encode_rlp();
        assert_eq!(Block::decode_rlp(&bytes).unwrap(), block);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Block::decode_rlp(&longer).is_err());
        for cut in 0..bytes.len() {
            assert!(Block::decode_rlp(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn header_hash_changes_with_every_field() {
        let h = header();
        let mut changed = h.clone();
        changed.reading_count += 1;
        assert_ne!(h.hash(), changed.hash());
        assert_eq!(Header::decode_rlp(&h.encode_rlp()).unwrap(), h);
    }

    proptest::proptest! {
        /// The light client's no_std RLP gives the same hash as alloy-rlp, for any values
        /// (small and large integers take different RLP forms).
        #[test]
        fn light_client_hashes_headers_alike(
            a in proptest::prelude::any::<[u64; 5]>(),
            small in 0u64..200,
            h in proptest::prelude::any::<[[u8; 32]; 5]>(),
        ) {
            let header = Header {
                chain_id: a[0], height: small, parent_hash: B256::from(h[0]),
                timestamp_ms: a[1], proposer: B256::from(h[1]),
                readings_root: B256::from(h[2]), reading_count: a[2] >> (a[3] % 64),
                transactions_root: B256::from(h[3]), transaction_count: a[4] % 3,
                state_root: B256::from(h[4]),
            };
            proptest::prop_assert_eq!(header.to_light().hash(), header.hash().0);
        }
    }
}
