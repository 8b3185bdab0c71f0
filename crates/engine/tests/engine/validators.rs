//! Two validators' chains exchanging blocks: a block built by one is re-verified by the other
//! before it could vote (forged, replayed and unregistered-device readings, a wrong state root,
//! a foreign proposer are refused, each with its reason), and a reading both hold is included
//! once: the second validator drops it from its queue when the first one's block commits.
//! A block built on a notarized parent that is not final yet commits its parent with it, by
//! consensus and by block sync, and the parent's proofs verify through the child's
//! certificate.

use alloy_primitives::{B256, Bytes};
use commonware_runtime::tokio::Context;
use iotchain_api::{BlockEngine, ChainQuery, Committed, EngineError, ItemPool};
use iotchain_block::{Block, BlockItem, DeviceOp, FinalityCertificate, ProofError, SignedTx};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};
use iotchain_engine::testing::run;
use iotchain_execution::{ItemError, VerifyError};
use iotchain_state::{Gap, StateError};

use crate::pair::{Pair, pair};

struct Net {
    pair: Pair,
    owner: OwnerKey,
    device: DeviceSigner,
}

impl std::ops::Deref for Net {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

fn net(context: &Context) -> Net {
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    Net {
        pair: pair(context, 9, vec![owner.address()], &[]),
        owner,
        device: DeviceSigner::from_secret(KeyAlg::Ed25519, &[4; 32]).unwrap(),
    }
}

async fn setup(context: &Context) -> Net {
    let net = net(context);
    let op = DeviceOp::Register {
        public_key: net.device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    let tx = SignedTx::sign(&net.owner, 9, 0, op).unwrap();
    net.a
        .submit_owner_tx(Bytes::from(tx.encode_rlp()))
        .await
        .unwrap();
    net.round(1);
    net
}

fn reading(net: &Net, seq: u64) -> Bytes {
    Bytes::from(
        net.device
            .sign_reading(&net.a.genesis_hash()[..], seq, 1000 + seq, None, &[0x01]),
    )
}

/// `a`'s proposal with its items replaced (header kept: what a Byzantine proposer sends).
fn tampered(net: &Net, items: Vec<BlockItem>) -> Block {
    let header = net.a.propose_now(net.a.head().hash, true).unwrap().unwrap();
    let mut block = net.a.pending_block(&header.hash()).unwrap();
    block.items = items;
    block
}

fn refusal(net: &Net, block: Block) -> EngineError {
    net.b.verify_now(block).unwrap_err()
}

#[test]
fn a_peer_block_is_reverified_and_bad_ones_are_refused() {
    run(|context| async move {
        let net = setup(&context).await;
        for r in net
            .a
            .submit_readings(vec![reading(&net, 0), reading(&net, 1)])
            .await
        {
            r.unwrap();
        }
        let good = net.round(2);
        assert_eq!(good.items.len(), 2);
        assert_eq!(net.a.head(), net.b.head(), "both committed the same block");

        // A forged reading: a valid message whose signature was altered.
        let mut forged = reading(&net, 2).to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let why = refusal(
            &net,
            tampered(&net, vec![BlockItem::Reading(forged.into())]),
        );
        assert!(
            matches!(why, EngineError::Rejected(VerifyError::BadSignature { .. })),
            "{why}"
        );

        // A replayed reading: already final at height 2.
        let why = refusal(
            &net,
            tampered(&net, vec![BlockItem::Reading(reading(&net, 1))]),
        );
        assert!(
            matches!(
                why,
                EngineError::Rejected(VerifyError::Item {
                    index: 0,
                    source: ItemError::State(StateError::Replay {
                        seq: 1,
                        last: 1,
                        ..
                    })
                })
            ),
            "{why}"
        );

        // A reading of a device nobody registered.
        let stranger = DeviceSigner::from_secret(KeyAlg::Ed25519, &[5; 32]).unwrap();
        let unknown =
            Bytes::from(stranger.sign_reading(&net.a.genesis_hash()[..], 0, 1, None, &[0x01]));
        let why = refusal(&net, tampered(&net, vec![BlockItem::Reading(unknown)]));
        assert!(
            matches!(
                why,
                EngineError::Rejected(VerifyError::Item {
                    source: ItemError::State(StateError::UnknownDevice(_)),
                    ..
                })
            ),
            "{why}"
        );

        // Valid items under a header that lies about the state.
        let mut lying = tampered(&net, vec![]);
        lying.header.state_root = B256::repeat_byte(7);
        let why = refusal(&net, lying);
        assert!(
            matches!(
                why,
                EngineError::Rejected(VerifyError::Root {
                    what: "state_root",
                    ..
                })
            ),
            "{why}"
        );

        // A block claiming a proposer outside the validator set.
        let mut foreign = tampered(&net, vec![]);
        foreign.header.proposer = B256::repeat_byte(9);
        assert!(matches!(
            refusal(&net, foreign),
            EngineError::Rejected(VerifyError::Proposer(_))
        ));

        // A block on another parent.
        let mut orphan = tampered(&net, vec![]);
        orphan.header.parent_hash = B256::repeat_byte(1);
        assert!(matches!(
            refusal(&net, orphan),
            EngineError::UnknownParent { .. }
        ));

        // None of that moved anything: the chain goes on.
        let before = net.b.head().height;
        net.round(3);
        assert_eq!(net.b.head().height, before + 1);
    })
}

#[test]
fn a_reading_held_by_two_validators_is_included_once() {
    run(|context| async move {
        let net = setup(&context).await;
        // The same readings reach both validators (as forwarding does).
        let messages = vec![reading(&net, 0), reading(&net, 1), reading(&net, 2)];
        for c in [&net.a, &net.b] {
            for r in c.submit_readings(messages.clone()).await {
                r.unwrap();
            }
        }
        // `b` holds one more that `a` does not.
        net.b.submit_readings(vec![reading(&net, 3)]).await[0]
            .clone()
            .unwrap();
        assert_eq!(net.b.pending_counts(), (4, 0));
        net.round(2); // `a` proposes seqs 0..=2
        // `b` dropped what `a`'s block included and kept the rest.
        assert_eq!(net.b.pending_counts(), (1, 0));
        // When `b` proposes, only the remaining reading goes in, and `a` accepts the block.
        let header = net
            .b
            .propose_now(net.b.head().hash, false)
            .unwrap()
            .unwrap();
        let block = net.b.pending_block(&header.hash()).unwrap();
        assert_eq!(block.items, vec![BlockItem::Reading(reading(&net, 3))]);
        net.a.verify_now(block.clone()).unwrap();
        let cert = net.certify(&block, 3);
        net.b.finalize_now(header.hash(), cert.clone()).unwrap();
        net.a.finalize_now(header.hash(), cert).unwrap();
        assert_eq!(net.a.head(), net.b.head());
        assert_eq!(net.b.pending_counts(), (0, 0));
    })
}

#[test]
fn readings_held_elsewhere_fill_the_gap_a_later_seq_opened() {
    run(|context| async move {
        let net = setup(&context).await;
        net.a.submit_readings(vec![reading(&net, 0)]).await[0]
            .clone()
            .unwrap();
        net.round(2);
        // `a` accepted seqs 1 and 2; their forward to `b` was lost, `b` got seq 3 only.
        for r in net
            .a
            .submit_readings(vec![reading(&net, 1), reading(&net, 2)])
            .await
        {
            r.unwrap();
        }
        net.b.submit_readings(vec![reading(&net, 3)]).await[0]
            .clone()
            .unwrap();
        // `b` proposes seq 3 at once: the chain opens a gap for 1..=2 instead of waiting.
        let block = net.round_by(&net.b, &net.a, 3);
        assert_eq!(block.items, vec![BlockItem::Reading(reading(&net, 3))]);
        let address = net.device.public_key().address();
        let record = net.a.device(&address).unwrap();
        assert_eq!(record.last_seq, Some(3));
        assert_eq!(record.open_gaps, vec![Gap { from: 1, to: 2 }]);
        assert_eq!(record.missing_count, 2);
        // `a`'s next block fills the gap with the readings it acknowledged: nothing is lost
        // and the head stays at seq 3.
        let block = net.round(4);
        assert_eq!(block.header.reading_count, 2);
        for engine in [&net.a, &net.b] {
            let record = engine.device(&address).unwrap();
            assert_eq!(record.last_seq, Some(3));
            assert!(record.open_gaps.is_empty(), "{:?}", record.open_gaps);
            assert_eq!(record.missing_count, 0);
            assert_eq!(record.reading_count, 4);
            assert_eq!(engine.pending_counts(), (0, 0));
        }
        // A seq already in the chain is a replay wherever it arrives.
        let again = net.b.submit_readings(vec![reading(&net, 1)]).await;
        assert!(again[0].is_err(), "{:?}", again[0]);
    })
}

#[test]
fn sync_imports_only_certified_blocks() {
    run(|context| async move {
        let net = setup(&context).await;
        for r in net.a.submit_readings(vec![reading(&net, 0)]).await {
            r.unwrap();
        }
        let header = net
            .a
            .propose_now(net.a.head().hash, false)
            .unwrap()
            .unwrap();
        let block = net.a.pending_block(&header.hash()).unwrap();
        let full = net.certify(&block, 2);
        net.a.finalize_now(header.hash(), full.clone()).unwrap();
        // One of two signatures is below the quorum of two.
        let mut half = full.clone();
        half.signatures.truncate(1);
        let why = net.b.import_final_now(block.clone(), half).unwrap_err();
        assert!(
            matches!(&why, EngineError::Certificate(m) if m.contains("needed")),
            "{why}"
        );
        // A certificate for another block.
        let mut other = full.clone();
        other.header_hash = B256::repeat_byte(3);
        assert!(net.b.import_final_now(block.clone(), other).is_err());
        net.b.import_final_now(block, full).unwrap();
        assert_eq!(net.a.head(), net.b.head());
    })
}

/// `a` builds block A on the head and block B on A (A notarized, not finalized: what simplex
/// does after a finalize vote was lost); returns both with B's certificate.
async fn a_and_child(net: &Net) -> (Block, Block, FinalityCertificate) {
    for r in net
        .a
        .submit_readings(vec![reading(net, 0), reading(net, 1)])
        .await
    {
        r.unwrap();
    }
    let a = net
        .a
        .propose_now(net.a.head().hash, false)
        .unwrap()
        .unwrap();
    net.a.submit_readings(vec![reading(net, 2)]).await[0]
        .clone()
        .unwrap();
    let b = net.a.propose_now(a.hash(), false).unwrap().unwrap();
    assert_eq!(b.parent_hash, a.hash());
    let (a, b) = (
        net.a.pending_block(&a.hash()).unwrap(),
        net.a.pending_block(&b.hash()).unwrap(),
    );
    // B holds only what A did not: the queue's items are included once along the branch.
    assert_eq!(a.items.len(), 2);
    assert_eq!(b.items, vec![BlockItem::Reading(reading(net, 2))]);
    let cert = net.certify(&b, 3);
    (a, b, cert)
}

#[test]
fn finalizing_a_child_commits_its_notarized_parent() {
    run(|context| async move {
        let net = setup(&context).await;
        let start = net.a.head().height;
        let (a, b, cert) = a_and_child(&net).await;
        // `b` verifies the child against the parent's state before the parent is final.
        net.b.verify_now(a.clone()).unwrap();
        net.b.verify_now(b.clone()).unwrap();
        for c in [&net.a, &net.b] {
            let Committed {
                header, readings, ..
            } = c.finalize_now(b.header.hash(), cert.clone()).unwrap();
            assert_eq!(header, b.header);
            assert_eq!(readings, 3, "both blocks' readings committed");
            assert_eq!(c.head().height, start + 2);
            assert_eq!(c.pending_counts(), (0, 0));
            assert_eq!(c.store().header(start + 1).unwrap().unwrap(), a.header);
        }
        // A reading of the parent proves finality through the child's header and certificate.
        let id = B256::from(iotchain_reading::reading_id(&reading(&net, 0)));
        let proof = net.b.proof(&id).unwrap();
        assert_eq!(proof.header, a.header);
        assert_eq!(proof.descendants, vec![b.header.clone()]);
        proof
            .verify(net.b.genesis(), &net.b.genesis_hash())
            .unwrap();
        // Without the linking header, or with a header that does not link, it fails.
        let mut cut = proof.clone();
        cut.descendants.clear();
        let why = cut
            .verify(net.b.genesis(), &net.b.genesis_hash())
            .unwrap_err();
        assert!(matches!(why, ProofError::Header(_)), "{why}");
        let mut unlinked = proof.clone();
        unlinked.descendants[0].parent_hash = B256::repeat_byte(5);
        let why = unlinked
            .verify(net.b.genesis(), &net.b.genesis_hash())
            .unwrap_err();
        assert!(
            matches!(&why, ProofError::Header(m) if m.contains("does not extend")),
            "{why}"
        );
        // The chain goes on from the child.
        net.round(4);
        assert_eq!(net.a.head(), net.b.head());
    })
}

#[test]
fn sync_holds_a_parent_until_its_certified_child_arrives() {
    run(|context| async move {
        let net = setup(&context).await;
        let start = net.b.head().height;
        let (a, b, cert) = a_and_child(&net).await;
        net.a.finalize_now(b.header.hash(), cert).unwrap();
        // What `a` serves for the parent is the child's certificate.
        let parent_cert = net.a.store().certificate(start + 1).unwrap().unwrap();
        assert_eq!(parent_cert.header_hash, b.header.hash());
        let child_cert = net.a.store().certificate(start + 2).unwrap().unwrap();
        assert_eq!(parent_cert, child_cert);
        // A forged certificate for the parent is still refused.
        let mut half = parent_cert.clone();
        half.signatures.truncate(1);
        assert!(net.b.import_final_now(a.clone(), half).is_err());
        assert!(
            net.b
                .import_final_now(a.clone(), parent_cert)
                .unwrap()
                .is_none(),
            "held until the child"
        );
        assert_eq!(net.b.head().height, start);
        let Committed {
            header, readings, ..
        } = net
            .b
            .import_final_now(b.clone(), child_cert)
            .unwrap()
            .unwrap();
        assert_eq!(header, b.header);
        assert_eq!(readings, 3);
        assert_eq!(net.a.head(), net.b.head());
    })
}
