//! The iotchain light client: checks a reading's proof, a header's finality certificate and
//! a chain of headers from a trusted one, offline, with no allocator (`#![no_std]`).
//!
//! It needs only the chain id and the validator set (the Ed25519 keys of the genesis), so a
//! gateway or a microcontroller can check that a reading is exactly what its device signed,
//! in which block, finalized by which validators. `iotchain verify` and the node's
//! `ProofBundle::verify` call this crate: there is one verifier.
//!
//! What is checked, in order (the error names the first part that fails):
//! 1. the message is a well-formed reading ([`ProofError::Message`]) whose RFC 6962 leaf
//!    hash is the claimed reading id ([`ProofError::ReadingId`]);
//! 2. the device key signed it ([`ProofError::DeviceSignature`]);
//! 3. the audit path leads from the id to the header's `readings_root`
//!    ([`ProofError::AuditPath`]);
//! 4. the header is of this chain and is the certified one, directly or through descendant
//!    headers that link to it ([`ProofError::Header`]);
//! 5. the certificate holds a quorum of valid, distinct validator signatures
//!    ([`ProofError::Certificate`]).
//!
//! ```
//! use iotchain_light::{Certificate, Header, verify_certificate};
//! let header = Header { chain_id: 1, height: 1, ..Header::default() };
//! let certificate = Certificate {
//!     height: 1, header_hash: header.hash(), epoch: 0, view: 1, parent_view: 0,
//!     signatures: &[],
//! };
//! // No signature: below the quorum of the one validator.
//! assert!(verify_certificate(&certificate, &[[7u8; 32]]).is_err());
//! ```
#![no_std]

mod mpt;
mod range;
mod rlp;

use core::fmt;

pub use mpt::{MptError, verify_mpt};
pub use range::{
    ACCUMULATOR_PREFIX, Range, RangeKind, RangeProof, RangeProofError, VerifiedRange,
    accumulator_key, verify_range_proof,
};

use iotchain_merkle::MerkleError;
use iotchain_reading::{Alg, DeviceAddress, ReadingError};
use sha3::{Digest as _, Keccak256};

/// The namespace simplex signs every iotchain vote under.
pub const SIMPLEX_NAMESPACE: &[u8] = b"iotchain/simplex/v1";
/// Suffix simplex appends to the namespace for finalize votes.
pub const FINALIZE_SUFFIX: &[u8] = b"_FINALIZE";
/// Longest finalize message: namespace, three 10-byte varints, the hash.
pub const MAX_SIGNING_BYTES: usize = 1 + 28 + 3 * 10 + 32;

/// A 32-byte hash or key.
pub type Hash = [u8; 32];

/// A block header (docs/formats.md). Its hash is keccak256 of its RLP encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Chain id from genesis.
    pub chain_id: u64,
    /// Height; genesis is 0.
    pub height: u64,
    /// Hash of the parent header.
    pub parent_hash: Hash,
    /// Proposer's clock, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Ed25519 key of the proposer.
    pub proposer: Hash,
    /// RFC 6962 root over the block's reading ids.
    pub readings_root: Hash,
    /// Number of readings.
    pub reading_count: u64,
    /// RFC 6962 root over the block's transactions.
    pub transactions_root: Hash,
    /// Number of transactions.
    pub transaction_count: u64,
    /// State root after the block.
    pub state_root: Hash,
}

impl Header {
    /// keccak256 of the header's RLP encoding.
    pub fn hash(&self) -> Hash {
        let mut buf = [0u8; rlp::MAX_HEADER_LEN];
        let n = rlp::encode_header(self, &mut buf);
        Keccak256::digest(&buf[..n]).into()
    }
}

/// One validator's finalize vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorSignature {
    /// The validator's Ed25519 public key.
    pub validator: Hash,
    /// Its Ed25519 signature over [`signing_bytes`].
    pub signature: [u8; 64],
}

/// A finality certificate: simplex's finalization of the proposal whose payload is
/// `header_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Certificate<'a> {
    /// Height of the certified header.
    pub height: u64,
    /// Hash of the certified header.
    pub header_hash: Hash,
    /// Simplex epoch.
    pub epoch: u64,
    /// Simplex view of the proposal.
    pub view: u64,
    /// Simplex view of its parent.
    pub parent_view: u64,
    /// Finalize votes.
    pub signatures: &'a [ValidatorSignature],
}

/// Number of distinct validator signatures that finalize among `n` validators:
/// `n - f` where `f = (n - 1) / 3`.
pub const fn quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

fn put_varint(out: &mut [u8], at: &mut usize, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[*at] = byte;
            *at += 1;
            return;
        }
        out[*at] = byte | 0x80;
        *at += 1;
    }
}

/// Writes the bytes a validator signs to finalize (simplex's finalize message)
/// `varint(len(ns)) ‖ ns ‖ varint(epoch) ‖ varint(view) ‖ varint(parent_view) ‖ header_hash`,
/// `ns = SIMPLEX_NAMESPACE ‖ FINALIZE_SUFFIX`, into `out`; returns the length.
pub fn signing_bytes(
    epoch: u64,
    view: u64,
    parent_view: u64,
    header_hash: &Hash,
    out: &mut [u8; MAX_SIGNING_BYTES],
) -> usize {
    let mut at = 0;
    put_varint(
        out,
        &mut at,
        (SIMPLEX_NAMESPACE.len() + FINALIZE_SUFFIX.len()) as u64,
    );
    for part in [SIMPLEX_NAMESPACE, FINALIZE_SUFFIX] {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    put_varint(out, &mut at, epoch);
    put_varint(out, &mut at, view);
    put_varint(out, &mut at, parent_view);
    out[at..at + 32].copy_from_slice(header_hash);
    at + 32
}

/// Why a certificate does not finalize its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateError {
    /// A signer is not in the validator set.
    NotAValidator(Hash),
    /// A validator signed twice.
    SignedTwice(Hash),
    /// A signature does not verify.
    InvalidSignature(Hash),
    /// Too few valid signatures.
    BelowQuorum {
        /// Valid distinct signatures.
        valid: usize,
        /// Signatures needed.
        needed: usize,
        /// Validators in the set.
        validators: usize,
    },
}

/// Lowercase `0x…` hex of bytes, without allocating.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAValidator(k) => {
                write!(f, "signer {} is not a validator of this chain", Hex(k))
            }
            Self::SignedTwice(k) => write!(f, "validator {} signed twice", Hex(k)),
            Self::InvalidSignature(k) => {
                write!(f, "signature of validator {} is invalid", Hex(k))
            }
            Self::BelowQuorum {
                valid,
                needed,
                validators,
            } => write!(
                f,
                "{valid} valid signatures, {needed} of {validators} validators needed"
            ),
        }
    }
}

/// Checks an Ed25519 signature with the cofactored equation `[8][s]B = [8]R + [8][k]A`,
/// `k = SHA-512(R ‖ A ‖ M)`, as ZIP-215 defines it: `s` must be canonical, `R` and `A` curve
/// points, and `A` not of small order (such a key would verify forgeries).
///
/// This is the rule of the node (for device readings, checked in batches) and of Commonware's
/// simplex (for validator votes): unlike the cofactorless equation it gives one verdict for a
/// signature whether it is checked alone or in a batch, so every verifier agrees. Signatures
/// made by RFC 8032 signers always pass.
pub fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    use curve25519_dalek::{
        edwards::{CompressedEdwardsY, EdwardsPoint},
        scalar::Scalar,
        traits::IsIdentity,
    };
    use sha2::Sha512;
    let Some(a) = CompressedEdwardsY(*public_key).decompress() else {
        return false;
    };
    if a.is_small_order() {
        return false;
    }
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    s_bytes.copy_from_slice(&signature[32..]);
    let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
        return false;
    };
    let Some(s) = Scalar::from_canonical_bytes(s_bytes).into_option() else {
        return false;
    };
    let digest = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(public_key)
        .chain_update(message)
        .finalize();
    let k = Scalar::from_bytes_mod_order_wide(&digest.into());
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s) - r)
        .mul_by_cofactor()
        .is_identity()
}

/// Checks that every signature of `certificate` is by a distinct member of `validators` and
/// valid, and that there are at least [`quorum`] of them (and at least one: an empty
/// validator set finalizes nothing).
pub fn verify_certificate(
    certificate: &Certificate<'_>,
    validators: &[Hash],
) -> Result<(), CertificateError> {
    let mut message = [0u8; MAX_SIGNING_BYTES];
    let n = signing_bytes(
        certificate.epoch,
        certificate.view,
        certificate.parent_view,
        &certificate.header_hash,
        &mut message,
    );
    let message = &message[..n];
    for (i, s) in certificate.signatures.iter().enumerate() {
        if !validators.contains(&s.validator) {
            return Err(CertificateError::NotAValidator(s.validator));
        }
        if certificate.signatures[..i]
            .iter()
            .any(|earlier| earlier.validator == s.validator)
        {
            return Err(CertificateError::SignedTwice(s.validator));
        }
        if !verify_ed25519(&s.validator, message, &s.signature) {
            return Err(CertificateError::InvalidSignature(s.validator));
        }
    }
    let needed = quorum(validators.len()).max(1);
    if certificate.signatures.len() < needed {
        return Err(CertificateError::BelowQuorum {
            valid: certificate.signatures.len(),
            needed,
            validators: validators.len(),
        });
    }
    Ok(())
}

/// Why a header chain does not check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A header is of another chain.
    ChainId {
        /// Its chain id.
        got: u64,
        /// The expected chain id.
        expected: u64,
    },
    /// A header does not extend the one before it (parent hash or height).
    Gap {
        /// Height of the header that does not link.
        height: u64,
        /// Height of the header it should extend.
        after: u64,
    },
    /// The certificate is for another header than the last one.
    NotCertified {
        /// Hash of the last header.
        hash: Hash,
        /// Its height.
        height: u64,
        /// The header the certificate is for.
        certified: Hash,
        /// The certificate's height.
        certified_height: u64,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ChainId { got, expected } => {
                write!(f, "chain id {got} is not the genesis chain id {expected}")
            }
            Self::Gap { height, after } => write!(
                f,
                "header at height {height} does not extend the header at height {after}"
            ),
            Self::NotCertified {
                hash,
                height,
                certified,
                certified_height,
            } => write!(
                f,
                "the certified header hashes to {} at height {height}, the certificate is for {} at height {certified_height}",
                Hex(hash),
                Hex(certified)
            ),
        }
    }
}

/// Follows `chain` from `from` (each header the child of the one before, of chain
/// `chain_id`); returns the last header's hash and height.
fn follow(chain_id: u64, from: &Header, chain: &[Header]) -> Result<(Hash, u64), HeaderError> {
    for h in core::iter::once(from).chain(chain) {
        if h.chain_id != chain_id {
            return Err(HeaderError::ChainId {
                got: h.chain_id,
                expected: chain_id,
            });
        }
    }
    let mut hash = from.hash();
    let mut height = from.height;
    for h in chain {
        if h.parent_hash != hash || h.height != height.wrapping_add(1) {
            return Err(HeaderError::Gap {
                height: h.height,
                after: height,
            });
        }
        hash = h.hash();
        height = h.height;
    }
    Ok((hash, height))
}

fn certifies(
    certificate: &Certificate<'_>,
    (hash, height): (Hash, u64),
) -> Result<(), HeaderError> {
    if certificate.header_hash != hash || certificate.height != height {
        return Err(HeaderError::NotCertified {
            hash,
            height,
            certified: certificate.header_hash,
            certified_height: certificate.height,
        });
    }
    Ok(())
}

/// Why a header chain from a trusted header does not check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// The headers do not link, or the certificate is not for the last one.
    Header(HeaderError),
    /// The certificate does not check.
    Certificate(CertificateError),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(e) => write!(f, "header: {e}"),
            Self::Certificate(e) => write!(f, "finality certificate: {e}"),
        }
    }
}

/// Checks `headers` extend `trusted` one by one (no gap, same chain) and that the last is
/// finalized by `certificate` under `validators`: a light client moving its trusted header
/// forward. With no headers, it checks `trusted`'s own certificate.
pub fn verify_header_chain(
    trusted: &Header,
    headers: &[Header],
    certificate: &Certificate<'_>,
    validators: &[Hash],
) -> Result<(), ChainError> {
    let tip = follow(trusted.chain_id, trusted, headers).map_err(ChainError::Header)?;
    certifies(certificate, tip).map_err(ChainError::Header)?;
    verify_certificate(certificate, validators).map_err(ChainError::Certificate)
}

/// A reading's proof, borrowed from wherever it was parsed.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    /// The claimed reading id.
    pub reading_id: Hash,
    /// The COSE_Sign1 message as the device sent it.
    pub message: &'a [u8],
    /// Position among the block's readings.
    pub index: u64,
    /// RFC 6962 audit path, from the leaf up.
    pub audit_path: &'a [Hash],
    /// The device key's algorithm.
    pub key_alg: Alg,
    /// The device key: Ed25519 32 bytes, P-256 uncompressed SEC1 65 bytes.
    pub device_key: &'a [u8],
    /// The block header.
    pub header: Header,
    /// Headers after `header` up to the certified one (empty: `header` is certified).
    pub descendants: &'a [Header],
    /// The finality certificate.
    pub certificate: Certificate<'a>,
}

/// Which part of a proof fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// The message is not a well-formed reading.
    Message(ReadingError),
    /// The reading id is not the leaf hash of the message's canonical form.
    ReadingId {
        /// The id of the message (the leaf hash of its canonical form).
        computed: Hash,
    },
    /// The device key is malformed, of another algorithm, or did not sign the message.
    DeviceSignature(&'static str),
    /// The scratch buffer cannot hold the signed bytes (message length + `reading_aad` length + 40).
    ScratchTooSmall,
    /// The audit path does not lead to the header's readings root.
    AuditPath(MerkleError),
    /// The header is not of this chain or not the certified one.
    Header(HeaderError),
    /// The finality certificate does not check against the validator set.
    Certificate(CertificateError),
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(e) => write!(f, "message: {e}"),
            Self::ReadingId { computed } => write!(
                f,
                "reading id: leaf hash of the canonical message is {}, the proof claims another",
                Hex(computed)
            ),
            Self::DeviceSignature(why) => write!(f, "device signature: {why}"),
            Self::ScratchTooSmall => f.write_str("scratch buffer too small for the message"),
            Self::AuditPath(e) => write!(f, "merkle audit path: {e}"),
            Self::Header(e) => write!(f, "header: {e}"),
            Self::Certificate(e) => write!(f, "finality certificate: {e}"),
        }
    }
}

/// What a valid proof establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedReading<'a> {
    /// The device address.
    pub device: DeviceAddress,
    /// The reading's seq.
    pub seq: u64,
    /// Device time, ms.
    pub ts: u64,
    /// The stream.
    pub stream: &'a str,
    /// Height of the block holding the reading.
    pub height: u64,
    /// That block's header hash.
    pub header_hash: Hash,
    /// Whether the key derives the device address (true unless the key was rotated).
    pub key_is_original: bool,
}

/// The device address of a key: the last 20 bytes of keccak256 of the key bytes (P-256:
/// of `x‖y`).
pub fn device_address(alg: Alg, key: &[u8]) -> DeviceAddress {
    let bytes = match alg {
        Alg::Es256 if key.len() == 65 => &key[1..],
        _ => key,
    };
    let hash = Keccak256::digest(bytes);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    DeviceAddress(out)
}

/// Checks the device signature over the COSE Sig_structure (built in `scratch`).
fn verify_device(
    alg: Alg,
    key: &[u8],
    protected: &[u8],
    external_aad: &[u8],
    payload: &[u8],
    signature: &[u8; 64],
    scratch: &mut [u8],
) -> Result<(), ProofError> {
    let n = iotchain_reading::write_sig_structure(protected, external_aad, payload, scratch)
        .map_err(|_| ProofError::ScratchTooSmall)?;
    let signed = &scratch[..n];
    let valid = match alg {
        Alg::EdDsa => {
            let key: &[u8; 32] = key
                .try_into()
                .map_err(|_| ProofError::DeviceSignature("an Ed25519 key is 32 bytes"))?;
            verify_ed25519(key, signed, signature)
        }
        Alg::Es256 => {
            use p256::ecdsa::signature::Verifier as _;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                .map_err(|_| ProofError::DeviceSignature("not a P-256 public key"))?;
            let sig = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| ProofError::DeviceSignature("not a P-256 signature"))?;
            key.verify(signed, &sig).is_ok()
        }
    };
    if valid {
        Ok(())
    } else {
        Err(ProofError::DeviceSignature(
            "the message is not signed by the device key",
        ))
    }
}

/// Checks every part of `proof` against a chain: its id, its validator set and what its
/// readings sign as COSE `external_aad` (the chain's genesis hash, or empty on a chain created
/// before readings named their chain: see `docs/formats.md`). `scratch` holds the signed
/// bytes while the device signature is checked: at least the message length +
/// `reading_aad.len()` + 40.
pub fn verify_proof<'a>(
    proof: &Proof<'a>,
    chain_id: u64,
    validators: &[Hash],
    reading_aad: &[u8],
    scratch: &mut [u8],
) -> Result<VerifiedReading<'a>, ProofError> {
    let reading = iotchain_reading::decode(proof.message).map_err(ProofError::Message)?;
    // The id of the reading, however the message is encoded (docs/formats.md).
    let id = reading.id();
    if id != proof.reading_id {
        return Err(ProofError::ReadingId { computed: id });
    }
    if proof.key_alg != reading.alg {
        return Err(ProofError::DeviceSignature(
            "key algorithm differs from the message's",
        ));
    }
    verify_device(
        reading.alg,
        proof.device_key,
        reading.protected,
        reading_aad,
        reading.payload,
        reading.signature,
        scratch,
    )?;
    iotchain_merkle::verify_inclusion(
        &id,
        proof.index,
        proof.header.reading_count,
        proof.audit_path,
        &proof.header.readings_root,
    )
    .map_err(ProofError::AuditPath)?;
    let tip = follow(chain_id, &proof.header, proof.descendants).map_err(ProofError::Header)?;
    certifies(&proof.certificate, tip).map_err(ProofError::Header)?;
    verify_certificate(&proof.certificate, validators).map_err(ProofError::Certificate)?;
    Ok(VerifiedReading {
        device: reading.device,
        seq: reading.seq,
        ts: reading.ts,
        stream: reading.stream,
        height: proof.header.height,
        header_hash: proof.header.hash(),
        key_is_original: device_address(reading.alg, proof.device_key) == reading.device,
    })
}

#[cfg(test)]
mod tests;
