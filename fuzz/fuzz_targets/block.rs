//! Fuzzes block and header decoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = iotchain_block::Block::decode_rlp(data);
    let _ = iotchain_block::Header::decode_rlp(data);
});
