//! Simplex drives a one-validator chain: readings become final through it, the engine and the
//! chain restart from their journals and keep finalizing, and proofs verify.

use std::time::Duration;

use alloy_primitives::{B256, Bytes};
use commonware_runtime::{Clock as _, Runner as _, Supervisor as _};
use iotchain_api::{ChainQuery, ItemPool};
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_consensus::{ConsensusConfig, start};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_engine::{
    Engine, EngineConfig,
    testing::{config as engine_config, open},
};

fn config(dir: &std::path::Path) -> (EngineConfig, OwnerKey) {
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let validator = ValidatorKey::from_secret(&[2; 32]);
    let genesis = Genesis::single_validator(
        5,
        1,
        B256::from(validator.public_key()),
        vec![owner.address()],
    );
    (engine_config(dir.to_path_buf(), genesis, validator), owner)
}

fn consensus_config() -> ConsensusConfig {
    let mut config = ConsensusConfig::new();
    config.block_interval = Duration::from_millis(20);
    config.idle_block_interval = Duration::from_millis(200);
    config
}

/// Waits (on head changes, not on time) until `height` is final.
async fn wait_height(chain: &Engine, height: u64) {
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
    chain: &Engine,
    device: &DeviceSigner,
    seqs: std::ops::Range<u64>,
) -> Vec<B256> {
    let messages = seqs
        .map(|s| Bytes::from(device.sign_reading(&chain.genesis_hash()[..], s, s, None, &[0x01])))
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

#[test]
fn simplex_finalizes_readings_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = commonware_runtime::tokio::Config::new()
        .with_storage_directory(dir.path().join("consensus"));
    commonware_runtime::tokio::Runner::new(runtime)
        .start(|context| async move { restarts(context, &dir).await });
}

async fn restarts(context: commonware_runtime::tokio::Context, dir: &tempfile::TempDir) {
    let (config, owner) = config(dir.path());
    let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[3; 32]).unwrap();

    let chain = open(&context, config.clone()).unwrap();
    let engine = start(
        context.child("consensus"),
        chain.clone(),
        config.validator_key.clone(),
        consensus_config(),
    )
    .unwrap();
    let op = DeviceOp::Register {
        public_key: device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    chain
        .submit_owner_tx(Bytes::from(
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
    proof
        .verify(&config.genesis, &chain.genesis_hash())
        .unwrap();

    // Stop both, reopen from disk: the engine replays its journal, the chain its store.
    engine.stop().await;
    // Read only now: the engine may finalize (empty) blocks until it stops.
    let first_run_height = chain.head().height;
    chain.shutdown().await;
    // The engine's store closes with its last clone (tasks consensus had spawned let go of
    // theirs as they are torn down).
    let weak = chain.downgrade();
    drop(chain);
    for _ in 0..1000 {
        if !weak.alive() {
            break;
        }
        context.sleep(Duration::from_millis(10)).await;
    }
    assert!(!weak.alive(), "the stopped engine is still held");
    let chain = open(&context, config.clone()).unwrap();
    assert_eq!(chain.head().height, first_run_height);
    let engine = start(
        context.child("consensus"),
        chain.clone(),
        config.validator_key.clone(),
        consensus_config(),
    )
    .unwrap();
    let more = submit_until_final(&chain, &device, 20..30).await;
    assert!(
        chain.head().height > first_run_height,
        "finalizing resumed after the restart"
    );
    for id in ids.iter().chain(&more) {
        chain
            .proof(id)
            .unwrap()
            .verify(&config.genesis, &chain.genesis_hash())
            .unwrap();
    }
    assert_eq!(chain.device(&device.address()).unwrap().last_seq, Some(29));
    engine.stop().await;
    chain.shutdown().await;
}
