//! Fuzzes Ethereum transaction decoding (`eth_sendRawTransaction`, the Ethereum items of a
//! block): EIP-2718 envelopes, the chain id check and sender recovery. What decodes is its
//! own canonical encoding, is refused on another chain, and answers every accessor.
#![no_main]

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::keccak256;
use iotchain_evm::{EthTx, EvmError};
use iotchain_fuzz::CHAIN_ID;

const MAX: usize = 128 * 1024;

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("eth_tx"), |data: &[u8]| {
    let tx = match EthTx::decode(data, CHAIN_ID, MAX) {
        Ok(tx) => tx,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(&tx.raw[..], data);
    assert_eq!(tx.hash, keccak256(data));
    assert_eq!(tx.envelope.encoded_2718(), data, "a non-canonical encoding decodes");
    assert!(tx.tx_type() <= 2, "type {}", tx.tx_type());
    assert!(matches!(
        EthTx::decode(data, CHAIN_ID + 1, MAX),
        Err(EvmError::WrongChainId { got: Some(CHAIN_ID), .. })
    ));
    assert!(matches!(
        EthTx::decode(data, CHAIN_ID, data.len() - 1),
        Err(EvmError::TooLarge { .. })
    ));
    assert_eq!(EthTx::decode(data, CHAIN_ID, data.len()).as_ref(), Ok(&tx));
    let _ = (tx.nonce(), tx.gas_limit(), tx.to(), tx.value(), tx.input().len());
    let (v, r, s, _) = tx.signature();
    assert!(!r.is_zero() && !s.is_zero());
    if tx.tx_type() == 0 {
        assert!(v == CHAIN_ID * 2 + 35 || v == CHAIN_ID * 2 + 36, "v = {v}");
    } else {
        assert!(v <= 1);
    }
    for base_fee in [0, 1, 1_000_000_000, u64::MAX] {
        let price = tx.effective_gas_price(base_fee);
        assert!(price <= tx.max_fee_per_gas().max(u128::from(base_fee)));
    }
    let _ = tx.max_priority_fee_per_gas();
});
