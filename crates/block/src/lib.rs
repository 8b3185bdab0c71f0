//! Block headers, bodies, owner transactions, genesis and finality certificates of iotchain.
//!
//! Everything here is consensus-critical: encodings are RLP (as Ethereum's), hashes are
//! keccak256 for headers and transactions and RFC 6962 SHA-256 Merkle roots for the
//! readings and transactions of a block. See `docs/formats.md` for the byte-level spec.

mod certificate;
mod device_cert;
mod error;
mod genesis;
mod header;
mod proof;
mod range_proof;
mod sync;
mod tx;

pub use certificate::{
    FINALIZE_SUFFIX, FinalityCertificate, SIMPLEX_NAMESPACE, ValidatorSignature, quorum,
};
pub use device_cert::{CERT_DOMAIN, DeviceCertificate};
pub use error::{BlockError, Result};
pub use genesis::{ChainParams, Genesis, GenesisValidator, ReadingAad};
pub use header::{Block, BlockItem, Header};
pub use proof::{DeviceKeyJson, ProofBundle, ProofError, VerifiedReading};
pub use range_proof::{RangeJson, RangeKindJson, RangeProofJson, VerifiedRange};
pub use sync::{SyncBlock, SyncBlocks};
pub use tx::{
    DeviceOp, MAX_BATCH_DEVICES, MAX_OWNER_TX_BYTES, MAX_OWNER_TX_BYTES_PER_BLOCK, NewDevice,
    SignedTx, TX_DOMAIN,
};

/// 0x-prefixed lowercase hex.
pub fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(bytes.as_ref()))
}

/// Decodes hex with or without `0x`.
pub fn unhex(s: &str) -> Result<Vec<u8>, hex::FromHexError> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
}
