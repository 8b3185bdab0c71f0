//! Which validators this one hears from: every p2p message that arrives (on any channel:
//! votes, certificates, simplex's resolver, blocks, block fetch) notes its sender and the
//! time in [`iotchain_api::ConsensusStats`], which `/v1/status`, `/metrics` and
//! `net_peerCount` read. The p2p layer authenticates every sender, and never delivers this
//! validator's own messages (the one-validator loopback does: those are not counted).

use std::num::NonZeroUsize;

use alloy_primitives::B256;
use commonware_cryptography::ed25519;
use commonware_p2p::{Message, Receiver};
use commonware_runtime::Clock;
use iotchain_api::ChainQuery;

use crate::app::now_ms;

/// A p2p receiver that notes who each message came from.
pub(crate) struct Heard<R, A, C> {
    pub(crate) inner: R,
    pub(crate) chain: A,
    pub(crate) clock: C,
    pub(crate) me: ed25519::PublicKey,
}

impl<R: std::fmt::Debug, A, C> std::fmt::Debug for Heard<R, A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heard").field("inner", &self.inner).finish()
    }
}

impl<R, A, C> Receiver for Heard<R, A, C>
where
    R: Receiver<PublicKey = ed25519::PublicKey>,
    A: ChainQuery + Send + Sync + 'static,
    C: Clock + Send + Sync + 'static,
{
    type Error = R::Error;
    type PublicKey = ed25519::PublicKey;

    async fn recv(&mut self) -> Result<Message<Self::PublicKey>, Self::Error> {
        let message = self.inner.recv().await?;
        if message.0 != self.me {
            self.chain
                .consensus_stats()
                .heard_from(B256::from_slice(message.0.as_ref()), now_ms(&self.clock));
        }
        Ok(message)
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}
