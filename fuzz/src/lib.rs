//! Fixtures and seeds shared by the fuzz targets.
//!
//! Every fixture is deterministic (fixed secrets; Ed25519 and RFC 6979 P-256 signatures), so
//! the seeds one process writes are the fixtures another process checks against: a target
//! whose oracle says "only a fixture verifies" can be run on a corpus seeded earlier.
//!
//! Seeding: a target started with `IOTCHAIN_FUZZ_SEEDS=<dir>` in its environment writes its
//! seed inputs into `<dir>` and exits before fuzzing (see [`init`]; `scripts/fuzz.sh` does it
//! for an empty corpus).

use std::sync::OnceLock;

use alloy_consensus::{TxEip1559, TxEip2930, TxLegacy};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use iotchain_block::{
    Block, BlockItem, DeviceKeyJson, DeviceOp, FinalityCertificate, Genesis, Header, ProofBundle,
    SignedTx, SyncBlock, SyncBlocks,
};
use iotchain_crypto::{DevicePublicKey, DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_reading::{Alg, UnsignedReading};

/// Chain id of every fixture.
pub const CHAIN_ID: u64 = 1337;

/// Environment variable naming the directory [`init`] writes seeds into.
pub const SEEDS_ENV: &str = "IOTCHAIN_FUZZ_SEEDS";

/// Called once by every target before fuzzing: with [`SEEDS_ENV`] set, writes the target's
/// seeds into that directory and exits.
pub fn init(target: &str) {
    let Some(dir) = std::env::var_os(SEEDS_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let seeds = seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write a seed");
    }
    eprintln!(
        "{target}: wrote {} seeds into {}",
        seeds.len(),
        dir.display()
    );
    std::process::exit(0);
}

/// A device key of the fixtures, with what it signs.
pub enum FixtureDevice {
    /// Ed25519 (through the node's own signer: Ed25519 signatures are deterministic).
    Ed25519(DeviceSigner),
    /// P-256, signed with RFC 6979 nonces.
    P256(p256::ecdsa::SigningKey),
}

impl FixtureDevice {
    /// The device's public key.
    pub fn public_key(&self) -> DevicePublicKey {
        match self {
            Self::Ed25519(s) => s.public_key(),
            Self::P256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                DevicePublicKey::from_bytes(Alg::Es256, point.as_bytes()).expect("a P-256 key")
            }
        }
    }

    /// Signs a reading (tagged COSE_Sign1) of the fixtures' chain (COSE `external_aad` =
    /// [`GENESIS_HASH`]).
    pub fn sign_reading(&self, seq: u64, ts: u64, stream: Option<&str>, data: &[u8]) -> Vec<u8> {
        let key = self.public_key();
        let unsigned = UnsignedReading::new(key.alg(), key.address(), seq, ts, stream, data);
        let signature: [u8; 64] = match self {
            Self::Ed25519(s) => s.sign(&unsigned.sig_structure(GENESIS_HASH.as_slice())),
            Self::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature =
                    k.sign(&unsigned.sig_structure(GENESIS_HASH.as_slice()));
                sig.to_bytes().into()
            }
        };
        unsigned.into_message(&signature)
    }
}

/// Everything validly signed that the targets start from.
/// The genesis hash the fixtures' readings sign as COSE `external_aad` (a stand-in: the
/// fixture blocks are not chained to a genesis block).
pub const GENESIS_HASH: B256 = B256::repeat_byte(0x9e);

pub struct Fixtures {
    /// The four validators (quorum 3).
    pub validators: Vec<ValidatorKey>,
    /// Their genesis (chain [`CHAIN_ID`]).
    pub genesis: Genesis,
    /// Device A (Ed25519) and device B (P-256).
    pub devices: Vec<FixtureDevice>,
    /// The owner registering devices.
    pub owner: OwnerKey,
    /// An Ethereum account.
    pub eth_key: k256::ecdsa::SigningKey,
    /// Signed readings (A seq 1, B seq 1, A seq 2), as in block 5.
    pub readings: Vec<Vec<u8>>,
    /// Signed owner transactions (register, rotate, revoke).
    pub owner_txs: Vec<Vec<u8>>,
    /// Signed Ethereum transactions (EIP-1559, EIP-2930, legacy with EIP-155).
    pub eth_txs: Vec<Vec<u8>>,
    /// Block 5 (the three readings, a register and an EIP-1559 transaction), then 6 and 7
    /// (empty), each the child of the one before.
    pub blocks: Vec<Block>,
    /// Certificate of block 5 (validators 0, 1, 2).
    pub cert5: FinalityCertificate,
    /// Certificate of block 7 (all four validators).
    pub cert7: FinalityCertificate,
    /// Every valid proof bundle of this material: each reading of block 5, certified directly
    /// (`cert5`) or through blocks 6 and 7 (`cert7`).
    pub bundles: Vec<ProofBundle>,
}

/// The fixtures (built once per process).
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(build)
}

fn child(parent: &Header) -> Header {
    Header {
        height: parent.height + 1,
        parent_hash: parent.hash(),
        timestamp_ms: parent.timestamp_ms + 200,
        readings_root: B256::from(iotchain_merkle::root(&[])),
        reading_count: 0,
        transactions_root: B256::from(iotchain_merkle::root(&[])),
        transaction_count: 0,
        ..parent.clone()
    }
}

fn build() -> Fixtures {
    let validators: Vec<ValidatorKey> = (1..=4u8)
        // Seeds 0x21..=0x24 since the readings name their chain: the blocks and bundles of
        // the fixtures before (seeds 1..=4) are still in the corpora, with real certificates
        // of the old keys, and must not be taken for forgeries. Change them with every change
        // of the fixtures' signed bytes.
        .map(|i| ValidatorKey::from_secret(&[0x20 + i; 32]))
        .collect();
    let keys: Vec<B256> = validators
        .iter()
        .map(|v| B256::from(v.public_key()))
        .collect();
    let owner = OwnerKey::from_secret(&[0x0a; 32]).expect("owner key");
    let genesis = Genesis::with_validators(CHAIN_ID, 1_000, &keys, vec![owner.address()]);
    let devices = vec![
        FixtureDevice::Ed25519(
            DeviceSigner::from_secret(KeyAlg::Ed25519, &[0x0b; 32]).expect("ed25519 key"),
        ),
        FixtureDevice::P256(p256::ecdsa::SigningKey::from_slice(&[0x0c; 32]).expect("p256 key")),
    ];
    // data: 21.5 (a CBOR float), {"t": -3}, [1, "x"]
    let readings = vec![
        devices[0].sign_reading(1, 1_700_000_000_000, None, &[0xf9, 0x4d, 0x60]),
        devices[1].sign_reading(
            1,
            1_700_000_000_100,
            Some("temp"),
            &[0xa1, 0x61, 0x74, 0x22],
        ),
        devices[0].sign_reading(
            2,
            1_700_000_000_200,
            Some("door"),
            &[0x82, 0x01, 0x61, 0x78],
        ),
    ];
    let register = DeviceOp::Register {
        public_key: devices[0].public_key(),
        model: "tsensor-1".into(),
        firmware_hash: Bytes::from(vec![0xaa; 32]),
        labels: vec![("site".into(), "dock 4".into())],
    };
    let rotate = DeviceOp::Rotate {
        device: devices[1].public_key().address(),
        public_key: devices[0].public_key(),
    };
    let revoke = DeviceOp::Revoke {
        device: devices[1].public_key().address(),
    };
    let owner_txs: Vec<Vec<u8>> = [register, rotate, revoke]
        .into_iter()
        .enumerate()
        .map(|(nonce, op)| {
            SignedTx::sign(&owner, CHAIN_ID, nonce as u64, op)
                .expect("sign")
                .encode_rlp()
        })
        .collect();
    let eth_key = k256::ecdsa::SigningKey::from_bytes(&[0x0d; 32].into()).expect("k256 key");
    let to = Address::repeat_byte(0x42);
    let eth_txs: Vec<Vec<u8>> = vec![
        iotchain_evm::sign_tx(
            &eth_key,
            TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: 0,
                gas_limit: 21_000,
                max_fee_per_gas: 30_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(to),
                value: U256::from(1_000u64),
                ..Default::default()
            },
        ),
        iotchain_evm::sign_tx(
            &eth_key,
            TxEip2930 {
                chain_id: CHAIN_ID,
                nonce: 1,
                gas_price: 20_000_000_000,
                gas_limit: 100_000,
                to: TxKind::Create,
                input: Bytes::from(vec![0x60, 0x00, 0x60, 0x00, 0xf3]),
                ..Default::default()
            },
        ),
        iotchain_evm::sign_tx(
            &eth_key,
            TxLegacy {
                chain_id: Some(CHAIN_ID),
                nonce: 2,
                gas_price: 20_000_000_000,
                gas_limit: 50_000,
                to: TxKind::Call(to),
                input: Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb]),
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    .map(|t| t.expect("sign").to_vec())
    .collect();

    let items = vec![
        BlockItem::Reading(readings[0].clone().into()),
        BlockItem::Reading(readings[1].clone().into()),
        BlockItem::Tx(owner_txs[0].clone().into()),
        BlockItem::Reading(readings[2].clone().into()),
        BlockItem::EthTx(eth_txs[0].clone().into()),
    ];
    let ids: Vec<[u8; 32]> = readings
        .iter()
        .map(|m| iotchain_reading::reading_id(m))
        .collect();
    let tx_leaves = [
        iotchain_merkle::leaf_hash(&owner_txs[0]),
        iotchain_merkle::leaf_hash(&eth_txs[0]),
    ];
    let h5 = Header {
        chain_id: CHAIN_ID,
        height: 5,
        parent_hash: B256::repeat_byte(0x55),
        timestamp_ms: 1_700_000_001_000,
        proposer: keys[0],
        readings_root: B256::from(iotchain_merkle::root(&ids)),
        reading_count: 3,
        transactions_root: B256::from(iotchain_merkle::root(&tx_leaves)),
        transaction_count: 2,
        state_root: B256::repeat_byte(0x57),
    };
    let h6 = child(&h5);
    let h7 = child(&h6);
    let blocks = vec![
        Block {
            header: h5.clone(),
            items,
        },
        Block {
            header: h6.clone(),
            items: vec![],
        },
        Block {
            header: h7.clone(),
            items: vec![],
        },
    ];
    let mut cert5 = FinalityCertificate::new(5, h5.hash(), 0, 9, 8);
    for v in &validators[..3] {
        cert5 = cert5.signed_by(v);
    }
    let mut cert7 = FinalityCertificate::new(7, h7.hash(), 0, 12, 11);
    for v in &validators {
        cert7 = cert7.signed_by(v);
    }
    let device_of = [0usize, 1, 0];
    let mut bundles = Vec::new();
    for (i, m) in readings.iter().enumerate() {
        for via_descendants in [false, true] {
            bundles.push(ProofBundle {
                version: 1,
                reading_id: B256::from(ids[i]),
                message: m.clone().into(),
                index: i as u64,
                audit_path: iotchain_merkle::audit_path(&ids, i)
                    .into_iter()
                    .map(B256::from)
                    .collect(),
                device_key: DeviceKeyJson::from_key(&devices[device_of[i]].public_key()),
                header: h5.clone(),
                descendants: if via_descendants {
                    vec![h6.clone(), h7.clone()]
                } else {
                    vec![]
                },
                certificate: if via_descendants {
                    cert7.clone()
                } else {
                    cert5.clone()
                },
            });
        }
    }
    for b in &bundles {
        b.verify(&genesis, &GENESIS_HASH)
            .expect("fixture bundles verify");
    }
    Fixtures {
        validators,
        genesis,
        devices,
        owner,
        eth_key,
        readings,
        owner_txs,
        eth_txs,
        blocks,
        cert5,
        cert7,
        bundles,
    }
}

/// The validator keys of the fixtures' genesis.
pub fn validator_keys() -> Vec<B256> {
    fixtures().genesis.validator_keys()
}

/// Whether `got` is `want` with a subset of its signatures, each at most once, in any order:
/// the only certificates that may verify when `want` is the only one signed.
pub fn certificate_within(got: &FinalityCertificate, want: &FinalityCertificate) -> bool {
    got.height == want.height
        && got.header_hash == want.header_hash
        && got.epoch == want.epoch
        && got.view == want.view
        && got.parent_view == want.parent_view
        && got
            .signatures
            .iter()
            .enumerate()
            .all(|(i, s)| want.signatures.contains(s) && !got.signatures[..i].contains(s))
}

/// A reading's canonical message (`None` for bytes that are no reading): every encoding of
/// one signed reading has the same one, and the same id.
pub fn canonical_reading(message: &[u8]) -> Option<Vec<u8>> {
    iotchain_reading::decode(message)
        .ok()
        .map(|r| r.to_canonical())
}

/// Whether `message` is an encoding of one of the fixtures' readings.
pub fn is_fixture_reading(message: &[u8]) -> bool {
    let c = canonical_reading(message);
    c.is_some()
        && fixtures()
            .readings
            .iter()
            .any(|m| canonical_reading(m) == c)
}

/// Whether `got` is one of the fixtures' bundles, up to the order and number of its
/// certificate's signatures, the encoding of its device key (P-256 keys may be compressed)
/// and the encoding of its message (the id is over the canonical message).
pub fn is_fixture_bundle(got: &ProofBundle) -> bool {
    let key = |b: &ProofBundle| b.device_key.to_key().ok();
    let message = canonical_reading(&got.message);
    fixtures().bundles.iter().any(|want| {
        got.version == want.version
            && got.reading_id == want.reading_id
            && message.is_some()
            && message == canonical_reading(&want.message)
            && got.index == want.index
            && got.audit_path == want.audit_path
            && got.device_key.alg == want.device_key.alg
            && key(got).is_some()
            && key(got) == key(want)
            && got.header == want.header
            && got.descendants == want.descendants
            && certificate_within(&got.certificate, &want.certificate)
    })
}

/// A reader of fuzz input that yields zeros once it runs out.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next 8 bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// The next `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializes")
}

/// The seed inputs of a target.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let f = fixtures();
    match target {
        "reading" => f.readings.clone(),
        "batch" => vec![
            iotchain_reading::encode_batch(&f.readings),
            iotchain_reading::encode_batch(&f.readings[..1]),
        ],
        "transaction" => f.owner_txs.clone(),
        "eth_tx" => f.eth_txs.clone(),
        "block" => f
            .blocks
            .iter()
            .map(Block::encode_rlp)
            .chain(std::iter::once(f.blocks[0].header.encode_rlp()))
            .collect(),
        "sync_blocks" => {
            let page = |blocks: &[usize]| SyncBlocks {
                blocks: blocks
                    .iter()
                    .map(|&i| SyncBlock {
                        block: f.blocks[i].encode_rlp().into(),
                        certificate: if i == 0 {
                            f.cert5.clone()
                        } else {
                            f.cert7.clone()
                        },
                    })
                    .collect(),
            };
            vec![json(&page(&[0])), json(&page(&[0, 2])), json(&page(&[]))]
        }
        "rpc_params" => [
            r#"["0x1", "latest"]"#,
            r#"{"blockHash": "0x5555555555555555555555555555555555555555555555555555555555555555"}"#,
            r#"{"blockNumber": "0x2a"}"#,
            r#"[{"from": "0x4242424242424242424242424242424242424242", "to": "0x0101010101010101010101010101010101010101", "gas": "0x5208", "gasPrice": "0x3b9aca00", "value": "0x1", "data": "0xa9059cbb"}, "pending"]"#,
            r#"{"input": "0x02", "data": "0x01", "maxFeePerGas": "0xffffffffffffffffffffffffffffffffffffffff"}"#,
            r#"{"fromBlock": "0x1", "toBlock": "latest", "address": ["0x0101010101010101010101010101010101010101"], "topics": ["0x0202020202020202020202020202020202020202020202020202020202020202", null, ["0x0000000000000000000000000000000000000000000000000000000000000000"]]}"#,
            r#"["logs", {"address": "0x0101010101010101010101010101010101010101"}]"#,
            r#""0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff""#,
            r#"["0x10000000000000000", "earliest", "safe", "finalized", "0x"]"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "proof_bundle" => {
            let mut s: Vec<Vec<u8>> = f.bundles.iter().map(json).collect();
            // The structured mode: a fixture and no mutation (see the target).
            s.push(vec![0x01, 0x00]);
            s.push(vec![0x01, 0x03, 0x09, 0x00, 0x01, 0x01]);
            s
        }
        "range_proof" => vec![
            // mode 0: an accumulator and a range, unmutated, then with one mutation
            vec![0, 200, 7, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0],
            vec![0, 17, 0, 5, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1],
            // mode 1: a key, then a leaf node [hp(path), value] as the only node
            std::iter::once(1u8)
                .chain([0x20; 32])
                .chain([24u8])
                .chain([0xf0, 0x2e, 0xa1, 0x20].into_iter().chain([0xaa; 44]))
                .collect(),
        ],
        "light" => vec![
            // mode 0 (differential header hash): 5 u64 and 5 hashes
            std::iter::once(0u8).chain((1..=200u8).map(|i| i.wrapping_mul(37))).collect(),
            // mode 1 (mutated fixture chain): no mutation, then one
            vec![1, 0],
            vec![1, 2, 0, 5, 1],
            // mode 2 (arbitrary inputs)
            std::iter::once(2u8).chain((0..255u8).map(|i| i.wrapping_mul(91))).collect(),
        ],
        "mqtt_payload" => {
            let mut s = Vec::new();
            for (ct, payload) in [
                (0u8, f.readings[0].clone()),
                (0, iotchain_reading::encode_batch(&f.readings)),
                (1, f.readings[1].clone()),
                (2, iotchain_reading::encode_batch(&f.readings[1..])),
                (3, iotchain_reading::encode_batch(&f.readings[..1])),
            ] {
                // content type, max batch, topic filter, ack template, topic, payload
                let mut seed = vec![ct, 10];
                for part in [
                    "iotchain/+/readings",
                    "iotchain/{device}/acks",
                    "iotchain/0x00112233445566778899aabbccddeeff00112233/readings",
                ] {
                    seed.push(part.len() as u8);
                    seed.extend_from_slice(part.as_bytes());
                }
                seed.extend_from_slice(&payload);
                s.push(seed);
            }
            s
        }
        other => panic!("no seeds for target {other:?}"),
    }
}
