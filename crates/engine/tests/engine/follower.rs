//! A follower (a node that cannot propose) takes readings from its clients only while it can
//! hand them on: none without peers (`no_peers`), none after 30 s without reaching any
//! validator (`validators_unreachable`), again as soon as a relay reaches one. Forwarded
//! items are never refused for that. Time is the deterministic runtime's, so 30 s pass at once.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use commonware_runtime::{Clock, Runner, Supervisor, deterministic};
use iotchain_api::{CommonwareRuntime, Item, ItemPool, NodeMetrics, Origin, PoolError};
use iotchain_block::Genesis;
use iotchain_crypto::{DeviceSigner, KeyAlg, ValidatorKey};
use iotchain_engine::{Engine, testing::config};
use iotchain_pool::UNREACHABLE_AFTER_MS;

fn code(r: &[Result<B256, PoolError>]) -> &'static str {
    r[0].as_ref().map_or_else(|e| e.code(), |_| "accepted")
}

#[test]
fn a_follower_takes_readings_only_while_it_can_hand_them_on() {
    deterministic::Runner::default().start(|context| async move {
        let dir = tempfile::tempdir().unwrap();
        let validator = B256::from(ValidatorKey::from_secret(&[2; 32]).public_key());
        let genesis = Genesis::with_validators(7, 1, &[validator], vec![]);
        let follower = Engine::open(
            config(
                dir.path().to_path_buf(),
                genesis,
                ValidatorKey::from_secret(&[9; 32]),
            ),
            Arc::new(CommonwareRuntime(context.child("engine"))),
            NodeMetrics::default(),
        )
        .unwrap();
        let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[4; 32]).unwrap();
        let reading = || {
            vec![Item::Reading(Bytes::from(device.sign_reading(
                &iotchain_api::ChainQuery::genesis_hash(&follower)[..],
                0,
                1,
                None,
                &[1],
            )))]
        };
        let local = |f: &Engine| {
            let f = f.clone();
            let items = reading();
            async move { f.submit(items, Origin::Local).await }
        };
        // No peers: nothing it took could ever be final.
        assert_eq!(code(&local(&follower).await), "no_peers");
        // With a relay it takes readings (this one then meets the registry: an unknown device).
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        follower.pool().set_relay(tx);
        assert_eq!(code(&local(&follower).await), "unknown_device");
        // No validator reached for longer than the bound: it says so instead of acknowledging.
        context
            .sleep(Duration::from_millis(UNREACHABLE_AFTER_MS + 1_000))
            .await;
        let refused = local(&follower).await;
        assert_eq!(code(&refused), "validators_unreachable");
        assert!(refused[0].as_ref().unwrap_err().is_transient());
        // What a peer forwards is not a client's: taken regardless.
        let forwarded = follower.submit(reading(), Origin::Forwarded).await;
        assert_eq!(code(&forwarded), "unknown_device");
        // A relay that reaches a validator restores the promise.
        follower.pool().relay_reached();
        assert_eq!(code(&local(&follower).await), "unknown_device");
        follower.shutdown().await;
    });
}
