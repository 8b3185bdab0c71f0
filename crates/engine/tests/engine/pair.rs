//! Two validators' engines on one runtime, and the rounds tests play in consensus's place.

use alloy_primitives::{Address, B256, U256};
use commonware_runtime::tokio::Context;
use iotchain_api::{BlockEngine, ChainQuery};
use iotchain_block::{Block, FinalityCertificate, Genesis};
use iotchain_crypto::ValidatorKey;
use iotchain_engine::{
    Engine,
    testing::{config, open},
};

/// Validators `a` and `b` of one chain.
pub(crate) struct Pair {
    pub(crate) a: Engine,
    pub(crate) b: Engine,
    pub(crate) keys: Vec<ValidatorKey>,
    pub(crate) genesis: Genesis,
    pub(crate) dirs: Vec<tempfile::TempDir>,
}

/// A chain of two validators with these owners and funded Ethereum accounts.
pub(crate) fn pair(
    context: &Context,
    chain_id: u64,
    owners: Vec<Address>,
    alloc: &[(Address, U256)],
) -> Pair {
    let keys = vec![
        ValidatorKey::from_secret(&[2; 32]),
        ValidatorKey::from_secret(&[3; 32]),
    ];
    let validators: Vec<B256> = keys.iter().map(|k| B256::from(k.public_key())).collect();
    let mut genesis = Genesis::with_validators(chain_id, 1, &validators, owners);
    genesis.alloc.extend(alloc.iter().copied());
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    Pair {
        a: open_validator(context, &dirs[0], &genesis, &keys[0]),
        b: open_validator(context, &dirs[1], &genesis, &keys[1]),
        keys,
        genesis,
        dirs,
    }
}

/// Opens (or reopens) a validator's engine in `dir`.
pub(crate) fn open_validator(
    context: &Context,
    dir: &tempfile::TempDir,
    genesis: &Genesis,
    key: &ValidatorKey,
) -> Engine {
    open(
        context,
        config(dir.path().to_path_buf(), genesis.clone(), key.clone()),
    )
    .unwrap()
}

impl Pair {
    /// Both validators' finalize votes on a block.
    pub(crate) fn certify(&self, block: &Block, view: u64) -> FinalityCertificate {
        let h = &block.header;
        self.keys.iter().fold(
            FinalityCertificate::new(h.height, h.hash(), 0, view, view - 1),
            |c, k| c.signed_by(k),
        )
    }

    /// `a` proposes a block of what it holds; `b` re-executes and verifies it; both commit it.
    pub(crate) fn round(&self, view: u64) -> Block {
        self.round_by(&self.a, &self.b, view)
    }

    /// `proposer` proposes; `verifier` re-executes and verifies; both commit.
    pub(crate) fn round_by(&self, proposer: &Engine, verifier: &Engine, view: u64) -> Block {
        let header = proposer
            .propose_now(proposer.head().hash, true)
            .unwrap()
            .unwrap();
        let block = proposer.pending_block(&header.hash()).unwrap();
        verifier.verify_now(block.clone()).unwrap();
        let cert = self.certify(&block, view);
        proposer.finalize_now(header.hash(), cert.clone()).unwrap();
        verifier.finalize_now(header.hash(), cert).unwrap();
        block
    }
}
