//! The network of a one-validator set: sends reach nobody, receives never yield.

use std::{num::NonZeroUsize, time::SystemTime};

use commonware_actor::{Feedback, Unreliable};
use commonware_cryptography::ed25519::PublicKey;
use commonware_p2p::{
    BlockedSubscription, Blocker, CheckedSender, LimitedSender, Receiver, Recipients,
};
use commonware_runtime::{IoBuf, IoBufs};

/// A sender, receiver and blocker with no peers.
#[derive(Clone, Debug)]
pub struct Loopback(pub PublicKey);

/// A checked send to no recipient.
#[derive(Debug)]
pub struct Nobody;

impl CheckedSender for Nobody {
    type PublicKey = PublicKey;
    fn recipients(&self) -> Vec<PublicKey> {
        Vec::new()
    }
    fn send(self, _message: impl Into<IoBufs> + Send, _priority: bool) -> Unreliable<Feedback> {
        Unreliable::new(Feedback::Ok)
    }
}

impl LimitedSender for Loopback {
    type PublicKey = PublicKey;
    type Checked<'a> = Nobody;
    fn check(&mut self, _recipients: Recipients<PublicKey>) -> Result<Nobody, SystemTime> {
        Ok(Nobody)
    }
}

/// Never receives: there is no peer.
#[derive(Debug)]
pub struct Silence;

impl Receiver for Silence {
    type Error = std::convert::Infallible;
    type PublicKey = PublicKey;
    async fn recv(&mut self) -> Result<(PublicKey, IoBuf), Self::Error> {
        std::future::pending().await
    }
    fn capacity(&self) -> NonZeroUsize {
        NonZeroUsize::new(1).expect("non-zero")
    }
}

impl Blocker for Loopback {
    type PublicKey = PublicKey;
    fn block(&mut self, _peer: PublicKey) -> Feedback {
        Feedback::Ok
    }
    fn blocked(&mut self) -> BlockedSubscription<PublicKey> {
        let (_sender, receiver) =
            commonware_utils::channel::ring::channel(NonZeroUsize::new(1).expect("non-zero"));
        receiver
    }
}

/// A (sender, receiver) pair for one engine channel.
pub fn pair(me: PublicKey) -> (Loopback, Silence) {
    (Loopback(me), Silence)
}
