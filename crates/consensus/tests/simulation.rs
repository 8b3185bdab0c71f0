//! Deterministic simulation: four validators, each a real [`Chain`] with its own stores, run
//! simplex on Commonware's deterministic runtime over its simulated network (seeded message
//! loss, latency and jitter). For many seeds, under loss, a partition that isolates one
//! validator and heals, a validator whose engine crashes and restarts from its journal, and
//! every validator crashing at once and restarting, and a Byzantine validator that proposes
//! forged readings or equivocates:
//! the validators keep finalizing, no two of them ever commit different blocks at a height, and
//! every accepted reading is final exactly once.
//!
//! Consensus, the network, every timer, block times and arrival times run on the seeded
//! simulated clock, and the chains' blocking work (signature batches, fsyncs) runs as tasks of
//! the deterministic runtime: two runs of a seed are the same run. Each scenario asserts it
//! (the same finalized blocks, the same auditor state), and a changed seed changes the run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{B256, Bytes};
use commonware_codec::DecodeExt;
use commonware_consensus::simplex::mocks::conflicter::Conflicter;
use commonware_cryptography::{Sha256, ed25519};
use commonware_p2p::simulated::{self, Link, Network};
use commonware_runtime::{Clock, Handle, Quota, Runner, Spawner, Supervisor, deterministic};
use commonware_utils::ordered::Set;
use iotchain_api::{ChainQuery, CommonwareRuntime, Item, ItemPool, NodeMetrics, Origin};
use iotchain_block::{DeviceOp, Genesis, SignedTx, SyncBlock, SyncBlocks};
use iotchain_consensus::{
    ConsensusConfig, NAMESPACE, Scheme, run_validator,
    sync::{self, BlockSource},
};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_engine::{Engine, testing::config};
use tokio::sync::Notify;

const N: usize = 4;

/// What happens to the network during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// 10% message loss, 20±10 ms latency.
    Lossy,
    /// Validator 3 is cut off from the others for a while, then reconnected.
    Partition,
    /// Validator 2's engine is killed and restarted from its journal.
    CrashRestart,
    /// Every validator's engine is killed at the same instant (a power cut at a site that
    /// hosts them all) and restarted from its journal: simplex does not replay its own
    /// votes, so a block notarized but not finalized before the cut is finalized only
    /// through a child built on it.
    AllCrash,
    /// Validator 3 is Byzantine: every block it proposes carries forged readings.
    Byzantine,
    /// Validator 3 is Byzantine: it equivocates, signing a notarize and a finalize vote for a
    /// random block beside each one it receives (Commonware's `Conflicter`), and follows
    /// the chain by block sync.
    Equivocate,
}

/// Block sync between the simulated validators: reads the peers' stores directly (the
/// simulation has no HTTP), and refuses while the asking validator is cut off.
struct Peers {
    me: usize,
    chains: Vec<Engine>,
    isolated: Arc<Vec<AtomicBool>>,
}

impl BlockSource for Peers {
    async fn fetch(&self, from: u64, _wait_ms: u64, attempt: usize) -> Result<SyncBlocks, String> {
        let peer = (self.me + 1 + attempt % (N - 1)) % N;
        if self.isolated[self.me].load(Ordering::SeqCst)
            || self.isolated[peer].load(Ordering::SeqCst)
        {
            return Err("partitioned".into());
        }
        let store = self.chains[peer].store();
        let mut page = SyncBlocks::default();
        for h in from..from + 64 {
            match (store.block(h), store.certificate(h)) {
                (Ok(Some(block)), Ok(Some(certificate))) => page.blocks.push(SyncBlock {
                    block: block.encode_rlp().into(),
                    certificate,
                }),
                _ => break,
            }
        }
        Ok(page)
    }
}

fn link(loss_percent: u64) -> Link {
    Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        success_rate: commonware_utils::Probability::new(100 - loss_percent, 100).unwrap(),
    }
}

/// What a run did: its readings, and what every validator finalized.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    accepted: Vec<B256>,
    forged: Vec<B256>,
    heads: Vec<u64>,
    /// Every validator's final blocks: (height, hash).
    finalized: Vec<Vec<(u64, B256)>>,
    /// Readings in the blocks every validator holds.
    readings_in_blocks: u64,
    /// Accepted readings not final on validator 0.
    missing: Vec<B256>,
    /// Forged readings final on some validator.
    forged_final: usize,
    /// Equivocations the honest validators reported.
    faults: u64,
    /// The deterministic runtime's auditor at the end of the run.
    auditor: String,
}

fn simulate(seed: u64, scenario: Scenario) -> Outcome {
    let dirs: Vec<tempfile::TempDir> = (0..N).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let secrets: Vec<[u8; 32]> = (0..N as u8).map(|i| [i + 10; 32]).collect();
    let keys: Vec<ValidatorKey> = secrets.iter().map(ValidatorKey::from_secret).collect();
    let validators: Vec<B256> = keys.iter().map(|k| B256::from(k.public_key())).collect();
    let genesis = Genesis::with_validators(42, 1, &validators, vec![owner.address()]);
    let devices: Vec<DeviceSigner> = (0..=N as u8)
        .map(|i| DeviceSigner::from_secret(KeyAlg::Ed25519, &[i + 50; 32]).unwrap())
        .collect();
    let isolated: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
    let runner = deterministic::Runner::new(
        deterministic::Config::default()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(3_600))),
    );
    runner.start(|context| async move {
        let chains: Vec<Engine> = (0..N)
            .map(|i| {
                Engine::open(
                    config(
                        dirs[i].path().to_path_buf(),
                        genesis.clone(),
                        keys[i].clone(),
                    ),
                    Arc::new(CommonwareRuntime(context.child("engine"))),
                    NodeMetrics::default(),
                )
                .unwrap()
            })
            .collect();
        let signers: Vec<ed25519::PrivateKey> = secrets
            .iter()
            .map(|s| ed25519::PrivateKey::decode(s.to_vec()).unwrap())
            .collect();
        let pks: Vec<ed25519::PublicKey> = signers
            .iter()
            .map(|s| ed25519::PublicKey::from(s.clone()))
            .collect();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 32 * 1024 * 1024,
                max_peers_per_set: std::num::NonZeroUsize::new(N).unwrap(),
                disconnect_on_block: true,
                tracked_peer_sets: std::num::NonZeroUsize::new(1).unwrap(),
            },
            pks.clone(),
        )
        .await;
        network.start();
        let loss = if scenario == Scenario::Lossy { 10 } else { 2 };
        let connect = |a: usize, b: usize| {
            let oracle = oracle.clone();
            let (pa, pb) = (pks[a].clone(), pks[b].clone());
            async move {
                oracle.add_link(pa, pb, link(loss)).await.unwrap();
            }
        };
        for a in 0..N {
            for b in 0..N {
                if a != b {
                    connect(a, b).await;
                }
            }
        }
        let quota = Quota::per_second(std::num::NonZeroU32::new(10_000).unwrap());
        let start = |i: usize, context: &deterministic::Context| {
            let oracle = oracle.clone();
            let pk = pks[i].clone();
            let pks = pks.clone();
            let signer = signers[i].clone();
            let chain = chains[i].clone();
            let ctx = context.child("validator");
            async move {
                let control = oracle.control(pk);
                let mut channels = Vec::new();
                for c in 0..4 {
                    channels.push(control.register(c, quota).await.unwrap());
                }
                if scenario == Scenario::Equivocate && i == 3 {
                    let participants = Set::from_iter_dedup(pks.iter().cloned());
                    let scheme = Scheme::signer(NAMESPACE, participants, signer).unwrap();
                    let conflicter = Conflicter::<_, _, Sha256>::new(
                        ctx,
                        commonware_consensus::simplex::mocks::conflicter::Config { scheme },
                    );
                    return vec![conflicter.start(channels.swap_remove(0))];
                }
                let channels: [_; 4] = channels.try_into().map_err(|_| ()).unwrap();
                let mut config = ConsensusConfig::new();
                config.block_interval = Duration::from_millis(50);
                config.idle_block_interval = Duration::from_millis(300);
                config.leader_timeout = Duration::from_secs(1);
                config.partition = format!("simplex-{i}");
                run_validator(
                    ctx,
                    chain,
                    signer,
                    config,
                    control,
                    channels,
                    Arc::new(Notify::new()),
                )
            }
        };
        let mut running: Vec<Vec<Handle<()>>> = Vec::new();
        for i in 0..N {
            running.push(start(i, &context).await);
            let source = Peers {
                me: i,
                chains: chains.clone(),
                isolated: isolated.clone(),
            };
            let chain = chains[i].clone();
            context
                .child("sync")
                .spawn(move |rt| sync::run(rt, chain, source, Arc::new(Notify::new()), false));
        }
        let wait_all = |height: u64| {
            let chains = chains.clone();
            let ctx = context.child("wait");
            async move {
                for _ in 0..6_000 {
                    if chains.iter().all(|c| c.head().height >= height) {
                        return true;
                    }
                    ctx.sleep(Duration::from_millis(50)).await;
                }
                false
            }
        };
        // Register the devices (an owner transaction through consensus).
        for (n, d) in devices.iter().enumerate() {
            let op = DeviceOp::Register {
                public_key: d.public_key(),
                model: "sim".into(),
                firmware_hash: Bytes::new(),
                labels: vec![],
            };
            let tx = SignedTx::sign(&owner, 42, n as u64, op).unwrap();
            let mut r = chains[0]
                .submit(vec![Item::OwnerTx(Bytes::from(tx.encode_rlp()))], Origin::Local)
                .await;
            r.pop().unwrap().unwrap();
        }
        assert!(wait_all(3).await, "no progress at all (seed {seed})");
        while chains
            .iter()
            .any(|c| c.device(&devices[N].address()).is_none())
        {
            context.sleep(Duration::from_millis(50)).await;
        }
        // Each device streams to its own validator (as a device talks to its gateway).
        let byzantine = matches!(scenario, Scenario::Byzantine | Scenario::Equivocate);
        let mut accepted = Vec::new();
        let mut forged = Vec::new();
        let mut seq = [0u64; N + 1];
        let rounds = 40;
        for round in 0..rounds {
            if scenario == Scenario::Byzantine {
                // Device N's readings with broken signatures, queued at validator 3 only.
                let messages = (0..3)
                    .map(|k| {
                        let mut m = devices[N].sign_reading(seq[N] + k, round, None, &[0x01]);
                        let last = m.len() - 1;
                        m[last] ^= 0x55;
                        Bytes::from(m)
                    })
                    .collect();
                seq[N] += 3;
                for r in chains[3].pool().submit_unverified(messages).await {
                    forged.push(r.expect("queued unverified"));
                }
            }
            for (i, d) in devices.iter().take(N).enumerate() {
                // Under the Byzantine scenarios, honest readings avoid the Byzantine validator.
                let i_node = if byzantine && i == 3 { 0 } else { i };
                let messages = (0..5)
                    .map(|k| Item::Reading(Bytes::from(d.sign_reading(seq[i] + k, round, None, &[0x01]))))
                    .collect();
                seq[i] += 5;
                for r in chains[i_node].submit(messages, Origin::Local).await {
                    accepted.push(r.expect("a fresh reading is accepted"));
                }
            }
            match (scenario, round) {
                (Scenario::Partition, 10) => {
                    isolated[3].store(true, Ordering::SeqCst);
                    for o in 0..3 {
                        oracle
                            .remove_link(pks[3].clone(), pks[o].clone())
                            .await
                            .unwrap();
                        oracle
                            .remove_link(pks[o].clone(), pks[3].clone())
                            .await
                            .unwrap();
                    }
                }
                (Scenario::Partition, 25) => {
                    for o in 0..3 {
                        connect(3, o).await;
                        connect(o, 3).await;
                    }
                    isolated[3].store(false, Ordering::SeqCst);
                }
                (Scenario::CrashRestart, 10) => {
                    for h in running[2].drain(..) {
                        h.abort();
                    }
                }
                (Scenario::CrashRestart, 20) => {
                    running[2] = start(2, &context).await;
                }
                (Scenario::AllCrash, 10) => {
                    for r in running.iter_mut() {
                        for h in r.drain(..) {
                            h.abort();
                        }
                    }
                }
                (Scenario::AllCrash, 12) => {
                    for (i, r) in running.iter_mut().enumerate() {
                        *r = start(i, &context).await;
                    }
                }
                _ => {}
            }
            context.sleep(Duration::from_millis(100)).await;
            if matches!((scenario, round), (Scenario::Partition, 11..=24)) {
                // The three connected validators are a quorum: they keep finalizing.
                let h = chains[0].head().height;
                // (With three of four validators a quorum needs every one of them: a lost
                // block relay costs views until the block is fetched, so allow 30 s.)
                let mut progressed = false;
                for _ in 0..600 {
                    if chains[0].head().height > h {
                        progressed = true;
                        break;
                    }
                    context.sleep(Duration::from_millis(50)).await;
                }
                assert!(
                    progressed,
                    "the majority side stopped (seed {seed}, round {round}, height {h}, heads {:?})",
                    chains.iter().map(|c| c.head().height).collect::<Vec<_>>()
                );
            }
        }
        // Everything accepted becomes final everywhere.
        let honest = if byzantine { 3 } else { N };
        for _ in 0..6_000 {
            if chains[..honest]
                .iter()
                .all(|c| c.pending_counts() == (0, 0))
            {
                break;
            }
            context.sleep(Duration::from_millis(50)).await;
        }
        let top = chains.iter().map(|c| c.head().height).max().unwrap();
        assert!(
            wait_all(top).await,
            "validators did not converge (seed {seed})"
        );
        let heads: Vec<u64> = chains.iter().map(|c| c.head().height).collect();
        for r in running {
            for h in r {
                h.abort();
            }
        }
        let common = *heads.iter().min().unwrap();
        let finalized: Vec<Vec<(u64, B256)>> = chains
            .iter()
            .map(|c| {
                (1..=common)
                    .map(|h| (h, c.header(h).unwrap().unwrap().hash()))
                    .collect()
            })
            .collect();
        let readings_in_blocks = (1..=common)
            .map(|h| chains[0].header(h).unwrap().unwrap().reading_count)
            .sum();
        let missing = accepted
            .iter()
            .filter(|id| chains[0].store().reading(&id.0).unwrap().is_none())
            .copied()
            .collect();
        let forged_final = forged
            .iter()
            .filter(|id| chains.iter().any(|c| c.store().reading(&id.0).unwrap().is_some()))
            .count();
        let faults = chains[..3]
            .iter()
            .map(|c| c.consensus_stats().faults.load(Ordering::Relaxed))
            .sum();
        for c in &chains {
            c.shutdown().await;
        }
        Outcome {
            accepted,
            forged,
            heads,
            finalized,
            readings_in_blocks,
            missing,
            forged_final,
            faults,
            auditor: context.auditor().state(),
        }
    })
}

fn check(seed: u64, scenario: Scenario) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .try_init();
    let outcome = simulate(seed, scenario);
    let common = *outcome.heads.iter().min().unwrap();
    eprintln!(
        "{scenario:?} seed {seed}: heads {:?}, {} readings accepted",
        outcome.heads,
        outcome.accepted.len()
    );
    // Liveness is what the readings show below (all of them final); blocks just have to exist.
    assert!(
        common >= 3,
        "{scenario:?} seed {seed}: only {common} blocks"
    );
    // Safety: one block per height, the same on every validator.
    for (i, blocks) in outcome.finalized.iter().enumerate() {
        assert_eq!(
            blocks, &outcome.finalized[0],
            "{scenario:?} seed {seed}: validator {i} committed other blocks"
        );
    }
    // Every accepted reading is final, exactly once.
    assert!(
        outcome.missing.is_empty(),
        "{scenario:?} seed {seed}: accepted readings not final: {:?}",
        outcome.missing
    );
    assert_eq!(
        outcome.readings_in_blocks,
        outcome.accepted.len() as u64,
        "{scenario:?} seed {seed}: readings in blocks vs accepted"
    );
    // Forged readings never become final anywhere.
    assert_eq!(
        outcome.forged_final, 0,
        "{scenario:?} seed {seed}: a forged reading became final"
    );
    if scenario == Scenario::Byzantine {
        assert!(!outcome.forged.is_empty());
    }
    if scenario == Scenario::Equivocate {
        // The conflicting votes were seen (and reported) by the honest validators.
        assert!(
            outcome.faults > 0,
            "seed {seed}: no equivocation was detected"
        );
    }
    // One seed, one run: the same seed again gives the very same run.
    let again = simulate(seed, scenario);
    assert_eq!(
        again, outcome,
        "{scenario:?} seed {seed}: a second run of the same seed differs"
    );
}

#[test]
fn lossy_network_many_seeds() {
    for seed in 0..6 {
        check(seed, Scenario::Lossy);
    }
}

#[test]
fn partition_heals_many_seeds() {
    for seed in 100..104 {
        check(seed, Scenario::Partition);
    }
}

#[test]
fn crash_and_restart_many_seeds() {
    for seed in 200..204 {
        check(seed, Scenario::CrashRestart);
    }
}

#[test]
fn every_validator_crashes_at_once_and_restarts_many_seeds() {
    for seed in 400..404 {
        check(seed, Scenario::AllCrash);
    }
}

#[test]
fn an_equivocating_validator_neither_breaks_safety_nor_stops_the_others_many_seeds() {
    for seed in 500..503 {
        check(seed, Scenario::Equivocate);
    }
}

#[test]
fn byzantine_proposer_of_forged_readings_many_seeds() {
    for seed in 300..303 {
        check(seed, Scenario::Byzantine);
    }
}

#[test]
fn another_seed_gives_another_run() {
    let a = simulate(7, Scenario::Lossy);
    let b = simulate(8, Scenario::Lossy);
    assert_ne!(a.auditor, b.auditor, "the seed does not reach the run");
    assert_ne!(
        a.finalized, b.finalized,
        "two seeds finalized the same blocks"
    );
}
