//! BFT consensus for iotchain: Commonware simplex proposing and finalizing the chain's blocks,
//! over Commonware's authenticated p2p between the validators of the genesis, with block sync
//! for nodes that fall behind and for followers.
//!
//! The chain's engine offers what a BFT engine drives ([`BlockEngine`]): `propose` builds a
//! block on the head or on a notarized block without committing it, `verify` re-executes
//! another validator's block (every reading's signature, the state root) before this
//! validator votes for it, and `finalize` commits a block with its finality certificate
//! (simplex's finalization: a quorum of validators' finalize votes). [`start`] runs simplex
//! on the node's Commonware runtime (its write-ahead journal in the runtime's storage, so a
//! restarted validator never votes twice in a view) over those calls; block times and
//! timeouts come from the runtime's clock, so the same code runs on the deterministic
//! runtime in simulations.
//!
//! Channels between validators: 0 votes, 1 certificates, 2 simplex's resolver, 3 blocks
//! (a proposer sends its block to the others; simplex forwards it to validators that missed
//! it), 4 block fetch (a validator that lacks a block it must vote over, build on or commit
//! asks the others for it by hash, through Commonware's p2p resolver). A node that falls
//! further behind, and a follower (a node whose key is not a validator's), fetch finalized
//! blocks with their certificates from peers' HTTP APIs ([`sync`]).

mod app;
mod fetch;
mod heard;
pub mod loopback;
pub mod sync;

use std::{
    net::SocketAddr,
    num::{NonZeroU16, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use alloy_primitives::B256;
use commonware_codec::DecodeExt;
use commonware_consensus::{
    simplex::{self, elector::RoundRobin},
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{ChaCha20Poly1305, Sha256, ed25519, sha256::Digest};
use commonware_p2p::{Address, AddressableManager, Receiver, Sender, authenticated::lookup};
use commonware_parallel::Sequential;
use commonware_runtime::{
    Clock, Handle, Metrics, Network, Quota, Resolver, Spawner, Storage, Supervisor,
    buffer::paged::CacheRef,
};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::ordered::{Map, Set};
use iotchain_api::{BlockEngine, ChainQuery};
use iotchain_crypto::ValidatorKey;
use tokio::sync::Notify;

use crate::app::{Application, Inbox};

pub use iotchain_block::SIMPLEX_NAMESPACE as NAMESPACE;

/// The simplex signing scheme: Ed25519 validator keys, attributable certificates.
pub type Scheme = simplex::scheme::ed25519::Scheme;

/// Largest p2p message: a full block.
const MAX_MESSAGE_BYTES: u32 = 32 * 1024 * 1024;

/// Consensus settings. The engine's journal (its write-ahead log: votes survive a crash, so
/// a restarted validator never votes twice in a view) lives in the runtime's storage, under
/// [`ConsensusConfig::partition`].
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// The least time between two blocks.
    pub block_interval: Duration,
    /// Longest a proposer waits for items before proposing an empty block.
    pub idle_block_interval: Duration,
    /// Address the p2p listener binds (default: this validator's address in the genesis).
    pub p2p_listen: Option<SocketAddr>,
    /// Base URLs of peers' HTTP APIs to fetch missed blocks from (block sync).
    pub sync_peers: Vec<String>,
    /// How long a view waits for its leader's proposal before moving on.
    pub leader_timeout: Duration,
    /// Storage partition of the engine's journal.
    pub partition: String,
}

impl ConsensusConfig {
    /// Defaults: 200 ms blocks, an empty block after 2 s idle.
    pub fn new() -> Self {
        Self {
            block_interval: Duration::from_millis(200),
            idle_block_interval: Duration::from_secs(2),
            p2p_listen: None,
            sync_peers: Vec::new(),
            leader_timeout: Duration::from_secs(3),
            partition: "simplex".into(),
        }
    }
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A running consensus engine; stopping (or dropping) it stops the engine's tasks.
pub struct Consensus {
    handles: Vec<Handle<()>>,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus")
            .field("tasks", &self.handles.len())
            .finish()
    }
}

impl Consensus {
    /// Stops the engine and waits until its tasks are gone (so the chain's engine can be
    /// dropped and its store reopened). Votes already journaled stay journaled; a block
    /// proposed or verified but not yet committed is in the chain's pending blocks and is
    /// committed after the next start.
    pub async fn stop(mut self) {
        let handles = std::mem::take(&mut self.handles);
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }

    fn halt(&mut self) {
        for h in self.handles.drain(..) {
            h.abort();
        }
    }
}

impl Drop for Consensus {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Errors starting consensus.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The genesis does not describe a usable validator set.
    #[error("validator set: {0}")]
    Validators(String),
}

/// The validator set of the chain's genesis: keys and p2p addresses.
fn validator_set<Q: ChainQuery>(
    chain: &Q,
) -> Result<Vec<(ed25519::PublicKey, Option<SocketAddr>)>, String> {
    chain
        .genesis()
        .validators
        .iter()
        .map(|v| {
            let key = ed25519::PublicKey::decode(v.public_key.to_vec())
                .map_err(|e| format!("validator key {}: {e}", v.public_key))?;
            let addr = match &v.address {
                None => None,
                Some(a) => Some(
                    a.parse::<SocketAddr>()
                        .map_err(|e| format!("address {a} of {}: {e}", v.public_key))?,
                ),
            };
            Ok((key, addr))
        })
        .collect()
}

/// Starts consensus on `context`'s runtime: simplex (when `validator` is in the genesis set)
/// and block sync from `config.sync_peers` (a follower only syncs).
pub fn start<E, A>(
    context: E,
    chain: A,
    validator: ValidatorKey,
    config: ConsensusConfig,
) -> Result<Consensus, ConsensusError>
where
    E: Runtime + rand_core::CryptoRng + Storage + Metrics + Network + Resolver,
    A: BlockEngine + Clone,
{
    let validators = validator_set(&chain).map_err(ConsensusError::Validators)?;
    let signer = ed25519::PrivateKey::decode(validator.secret().to_vec())
        .map_err(|e| ConsensusError::Validators(format!("validator key: {e}")))?;
    let me = ed25519::PublicKey::from(signer.clone());
    let participants = Set::from_iter_dedup(validators.iter().map(|(k, _)| k.clone()));
    let is_validator = participants.position(&me).is_some();
    let listen = match (config.p2p_listen, validators.iter().find(|(k, _)| *k == me)) {
        (Some(a), _) => Some(a),
        (None, Some((_, a))) => *a,
        _ => None,
    };
    if is_validator && participants.len() > 1 {
        if let Some((k, _)) = validators.iter().find(|(_, a)| a.is_none()) {
            return Err(ConsensusError::Validators(format!(
                "validator {} has no p2p address in the genesis",
                B256::from_slice(k.as_ref())
            )));
        }
        if listen.is_none() {
            return Err(ConsensusError::Validators(
                "this validator has no p2p address to listen on".into(),
            ));
        }
    }
    // One root task: everything consensus runs is its descendant, so aborting it stops all.
    let sync_peers = config.sync_peers.len();
    let validators_count = participants.len();
    let root = context.child("consensus").spawn(move |context| async move {
        let wake_sync = Arc::new(Notify::new());
        let mut handles: Vec<Handle<()>> = Vec::new();
        if !config.sync_peers.is_empty() {
            let source = sync::HttpPeers::new(config.sync_peers.clone());
            let (c, w) = (chain.clone(), wake_sync.clone());
            handles.push(
                context
                    .child("sync")
                    .spawn(move |rt| sync::run(rt, c, source, w, !is_validator)),
            );
        }
        if is_validator {
            if participants.len() == 1 {
                handles.extend(run_validator(
                    context.child("validator"),
                    chain.clone(),
                    signer,
                    config.clone(),
                    loopback::Loopback(me.clone()),
                    [
                        loopback::pair(me.clone()),
                        loopback::pair(me.clone()),
                        loopback::pair(me.clone()),
                        loopback::pair(me.clone()),
                        loopback::pair(me),
                    ],
                    wake_sync,
                ));
            } else {
                let listen = listen.expect("checked above");
                let p2p = lookup::Config::local(
                    Cups::<_, ChaCha20Poly1305>::new(
                        Sake {
                            signer: signer.clone(),
                            synchrony_bound: Duration::from_secs(5),
                            max_handshake_age: Duration::from_secs(10),
                            version: sake::Version::V1,
                        },
                        cups::Version::V1,
                    ),
                    NAMESPACE,
                    listen,
                    NonZeroUsize::new(participants.len() + 8).expect("non-zero"),
                    MAX_MESSAGE_BYTES,
                    NonZeroUsize::new(4096).expect("non-zero"),
                );
                let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
                let peers: Map<ed25519::PublicKey, Address> = validators
                    .iter()
                    .filter_map(|(k, a)| a.map(|a| (k.clone(), a.into())))
                    .collect::<Vec<_>>()
                    .try_into()
                    .expect("distinct validator keys");
                oracle.track(0, peers);
                // Messages per second per peer (the mailboxes are sized from it: keep it to what a
                // validator sends: a few votes and blocks per view).
                let quota = Quota::per_second(std::num::NonZeroU32::new(256).expect("non-zero"));
                let channels = [
                    network.register(0, quota),
                    network.register(1, quota),
                    network.register(2, quota),
                    network.register(3, quota),
                    network.register(4, quota),
                ];
                handles.push(network.start());
                handles.extend(run_validator(
                    context.child("validator"),
                    chain.clone(),
                    signer,
                    config.clone(),
                    oracle,
                    channels,
                    wake_sync,
                ));
            }
        }
        // Every task here is critical: if one ends while the node runs, the node must not
        // take writes it can no longer finalize (the engine refuses them and the binary
        // exits non-zero so its supervisor restarts it).
        if handles.is_empty() {
            futures::future::pending::<()>().await;
        }
        let (outcome, index, rest) = futures::future::select_all(handles).await;
        chain.task_stopped(
            "consensus",
            "consensus_stopped",
            format!("consensus task {index} ended ({outcome:?})"),
        );
        drop(rest);
    });
    tracing::info!(
        validator = is_validator,
        validators = validators_count,
        p2p = ?listen,
        sync_peers,
        "consensus started"
    );
    Ok(Consensus {
        handles: vec![root],
    })
}

/// Receives blocks proposed by other validators into the inbox.
async fn receive_blocks<A: ChainQuery>(
    chain: A,
    inbox: Arc<Inbox>,
    mut blocks: impl Receiver<PublicKey = ed25519::PublicKey>,
) {
    while let Ok((peer, bytes)) = blocks.recv().await {
        let bytes: &[u8] = bytes.as_ref();
        match iotchain_block::Block::decode_rlp(bytes) {
            Ok(block) => {
                tracing::debug!(%peer, height = block.header.height, hash = %block.header.hash(), "block received");
                inbox.insert(block, chain.head().height)
            }
            Err(e) => tracing::warn!(%peer, error = %e, "undecodable block from a validator"),
        }
    }
}

/// What a runtime must offer the validator: tasks and a clock (Commonware's tokio runtime in
/// production, its deterministic runtime in simulations).
pub trait Runtime: Spawner + Clock + Supervisor + Send + Sync + 'static {}

impl<T: Spawner + Clock + Supervisor + Send + Sync + 'static> Runtime for T {}

/// Runs a validator on `context` over the given network channels (votes, certificates,
/// simplex's resolver, blocks, block fetch): the simplex engine, the application over
/// `chain`, the commit of finalized blocks, the block receiver and the block fetcher. Aborting the returned handles stops it (a crash:
/// the journal under `config.partition` and the chain's stores keep what was durable).
pub fn run_validator<E, B, S, R, A>(
    context: E,
    chain: A,
    signer: ed25519::PrivateKey,
    config: ConsensusConfig,
    blocker: B,
    channels: [(S, R); 5],
    wake_sync: Arc<Notify>,
) -> Vec<Handle<()>>
where
    E: Runtime + rand_core::CryptoRng + Storage + Metrics,
    B: commonware_p2p::Blocker<PublicKey = ed25519::PublicKey>,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    A: BlockEngine + Clone,
{
    let participants = Set::from_iter_dedup(
        chain
            .genesis()
            .validators
            .iter()
            .filter_map(|v| ed25519::PublicKey::decode(v.public_key.to_vec()).ok()),
    );
    let me = ed25519::PublicKey::from(signer.clone());
    let scheme =
        Scheme::signer(NAMESPACE, participants.clone(), signer).expect("the key is a participant");
    let genesis = Digest(chain.genesis_hash().0);
    let inbox = Arc::new(Inbox::default());
    let (finalized_tx, finalized_rx) = tokio::sync::mpsc::unbounded_channel();
    // Every message received notes its sender: the validators heard from (`/v1/status`).
    let channels = channels.map(|(sender, receiver)| {
        let receiver = heard::Heard {
            inner: receiver,
            chain: chain.clone(),
            clock: context.child("heard"),
            me: me.clone(),
        };
        (sender, receiver)
    });
    let [
        votes,
        certs,
        resolver,
        (blocks_tx, blocks_rx),
        fetch_channel,
    ] = channels;
    let mut handles = Vec::new();
    let (fetch_engine, fetch_mailbox) = commonware_resolver::p2p::Engine::new(
        context.child("fetch"),
        commonware_resolver::p2p::Config {
            peer_provider: commonware_p2p::utils::StaticProvider::new(0, participants.clone()),
            blocker: blocker.clone(),
            consumer: fetch::Take {
                chain: chain.clone(),
                inbox: inbox.clone(),
            },
            producer: fetch::Serve {
                context: context.child("fetch_serve"),
                chain: chain.clone(),
            },
            mailbox_size: NonZeroUsize::new(1024).expect("non-zero"),
            me: Some(me),
            fetch_timeout: commonware_utils::NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(250),
            priority_requests: false,
            priority_responses: false,
        },
    );
    handles.push(fetch_engine.start(fetch_channel));
    let fetcher = fetch::Fetcher::new(fetch_mailbox, inbox.clone());
    {
        let (c, f, w) = (chain.clone(), fetcher.clone(), wake_sync);
        handles.push(
            context
                .child("commit")
                .spawn(move |rt| app::commit_finalized(rt, c, f, finalized_rx, w)),
        );
    }
    {
        let (c, i) = (chain.clone(), inbox.clone());
        handles.push(
            context
                .child("blocks")
                .spawn(move |_| receive_blocks(c, i, blocks_rx)),
        );
    }
    let app = Application {
        context: context.child("application"),
        chain,
        config: config.clone(),
        participants,
        fetcher,
        blocks: blocks_tx,
        finalized: finalized_tx,
    };
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: app.clone(),
            relay: app.clone(),
            reporter: app,
            strategy: Sequential,
            partition: config.partition.clone(),
            mailbox_size: NonZeroUsize::new(1024).expect("non-zero"),
            epoch: Epoch::zero(),
            floor: simplex::Floor::Genesis(genesis),
            replay_buffer: NonZeroUsize::new(1 << 20).expect("non-zero"),
            write_buffer: NonZeroUsize::new(1 << 16).expect("non-zero"),
            page_cache: CacheRef::new(
                NonZeroU16::new(4096).expect("non-zero"),
                NonZeroUsize::new(256).expect("non-zero"),
            ),
            // A leader that proposes nothing (down, or partitioned) is passed over after this.
            leader_timeout: config.leader_timeout,
            certification_timeout: config.leader_timeout + Duration::from_secs(1),
            timeout_retry: config.leader_timeout + Duration::from_secs(2),
            view_retention: ViewDelta::new(64),
            skip: simplex::SkipPolicy::Disabled,
            fetch_timeout: commonware_utils::NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(200),
            forward: simplex::ForwardPolicy::SilentVoters,
            track_historical_votes: false,
        },
    );
    handles.push(engine.start(votes, certs, resolver));
    handles
}
