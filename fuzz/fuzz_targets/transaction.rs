//! Fuzzes owner-transaction decoding and signature recovery: what decodes is its own
//! encoding (so its hash is the hash of the bytes a block holds), and only on its chain.
#![no_main]

use iotchain_block::SignedTx;
use iotchain_fuzz::CHAIN_ID;

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("transaction"), |data: &[u8]| {
    let Ok(tx) = SignedTx::decode_and_check(data, CHAIN_ID) else {
        return;
    };
    let raw = tx.encode_rlp();
    assert_eq!(SignedTx::decode_and_check(&raw, CHAIN_ID).unwrap(), tx);
    assert_eq!(raw, data, "a non-canonical transaction decodes");
    assert!(SignedTx::decode_and_check(data, CHAIN_ID + 1).is_err(), "replay on another chain");
    assert!(!tx.op.name().is_empty());
});
