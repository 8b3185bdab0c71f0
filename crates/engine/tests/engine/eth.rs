//! The contract lane through the chain: Ethereum transactions checked and queued (nonce and
//! funds against what their senders have queued),
//! ordered into blocks beside readings, re-executed by a second validator before its vote,
//! with receipts stored, fees paid to the proposer, and the state surviving a restart.

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use commonware_runtime::tokio::Context;
use iotchain_api::{BlockEngine, ChainQuery, EngineError, ItemPool, PoolError, StateAt};
use iotchain_block::BlockItem;
use iotchain_engine::{Engine, testing::run};
use iotchain_evm::{EvmError, key_address, sign_tx};
use iotchain_execution::{ItemError, VerifyError};
use k256::ecdsa::SigningKey;

use crate::pair::{Pair, open_validator, pair};

const CHAIN_ID: u64 = 9;
const GWEI: u128 = 1_000_000_000;

struct Net {
    pair: Pair,
    alice: SigningKey,
}

impl std::ops::Deref for Net {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

fn net(context: &Context) -> Net {
    let alice = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    Net {
        pair: pair(
            context,
            CHAIN_ID,
            vec![],
            &[(key_address(&alice), U256::from(10u128.pow(20)))],
        ),
        alice,
    }
}

fn tx(key: &SigningKey, nonce: u64, to: TxKind, value: u64, input: Bytes, gas: u64) -> Bytes {
    sign_tx(
        key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: 10 * GWEI,
            max_priority_fee_per_gas: 2 * GWEI,
            to,
            value: U256::from(value),
            access_list: Default::default(),
            input,
        },
    )
    .unwrap()
}

fn transfer(key: &SigningKey, nonce: u64, to: Address, value: u64) -> Bytes {
    tx(key, nonce, TxKind::Call(to), value, Bytes::new(), 21_000)
}

fn balance(chain: &Engine, a: &Address) -> U256 {
    chain.with_state(StateAt::Committed, |s| {
        s.account(a).map(|x| x.balance).unwrap_or_default()
    })
}

/// Init code of a contract whose runtime emits `LOG1(topic = 0xaa…)` and stores the call's
/// value at slot 0.
fn logger_init() -> Bytes {
    // runtime: CALLVALUE PUSH1 0 SSTORE  PUSH32 topic PUSH1 0 PUSH1 0 LOG1  STOP
    let mut runtime = vec![0x34, 0x60, 0x00, 0x55, 0x7f];
    runtime.extend_from_slice(&[0xaa; 32]);
    runtime.extend_from_slice(&[0x60, 0x00, 0x60, 0x00, 0xa1, 0x00]);
    let len = runtime.len() as u8;
    let mut init = vec![
        0x60, len, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00, 0xf3,
    ];
    init.extend_from_slice(&runtime);
    init.into()
}

#[test]
fn eth_transactions_are_executed_verified_and_committed() {
    run(|context| async move {
        let net = net(&context);
        let alice = key_address(&net.alice);
        let bob = Address::repeat_byte(0xb0);
        let a = &net.a;
        let t1 = a
            .submit_eth_tx(transfer(&net.alice, 0, bob, 1_000))
            .await
            .unwrap();
        // Nonce checks run against the pending view: the replay and the gap are refused.
        let replay = a
            .submit_eth_tx(transfer(&net.alice, 0, bob, 1_000))
            .await
            .unwrap_err();
        assert!(matches!(replay, PoolError::Known { .. }), "{replay}");
        let reuse = a
            .submit_eth_tx(transfer(&net.alice, 0, bob, 6))
            .await
            .unwrap_err();
        assert!(
            matches!(
                reuse,
                PoolError::Item(ItemError::Evm(EvmError::NonceTooLow {
                    got: 0,
                    expected: 1,
                    ..
                }))
            ),
            "{reuse}"
        );
        let gap = a
            .submit_eth_tx(transfer(&net.alice, 5, bob, 6))
            .await
            .unwrap_err();
        assert!(
            matches!(
                gap,
                PoolError::Item(ItemError::Evm(EvmError::NonceTooHigh { got: 5, .. }))
            ),
            "{gap}"
        );
        assert_eq!(
            a.pending_nonce(&alice),
            1,
            "the queue holds the accepted transaction: the sender's next nonce is 1"
        );
        assert_eq!(
            a.with_state(StateAt::Pending, |s| s.account(&alice).unwrap().nonce),
            0,
            "a queued transaction runs once, in its block, not in the pending view"
        );
        let deploy = a
            .submit_eth_tx(tx(&net.alice, 1, TxKind::Create, 0, logger_init(), 200_000))
            .await
            .unwrap();
        let block = net.round(1);
        assert_eq!(block.items.len(), 2);
        assert!(matches!(block.items[0], BlockItem::EthTx(_)));
        assert_eq!(block.header.transaction_count, 2);

        // Both validators hold the same state and the receipts.
        assert_eq!(balance(a, &bob), U256::from(1_000));
        assert_eq!(balance(&net.b, &bob), U256::from(1_000));
        let receipt = |chain: &Engine, h: &B256| chain.receipt(h).unwrap().unwrap();
        let r1 = receipt(a, &t1);
        assert!(r1.receipt.status);
        assert_eq!((r1.height, r1.tx_index), (1, 0));
        assert_eq!(r1.receipt.effective_gas_price, 3 * GWEI);
        let r2 = receipt(&net.b, &deploy);
        assert!(r2.receipt.status);
        let contract = r2.receipt.contract_address.unwrap();
        assert_eq!(r2.receipt.cumulative_gas_used, 21_000 + r2.receipt.gas_used);
        // The proposer (validator a) collected the tips; the base fee was burned.
        let recipient = net
            .genesis
            .fee_recipient(&B256::from(net.keys[0].public_key()));
        let gas = 21_000 + r2.receipt.gas_used;
        assert_eq!(balance(a, &recipient), U256::from(gas as u128 * 2 * GWEI));

        // A call with value emits a log and writes storage; the next block's base fee follows.
        let call = a
            .submit_eth_tx(tx(
                &net.alice,
                2,
                TxKind::Call(contract),
                77,
                Bytes::new(),
                100_000,
            ))
            .await
            .unwrap();
        net.round(2);
        let r3 = receipt(a, &call);
        assert!(r3.receipt.status);
        assert_eq!(r3.receipt.logs.len(), 1);
        assert_eq!(r3.receipt.logs[0].address, contract);
        assert_eq!(r3.receipt.logs[0].topics()[0], B256::repeat_byte(0xaa));
        assert_eq!(
            a.with_state(StateAt::Committed, |s| s
                .storage_slot(&contract, &U256::ZERO)),
            U256::from(77)
        );
        assert_eq!(a.pending_block_context().base_fee, GWEI as u64);

        // Restarting rebuilds the same state (accounts, code, storage) from the store.
        let root = a
            .store()
            .header(a.head().height)
            .unwrap()
            .unwrap()
            .state_root;
        a.shutdown().await;
        let Net { mut pair, alice } = net;
        drop(pair.a);
        pair.a = open_validator(&context, &pair.dirs[0], &pair.genesis, &pair.keys[0]);
        let net = Net { pair, alice };
        let a = net.a.clone();
        assert_eq!(
            a.store()
                .header(a.head().height)
                .unwrap()
                .unwrap()
                .state_root,
            root
        );
        assert_eq!(balance(&a, &bob), U256::from(1_000));
        assert!(
            !a.with_state(StateAt::Committed, |s| s.account_code(&contract))
                .is_empty()
        );
        assert_eq!(
            a.with_state(StateAt::Committed, |s| s
                .storage_slot(&contract, &U256::ZERO)),
            U256::from(77)
        );
        a.submit_eth_tx(transfer(&net.alice, 3, bob, 1))
            .await
            .unwrap();
        net.round(3);
        assert_eq!(balance(&net.b, &bob), U256::from(1_001));
    })
}

#[test]
fn a_block_with_a_bad_eth_transaction_is_refused() {
    run(|context| async move {
        let net = net(&context);
        let bob = Address::repeat_byte(0xb0);
        // A transaction the proposer never checked: nonce 1 without nonce 0.
        let header = net.a.propose_now(net.a.head().hash, true).unwrap().unwrap();
        let mut block = net.a.pending_block(&header.hash()).unwrap();
        block.items = vec![BlockItem::EthTx(transfer(&net.alice, 1, bob, 1))];
        let why = net.b.verify_now(block.clone()).unwrap_err();
        assert!(
            matches!(
                why,
                EngineError::Rejected(VerifyError::Item {
                    index: 0,
                    source: ItemError::Evm(EvmError::NonceTooHigh { .. })
                })
            ),
            "{why}"
        );
        // Undecodable bytes.
        block.items = vec![BlockItem::EthTx(Bytes::from_static(&[0x02, 0xc0]))];
        let why = net.b.verify_now(block.clone()).unwrap_err();
        assert!(
            matches!(
                why,
                EngineError::Rejected(VerifyError::Item {
                    source: ItemError::Evm(EvmError::Malformed(_)),
                    ..
                })
            ),
            "{why}"
        );
        // A valid transaction under a header whose state root does not include it.
        block.items = vec![BlockItem::EthTx(transfer(&net.alice, 0, bob, 1))];
        let why = net.b.verify_now(block).unwrap_err();
        assert!(
            matches!(why, EngineError::Rejected(VerifyError::Root { .. })),
            "{why}"
        );
    })
}

#[test]
fn the_queue_reserves_funds_and_follows_nonces_used_elsewhere() {
    run(|context| async move {
        let net = net(&context);
        let carol = SigningKey::from_bytes(&[8u8; 32].into()).unwrap();
        let carol_address = key_address(&carol);
        let bob = Address::repeat_byte(0xb0);
        // A transfer costs its sender at most 21,000 × 10 gwei + value = 2.1e14 + value.
        let funding = transfer(&net.alice, 0, carol_address, 500_000_000_000_000);
        net.a.submit_eth_tx(funding.clone()).await.unwrap();
        net.round(1);
        // Sent again once final, it is refused for its used nonce (as geth refuses it).
        let again = net.a.submit_eth_tx(funding).await.unwrap_err();
        assert!(
            matches!(
                again,
                PoolError::Item(ItemError::Evm(EvmError::NonceTooLow { .. }))
            ),
            "{again}"
        );
        assert_eq!(
            balance(&net.a, &carol_address),
            U256::from(500_000_000_000_000u64)
        );

        // Carol can pay for one 2e14 transfer, not for a second one on top of it: the queue
        // keeps what the first may cost, although neither has run yet.
        let first = transfer(&carol, 0, bob, 200_000_000_000_000);
        net.a.submit_eth_tx(first.clone()).await.unwrap();
        let second = net
            .a
            .submit_eth_tx(transfer(&carol, 1, bob, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                second,
                PoolError::Item(ItemError::Evm(EvmError::InsufficientFunds { .. }))
            ),
            "{second}"
        );
        assert_eq!(net.a.pending_nonce(&carol_address), 1);
        assert_eq!(net.a.pending_counts(), (0, 1));

        // Another validator includes a different transaction of carol's with nonce 0: the one
        // queued here can no longer run, is dropped, and her next nonce is 1 again.
        net.b
            .submit_eth_tx(transfer(&carol, 0, bob, 3))
            .await
            .unwrap();
        let block = net.round_by(&net.b, &net.a, 2);
        assert_eq!(block.items.len(), 1);
        assert_eq!(
            net.a.pending_counts(),
            (0, 0),
            "the superseded transaction is dropped"
        );
        assert_eq!(net.a.pending_nonce(&carol_address), 1);
        assert_eq!(balance(&net.a, &bob), U256::from(3));
        // What it reserved is free again: another 2e14 transfer fits in what she has left.
        net.a
            .submit_eth_tx(transfer(&carol, 1, bob, 200_000_000_000_000))
            .await
            .unwrap();
        let block = net.round(3);
        assert_eq!(block.items.len(), 1);
        assert_eq!(balance(&net.b, &bob), U256::from(200_000_000_000_003u64));
    })
}

/// A read of the state (a call, a proof) runs on a snapshot: block building and commits go
/// on while it runs, and it sees the state as it was when it began.
#[test]
fn reads_run_on_snapshots_and_never_hold_what_blocks_need() {
    run(|context| async move {
        let net = net(&context);
        let bob = Address::repeat_byte(0xb0);
        net.a
            .submit_eth_tx(transfer(&net.alice, 0, bob, 5))
            .await
            .unwrap();
        let alice = key_address(&net.alice);
        let a = net.a.clone();
        // Inside a read of the pending view and of the committed state, a whole block is
        // built and committed: if the read held the pool's queue or the committed state's
        // lock, this would never finish.
        let during = tokio::task::spawn_blocking(move || {
            a.with_state(StateAt::Committed, |committed| {
                a.with_state(StateAt::Pending, |pending| {
                    let block = a.produce_next_block().unwrap().expect("a block");
                    (
                        committed.account(&alice).map_or(0, |x| x.nonce),
                        pending.account(&alice).map_or(0, |x| x.nonce),
                        block.header.height,
                    )
                })
            })
        });
        let (committed_nonce, pending_nonce, height) =
            tokio::time::timeout(std::time::Duration::from_secs(30), during)
                .await
                .expect("a read held a lock that block production needs")
                .unwrap();
        // The snapshots are what they were when the reads began (Ethereum transactions wait
        // beside the pending view, not in it).
        assert_eq!((committed_nonce, pending_nonce), (0, 0));
        assert_eq!(net.a.head().height, height);
        assert_eq!(
            net.a
                .with_state(StateAt::Committed, |s| s.account(&alice).map(|x| x.nonce)),
            Some(1)
        );
    });
}
