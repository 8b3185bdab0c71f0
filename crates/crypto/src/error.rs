//! The crate's error type.

/// Result alias for this crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;

/// What went wrong with a key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A public key's bytes do not decode for its algorithm.
    #[error("invalid {alg} public key: {reason}")]
    InvalidPublicKey {
        /// Algorithm the key was read as.
        alg: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A secret key's bytes do not decode for its algorithm.
    #[error("invalid {alg} secret key")]
    InvalidSecretKey {
        /// Algorithm the key was read as.
        alg: &'static str,
    },
    /// A key file could not be read or parsed.
    #[error("key file: {0}")]
    KeyFile(String),
    /// A key file holds a key of another algorithm than required.
    #[error("key file holds a {found} key, expected {expected}")]
    WrongKeyAlg {
        /// Algorithm required by the caller.
        expected: &'static str,
        /// Algorithm found in the file.
        found: &'static str,
    },
    /// An owner signature is malformed or does not recover to an address.
    #[error("invalid owner signature: {0}")]
    InvalidOwnerSignature(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}
