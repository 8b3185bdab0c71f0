//! Simplex drives a one-validator chain: readings become final through it, the engine and the
//! chain restart from their journals and keep finalizing, and proofs verify.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_consensus::{ConsensusConfig, start};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_node::{Chain, NodeConfig};

fn config(dir: &std::path::Path) -> (NodeConfig, OwnerKey) {
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let validator = ValidatorKey::from_secret(&[2; 32]);
    let genesis = Genesis::single_validator(
        5,
        1,
        B256::from(validator.public_key()),
        vec![owner.address()],
    );
    let mut config = NodeConfig::new(dir.to_path_buf(), genesis, validator);
    config.produce_blocks = false;
    (config, owner)
}

fn consensus_config(dir: &std::path::Path) -> ConsensusConfig {
    let mut config = ConsensusConfig::new(dir.join("consensus"));
    config.block_interval = Duration::from_millis(20);
    config.idle_block_interval = Duration::from_millis(200);
    config
}

/// Waits (on head changes, not on time) until `height` is final.
async fn wait_height(chain: &Arc<Chain>, height: u64) {
    let mut head = chain.subscribe_head();
    tokio::time::timeout(
        Duration::from_secs(30),
        head.wait_for(|h| h.height >= height),
    )
    .await
    .expect("simplex finalizes blocks")
    .unwrap();
}

/// Submits readings with the given seqs and waits until nothing is pending any more.
async fn submit_until_final(
    chain: &Arc<Chain>,
    device: &DeviceSigner,
    seqs: std::ops::Range<u64>,
) -> Vec<B256> {
    let messages = seqs
        .map(|s| Bytes::from(device.sign_reading(s, s, None, &[0x01])))
        .collect();
    let ids = chain
        .submit_readings(messages)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    while chain.pending_counts() != (0, 0) {
        let h = chain.head().height;
        wait_height(chain, h + 1).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simplex_finalizes_readings_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, owner) = config(dir.path());
    let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[3; 32]).unwrap();

    let chain = Chain::open(&config).unwrap();
    let engine = start(
        chain.clone(),
        config.validator_key.clone(),
        consensus_config(dir.path()),
    )
    .unwrap();
    let op = DeviceOp::Register {
        public_key: device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    chain
        .submit_tx(Bytes::from(
            SignedTx::sign(&owner, 5, 0, op).unwrap().encode_rlp(),
        ))
        .await
        .unwrap();
    wait_height(&chain, 1).await;
    while chain.device(&device.address()).is_none() {
        let h = chain.head().height;
        wait_height(&chain, h + 1).await;
    }
    let ids = submit_until_final(&chain, &device, 0..20).await;
    let proof = chain.proof(&ids[7]).unwrap();
    proof.verify(&config.genesis).unwrap();

    // Stop both, reopen from disk: the engine replays its journal, the chain its store.
    tokio::task::spawn_blocking(move || engine.stop())
        .await
        .unwrap();
    // Read only now: the engine may finalize (empty) blocks until it stops.
    let first_run_height = chain.head().height;
    chain.shutdown();
    drop(chain);
    let chain = Chain::open(&config).unwrap();
    assert_eq!(chain.head().height, first_run_height);
    let engine = start(
        chain.clone(),
        config.validator_key.clone(),
        consensus_config(dir.path()),
    )
    .unwrap();
    let more = submit_until_final(&chain, &device, 20..30).await;
    assert!(
        chain.head().height > first_run_height,
        "finalizing resumed after the restart"
    );
    for id in ids.iter().chain(&more) {
        chain.proof(id).unwrap().verify(&config.genesis).unwrap();
    }
    assert_eq!(chain.device(&device.address()).unwrap().last_seq, Some(29));
    tokio::task::spawn_blocking(move || engine.stop())
        .await
        .unwrap();
    chain.shutdown();
}
