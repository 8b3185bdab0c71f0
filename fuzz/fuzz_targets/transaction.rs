//! Fuzzes owner-transaction decoding and signature recovery.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = iotchain_block::SignedTx::decode_and_check(data, 1337);
});
