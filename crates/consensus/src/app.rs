//! The application simplex drives: proposals, verification of other validators' blocks, block
//! relay between validators and the commit of finalized blocks.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use alloy_primitives::B256;
use commonware_actor::Feedback;
use commonware_codec::Encode;
use commonware_consensus::{
    Automaton, CertifiableAutomaton, Relay, Reporter,
    simplex::{
        Plan,
        types::{Activity, Context, Finalization},
    },
};
use commonware_cryptography::{ed25519, sha256::Digest};
use commonware_p2p::{Recipients, Sender};
use commonware_runtime::{Clock, Spawner, Supervisor};
use commonware_utils::{channel::oneshot, ordered::Set};
use iotchain_api::BlockEngine;
use iotchain_block::{Block, FinalityCertificate};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use crate::{
    ConsensusConfig, Scheme,
    fetch::{BlockResolver, Fetcher},
};

/// How long a validator waits for a proposed block (or its parent's commit) before voting
/// against it by timing out.
pub(crate) const BLOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a validator waits for a proposal's broadcast before asking peers for the block.
const ASK_AFTER: Duration = Duration::from_millis(500);

/// How many times a leader tries to build its block before giving up the view.
const PROPOSE_ATTEMPTS: u32 = 3;

/// Milliseconds since the Unix epoch by the runtime's clock (simulated time under the
/// deterministic runtime).
pub(crate) fn now_ms(clock: &impl Clock) -> u64 {
    clock
        .current()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn to_b256(d: &Digest) -> B256 {
    B256::from(d.0)
}

/// Blocks proposed by other validators, received over the network, by header hash.
#[derive(Default)]
pub(crate) struct Inbox {
    blocks: Mutex<BTreeMap<B256, Arc<Block>>>,
    arrived: Notify,
}

impl Inbox {
    /// Keeps a block received from a peer (dropping blocks at or below the committed height).
    pub(crate) fn insert(&self, block: Block, committed_height: u64) {
        let mut blocks = self.blocks.lock();
        blocks.retain(|_, b| b.header.height > committed_height);
        if blocks.len() >= 1024 {
            return; // a flood of bogus blocks: keep what we have
        }
        blocks.insert(block.header.hash(), Arc::new(block));
        drop(blocks);
        self.arrived.notify_waiters();
    }

    pub(crate) fn get(&self, hash: &B256) -> Option<Arc<Block>> {
        self.blocks.lock().get(hash).cloned()
    }

    /// Waits up to `timeout` for the block `hash`.
    pub(crate) async fn wait(
        &self,
        clock: &impl Clock,
        hash: &B256,
        timeout: Duration,
    ) -> Option<Arc<Block>> {
        let deadline = clock.current() + timeout;
        loop {
            let notified = self.arrived.notified();
            if let Some(b) = self.get(hash) {
                return Some(b);
            }
            let left = deadline
                .duration_since(clock.current())
                .unwrap_or(Duration::ZERO);
            if left.is_zero() || within(clock, left, notified).await.is_none() {
                return None;
            }
        }
    }
}

/// Runs `f` for at most `timeout` of the runtime's clock (simulated time under the
/// deterministic runtime).
pub(crate) async fn within<F: std::future::Future>(
    clock: &impl Clock,
    timeout: Duration,
    f: F,
) -> Option<F::Output> {
    let sleep = clock.sleep(timeout);
    futures::pin_mut!(f);
    futures::pin_mut!(sleep);
    match futures::future::select(f, sleep).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// Waits up to `timeout` (of the runtime's clock) for `ready` to hold, checking it every
/// few milliseconds; returns whether it held.
pub(crate) async fn wait_until(
    clock: &impl Clock,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = clock.current() + timeout;
    loop {
        if ready() {
            return true;
        }
        if clock.current() >= deadline {
            return false;
        }
        clock.sleep(Duration::from_millis(10)).await;
    }
}

/// Runs blocking chain work (fsync, signature verification) off the async workers.
pub(crate) async fn blocking<E: Spawner, T: Send + 'static>(
    context: &E,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    context
        .child("blocking")
        .shared(true)
        .spawn(move |_| async move { f() })
        .await
        .ok()
}

/// A finalization, as simplex reported it.
pub(crate) struct Finalized {
    pub(crate) hash: B256,
    /// The certificate (its height is filled in from the block at commit).
    pub(crate) certificate: FinalityCertificate,
}

/// Converts simplex's finalization into the chain's certificate: the same signatures, named
/// by validator key instead of by index into the sorted validator set.
pub(crate) fn certificate_of(
    f: &Finalization<Scheme, Digest>,
    participants: &Set<ed25519::PublicKey>,
) -> FinalityCertificate {
    let p = &f.proposal;
    let mut cert = FinalityCertificate::new(
        0,
        to_b256(&p.payload),
        p.round.epoch().get(),
        p.round.view().get(),
        p.parent.get(),
    );
    for (signer, signature) in f
        .certificate
        .signers
        .iter()
        .zip(f.certificate.signatures.iter())
    {
        if let Some(key) = participants.get(usize::from(signer)) {
            cert.signatures.push(iotchain_block::ValidatorSignature {
                validator: B256::from_slice(key.as_ref()),
                signature: signature.encode().to_vec().into(),
            });
        }
    }
    cert
}

/// The application: proposals, verification, relay and finalization reports.
pub(crate) struct Application<E, S, A, R> {
    pub(crate) context: E,
    pub(crate) chain: A,
    pub(crate) config: ConsensusConfig,
    pub(crate) participants: Set<ed25519::PublicKey>,
    pub(crate) fetcher: Fetcher<R>,
    pub(crate) blocks: S,
    pub(crate) finalized: mpsc::UnboundedSender<Finalized>,
}

impl<
    E: crate::Runtime,
    S: Sender<PublicKey = ed25519::PublicKey>,
    A: BlockEngine + Clone,
    R: BlockResolver,
> Automaton for Application<E, S, A, R>
{
    type Digest = Digest;
    type Context = Context<Digest, ed25519::PublicKey>;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<Digest> {
        let (response, receiver) = oneshot::channel();
        let chain = self.chain.clone();
        let config = self.config.clone();
        let fetcher = self.fetcher.clone();
        let alone = self.participants.len() == 1;
        self.context.child("propose").spawn(move |rt| async move {
            let mut parent = to_b256(&context.parent.1);
            let head = chain.head();
            if alone && parent != head.hash && chain.is_final(&parent) {
                // The only validator, and simplex offers a parent below the final head: its
                // journal lost its latest views (damaged or restored from a backup), while the
                // store holds the blocks they finalized. Nobody else can supply those views,
                // so build on the head: the store's chain is the one this validator finalized,
                // and with no other signer no conflicting block can be certified by others.
                tracing::warn!(
                    %parent,
                    head = head.height,
                    "the consensus journal is behind the store; proposing on the final head"
                );
                parent = head.hash;
            }
            // The parent is the head, or a notarized block not finalized yet: built or
            // verified here (restored from its record after a restart), or else fetched
            // from the validators that hold it.
            if !fetcher.ensure(&rt, &chain, parent, BLOCK_WAIT).await {
                tracing::warn!(%parent, "proposal parent is unknown here and no peer had it; declining");
                return;
            }
            // Pace blocks: `block_interval` after the parent's time (not after its commit, so
            // consensus and commit latency do not stretch the interval), and wait (up to the
            // idle interval) for something to include.
            let since_parent =
                Duration::from_millis(now_ms(&rt).saturating_sub(chain.head().timestamp_ms));
            rt.sleep(config.block_interval.saturating_sub(since_parent))
                .await;
            let idle_deadline = rt.current() + config.idle_block_interval;
            while !chain.has_pending_items() && rt.current() < idle_deadline {
                rt.sleep(config.block_interval).await;
            }
            // A finalization committing the parent's branch at this moment can hide the
            // parent for an instant (it moves from the tree to the head): look again before
            // giving up the view, which would cost a whole leader timeout.
            for attempt in 1..=PROPOSE_ATTEMPTS {
                let c = chain.clone();
                let at = now_ms(&rt);
                match blocking(&rt, move || c.propose(parent, at, true)).await {
                    Some(Ok(Some(header))) => {
                        tracing::debug!(height = header.height, hash = %header.hash(), readings = header.reading_count, "proposed");
                        let _ = response.send(Digest(header.hash().0));
                    }
                    Some(Ok(None)) => tracing::error!("an empty proposal was refused"),
                    Some(Err(e)) if attempt < PROPOSE_ATTEMPTS => {
                        tracing::debug!(error = %e, attempt, "cannot propose yet; retrying");
                        rt.sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "cannot propose"),
                    None => tracing::error!("proposal task failed"),
                }
                break;
            }
        });
        receiver
    }

    async fn verify(&mut self, context: Self::Context, payload: Digest) -> oneshot::Receiver<bool> {
        let (response, receiver) = oneshot::channel();
        let hash = to_b256(&payload);
        if self.chain.pending_header(&hash).is_some() {
            // Built (or already verified) here.
            let _ = response.send(true);
            return receiver;
        }
        let chain = self.chain.clone();
        let fetcher = self.fetcher.clone();
        self.context.child("verify").spawn(move |rt| async move {
            tracing::debug!(%hash, view = context.round.view().get(), "verifying a proposal");
            let Some(block) = fetcher.block(&rt, hash, ASK_AFTER, BLOCK_WAIT).await else {
                tracing::debug!(%hash, "proposed block never arrived and no peer had it");
                return;
            };
            let parent = to_b256(&context.parent.1);
            let leader = B256::from_slice(context.leader.as_ref());
            if block.header.parent_hash != parent || block.header.proposer != leader {
                tracing::warn!(%hash, "proposal's parent or proposer does not match its round");
                let _ = response.send(false);
                return;
            }
            let height = block.header.height;
            tracing::debug!(%hash, height, "proposed block arrived");
            if chain.head().height < height
                && !fetcher.ensure(&rt, &chain, parent, BLOCK_WAIT).await
            {
                tracing::debug!(%hash, "parent of the proposal unknown here in time");
                return;
            }
            if chain.is_final(&hash) {
                // Already final here (block sync got it first): it was checked then.
                let _ = response.send(true);
                return;
            }
            match fetcher.verify(&rt, &chain, block).await {
                Some(Ok(header)) => {
                    tracing::debug!(height = header.height, %hash, "verified a proposal");
                    let _ = response.send(true);
                }
                Some(Err(e)) => {
                    tracing::warn!(%hash, error = %e, "voting against a proposal");
                    let _ = response.send(false);
                }
                None => tracing::error!("verification task failed"),
            }
        });
        receiver
    }
}

impl<
    E: crate::Runtime,
    S: Sender<PublicKey = ed25519::PublicKey>,
    A: BlockEngine + Clone,
    R: BlockResolver,
> CertifiableAutomaton for Application<E, S, A, R>
{
}

impl<
    E: crate::Runtime,
    S: Sender<PublicKey = ed25519::PublicKey>,
    A: BlockEngine + Clone,
    R: BlockResolver,
> Relay for Application<E, S, A, R>
{
    type Digest = Digest;
    type PublicKey = ed25519::PublicKey;
    type Plan = Plan<ed25519::PublicKey>;

    fn broadcast(&mut self, payload: Digest, plan: Self::Plan) -> Feedback {
        let recipients = match plan {
            Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
            Plan::Forward { recipients, .. } => recipients,
        };
        let hash = to_b256(&payload);
        let Some(block) = self.chain.pending_block(&hash) else {
            tracing::debug!(%hash, "asked to relay a block this node does not hold");
            return Feedback::Ok;
        };
        let bytes = block.encode_rlp();
        tracing::debug!(%hash, ?recipients, "relaying a block");
        let sent = self.blocks.send(recipients, bytes, true);
        tracing::debug!(%hash, ?sent, "relayed");
        Feedback::Ok
    }
}

impl<E: Supervisor, S: Clone, A: Clone, R: Clone> Clone for Application<E, S, A, R> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.child("application"),
            chain: self.chain.clone(),
            config: self.config.clone(),
            participants: self.participants.clone(),
            fetcher: self.fetcher.clone(),
            blocks: self.blocks.clone(),
            finalized: self.finalized.clone(),
        }
    }
}

impl<
    E: crate::Runtime,
    S: Sender<PublicKey = ed25519::PublicKey>,
    A: BlockEngine + Clone,
    R: BlockResolver,
> Reporter for Application<E, S, A, R>
{
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        let stats = self.chain.consensus_stats();
        match &activity {
            Activity::Notarization(n) => stats.observe_view(n.proposal.round.view().get()),
            Activity::Finalization(f) => stats.observe_view(f.proposal.round.view().get()),
            Activity::ConflictingNotarize(_)
            | Activity::ConflictingFinalize(_)
            | Activity::NullifyFinalize(_) => {
                stats
                    .faults
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(activity = ?activity, "a validator equivocated");
            }
            _ => {}
        }
        if let Activity::Finalization(f) = activity {
            let certificate = certificate_of(&f, &self.participants);
            let _ = self.finalized.send(Finalized {
                hash: certificate.header_hash,
                certificate,
            });
        }
        Feedback::Ok
    }
}

/// Commits finalized blocks, in the order simplex reports them. A block this node did not
/// build or verify (it was down, or the proposal never reached it) is taken from the inbox or
/// fetched from peers and verified; failing that, block sync brings it.
pub(crate) async fn commit_finalized<
    E: Spawner + Clock,
    A: BlockEngine + Clone,
    R: BlockResolver,
>(
    context: E,
    chain: A,
    fetcher: Fetcher<R>,
    mut finalized: mpsc::UnboundedReceiver<Finalized>,
    sync: Arc<Notify>,
) {
    while let Some(Finalized {
        hash,
        mut certificate,
    }) = finalized.recv().await
    {
        if chain.is_final(&hash) {
            continue; // replayed from the journal after a restart, or synced: committed
        }
        if chain.pending_header(&hash).is_none()
            && !fetcher.ensure(&context, &chain, hash, BLOCK_WAIT).await
        {
            if chain.is_final(&hash) {
                continue; // synced meanwhile
            }
            tracing::info!(%hash, "finalized block not held here nor by any peer in time; syncing from peers");
            sync.notify_one();
            continue;
        }
        let c = chain.clone();
        let now = now_ms(&context);
        let result = blocking(&context, move || {
            let header = c
                .pending_header(&hash)
                .ok_or_else(|| format!("block {hash} is unknown here"))?;
            certificate.height = header.height;
            c.finalize(hash, certificate, now)
                .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Some(Ok(committed)) => {
                tracing::debug!(
                    height = committed.header.height,
                    readings = committed.readings,
                    transactions = committed.transactions,
                    "block finalized by simplex"
                )
            }
            Some(Err(e)) => {
                tracing::info!(error = %e, "finalized block not committed here; syncing from peers");
                sync.notify_one();
            }
            None => tracing::error!("finalization task failed"),
        }
    }
}
