//! The genesis file: chain id, validators, authorised owners and chain parameters.

use std::path::Path;

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

use crate::{BlockError, Result};

/// A validator listed in genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// Ed25519 public key that signs finality certificates.
    pub public_key: B256,
    /// Network address (`host:port`) for peers; unused by a single-validator chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Account that receives the priority fees of the blocks this validator proposes;
    /// by default [`GenesisValidator::default_fee_recipient`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_recipient: Option<Address>,
}

impl GenesisValidator {
    /// The fee recipient derived from the validator key: the last 20 bytes of
    /// `keccak256(public_key)`.
    pub fn default_fee_recipient(public_key: &B256) -> Address {
        Address::from_slice(&keccak256(public_key)[12..])
    }

    /// The account that collects this validator's priority fees.
    pub fn fee_recipient(&self) -> Address {
        self.fee_recipient
            .unwrap_or_else(|| Self::default_fee_recipient(&self.public_key))
    }
}

/// Consensus-relevant limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainParams {
    /// Most readings in one block.
    pub max_readings_per_block: u64,
    /// Most owner transactions in one block.
    pub max_transactions_per_block: u64,
    /// Largest reading message accepted, in bytes.
    pub max_reading_bytes: u64,
    /// Gas limit of a block's Ethereum transactions (their summed gas limits).
    pub block_gas_limit: u64,
    /// Lowest EIP-1559 base fee, in wei: the base fee never falls below it.
    pub min_base_fee: u64,
    /// Largest raw Ethereum transaction accepted, in bytes.
    pub max_eth_tx_bytes: u64,
    /// What devices sign as COSE `external_aad`: the genesis hash for chains created since
    /// readings name their chain (the default), nothing for a genesis file written before
    /// (the field is absent there, and such a chain keeps verifying its readings as before).
    #[serde(default = "ReadingAad::legacy")]
    pub reading_aad: ReadingAad,
    /// Whether each device stream keeps an accumulator of its readings in the state, which
    /// complete-range proofs rest on (docs/formats.md): on for chains created since they
    /// exist (the default), off for a genesis file written before (the field is absent there,
    /// and such a chain keeps its state roots).
    #[serde(default)]
    pub stream_accumulators: bool,
}

impl ChainParams {
    /// The defaults as a genesis file written before readings named their chain reads them.
    pub fn legacy() -> Self {
        Self {
            reading_aad: ReadingAad::None,
            stream_accumulators: false,
            ..Self::default()
        }
    }
}

/// What a chain's readings carry as COSE `external_aad` (docs/formats.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingAad {
    /// The 32-byte genesis hash: a reading signed for this chain verifies on no other.
    GenesisHash,
    /// Empty (`h''`): readings of a chain created before they named their chain; a device
    /// key registered on two such chains has its readings replayable across them.
    None,
}

impl ReadingAad {
    /// What a genesis file without the field means: [`ReadingAad::None`].
    pub fn legacy() -> Self {
        Self::None
    }
}

impl Default for ChainParams {
    fn default() -> Self {
        Self {
            max_readings_per_block: 20_000,
            max_transactions_per_block: 2_000,
            max_reading_bytes: 16 * 1024,
            block_gas_limit: 30_000_000,
            min_base_fee: 1_000_000_000,
            max_eth_tx_bytes: 128 * 1024,
            reading_aad: ReadingAad::GenesisHash,
            stream_accumulators: true,
        }
    }
}

/// The genesis file (`genesis.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Chain id: signed into every transaction and finality certificate.
    pub chain_id: u64,
    /// Genesis time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Validators (proof of authority).
    pub validators: Vec<GenesisValidator>,
    /// Owner accounts (organisations) allowed to register devices.
    pub owners: Vec<Address>,
    /// Manufacturers whose device certificates every owner's registrations may carry
    /// (docs/formats.md); an owner can authorise more for its own devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manufacturers: Vec<Address>,
    /// Chain parameters (a file without them has the defaults, with the readings of a chain
    /// written before they named their chain: [`ChainParams::legacy`]).
    #[serde(default = "ChainParams::legacy")]
    pub params: ChainParams,
    /// Initial balances of Ethereum accounts, in wei.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alloc: BTreeMap<Address, U256>,
}

impl Genesis {
    /// A proof-of-authority genesis with one validator (no network address) and default
    /// parameters: what `iotchain dev`, the bench and tests start from.
    pub fn single_validator(
        chain_id: u64,
        timestamp_ms: u64,
        validator: B256,
        owners: Vec<Address>,
    ) -> Self {
        Self {
            chain_id,
            timestamp_ms,
            validators: vec![GenesisValidator {
                public_key: validator,
                address: None,
                fee_recipient: None,
            }],
            owners,
            manufacturers: vec![],
            params: ChainParams::default(),
            alloc: BTreeMap::new(),
        }
    }

    /// A genesis whose validators are these consensus keys (no p2p addresses: for nodes that
    /// meet over something else, such as a simulated network).
    pub fn with_validators(
        chain_id: u64,
        timestamp_ms: u64,
        validators: &[B256],
        owners: Vec<Address>,
    ) -> Self {
        Self {
            validators: validators
                .iter()
                .map(|k| GenesisValidator {
                    public_key: *k,
                    address: None,
                    fee_recipient: None,
                })
                .collect(),
            ..Self::single_validator(chain_id, timestamp_ms, B256::ZERO, owners)
        }
    }

    /// Reads and checks a genesis file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BlockError::Genesis(format!("cannot read {}: {e}", path.display())))?;
        let genesis: Self = serde_json::from_str(&text).map_err(|e| {
            BlockError::Genesis(format!("{} is not a genesis file: {e}", path.display()))
        })?;
        genesis.check()?;
        Ok(genesis)
    }

    /// Writes the genesis file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("genesis serializes");
        std::fs::write(path, text + "\n")
            .map_err(|e| BlockError::Genesis(format!("cannot write {}: {e}", path.display())))
    }

    /// Checks internal consistency.
    pub fn check(&self) -> Result<()> {
        if self.validators.is_empty() {
            return Err(BlockError::Genesis("no validators".into()));
        }
        let mut keys: Vec<B256> = self.validator_keys();
        keys.sort();
        keys.dedup();
        if keys.len() != self.validators.len() {
            return Err(BlockError::Genesis("a validator is listed twice".into()));
        }
        if self.params.max_readings_per_block == 0 || self.params.max_reading_bytes < 64 {
            return Err(BlockError::Genesis("params allow no readings".into()));
        }
        Ok(())
    }

    /// The account that collects the priority fees of blocks proposed by `validator`
    /// (the zero address for a key that is not a validator).
    pub fn fee_recipient(&self, validator: &B256) -> Address {
        self.validators
            .iter()
            .find(|v| v.public_key == *validator)
            .map(GenesisValidator::fee_recipient)
            .unwrap_or(Address::ZERO)
    }

    /// The COSE `external_aad` of this chain's readings, given its genesis hash: the hash
    /// itself, or empty on a chain whose readings do not name it ([`ReadingAad`]).
    pub fn reading_aad<'a>(&self, genesis_hash: &'a B256) -> &'a [u8] {
        match self.params.reading_aad {
            ReadingAad::GenesisHash => genesis_hash.as_slice(),
            ReadingAad::None => &[],
        }
    }

    /// The validators' public keys, in genesis order.
    pub fn validator_keys(&self) -> Vec<B256> {
        self.validators.iter().map(|v| v.public_key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis() -> Genesis {
        Genesis::single_validator(1, 1, B256::repeat_byte(1), vec![])
    }

    /// New genesis files bind readings to the chain; files written before (without the field,
    /// or without `params`) keep the empty `external_aad` they were created with.
    #[test]
    fn reading_aad_is_the_genesis_hash_on_new_chains_and_empty_on_old_files() {
        let new = genesis();
        assert_eq!(new.params.reading_aad, ReadingAad::GenesisHash);
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""reading_aad":"genesis_hash""#), "{text}");
        assert_eq!(serde_json::from_str::<Genesis>(&text).unwrap(), new);
        let hash = B256::repeat_byte(0xab);
        assert_eq!(new.reading_aad(&hash), hash.as_slice());

        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["params"]
            .as_object_mut()
            .unwrap()
            .remove("reading_aad");
        let old: Genesis = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(old.params.reading_aad, ReadingAad::None);
        assert_eq!(
            old.params.max_readings_per_block,
            new.params.max_readings_per_block
        );
        assert!(old.reading_aad(&hash).is_empty());
        value.as_object_mut().unwrap().remove("params");
        let bare: Genesis = serde_json::from_value(value).unwrap();
        assert_eq!(bare.params, ChainParams::legacy());

        let explicit = text.replace(r#""genesis_hash""#, r#""none""#);
        let none: Genesis = serde_json::from_str(&explicit).unwrap();
        assert_eq!(none.params.reading_aad, ReadingAad::None);
        let bad = text.replace(r#""genesis_hash""#, r#""chain_id""#);
        let err = serde_json::from_str::<Genesis>(&bad).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    /// New chains keep stream accumulators; a file written before (without the field) keeps
    /// the state roots it had.
    #[test]
    fn stream_accumulators_are_on_for_new_chains_and_off_for_old_files() {
        let new = genesis();
        assert!(new.params.stream_accumulators);
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""stream_accumulators":true"#), "{text}");
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["params"]
            .as_object_mut()
            .unwrap()
            .remove("stream_accumulators");
        let old: Genesis = serde_json::from_value(value).unwrap();
        assert!(!old.params.stream_accumulators);
        assert!(!ChainParams::legacy().stream_accumulators);
    }
}
