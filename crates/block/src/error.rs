//! The crate's error type.

/// Result alias for this crate.
pub type Result<T, E = BlockError> = std::result::Result<T, E>;

/// Errors decoding or checking blocks, transactions and genesis files.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// RLP decoding failed.
    #[error("malformed rlp: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// Bytes left over after a complete item.
    #[error("{0} trailing bytes after the encoded item")]
    TrailingBytes(usize),
    /// A field has a value that is not allowed.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A genesis file is unreadable or inconsistent.
    #[error("genesis: {0}")]
    Genesis(String),
    /// A key or signature problem.
    #[error(transparent)]
    Crypto(#[from] iotchain_crypto::CryptoError),
}
