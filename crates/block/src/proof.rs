//! Proof bundles: everything needed to check offline that a reading was finalized.

use alloy_primitives::{B256, Bytes};
use iotchain_crypto::DevicePublicKey;
use serde::{Deserialize, Serialize};

use crate::{FinalityCertificate, Genesis, Header};

/// A reading's proof: the message, its Merkle audit path, the header and its certificate.
///
/// Checking it ([`ProofBundle::verify`]) proves that the message bytes are leaf `index` of
/// the `readings_root` of a header finalized by a quorum of the chain's validators, and that
/// the message is signed by `device_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProofBundle {
    /// Format version, 1.
    pub version: u32,
    /// The reading id: RFC 6962 leaf hash of `message`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-f]{64}$"))]
    pub reading_id: B256,
    /// The COSE_Sign1 message exactly as the device sent it.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x([0-9a-f]{2})*$"))]
    pub message: Bytes,
    /// Position of the reading among the block's readings.
    pub index: u64,
    /// RFC 6962 audit path, from the leaf up.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceKeyJson {
    /// COSE algorithm name.
    pub alg: String,
    /// Key bytes (Ed25519 32; P-256 uncompressed SEC1 65).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x([0-9a-f]{2})*$"))]
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
    /// The reading id is not the leaf hash of the message's canonical form.
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

impl ProofBundle {
    /// Checks every part of the proof against a genesis (chain id and validator set) and its
    /// hash (what the chain's readings sign as COSE `external_aad`, [`Genesis::reading_aad`]).
    pub fn verify(
        &self,
        genesis: &Genesis,
        genesis_hash: &B256,
    ) -> Result<VerifiedReading, ProofError> {
        if self.version != 1 {
            return Err(ProofError::Message(format!(
                "unsupported proof version {}",
                self.version
            )));
        }
        let key = self
            .device_key
            .to_key()
            .map_err(ProofError::DeviceSignature)?;
        let signatures = self
            .certificate
            .light_signatures()
            .map_err(ProofError::Certificate)?;
        let audit_path: Vec<[u8; 32]> = self.audit_path.iter().map(|h| h.0).collect();
        let descendants: Vec<iotchain_light::Header> =
            self.descendants.iter().map(Header::to_light).collect();
        let key_bytes = key.to_bytes();
        let proof = iotchain_light::Proof {
            reading_id: self.reading_id.0,
            message: &self.message,
            index: self.index,
            audit_path: &audit_path,
            key_alg: key.alg(),
            device_key: &key_bytes,
            header: self.header.to_light(),
            descendants: &descendants,
            certificate: self.certificate.as_light(&signatures),
        };
        let validators: Vec<[u8; 32]> = genesis.validator_keys().iter().map(|v| v.0).collect();
        let aad = genesis.reading_aad(genesis_hash);
        let mut scratch =
            vec![0u8; self.message.len() + aad.len() + iotchain_reading::SIG_STRUCTURE_OVERHEAD];
        let verified =
            iotchain_light::verify_proof(&proof, genesis.chain_id, &validators, aad, &mut scratch)
                .map_err(ProofError::from_light)?;
        Ok(VerifiedReading {
            device: verified.device.to_string(),
            seq: verified.seq,
            ts: verified.ts,
            stream: verified.stream.to_string(),
            height: verified.height,
            header_hash: B256::from(verified.header_hash),
            key_is_original: verified.key_is_original,
        })
    }
}

impl ProofError {
    /// The light client's verdict, with the part it names.
    fn from_light(e: iotchain_light::ProofError) -> Self {
        use iotchain_light::ProofError as L;
        match e {
            L::Message(e) => Self::Message(e.to_string()),
            L::ReadingId { computed } => Self::ReadingId(format!(
                "leaf hash of the canonical message is {}, the proof claims another",
                B256::from(computed)
            )),
            L::DeviceSignature(why) => Self::DeviceSignature(why.into()),
            L::ScratchTooSmall => Self::Message("message too long".into()),
            L::AuditPath(e) => Self::AuditPath(e.to_string()),
            L::Header(e) => Self::Header(e.to_string()),
            L::Certificate(e) => Self::Certificate(e.to_string()),
        }
    }
}
