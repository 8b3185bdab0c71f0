//! Proof bundles: everything needed to check offline that a reading was finalized.

use alloy_primitives::{B256, Bytes};
use iotchain_crypto::{DevicePublicKey, SignatureCheck, verify_signatures};
use serde::{Deserialize, Serialize};

use crate::{FinalityCertificate, Genesis, Header};

/// A reading's proof: the message, its Merkle audit path, the header and its certificate.
///
/// Checking it ([`ProofBundle::verify`]) proves that the message bytes are leaf `index` of
/// the `readings_root` of a header finalized by a quorum of the chain's validators, and that
/// the message is signed by `device_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// Format version, 1.
    pub version: u32,
    /// The reading id: RFC 6962 leaf hash of `message`.
    pub reading_id: B256,
    /// The COSE_Sign1 message exactly as the device sent it.
    pub message: Bytes,
    /// Position of the reading among the block's readings.
    pub index: u64,
    /// RFC 6962 audit path, from the leaf up.
    pub audit_path: Vec<B256>,
    /// The device key that verified the reading when it was accepted (alg and key bytes).
    pub device_key: DeviceKeyJson,
    /// The block header.
    pub header: Header,
    /// The headers after `header` up to the certified one, oldest first, when the block was
    /// finalized through a descendant (simplex finalizes a notarized block's uncommitted
    /// ancestors with it); empty when the certificate is for `header` itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descendants: Vec<Header>,
    /// The finality certificate: of `header`, or of the last of `descendants`.
    pub certificate: FinalityCertificate,
}

/// A device key in JSON: `{"alg": "EdDSA"|"ES256", "public_key": "0x…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeyJson {
    /// COSE algorithm name.
    pub alg: String,
    /// Key bytes (Ed25519 32; P-256 uncompressed SEC1 65).
    pub public_key: Bytes,
}

impl DeviceKeyJson {
    /// JSON form of a key.
    pub fn from_key(key: &DevicePublicKey) -> Self {
        Self {
            alg: key.alg().to_string(),
            public_key: key.to_bytes().into(),
        }
    }

    /// Parses the key back.
    pub fn to_key(&self) -> Result<DevicePublicKey, String> {
        let alg = match self.alg.as_str() {
            "EdDSA" => iotchain_reading::Alg::EdDsa,
            "ES256" => iotchain_reading::Alg::Es256,
            other => return Err(format!("unknown algorithm {other:?}")),
        };
        DevicePublicKey::from_bytes(alg, &self.public_key).map_err(|e| e.to_string())
    }
}

/// Which part of a proof failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The message is not a well-formed reading.
    #[error("message: {0}")]
    Message(String),
    /// The reading id is not the leaf hash of the message.
    #[error("reading id: {0}")]
    ReadingId(String),
    /// The device signature or key binding does not check.
    #[error("device signature: {0}")]
    DeviceSignature(String),
    /// The audit path does not lead to the header's readings root.
    #[error("merkle audit path: {0}")]
    AuditPath(String),
    /// The header is not of this chain or not the certified one.
    #[error("header: {0}")]
    Header(String),
    /// The finality certificate does not check against the validator set.
    #[error("finality certificate: {0}")]
    Certificate(String),
}

/// What a valid proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedReading {
    /// The device address.
    pub device: String,
    /// The reading's seq.
    pub seq: u64,
    /// Device timestamp, ms.
    pub ts: u64,
    /// The stream.
    pub stream: String,
    /// Height of the finalizing block.
    pub height: u64,
    /// Header hash.
    pub header_hash: B256,
    /// Whether the device key derives the device address (true unless the key was rotated).
    pub key_is_original: bool,
}

/// Follows `descendants` from `header` (each the child of the one before, on the same
/// chain): the hash and height of the last header, the one a certificate must finalize.
pub(crate) fn certified_tip(
    header: &Header,
    descendants: &[Header],
) -> Result<(B256, u64), ProofError> {
    let mut hash = header.hash();
    let mut height = header.height;
    for d in descendants {
        if d.parent_hash != hash || d.height != height + 1 || d.chain_id != header.chain_id {
            return Err(ProofError::Header(format!(
                "descendant header at height {} does not extend {hash} at height {height}",
                d.height
            )));
        }
        hash = d.hash();
        height = d.height;
    }
    Ok((hash, height))
}

impl ProofBundle {
    /// Checks every part of the proof against a genesis (chain id and validator set).
    pub fn verify(&self, genesis: &Genesis) -> Result<VerifiedReading, ProofError> {
        if self.version != 1 {
            return Err(ProofError::Message(format!(
                "unsupported proof version {}",
                self.version
            )));
        }
        let reading = iotchain_reading::decode(&self.message)
            .map_err(|e| ProofError::Message(e.to_string()))?;
        let id = iotchain_reading::reading_id(&self.message);
        if id != self.reading_id.0 {
            return Err(ProofError::ReadingId(format!(
                "leaf hash of the message is {}, the proof claims {}",
                B256::from(id),
                self.reading_id
            )));
        }
        let key = self
            .device_key
            .to_key()
            .map_err(ProofError::DeviceSignature)?;
        if key.alg() != reading.alg {
            return Err(ProofError::DeviceSignature(
                "key algorithm differs from the message's".into(),
            ));
        }
        let sig_structure = iotchain_reading::sig_structure(reading.protected, reading.payload);
        let ok = verify_signatures(&[SignatureCheck {
            key: &key,
            message: &sig_structure,
            signature: reading.signature,
        }]);
        if !ok[0] {
            return Err(ProofError::DeviceSignature(
                "the message is not signed by the device key".into(),
            ));
        }
        let key_is_original = key.address() == reading.device;
        iotchain_merkle::verify_inclusion(
            &id,
            self.index,
            self.header.reading_count,
            &self.audit_path.iter().map(|h| h.0).collect::<Vec<_>>(),
            &self.header.readings_root.0,
        )
        .map_err(|e| ProofError::AuditPath(e.to_string()))?;
        if self.header.chain_id != genesis.chain_id {
            return Err(ProofError::Header(format!(
                "chain id {} is not the genesis chain id {}",
                self.header.chain_id, genesis.chain_id
            )));
        }
        let header_hash = self.header.hash();
        let (certified_hash, certified_height) = certified_tip(&self.header, &self.descendants)?;
        if self.certificate.header_hash != certified_hash
            || self.certificate.height != certified_height
        {
            return Err(ProofError::Header(format!(
                "the certified header hashes to {certified_hash} at height {certified_height}, \
                 the certificate is for {} at height {}",
                self.certificate.header_hash, self.certificate.height
            )));
        }
        self.certificate
            .verify(&genesis.validator_keys())
            .map_err(ProofError::Certificate)?;
        Ok(VerifiedReading {
            device: reading.device.to_string(),
            seq: reading.seq,
            ts: reading.ts,
            stream: reading.stream.to_string(),
            height: self.header.height,
            header_hash,
            key_is_original,
        })
    }
}
