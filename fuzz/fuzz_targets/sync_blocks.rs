//! Fuzzes a block-sync page (`GET /v1/sync/{height}` from a peer, JSON): the blocks' RLP, the
//! body check and the certificate check against a fixed set of four validators. A block that
//! passes every check a follower makes before executing it is a fixture's block: its header,
//! its readings in order (any encoding of each) and its transactions' bytes in order. (The header commits to those
//! two sequences, not to how they interleave nor to which transaction is an owner's and which
//! an Ethereum one: executing the block checks that, against the state root.)
#![no_main]

use iotchain_block::{Block, BlockItem, SyncBlocks};
use iotchain_fuzz::{certificate_within, fixtures, validator_keys};

/// The same header, readings (in order, up to their encoding: the root is over their ids)
/// and transactions' bytes (in order).
fn same_lanes(a: &Block, b: &Block) -> bool {
    let lanes = |x: &Block| {
        let mut readings = Vec::new();
        let mut txs = Vec::new();
        for i in &x.items {
            match i {
                BlockItem::Reading(m) => readings.push(iotchain_fuzz::canonical_reading(m)),
                BlockItem::Tx(t) | BlockItem::EthTx(t) => txs.push(t.clone()),
            }
        }
        (readings, txs)
    };
    a.header == b.header && lanes(a) == lanes(b)
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("sync_blocks"), |data: &[u8]| {
    let Ok(page) = serde_json::from_slice::<SyncBlocks>(data) else {
        return;
    };
    let text = serde_json::to_string(&page).expect("a page serializes");
    assert_eq!(serde_json::from_str::<SyncBlocks>(&text).unwrap(), page);
    let f = fixtures();
    let validators = validator_keys();
    for b in &page.blocks {
        let cert = b.certificate.verify(&validators);
        let Ok(block) = Block::decode_rlp(&b.block) else {
            continue;
        };
        let certified = cert.is_ok()
            && b.certificate.header_hash == block.header.hash()
            && b.certificate.height == block.header.height;
        if certified && block.body_matches_header() {
            let real = [(0usize, &f.cert5), (2, &f.cert7)];
            assert!(
                real.iter().any(|(i, c)| same_lanes(&f.blocks[*i], &block)
                    && certificate_within(&b.certificate, c)),
                "a block that is not a fixture is certified: {block:?}"
            );
        }
    }
});
