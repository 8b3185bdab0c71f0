//! BFT consensus for iotchain: Commonware simplex proposing and finalizing the chain's blocks.
//!
//! The node's [`Chain`] offers the two halves a BFT engine drives: [`Chain::propose`] builds a
//! block on a parent without committing it, [`Chain::finalize`] commits it with a finality
//! certificate. [`start`] runs Commonware's simplex engine (on Commonware's tokio runtime, in
//! its own thread, with its write-ahead journal under the data directory) over those calls:
//! simplex asks for proposals, votes, and reports finalizations, which commit the blocks.
//!
//! Today the validator set has one member, so the engine's three network channels are a
//! [`loopback`] with nobody on the other end; a multi-validator set replaces it with
//! Commonware's authenticated p2p without touching the application.

pub mod loopback;

use std::{
    num::{NonZeroU16, NonZeroUsize},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use alloy_primitives::B256;
use commonware_actor::Feedback;
use commonware_codec::DecodeExt;
use commonware_consensus::{
    Automaton, CertifiableAutomaton, Relay, Reporter,
    simplex::{
        self, Plan,
        elector::RoundRobin,
        types::{Activity, Context},
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{Sha256, ed25519, sha256::Digest};
use commonware_parallel::Sequential;
use commonware_runtime::{Runner as _, buffer::paged::CacheRef};
use commonware_utils::{channel::oneshot, ordered::Set};
use iotchain_block::FinalityCertificate;
use iotchain_crypto::ValidatorKey;
use iotchain_node::Chain;

/// Namespace of every signature simplex makes for iotchain.
pub const NAMESPACE: &[u8] = b"iotchain/simplex/v1";

/// The simplex signing scheme: Ed25519 validator keys, attributable certificates.
pub type Scheme = simplex::scheme::ed25519::Scheme;

/// Consensus settings.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// Directory of the engine's journal (its write-ahead log: votes survive a crash, so a
    /// restarted validator never votes twice in a view).
    pub journal_dir: PathBuf,
    /// The least time between two blocks.
    pub block_interval: Duration,
    /// Longest a proposer waits for items before proposing an empty block.
    pub idle_block_interval: Duration,
}

/// The application simplex drives: proposals, verification, relay and finalization reports.
#[derive(Clone)]
struct Application {
    chain: Arc<Chain>,
    config: ConsensusConfig,
    finalized: tokio::sync::mpsc::UnboundedSender<B256>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_b256(d: &Digest) -> B256 {
    B256::from(d.0)
}

impl Automaton for Application {
    type Digest = Digest;
    type Context = Context<Digest, ed25519::PublicKey>;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<Digest> {
        let (response, receiver) = oneshot::channel();
        let chain = self.chain.clone();
        let config = self.config.clone();
        tokio::spawn(async move {
            let parent = to_b256(&context.parent.1);
            // The parent's finalization may still be committing: wait for it to be the head.
            let mut head = chain.subscribe_head();
            if tokio::time::timeout(Duration::from_secs(10), head.wait_for(|h| h.hash == parent))
                .await
                .is_err()
            {
                tracing::warn!(%parent, "proposal parent is not this node's head; declining");
                return;
            }
            // Pace blocks: `block_interval` after the parent's time (not after its commit, so
            // consensus and commit latency do not stretch the interval), and wait (up to the
            // idle interval) for something to include.
            let since_parent =
                Duration::from_millis(now_ms().saturating_sub(chain.head().timestamp_ms));
            tokio::time::sleep(config.block_interval.saturating_sub(since_parent)).await;
            let idle_deadline = tokio::time::Instant::now() + config.idle_block_interval;
            while chain.pending_counts() == (0, 0) && tokio::time::Instant::now() < idle_deadline {
                tokio::time::sleep(config.block_interval).await;
            }
            let c = chain.clone();
            match tokio::task::spawn_blocking(move || c.propose_durable(parent)).await {
                Ok(Ok(header)) => {
                    let _ = response.send(Digest(header.hash().0));
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot propose"),
                Err(e) => tracing::error!(error = %e, "proposal task failed"),
            }
        });
        receiver
    }

    async fn verify(
        &mut self,
        _context: Self::Context,
        payload: Digest,
    ) -> oneshot::Receiver<bool> {
        // One validator: the only proposals are this node's own, which it holds.
        let (response, receiver) = oneshot::channel();
        let _ = response.send(self.chain.has_proposal(&to_b256(&payload)));
        receiver
    }
}

impl CertifiableAutomaton for Application {}

impl Relay for Application {
    type Digest = Digest;
    type PublicKey = ed25519::PublicKey;
    type Plan = Plan<ed25519::PublicKey>;

    fn broadcast(&mut self, _payload: Digest, _plan: Self::Plan) -> Feedback {
        // Nobody else to send the block to while the validator set has one member.
        Feedback::Ok
    }
}

impl Reporter for Application {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Activity::Finalization(f) = activity {
            let _ = self.finalized.send(to_b256(&f.proposal.payload));
        }
        Feedback::Ok
    }
}

/// Commits finalized blocks, in the order simplex reports them.
async fn commit_finalized(
    chain: Arc<Chain>,
    validator: ValidatorKey,
    mut finalized: tokio::sync::mpsc::UnboundedReceiver<B256>,
) {
    while let Some(hash) = finalized.recv().await {
        if matches!(chain.store().height_of(&hash), Ok(Some(_))) {
            continue; // replayed from the journal after a restart: already committed
        }
        let c = chain.clone();
        let v = validator.clone();
        let result = tokio::task::spawn_blocking(move || {
            let header = c
                .proposed_header(&hash)
                .ok_or_else(|| format!("block {hash} is unknown"))?;
            let chain_id = c.genesis().chain_id;
            let certificate = FinalityCertificate::sign(&v, chain_id, header.height, hash);
            c.finalize(hash, certificate).map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok(Ok((header, readings, txs))) => {
                tracing::debug!(
                    height = header.height,
                    readings,
                    txs,
                    "block finalized by simplex"
                )
            }
            Ok(Err(e)) => tracing::error!(error = %e, "finalized block not committed"),
            Err(e) => tracing::error!(error = %e, "finalization task failed"),
        }
    }
}

/// A running consensus engine; stopping (or dropping) it stops the engine's thread.
#[derive(Debug)]
pub struct Consensus {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consensus {
    /// Stops the engine and waits for its thread. Votes already journaled stay journaled;
    /// a block proposed but not yet committed is rebuilt and committed after the next start.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Consensus {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts simplex for a one-validator chain in its own thread, on Commonware's tokio runtime
/// with the engine's journal in `config.journal_dir`.
pub fn start(
    chain: Arc<Chain>,
    validator: ValidatorKey,
    config: ConsensusConfig,
) -> std::io::Result<Consensus> {
    std::fs::create_dir_all(&config.journal_dir)?;
    let seed = validator.secret();
    let signer =
        ed25519::PrivateKey::decode(seed.to_vec()).expect("a 32-byte seed is an ed25519 key");
    let me = ed25519::PublicKey::from(signer.clone());
    let participants: Set<ed25519::PublicKey> =
        Set::try_from(vec![me.clone()]).expect("one participant");
    let scheme = Scheme::signer(NAMESPACE, participants, signer).expect("the key is a participant");
    let genesis = Digest(chain.genesis_hash().0);
    let (finalized_tx, finalized_rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Application {
        chain: chain.clone(),
        config: config.clone(),
        finalized: finalized_tx,
    };
    let runtime_config = commonware_runtime::tokio::Config::new()
        .with_storage_directory(config.journal_dir.clone())
        .with_worker_threads(2);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || {
            commonware_runtime::tokio::Runner::new(runtime_config).start(|context| async move {
                let committer = tokio::spawn(commit_finalized(chain, validator, finalized_rx));
                let engine = simplex::Engine::new(
                    context,
                    simplex::Config {
                        scheme,
                        elector: RoundRobin::<Sha256>::default(),
                        blocker: loopback::Loopback(me.clone()),
                        automaton: app.clone(),
                        relay: app.clone(),
                        reporter: app,
                        strategy: Sequential,
                        partition: "simplex".into(),
                        mailbox_size: NonZeroUsize::new(1024).expect("non-zero"),
                        epoch: Epoch::zero(),
                        floor: simplex::Floor::Genesis(genesis),
                        replay_buffer: NonZeroUsize::new(1 << 20).expect("non-zero"),
                        write_buffer: NonZeroUsize::new(1 << 16).expect("non-zero"),
                        page_cache: CacheRef::new(
                            NonZeroU16::new(4096).expect("non-zero"),
                            NonZeroUsize::new(256).expect("non-zero"),
                        ),
                        leader_timeout: Duration::from_secs(30),
                        certification_timeout: Duration::from_secs(60),
                        timeout_retry: Duration::from_secs(10),
                        view_retention: ViewDelta::new(64),
                        skip: simplex::SkipPolicy::Disabled,
                        fetch_timeout: commonware_utils::NZDuration!(Duration::from_secs(2)),
                        fetch_retry_delay: Duration::from_millis(200),
                        forward: simplex::ForwardPolicy::Disabled,
                        track_historical_votes: false,
                    },
                );
                let handle = engine.start(
                    loopback::pair(me.clone()),
                    loopback::pair(me.clone()),
                    loopback::pair(me),
                );
                let _ = stop_rx.await;
                handle.abort();
                committer.abort();
            });
        })?;
    Ok(Consensus {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
