//! Building and verifying are one execution: any block the builder makes from accepted items
//! (some of which no longer apply: replays, unknown or revoked devices, stale nonces) passes
//! the verifier on the same parent state, by the fast path (items the verifier's pool holds)
//! and by the full path (every item decoded and checked again); and a block with one item
//! forged or replayed is refused with the typed reason.

use std::sync::Arc;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use iotchain_block::{BlockItem, DeviceOp, Genesis, SignedTx};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};
use iotchain_evm::{key_address, sign_tx};
use iotchain_execution::{
    AcceptedItem, BlockExecution, ExecutedBlock, ItemError, Policy, ReadingMeta, VerifyError,
    block_context, decode_eth_tx, item_id,
};
use iotchain_state::{State, StateError};
use iotchain_storage::{BlockGas, ItemKind};
use k256::ecdsa::SigningKey;
use proptest::prelude::*;

const CHAIN_ID: u64 = 42;
const PROPOSER: B256 = B256::repeat_byte(0x11);
/// What the readings sign as COSE `external_aad` (a genesis hash: the execution is given it).
const AAD: [u8; 32] = [0x42; 32];
/// Devices registered at genesis, and devices the generated blocks may register.
const REGISTERED: usize = 4;
const UNREGISTERED: usize = 2;
const SENDERS: usize = 2;

struct World {
    genesis: Genesis,
    owner: OwnerKey,
    devices: Vec<DeviceSigner>,
    senders: Vec<SigningKey>,
    /// The state every block is built and verified on.
    base: State,
}

fn world() -> World {
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let mut genesis = Genesis::single_validator(CHAIN_ID, 1, PROPOSER, vec![owner.address()]);
    let senders: Vec<SigningKey> = (0..SENDERS as u8)
        .map(|i| SigningKey::from_bytes(&[i + 20; 32].into()).unwrap())
        .collect();
    for s in &senders {
        genesis
            .alloc
            .insert(key_address(s), U256::from(10u128.pow(20)));
    }
    let devices: Vec<DeviceSigner> = (0..(REGISTERED + UNREGISTERED) as u8)
        .map(|i| {
            let alg = if i % 3 == 2 {
                KeyAlg::P256
            } else {
                KeyAlg::Ed25519
            };
            DeviceSigner::from_secret(alg, &[i + 50; 32]).unwrap()
        })
        .collect();
    let mut base = State::genesis(&genesis);
    for (nonce, d) in devices.iter().take(REGISTERED).enumerate() {
        let tx = SignedTx::sign(&owner, CHAIN_ID, nonce as u64, register(d)).unwrap();
        base.apply_tx(&tx, 0).unwrap();
    }
    base.root().unwrap();
    World {
        genesis,
        owner,
        devices,
        senders,
        base,
    }
}

fn register(d: &DeviceSigner) -> DeviceOp {
    DeviceOp::Register {
        public_key: d.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    }
}

/// What a generated block offers its builder.
#[derive(Debug, Clone)]
enum Op {
    /// A reading of device `device` with `seq` (replays and gaps included).
    Reading { device: usize, seq: u64 },
    /// An owner transaction registering a device, with this owner nonce.
    Register { device: usize, nonce: u64 },
    /// An owner transaction revoking a device.
    Revoke { device: usize, nonce: u64 },
    /// An Ethereum transfer with this sender nonce.
    Transfer {
        sender: usize,
        nonce: u64,
        value: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let devices = REGISTERED + UNREGISTERED;
    prop_oneof![
        6 => (0..devices, 0u64..6).prop_map(|(device, seq)| Op::Reading { device, seq }),
        1 => (REGISTERED..devices, 3u64..6).prop_map(|(device, nonce)| Op::Register { device, nonce }),
        1 => (0..REGISTERED, 3u64..6).prop_map(|(device, nonce)| Op::Revoke { device, nonce }),
        2 => (0..SENDERS, 0u64..3, 1u64..1000).prop_map(|(sender, nonce, value)| Op::Transfer { sender, nonce, value }),
    ]
}

/// An item as the pool holds it once it accepted it (signatures good: the pool verified them).
fn accepted(w: &World, seq: u64, op: &Op) -> AcceptedItem {
    let (kind, bytes) = match op {
        Op::Reading { device, seq } => (
            ItemKind::Reading,
            Bytes::from(w.devices[*device].sign_reading(&AAD, *seq, 1_000 + seq, None, &[0x01])),
        ),
        Op::Register { device, nonce } => (
            ItemKind::Tx,
            Bytes::from(
                SignedTx::sign(&w.owner, CHAIN_ID, *nonce, register(&w.devices[*device]))
                    .unwrap()
                    .encode_rlp(),
            ),
        ),
        Op::Revoke { device, nonce } => (
            ItemKind::Tx,
            Bytes::from(
                SignedTx::sign(
                    &w.owner,
                    CHAIN_ID,
                    *nonce,
                    DeviceOp::Revoke {
                        device: w.devices[*device].address(),
                    },
                )
                .unwrap()
                .encode_rlp(),
            ),
        ),
        Op::Transfer {
            sender,
            nonce,
            value,
        } => (
            ItemKind::EthTx,
            sign_tx(
                &w.senders[*sender],
                TxEip1559 {
                    chain_id: CHAIN_ID,
                    nonce: *nonce,
                    gas_limit: 21_000,
                    max_fee_per_gas: 10_000_000_000,
                    max_priority_fee_per_gas: 1_000_000_000,
                    to: TxKind::Call(Address::repeat_byte(0xb0)),
                    value: U256::from(*value),
                    access_list: Default::default(),
                    input: Bytes::new(),
                },
            )
            .unwrap(),
        ),
    };
    let (meta, key_version) = match kind {
        ItemKind::Reading => {
            let (meta, _) = ReadingMeta::decode(&bytes).unwrap();
            let kv = w.base.device(&meta.device).map_or(0, |d| d.key_version());
            (Some(meta), kv)
        }
        _ => (None, 0),
    };
    let eth =
        (kind == ItemKind::EthTx).then(|| Arc::new(decode_eth_tx(&w.genesis, &bytes).unwrap()));
    AcceptedItem {
        seq,
        kind,
        id: B256::ZERO,
        bytes,
        arrival_ms: 5,
        key_version,
        meta,
        eth,
        max_cost: U256::ZERO,
    }
    .with_id()
}

trait WithId {
    fn with_id(self) -> Self;
}

impl WithId for AcceptedItem {
    fn with_id(mut self) -> Self {
        self.id = match self.kind {
            ItemKind::Reading => B256::from(iotchain_reading::reading_id(&self.bytes)),
            _ => item_id(&self.block_item()),
        };
        self
    }
}

fn context(w: &World) -> iotchain_evm::BlockContext {
    block_context(
        &w.genesis,
        1,
        2_000,
        B256::ZERO,
        &PROPOSER,
        BlockGas {
            base_fee: w.genesis.params.min_base_fee,
            gas_used: 0,
        },
    )
}

fn build(w: &World, items: &[AcceptedItem]) -> ExecutedBlock {
    let mut exec = BlockExecution::new(
        &w.genesis,
        &AAD,
        Policy::Build,
        w.base.clone(),
        context(w),
        &(),
    );
    for item in items {
        exec.push_accepted(item).unwrap();
    }
    exec.finish().unwrap().seal(B256::ZERO, 2_000, PROPOSER)
}

/// Verifies `block` on the world's base state; with `known`, as a verifier whose pool holds
/// these items.
fn verify(
    w: &World,
    block: &iotchain_block::Block,
    known: &[AcceptedItem],
) -> Result<ExecutedBlock, VerifyError> {
    let mut exec = BlockExecution::new(
        &w.genesis,
        &AAD,
        Policy::Verify,
        w.base.clone(),
        context(w),
        &(),
    );
    for item in &block.items {
        let id = item_id(item);
        exec.push(item.clone(), known.iter().find(|k| k.id == id), 9)?;
    }
    exec.finish()?.check(block.header.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn what_the_builder_builds_the_verifier_accepts(ops in proptest::collection::vec(op(), 0..24)) {
        let w = world();
        let items: Vec<AcceptedItem> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| accepted(&w, i as u64 + 1, op))
            .collect();
        let built = build(&w, &items);
        prop_assert!(built.block.items.len() <= items.len());
        let full = verify(&w, &built.block, &[]);
        prop_assert!(full.is_ok(), "the full path refused: {:?}", full.err());
        let fast = verify(&w, &built.block, &items);
        prop_assert!(fast.is_ok(), "the fast path refused: {:?}", fast.err());
        let (full, fast) = (full.unwrap(), fast.unwrap());
        prop_assert_eq!(full.block.header.hash(), built.block.header.hash());
        prop_assert_eq!(fast.block.header.hash(), built.block.header.hash());
        prop_assert_eq!(&full.readings.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            &built.readings.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        prop_assert_eq!(full.receipts, built.receipts);
        // Everything left out was refused for a reason the state gives, never silently.
        prop_assert_eq!(built.consumed.len(), items.len());
        // The body is what the header commits to (what a block fetched from a peer is held
        // against): a dropped item, or two readings swapped, is caught without executing.
        // (The interleaving of readings with transactions is held by the state root only.)
        prop_assert!(built.block.body_matches_header());
        if !built.block.items.is_empty() {
            let mut dropped = built.block.clone();
            dropped.items.pop();
            prop_assert!(!dropped.body_matches_header());
        }
        let readings: Vec<usize> = built.block.items.iter().enumerate()
            .filter(|(_, i)| matches!(i, BlockItem::Reading(_)))
            .map(|(k, _)| k)
            .collect();
        if let [a, b, ..] = readings[..] {
            let mut swapped = built.block.clone();
            swapped.items.swap(a, b);
            prop_assert!(!swapped.body_matches_header());
        }
    }
}

#[test]
fn a_forged_reading_refuses_the_block_with_its_reason() {
    let w = world();
    let items: Vec<AcceptedItem> = (0..4)
        .map(|s| accepted(&w, s + 1, &Op::Reading { device: 0, seq: s }))
        .collect();
    let mut block = build(&w, &items).block;
    assert_eq!(block.items.len(), 4);
    // The third reading's signature altered: its bytes, and so its id, are another reading's
    // that the device never signed.
    let BlockItem::Reading(bytes) = &block.items[2] else {
        panic!("a reading")
    };
    let mut forged = bytes.to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let forged_id = B256::from(iotchain_reading::reading_id(&forged));
    block.items[2] = BlockItem::Reading(forged.into());
    match verify(&w, &block, &[]) {
        Err(VerifyError::BadSignature { id, device }) => {
            assert_eq!(id, forged_id);
            assert_eq!(device, w.devices[0].address());
        }
        other => panic!("expected a bad signature, got {other:?}"),
    }
    // The pool's verified copy does not vouch for bytes that differ from it.
    assert!(matches!(
        verify(&w, &block, &items),
        Err(VerifyError::BadSignature { .. })
    ));
}

#[test]
fn a_replayed_reading_refuses_the_block_naming_the_item() {
    let w = world();
    let items: Vec<AcceptedItem> = (0..3)
        .map(|s| accepted(&w, s + 1, &Op::Reading { device: 1, seq: s }))
        .collect();
    let mut block = build(&w, &items).block;
    block.items.push(block.items[0].clone());
    match verify(&w, &block, &[]) {
        Err(VerifyError::Item {
            index: 3,
            source:
                ItemError::State(StateError::Replay {
                    seq: 0, last: 2, ..
                }),
        }) => {}
        other => panic!("expected a replay at item 3, got {other:?}"),
    }
}

#[test]
fn the_builder_leaves_out_what_no_longer_applies() {
    let w = world();
    let stranger = REGISTERED; // not registered at genesis
    let items = vec![
        accepted(&w, 1, &Op::Reading { device: 0, seq: 0 }),
        accepted(&w, 2, &Op::Reading { device: 0, seq: 0 }),
        accepted(
            &w,
            3,
            &Op::Reading {
                device: stranger,
                seq: 0,
            },
        ),
        accepted(
            &w,
            4,
            &Op::Transfer {
                sender: 0,
                nonce: 1,
                value: 1,
            },
        ),
        accepted(
            &w,
            5,
            &Op::Transfer {
                sender: 0,
                nonce: 0,
                value: 1,
            },
        ),
    ];
    let built = build(&w, &items);
    // The replay, the unknown device and the transfer with a nonce gap are left out.
    assert_eq!(
        built.block.items,
        vec![items[0].block_item(), items[4].block_item()]
    );
    assert_eq!(built.consumed, vec![1, 2, 3, 4, 5]);
    assert!(verify(&w, &built.block, &[]).is_ok());
}

/// An owner transaction registering 100 devices with the largest labels allowed (about 1.6
/// MB): three of them are more than a block may carry.
fn heavy_batch(w: &World, nonce: u64) -> AcceptedItem {
    let label = ("k".repeat(250), "v".repeat(250));
    let devices = (0..100u32)
        .map(|i| {
            let mut secret = [9u8; 32];
            secret[..4].copy_from_slice(&(nonce as u32 * 1000 + i).to_be_bytes());
            let key = DeviceSigner::from_secret(KeyAlg::Ed25519, &secret)
                .unwrap()
                .public_key();
            let mut d = iotchain_block::NewDevice::new(key, "m");
            d.labels = vec![label.clone(); 32];
            d
        })
        .collect();
    let tx = SignedTx::sign(
        &w.owner,
        CHAIN_ID,
        nonce,
        DeviceOp::RegisterMany { devices },
    )
    .unwrap();
    AcceptedItem {
        seq: nonce,
        kind: ItemKind::Tx,
        id: B256::ZERO,
        bytes: Bytes::from(tx.encode_rlp()),
        arrival_ms: 5,
        key_version: 0,
        meta: None,
        eth: None,
        max_cost: U256::ZERO,
    }
    .with_id()
}

#[test]
fn a_block_carries_at_most_4_mib_of_owner_transactions() {
    let w = world();
    let first = REGISTERED as u64;
    let batches: Vec<AcceptedItem> = (first..first + 3).map(|n| heavy_batch(&w, n)).collect();
    assert!(
        batches
            .iter()
            .all(|b| b.bytes.len() < iotchain_block::MAX_OWNER_TX_BYTES)
    );
    let two = build(&w, &batches[..2]);
    assert_eq!(two.block.items.len(), 2);
    let mut three = two.block.clone();
    three.items.push(batches[2].block_item());
    match verify(&w, &three, &[]) {
        Err(VerifyError::OwnerTxBytes(max)) => {
            assert_eq!(max, iotchain_block::MAX_OWNER_TX_BYTES_PER_BLOCK)
        }
        other => panic!("expected the owner-transaction bytes limit, got {other:?}"),
    }
    // The 200 devices of the two that fit are registered.
    let devices = two.state.devices().count();
    assert_eq!(devices, REGISTERED + 200);
}
