//! The engine across restarts: restarts (the chain resumes where it stopped, items
//! accepted but not yet in a block come back from the log, another chain's data is refused),
//! backpressure, and proof bundles that fail by part when tampered with.

use alloy_primitives::{B256, Bytes};
use commonware_runtime::tokio::Context;
use iotchain_api::{BlockEngine, ChainQuery, EngineError, ItemPool, PoolError, ReadingStatus};
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_engine::{
    Engine, EngineConfig,
    testing::{config, open, run},
};

pub(crate) struct Fixture {
    pub(crate) config: EngineConfig,
    /// The genesis hash: what the chain's readings sign as COSE `external_aad`.
    pub(crate) hash: B256,
    pub(crate) owner: OwnerKey,
    pub(crate) device: DeviceSigner,
    _dir: tempfile::TempDir,
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let validator = ValidatorKey::from_secret(&[2; 32]);
    let genesis = Genesis::single_validator(
        77,
        1,
        B256::from(validator.public_key()),
        vec![owner.address()],
    );
    let hash = iotchain_engine::genesis_header(&genesis).hash();
    let config = config(dir.path().to_path_buf(), genesis, validator);
    Fixture {
        config,
        hash,
        owner,
        device: DeviceSigner::from_secret(KeyAlg::Ed25519, &[3; 32]).unwrap(),
        _dir: dir,
    }
}

async fn register(chain: &Engine, f: &Fixture) {
    let op = DeviceOp::Register {
        public_key: f.device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    let tx = SignedTx::sign(&f.owner, 77, 0, op).unwrap();
    chain
        .submit_owner_tx(Bytes::from(tx.encode_rlp()))
        .await
        .unwrap();
}

pub(crate) async fn submit(chain: &Engine, f: &Fixture, seqs: std::ops::Range<u64>) -> Vec<B256> {
    let messages = seqs
        .map(|s| Bytes::from(f.device.sign_reading(&f.hash[..], s, s, None, &[0x01])))
        .collect();
    chain
        .submit_readings(messages)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Builds blocks until the queue is empty, as the producer would.
pub(crate) fn drain(chain: &Engine) {
    while chain.produce_next_block().unwrap().is_some() {}
}

/// Opens the fixture's chain on `context`'s runtime.
pub(crate) fn open_chain(context: &Context, f: &Fixture) -> Engine {
    open(context, f.config.clone()).unwrap()
}

/// The fixture's chain, opened with its device registered and final.
pub(crate) async fn open_with_device(context: &Context, f: &Fixture) -> Engine {
    let chain = open_chain(context, f);
    register(&chain, f).await;
    drain(&chain);
    chain
}

#[test]
fn pending_items_survive_a_restart_and_the_chain_resumes() {
    run(|context| async move {
        let f = fixture();
        let chain = open_with_device(&context, &f).await;
        let final_ids = submit(&chain, &f, 0..10).await;
        drain(&chain);
        let head = chain.head();
        let pending_ids = submit(&chain, &f, 10..25).await;
        assert_eq!(chain.pending_counts(), (15, 0));
        chain.shutdown().await;
        drop(chain);
        let chain = open_chain(&context, &f);
        assert_eq!(chain.head(), head, "the chain restarts at its last block");
        assert_eq!(
            chain.pending_counts(),
            (15, 0),
            "accepted readings come back from the log"
        );
        for id in &final_ids {
            assert!(matches!(
                chain.reading_status(id).unwrap(),
                Some(ReadingStatus::Final { .. })
            ));
        }
        for id in &pending_ids {
            assert!(matches!(
                chain.reading_status(id).unwrap(),
                Some(ReadingStatus::Pending { .. })
            ));
        }
        // Replays are still refused after the restart, new readings continue the sequence.
        let again = chain
            .submit_readings(vec![Bytes::from(f.device.sign_reading(
                &f.hash[..],
                24,
                1,
                None,
                &[0x01],
            ))])
            .await;
        assert!(
            matches!(
                again[0],
                Err(PoolError::Item(iotchain_execution::ItemError::State(
                    iotchain_state::StateError::Replay {
                        seq: 24,
                        last: 24,
                        ..
                    }
                )))
            ),
            "{again:?}"
        );
        submit(&chain, &f, 25..26).await;
        drain(&chain);
        for id in pending_ids.iter().chain(&final_ids) {
            let Some(ReadingStatus::Final { location, .. }) = chain.reading_status(id).unwrap()
            else {
                panic!("{id} not final");
            };
            let proof = chain.proof(id).unwrap();
            proof.verify(&f.config.genesis, &f.hash).unwrap();
            assert_eq!(proof.index, location.index as u64);
        }
        let device = chain.device(&f.device.address()).unwrap();
        assert_eq!((device.last_seq, device.reading_count), (Some(25), 26));
    })
}

#[test]
fn another_genesis_is_refused() {
    run(|context| async move {
        let f = fixture();
        open_chain(&context, &f).shutdown().await;
        let mut other = f.config.clone();
        other.genesis.chain_id = 78;
        let err = open(&context, other).unwrap_err();
        assert!(matches!(err, EngineError::OtherChain { .. }), "{err}");
    })
}

/// A reading names its chain (COSE `external_aad` = the genesis hash): the same device key
/// registered on two chains cannot have its readings replayed from one on the other, and a
/// reading signed without the hash is refused; a chain created before readings named their
/// chain (`reading_aad: none`) takes exactly those.
#[test]
fn a_reading_signed_for_another_chain_is_refused() {
    run(|context| async move {
        let f = fixture();
        let chain = open_with_device(&context, &f).await;
        let other_chain = B256::repeat_byte(0x77);
        let sign = |aad: &[u8], seq| Bytes::from(f.device.sign_reading(aad, seq, seq, None, &[1]));
        let replayed = chain
            .submit_readings(vec![sign(&other_chain[..], 0), sign(&[], 1)])
            .await;
        for r in &replayed {
            assert_eq!(r.as_ref().map_err(PoolError::code), Err("bad_signature"));
        }
        // Its own chain's reading of the same seq is taken: nothing was consumed.
        let ok = chain.submit_readings(vec![sign(&f.hash[..], 0)]).await;
        assert!(ok[0].is_ok(), "{:?}", ok[0]);
        drain(&chain);
        let proof = chain.proof(ok[0].as_ref().unwrap()).unwrap();
        proof.verify(&f.config.genesis, &f.hash).unwrap();
        let err = proof.verify(&f.config.genesis, &other_chain).unwrap_err();
        assert!(
            matches!(err, iotchain_block::ProofError::DeviceSignature(_)),
            "{err}"
        );
        chain.shutdown().await;

        // A legacy genesis (no `reading_aad`): readings sign an empty external_aad.
        let dir = tempfile::tempdir().unwrap();
        let mut legacy = f.config.clone();
        legacy.data_dir = dir.path().to_path_buf();
        legacy.genesis.params.reading_aad = iotchain_block::ReadingAad::None;
        let chain = open(&context, legacy.clone()).unwrap();
        register(&chain, &f).await;
        drain(&chain);
        let hash = chain.genesis_hash();
        let r = chain
            .submit_readings(vec![sign(&hash[..], 0), sign(&[], 0)])
            .await;
        assert_eq!(r[0].as_ref().map_err(PoolError::code), Err("bad_signature"));
        assert!(r[1].is_ok(), "{:?}", r[1]);
        drain(&chain);
        let proof = chain.proof(r[1].as_ref().unwrap()).unwrap();
        proof.verify(&legacy.genesis, &hash).unwrap();
        chain.shutdown().await;
    })
}

#[test]
fn a_flood_gets_backpressure_not_unbounded_memory() {
    run(|context| async move {
        let mut f = fixture();
        f.config.max_pending_items = 5;
        let chain = open_with_device(&context, &f).await;
        submit(&chain, &f, 0..3).await;
        let messages = (3..6)
            .map(|s| Bytes::from(f.device.sign_reading(&f.hash[..], s, s, None, &[0x01])))
            .collect();
        let refused = chain.submit_readings(messages).await;
        for r in &refused {
            assert!(
                matches!(
                    r,
                    Err(PoolError::Overloaded {
                        pending: 3,
                        limit: 5
                    })
                ),
                "{r:?}"
            );
        }
        assert_eq!(
            chain.pending_counts(),
            (3, 0),
            "nothing of a refused batch is kept"
        );
        drain(&chain);
        // Once blocks drain the queue, the same readings are taken.
        submit(&chain, &f, 3..6).await;
        chain.shutdown().await;
    })
}

#[test]
fn proofs_name_the_tampered_part() {
    run(|context| async move {
        use iotchain_block::{FinalityCertificate, ProofError};
        let f = fixture();
        let chain = open_with_device(&context, &f).await;
        let ids = submit(&chain, &f, 0..5).await;
        drain(&chain);
        let proof = chain.proof(&ids[2]).unwrap();
        chain.shutdown().await;
        let genesis = &f.config.genesis;
        proof.verify(genesis, &f.hash).unwrap();
        assert!(!proof.audit_path.is_empty());

        let check = |change: &dyn Fn(&mut iotchain_block::ProofBundle),
                     part: fn(&ProofError) -> bool| {
            let mut p = proof.clone();
            change(&mut p);
            let err = p.verify(genesis, &f.hash).unwrap_err();
            assert!(part(&err), "wrong part named: {err}");
        };
        // The message: its id no longer matches, or (id recomputed) the device did not sign it.
        check(
            &|p| {
                let mut m = p.message.to_vec();
                let n = m.len();
                m[n - 70] ^= 1;
                p.message = m.into();
            },
            |e| matches!(e, ProofError::ReadingId(_) | ProofError::Message(_)),
        );
        check(
            &|p| {
                let mut forged = f.device.sign_reading(&f.hash[..], 2, 999, None, &[0x01]);
                let n = forged.len();
                forged[n - 1] ^= 1; // a reading the device never signed
                p.reading_id = B256::from(iotchain_reading::reading_id(&forged));
                p.message = forged.into();
            },
            |e| matches!(e, ProofError::DeviceSignature(_)),
        );
        check(&|p| p.audit_path[0].0[0] ^= 1, |e| {
            matches!(e, ProofError::AuditPath(_))
        });
        check(&|p| p.index ^= 1, |e| matches!(e, ProofError::AuditPath(_)));
        check(&|p| p.header.state_root.0[0] ^= 1, |e| {
            matches!(e, ProofError::Header(_))
        });
        check(&|p| p.header.chain_id += 1, |e| {
            matches!(e, ProofError::Header(_))
        });
        check(
            &|p| {
                let rogue = ValidatorKey::from_secret(&[9; 32]);
                p.certificate = FinalityCertificate::new(
                    p.header.height,
                    p.header.hash(),
                    0,
                    p.certificate.view,
                    p.certificate.parent_view,
                )
                .signed_by(&rogue);
            },
            |e| matches!(e, ProofError::Certificate(_)),
        );
        check(&|p| p.certificate.signatures.clear(), |e| {
            matches!(e, ProofError::Certificate(_))
        });
    })
}

/// A validator crashed with two recorded proposals, the second built on the first before the
/// first was final (what simplex does when a finalize vote was lost); after the restart, the
/// finalization of the second (replayed from the consensus journal) commits both.
#[test]
fn a_chain_of_recorded_proposals_is_restored_and_committed_after_a_restart() {
    run(|context| async move {
        let f = fixture();
        let key = ValidatorKey::from_secret(&[2; 32]);
        let chain = open_with_device(&context, &f).await;
        let start = chain.head();
        let first_ids = submit(&chain, &f, 0..5).await;
        let first = chain
            .propose(start.hash, chain.now_ms(), true)
            .unwrap()
            .unwrap();
        let second_ids = submit(&chain, &f, 5..8).await;
        let second = chain
            .propose(first.hash(), chain.now_ms(), true)
            .unwrap()
            .unwrap();
        assert_eq!(second.parent_hash, first.hash());
        assert_eq!((first.reading_count, second.reading_count), (5, 3));
        chain.shutdown().await;
        drop(chain);

        let chain = open_chain(&context, &f);
        assert_eq!(chain.head(), start);
        assert_eq!(chain.pending_header(&second.hash()), Some(second.clone()));
        assert_eq!(chain.pending_header(&first.hash()), Some(first.clone()));
        let cert = iotchain_block::FinalityCertificate::new(second.height, second.hash(), 0, 9, 8)
            .signed_by(&key);
        chain.finalize(second.hash(), cert, chain.now_ms()).unwrap();
        assert_eq!(chain.head().hash, second.hash());
        assert_eq!(chain.pending_counts(), (0, 0));
        for id in first_ids.iter().chain(&second_ids) {
            chain
                .proof(id)
                .unwrap()
                .verify(&f.config.genesis, &f.hash)
                .unwrap();
        }
    })
}

/// A validator built a block on its notarized, not yet final, parent and recorded it; the
/// parent was then finalized and committed, and the validator crashed before the child's
/// finalization (already in the consensus journal) was committed. After the restart the
/// child is restored from its record and commits: committing the parent must not have dropped
/// the record of the block built on it.
#[test]
fn a_recorded_child_outlives_the_commit_of_its_parent() {
    run(|context| async move {
        let f = fixture();
        let key = ValidatorKey::from_secret(&[2; 32]);
        let chain = open_with_device(&context, &f).await;
        let start = chain.head();
        submit(&chain, &f, 0..4).await;
        let parent = chain
            .propose(start.hash, chain.now_ms(), true)
            .unwrap()
            .unwrap();
        let child_ids = submit(&chain, &f, 4..6).await;
        let child = chain
            .propose(parent.hash(), chain.now_ms(), true)
            .unwrap()
            .unwrap();
        let cert = |h: &iotchain_block::Header, view| {
            iotchain_block::FinalityCertificate::new(h.height, h.hash(), 0, view, view - 1)
                .signed_by(&key)
        };
        chain
            .finalize(parent.hash(), cert(&parent, 5), chain.now_ms())
            .unwrap();
        assert_eq!(chain.head().hash, parent.hash());
        chain.shutdown().await;
        drop(chain);

        let chain = open_chain(&context, &f);
        assert_eq!(chain.head().hash, parent.hash());
        assert_eq!(
            chain.pending_header(&child.hash()),
            Some(child.clone()),
            "the child's record survived the parent's commit"
        );
        chain
            .finalize(child.hash(), cert(&child, 6), chain.now_ms())
            .unwrap();
        assert_eq!(chain.head().hash, child.hash());
        assert_eq!(chain.pending_counts(), (0, 0));
        for id in &child_ids {
            chain
                .proof(id)
                .unwrap()
                .verify(&f.config.genesis, &f.hash)
                .unwrap();
        }
    })
}
