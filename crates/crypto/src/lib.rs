//! Keys, key files, device addresses and signature verification for iotchain.
//!
//! Three key kinds meet in iotchain:
//! - device keys (Ed25519, or ECDSA P-256 as in secure elements) sign readings;
//! - owner keys (secp256k1, Ethereum accounts) sign device-registry operations;
//! - validator keys (Ed25519) sign block headers.
//!
//! Verification on the node's hot path uses `ed25519-dalek` batch verification and
//! `ring` for P-256; signing helpers exist for the CLI, the simulator and tests.

mod error;
mod keys;
mod owner;
mod verify;

pub use error::{CryptoError, Result};
pub use keys::{
    DevicePublicKey, DeviceSigner, KeyAlg, KeyFile, ValidatorKey, device_address, random_bytes,
};
pub use owner::{OwnerKey, OwnerSignature, recover_owner};
pub use verify::{SignatureCheck, verify_signatures};
