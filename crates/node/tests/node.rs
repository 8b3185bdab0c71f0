//! Integration tests of the node library: restarts (the chain resumes where it stopped, items
//! accepted but not yet in a block come back from the log, another chain's data is refused),
//! backpressure, and proof bundles that fail by part when tampered with.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_node::{Chain, NodeConfig, ReadingStatus};

struct Fixture {
    config: NodeConfig,
    owner: OwnerKey,
    device: DeviceSigner,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let validator = ValidatorKey::from_secret(&[2; 32]);
    let genesis = Genesis::single_validator(
        77,
        1,
        B256::from(validator.public_key()),
        vec![owner.address()],
    );
    let mut config = NodeConfig::new(dir.path().to_path_buf(), genesis, validator);
    config.block_interval = Duration::from_millis(20);
    Fixture {
        config,
        owner,
        device: DeviceSigner::from_secret(KeyAlg::Ed25519, &[3; 32]).unwrap(),
        _dir: dir,
    }
}

async fn register(chain: &Arc<Chain>, f: &Fixture) {
    let op = DeviceOp::Register {
        public_key: f.device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    let tx = SignedTx::sign(&f.owner, 77, 0, op).unwrap();
    chain.submit_tx(Bytes::from(tx.encode_rlp())).await.unwrap();
}

async fn submit(chain: &Arc<Chain>, f: &Fixture, seqs: std::ops::Range<u64>) -> Vec<B256> {
    let messages = seqs
        .map(|s| Bytes::from(f.device.sign_reading(s, s, None, &[0x01])))
        .collect();
    chain
        .submit_readings(messages)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Builds blocks until the queue is empty, as the producer would.
fn drain(chain: &Chain) {
    while chain.produce_next_block().unwrap().is_some() {}
}

/// The fixture's chain, opened with its device registered and final.
async fn open_with_device(f: &Fixture) -> Arc<Chain> {
    let chain = Chain::open(&f.config).unwrap();
    register(&chain, f).await;
    drain(&chain);
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_items_survive_a_restart_and_the_chain_resumes() {
    let f = fixture();
    let chain = open_with_device(&f).await;
    let final_ids = submit(&chain, &f, 0..10).await;
    drain(&chain);
    let head = chain.head();
    let pending_ids = submit(&chain, &f, 10..25).await;
    assert_eq!(chain.pending_counts(), (15, 0));
    chain.shutdown();
    drop(chain);
    let chain = Chain::open(&f.config).unwrap();
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
            24,
            1,
            None,
            &[0x01],
        ))])
        .await;
    assert_eq!(again[0].as_ref().unwrap_err().code, "replayed_seq");
    submit(&chain, &f, 25..26).await;
    drain(&chain);
    for id in pending_ids.iter().chain(&final_ids) {
        let Some(ReadingStatus::Final { location, .. }) = chain.reading_status(id).unwrap() else {
            panic!("{id} not final");
        };
        let proof = chain.proof(id).unwrap();
        proof.verify(&f.config.genesis).unwrap();
        assert_eq!(proof.index, location.index as u64);
    }
    let device = chain.device(&f.device.address()).unwrap();
    assert_eq!((device.last_seq, device.reading_count), (Some(25), 26));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_genesis_is_refused() {
    let f = fixture();
    Chain::open(&f.config).unwrap().shutdown();
    let mut other = f.config.clone();
    other.genesis.chain_id = 78;
    let err = Chain::open(&other).unwrap_err();
    assert!(err.to_string().contains("another chain"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_backpressure_not_unbounded_memory() {
    let mut f = fixture();
    f.config.max_pending_items = 5;
    let chain = open_with_device(&f).await;
    submit(&chain, &f, 0..3).await;
    let messages = (3..6)
        .map(|s| Bytes::from(f.device.sign_reading(s, s, None, &[0x01])))
        .collect();
    let refused = chain.submit_readings(messages).await;
    for r in &refused {
        let e = r.as_ref().unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "overloaded"));
    }
    assert_eq!(
        chain.pending_counts(),
        (3, 0),
        "nothing of a refused batch is kept"
    );
    drain(&chain);
    // Once blocks drain the queue, the same readings are taken.
    submit(&chain, &f, 3..6).await;
    chain.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_name_the_tampered_part() {
    use iotchain_block::{FinalityCertificate, ProofError};
    let f = fixture();
    let chain = open_with_device(&f).await;
    let ids = submit(&chain, &f, 0..5).await;
    drain(&chain);
    let proof = chain.proof(&ids[2]).unwrap();
    chain.shutdown();
    let genesis = &f.config.genesis;
    proof.verify(genesis).unwrap();
    assert!(!proof.audit_path.is_empty());

    let check = |change: &dyn Fn(&mut iotchain_block::ProofBundle),
                 part: fn(&ProofError) -> bool| {
        let mut p = proof.clone();
        change(&mut p);
        let err = p.verify(genesis).unwrap_err();
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
            let mut forged = f.device.sign_reading(2, 999, None, &[0x01]);
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
}

/// A validator crashed with two recorded proposals, the second built on the first before the
/// first was final (what simplex does when a finalize vote was lost); after the restart, the
/// finalization of the second (replayed from the consensus journal) commits both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_recorded_proposals_is_restored_and_committed_after_a_restart() {
    let f = fixture();
    let key = ValidatorKey::from_secret(&[2; 32]);
    let chain = open_with_device(&f).await;
    let start = chain.head();
    let first_ids = submit(&chain, &f, 0..5).await;
    let first = chain.propose_durable(start.hash).unwrap();
    let second_ids = submit(&chain, &f, 5..8).await;
    let second = chain.propose_durable(first.hash()).unwrap();
    assert_eq!(second.parent_hash, first.hash());
    assert_eq!((first.reading_count, second.reading_count), (5, 3));
    chain.shutdown();
    drop(chain);

    let chain = Chain::open(&f.config).unwrap();
    assert_eq!(chain.head(), start);
    assert_eq!(chain.proposed_header(&second.hash()), Some(second.clone()));
    assert_eq!(chain.proposed_header(&first.hash()), Some(first.clone()));
    let cert = iotchain_block::FinalityCertificate::new(second.height, second.hash(), 0, 9, 8)
        .signed_by(&key);
    chain.finalize(second.hash(), cert).unwrap();
    assert_eq!(chain.head().hash, second.hash());
    assert_eq!(chain.pending_counts(), (0, 0));
    for id in first_ids.iter().chain(&second_ids) {
        chain.proof(id).unwrap().verify(&f.config.genesis).unwrap();
    }
}

/// A validator built a block on its notarized, not yet final, parent and recorded it; the
/// parent was then finalized and committed, and the validator crashed before the child's
/// finalization (already in the consensus journal) was committed. After the restart the
/// child is restored from its record and commits: committing the parent must not have dropped
/// the record of the block built on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_child_outlives_the_commit_of_its_parent() {
    let f = fixture();
    let key = ValidatorKey::from_secret(&[2; 32]);
    let chain = open_with_device(&f).await;
    let start = chain.head();
    submit(&chain, &f, 0..4).await;
    let parent = chain.propose_durable(start.hash).unwrap();
    let child_ids = submit(&chain, &f, 4..6).await;
    let child = chain.propose_durable(parent.hash()).unwrap();
    let cert = |h: &iotchain_block::Header, view| {
        iotchain_block::FinalityCertificate::new(h.height, h.hash(), 0, view, view - 1)
            .signed_by(&key)
    };
    chain.finalize(parent.hash(), cert(&parent, 5)).unwrap();
    assert_eq!(chain.head().hash, parent.hash());
    chain.shutdown();
    drop(chain);

    let chain = Chain::open(&f.config).unwrap();
    assert_eq!(chain.head().hash, parent.hash());
    assert_eq!(
        chain.proposed_header(&child.hash()),
        Some(child.clone()),
        "the child's record survived the parent's commit"
    );
    chain.finalize(child.hash(), cert(&child, 6)).unwrap();
    assert_eq!(chain.head().hash, child.hash());
    assert_eq!(chain.pending_counts(), (0, 0));
    for id in &child_ids {
        chain.proof(id).unwrap().verify(&f.config.genesis).unwrap();
    }
}

/// A node of a network (it has peers to forward to) stops when asked. Its forwarder used to
/// wait for a channel that lives as long as the chain, so `iotchain node` never exited on
/// Ctrl-C or SIGTERM with peers configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_peers_stops_when_asked() {
    let mut f = fixture();
    f.config.http_addr = "127.0.0.1:0".parse().unwrap();
    f.config.peers = vec!["http://127.0.0.1:9".into()];
    let node = iotchain_node::Node::start(f.config.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), node.stop())
        .await
        .expect("a node with peers did not stop");
}

/// A client that sends half a request and holds its connection does not keep a node from
/// stopping: requests in flight get a few seconds, then they are cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_a_request_open_does_not_keep_the_node_from_stopping() {
    use tokio::io::AsyncWriteExt;
    let mut f = fixture();
    f.config.http_addr = "127.0.0.1:0".parse().unwrap();
    let node = iotchain_node::Node::start(f.config.clone()).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    slow.write_all(
        b"POST /v1/readings HTTP/1.1\r\nhost: x\r\ncontent-type: application/cbor\r\n\
          content-length: 1000\r\n\r\nhalf",
    )
    .await
    .unwrap();
    slow.flush().await.unwrap();
    // Connections are accepted in the order they arrive (the listen queue is FIFO): once a
    // status query on a later connection is answered, the half-sent request is being served.
    let status = reqwest::get(format!("http://{}/v1/status", node.http_addr))
        .await
        .unwrap();
    assert!(status.status().is_success());
    tokio::time::timeout(
        iotchain_node::HTTP_DRAIN + Duration::from_secs(25),
        node.stop(),
    )
    .await
    .expect("a half-sent request kept the node from stopping");
    drop(slow);
}
