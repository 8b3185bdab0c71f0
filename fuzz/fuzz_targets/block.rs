//! Fuzzes block and header decoding (RLP, from peers and the store): what decodes is its own
//! canonical encoding, and a block's body check and reading ids never panic.
#![no_main]

use iotchain_block::{Block, BlockItem, Header};

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("block"), |data: &[u8]| {
    if let Ok(block) = Block::decode_rlp(data) {
        assert_eq!(block.encode_rlp(), data, "a non-canonical block decodes");
        let readings = block
            .items
            .iter()
            .filter(|i| matches!(i, BlockItem::Reading(_)))
            .count();
        assert_eq!(block.reading_ids().len(), readings);
        if block.body_matches_header() {
            assert_eq!(block.header.reading_count, readings as u64);
        }
        assert_eq!(block.header.to_light().hash(), block.header.hash().0);
    }
    if let Ok(header) = Header::decode_rlp(data) {
        assert_eq!(header.encode_rlp(), data, "a non-canonical header decodes");
        assert_eq!(header.to_light().hash(), header.hash().0);
    }
});
