//! The state's trie on disk: a restarted node starts from the stored root instead of
//! rehashing every record, its blocks and proofs read the nodes the pruned state dropped, and
//! a data directory from before the nodes were stored is rebuilt once and then saved.

use alloy_primitives::{Address, keccak256};
use iotchain_api::{ChainQuery, StateAt};
use iotchain_engine::{Engine, testing::run};

use crate::restart::{Fixture, drain, fixture, open_chain, open_with_device, submit};

/// The head's state root, and an exclusion proof of an account checked against it (the
/// proof walks from the root, loading the nodes that are not in memory).
fn head_root_with_proof(chain: &Engine) -> alloy_primitives::B256 {
    let head = chain.head().height;
    let root = chain.store().header(head).unwrap().unwrap().state_root;
    let nobody = Address::repeat_byte(0xee);
    let proof = chain
        .with_state(StateAt::Committed, |s| s.account_proof(&nobody, &[]))
        .unwrap();
    let nodes: Vec<&[u8]> = proof.proof.iter().map(|n| n.as_ref()).collect();
    assert!(!nodes.is_empty());
    assert_eq!(
        iotchain_light::verify_mpt(&root.0, &keccak256(nobody).0, &nodes),
        Ok(None),
        "the proof verifies against the header's root"
    );
    root
}

async fn more_readings(chain: &Engine, f: &Fixture, seqs: std::ops::Range<u64>) {
    submit(chain, f, seqs).await;
    drain(chain);
    let device = chain.device(&f.device.address()).unwrap();
    assert_eq!(device.last_seq, Some(device.reading_count - 1));
}

#[test]
fn a_restart_starts_from_the_stored_root_and_an_older_store_is_rebuilt_once() {
    run(|context| async move {
        let f = fixture();
        let chain = open_with_device(&context, &f).await;
        more_readings(&chain, &f, 0..10).await;
        assert!(chain.store().has_trie_nodes().unwrap());
        // The fixture keeps no more than the top levels in memory after a commit.
        let resident = chain.with_state(StateAt::Committed, |s| s.resident_nodes());
        assert!(resident < 300, "{resident} nodes in memory");
        let root = head_root_with_proof(&chain);
        chain.shutdown().await;
        drop(chain);

        let chain = open_chain(&context, &f);
        assert_eq!(
            chain.with_state(StateAt::Committed, |s| s.resident_nodes()),
            0,
            "a restart loads no trie node until a block or a proof needs one"
        );
        assert!(
            chain.with_state(StateAt::Committed, |s| s.unsaved_nodes().is_empty()),
            "nor rehashes any"
        );
        assert_eq!(head_root_with_proof(&chain), root);
        // Blocks on the restarted state load what they change, and their roots are the
        // ones the engine checks against the records on the next restart.
        more_readings(&chain, &f, 10..20).await;
        let root = head_root_with_proof(&chain);
        // A store from before the trie nodes: rebuilt from the records, then saved whole.
        chain.store().forget_trie_nodes().unwrap();
        chain.shutdown().await;
        drop(chain);

        let chain = open_chain(&context, &f);
        assert!(!chain.store().has_trie_nodes().unwrap());
        let rebuilt = chain.with_state(StateAt::Committed, |s| s.unsaved_nodes().len());
        assert!(
            rebuilt > 3,
            "the whole trie is rebuilt, to be saved: {rebuilt} nodes"
        );
        assert_eq!(
            chain
                .store()
                .header(chain.head().height)
                .unwrap()
                .unwrap()
                .state_root,
            root
        );
        more_readings(&chain, &f, 20..30).await;
        assert!(chain.store().has_trie_nodes().unwrap());
        let root = head_root_with_proof(&chain);
        chain.shutdown().await;
        drop(chain);
        let chain = open_chain(&context, &f);
        assert_eq!(head_root_with_proof(&chain), root);
        more_readings(&chain, &f, 30..35).await;
    })
}
