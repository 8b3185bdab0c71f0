//! Ethereum transactions: EIP-2718 decoding, chain id check and sender recovery.

use alloy_consensus::{Transaction, TxEnvelope, transaction::SignerRecoverable};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};

use crate::{EvmError, Result};

/// A decoded Ethereum transaction with its recovered sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthTx {
    /// keccak256 of the raw bytes: the Ethereum transaction hash.
    pub hash: B256,
    /// The recovered sender.
    pub sender: Address,
    /// The decoded envelope.
    pub envelope: TxEnvelope,
    /// The raw EIP-2718 bytes, as signed and sent.
    pub raw: Bytes,
}

impl EthTx {
    /// Decodes raw EIP-2718 bytes (a legacy RLP list or a typed envelope), rejecting
    /// trailing bytes, oversized input, blob and set-code transactions, a chain id other than
    /// `chain_id` (legacy transactions must carry one, EIP-155) and signatures that do not
    /// recover a sender.
    pub fn decode(raw: &[u8], chain_id: u64, max_bytes: usize) -> Result<Self> {
        if raw.len() > max_bytes {
            return Err(EvmError::TooLarge {
                size: raw.len(),
                max: max_bytes,
            });
        }
        let mut buf = raw;
        let envelope =
            TxEnvelope::decode_2718(&mut buf).map_err(|e| EvmError::Malformed(e.to_string()))?;
        if !buf.is_empty() {
            return Err(EvmError::Malformed(format!("{} trailing bytes", buf.len())));
        }
        match &envelope {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {}
            other => return Err(EvmError::UnsupportedType(other.tx_type() as u8)),
        }
        if envelope.chain_id() != Some(chain_id) {
            return Err(EvmError::WrongChainId {
                got: envelope.chain_id(),
                expected: chain_id,
            });
        }
        let sender = envelope
            .recover_signer()
            .map_err(|_| EvmError::BadSignature)?;
        Ok(Self {
            hash: keccak256(raw),
            sender,
            envelope,
            raw: Bytes::copy_from_slice(raw),
        })
    }

    /// The EIP-2718 type byte (0 for legacy).
    pub fn tx_type(&self) -> u8 {
        self.envelope.tx_type() as u8
    }

    /// The sender's nonce this transaction uses.
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    /// The gas limit.
    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }

    /// Call target, or `None` for a contract creation.
    pub fn to(&self) -> Option<Address> {
        match self.envelope.kind() {
            TxKind::Call(a) => Some(a),
            TxKind::Create => None,
        }
    }

    /// Value sent, in wei.
    pub fn value(&self) -> U256 {
        self.envelope.value()
    }

    /// Call data or init code.
    pub fn input(&self) -> &Bytes {
        self.envelope.input()
    }

    /// The fee cap per gas (the gas price of a legacy or EIP-2930 transaction).
    pub fn max_fee_per_gas(&self) -> u128 {
        self.envelope.max_fee_per_gas()
    }

    /// The priority fee cap per gas, for an EIP-1559 transaction.
    pub fn max_priority_fee_per_gas(&self) -> Option<u128> {
        self.envelope.max_priority_fee_per_gas()
    }

    /// The price per gas paid in a block with `base_fee`.
    pub fn effective_gas_price(&self, base_fee: u64) -> u128 {
        self.envelope.effective_gas_price(Some(base_fee))
    }

    /// The signature's `(v or y_parity, r, s)` as JSON-RPC reports them.
    pub fn signature(&self) -> (u64, U256, U256, bool) {
        let sig = match &self.envelope {
            TxEnvelope::Legacy(t) => t.signature(),
            TxEnvelope::Eip2930(t) => t.signature(),
            TxEnvelope::Eip1559(t) => t.signature(),
            TxEnvelope::Eip4844(t) => t.signature(),
            TxEnvelope::Eip7702(t) => t.signature(),
        };
        let parity = sig.v();
        let v = match &self.envelope {
            TxEnvelope::Legacy(t) => {
                alloy_consensus::transaction::to_eip155_value(parity, t.tx().chain_id()) as u64
            }
            _ => parity as u64,
        };
        (v, sig.r(), sig.s(), parity)
    }
}

/// Signs a transaction with a secp256k1 key and returns its EIP-2718 bytes (what
/// `eth_sendRawTransaction` takes): for tools, the devnet and tests.
pub fn sign_tx<T>(key: &k256::ecdsa::SigningKey, tx: T) -> Result<Bytes>
where
    T: alloy_consensus::SignableTransaction<alloy_primitives::Signature>,
    TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    use alloy_eips::eip2718::Encodable2718;
    let (sig, recid) = key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .map_err(|_| EvmError::BadSignature)?;
    let signature = alloy_primitives::Signature::from((sig, recid));
    Ok(TxEnvelope::from(tx.into_signed(signature))
        .encoded_2718()
        .into())
}

/// The Ethereum address of a secp256k1 key.
pub fn key_address(key: &k256::ecdsa::SigningKey) -> Address {
    Address::from_public_key(key.verifying_key())
}
