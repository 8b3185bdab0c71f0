//! Golden test vectors of the wire formats, kept in `docs/vectors.json`.
//!
//! The vectors are generated here from fixed keys; the test fails when the generated JSON
//! differs from the file, so any change to a wire format is deliberate: regenerate with
//! `UPDATE_VECTORS=1 cargo test -p iotchain-block --test vectors` and say why in the commit.
//! `tests/python/test_vectors.py` reproduces them with independent libraries (pycose, cbor2,
//! hashlib, cryptography).

use alloy_primitives::{B256, Bytes};
use iotchain_block::{DeviceOp, FinalityCertificate, Header, SignedTx, hex0x};
use iotchain_crypto::{DeviceSigner, KeyAlg, KeyFile, OwnerKey, ValidatorKey};
use iotchain_reading::{Alg, UnsignedReading};
use p256::ecdsa::signature::Signer;
use serde_json::{Value, json};

const TS: u64 = 1_700_000_000_000;
/// CBOR of `{"temp_mc": 4200}` (temperature in milli-degrees Celsius).
const DATA: &[u8] = &[
    0xa1, 0x67, b't', b'e', b'm', b'p', b'_', b'm', b'c', 0x19, 0x10, 0x68,
];

/// What the vectors' readings sign as COSE `external_aad`: the genesis hash of the chain they
/// are for (here keccak256 of "iotchain test vector genesis", standing for one).
fn genesis_hash() -> B256 {
    alloy_primitives::keccak256(b"iotchain test vector genesis")
}

fn reading(alg: KeyAlg, seed: u8, seq: u64) -> (Value, [u8; 32]) {
    reading_for(alg, seed, seq, genesis_hash().as_slice())
}

fn reading_for(alg: KeyAlg, seed: u8, seq: u64, external_aad: &[u8]) -> (Value, [u8; 32]) {
    let secret = [seed; 32];
    let key = KeyFile::from_secret(alg, &secret).unwrap();
    let signer = key.device_signer().unwrap();
    let unsigned = UnsignedReading::new(
        signer.alg(),
        signer.address(),
        seq,
        TS,
        Some("temperature"),
        DATA,
    );
    let to_sign = unsigned.sig_structure(external_aad);
    let signature: [u8; 64] = match alg {
        KeyAlg::Ed25519 => signer.sign(&to_sign),
        // Deterministic (RFC 6979) so the vector is stable; any valid ES256 signature verifies.
        _ => {
            let sk = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let sig: p256::ecdsa::Signature = sk.sign(&to_sign);
            sig.to_bytes().into()
        }
    };
    let message = unsigned.clone().into_message(&signature);
    let id = iotchain_reading::reading_id(&message);
    assert!(
        iotchain_crypto::verify_signatures(&[iotchain_crypto::SignatureCheck {
            key: &signer.public_key(),
            message: &to_sign,
            signature: &signature,
        }])[0]
    );
    let v = json!({
        "alg": signer.alg().to_string(),
        "secret_key": key.secret_key,
        "public_key": key.public_key,
        "device": key.address,
        "seq": seq,
        "ts": TS,
        "stream": "temperature",
        "data_cbor": hex0x(DATA),
        "protected": hex0x(&unsigned.protected),
        "payload": hex0x(&unsigned.payload),
        "external_aad": hex0x(external_aad),
        "sig_structure": hex0x(&to_sign),
        "signature": hex0x(signature),
        "message": hex0x(&message),
        "reading_id": hex0x(id),
    });
    (v, id)
}

/// Other encodings of one signed reading, which a relay could make of it (the signature
/// does not cover them), each with the id of the canonical message.
fn encodings(ed: &Value, es: &Value) -> Value {
    let bytes = |v: &Value, k: &str| iotchain_block::unhex(v[k].as_str().unwrap()).unwrap();
    let message = bytes(ed, "message");
    let r = iotchain_reading::decode(&message).unwrap();
    assert!(r.is_canonical_encoding(&message), "the vector is canonical");
    let untagged = message[1..].to_vec();
    // The array head in two bytes, no tag.
    let long_heads = [&[0x98, 0x04][..], &untagged[1..]].concat();
    // An unprotected header {"relay": "gw-7"} in place of the empty map.
    let at = 2 + 2 + r.protected.len();
    assert_eq!(message[at], 0xa0);
    let unprotected = [
        &message[..at],
        &[0xa1, 0x65][..],
        b"relay",
        &[0x64],
        b"gw-7",
        &message[at + 1..],
    ]
    .concat();
    // The ES256 vector's signature with n - s: it verifies too.
    let es_message = bytes(es, "message");
    let es_r = iotchain_reading::decode(&es_message).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(es_r.signature).unwrap();
    let (r_part, s_part) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r_part, -*s_part).unwrap();
    let twin_bytes: [u8; 64] = twin.to_bytes().into();
    let es_twin = iotchain_reading::UnsignedReading {
        protected: es_r.protected.to_vec(),
        payload: es_r.payload.to_vec(),
    }
    .into_message(&twin_bytes);
    let same = [untagged, long_heads, unprotected];
    for m in &same {
        assert_eq!(
            iotchain_reading::reading_id(m),
            iotchain_reading::reading_id(&message)
        );
    }
    assert_eq!(
        iotchain_reading::reading_id(&es_twin),
        iotchain_reading::reading_id(&es_message)
    );
    json!({
        "comment": "other encodings of reading_ed25519 (and of reading_es256: the signature with n - s); each has the reading_id of its canonical message",
        "canonical": hex0x(&message),
        "reading_id": ed["reading_id"],
        "same_reading": same.iter().map(hex0x).collect::<Vec<_>>(),
        "es256_high_s": hex0x(&es_twin),
        "es256_reading_id": es["reading_id"],
    })
}

fn vectors() -> Value {
    let (ed, ed_id) = reading(KeyAlg::Ed25519, 1, 1);
    let (es, es_id) = reading(KeyAlg::P256, 2, 1);
    let encodings = encodings(&ed, &es);
    let mut leaves = vec![ed_id, es_id];
    for seq in 2..5 {
        leaves.push(reading(KeyAlg::Ed25519, 1, seq).1);
    }
    let root = iotchain_merkle::root(&leaves);
    let path = iotchain_merkle::audit_path(&leaves, 2);

    let validator = ValidatorKey::from_secret(&[3; 32]);
    let header = Header {
        chain_id: 1337,
        height: 7,
        parent_hash: B256::repeat_byte(0x11),
        timestamp_ms: TS + 500,
        proposer: B256::from(validator.public_key()),
        readings_root: B256::from(root),
        reading_count: leaves.len() as u64,
        transactions_root: B256::from(iotchain_merkle::empty_root()),
        transaction_count: 0,
        state_root: B256::repeat_byte(0x22),
    };
    let hash = header.hash();
    let cert = FinalityCertificate::new(7, hash, 0, 9, 8).signed_by(&validator);

    let mut owner_secret = [0u8; 32];
    owner_secret[31] = 1;
    let owner = OwnerKey::from_secret(&owner_secret).unwrap();
    let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[1; 32]).unwrap();
    let op = DeviceOp::Register {
        public_key: device.public_key(),
        model: "tsensor-1".into(),
        firmware_hash: Bytes::from(vec![0xab; 32]),
        labels: vec![("site".into(), "dock 4".into())],
    };
    let tx = SignedTx::sign(&owner, 1337, 0, op.clone()).unwrap();

    json!({
        "comment": "generated by crates/block/tests/vectors.rs; see docs/formats.md",
        "stream_accumulator": stream_accumulator(),
        "reading_ed25519": ed,
        "reading_es256": es,
        "reading_ed25519_unbound": reading_for(KeyAlg::Ed25519, 1, 1, &[]).0,
        "reading_encodings": encodings,
        "merkle": {
            "leaves": leaves.iter().map(hex0x).collect::<Vec<_>>(),
            "root": hex0x(root),
            "audit_path_of_leaf_2": path.iter().map(hex0x).collect::<Vec<_>>(),
        },
        "header": {
            "fields": header,
            "rlp": hex0x(header.encode_rlp()),
            "hash": hash,
        },
        "certificate": {
            "validator_secret_key": hex0x([3u8; 32]),
            "signing_bytes": hex0x(cert.message()),
            "certificate": cert,
        },
        "transaction": {
            "owner_secret_key": hex0x(owner_secret),
            "owner": owner.address(),
            "chain_id": 1337,
            "nonce": 0,
            "op": op,
            "signing_hash": SignedTx::signing_hash(1337, owner.address(), 0, &op),
            "rlp": hex0x(tx.encode_rlp()),
            "hash": tx.hash(),
        },
    })
}

/// What the state trie holds for a stream accumulator: RLP `[count, root]`.
#[derive(alloy_rlp::RlpEncodable)]
struct TrieValue {
    count: u64,
    root: B256,
}

/// A device stream of 11 readings (seq 4 comes late, after seq 7; one block per two readings):
/// each leaf's fields and encoding, the peaks, the root, a range proof of leaves 3..=6, and
/// what the state trie holds for it.
fn stream_accumulator() -> Value {
    use iotchain_merkle::mmr::{Peaks, range_proof, subtree};
    use iotchain_reading::StreamLeaf;
    let seqs = [0u64, 1, 2, 3, 5, 6, 7, 4, 8, 9, 10];
    let mut prev: Option<StreamLeaf> = None;
    let mut leaves = Vec::new();
    for (i, seq) in seqs.into_iter().enumerate() {
        let id = iotchain_merkle::leaf_hash(format!("reading {seq}").as_bytes());
        let height = 10 + i as u64 / 2;
        let leaf = StreamLeaf::next(
            prev.as_ref(),
            id,
            seq,
            TS + seq * 1000,
            height,
            TS + height * 500,
        );
        leaves.push(leaf);
        prev = Some(leaf);
    }
    let hashes: Vec<[u8; 32]> = leaves.iter().map(StreamLeaf::hash).collect();
    let mut peaks = Peaks::default();
    for h in &hashes {
        peaks.push(*h);
    }
    let n = hashes.len() as u64;
    let proof = range_proof(n, 3, 6, |level, index| {
        Ok::<_, ()>(subtree(&hashes, level, index))
    })
    .unwrap();
    let device = iotchain_reading::DeviceAddress([0x42; 20]);
    let root = peaks.root();
    json!({
        "device": device.to_string(),
        "stream": "temperature",
        "leaves": leaves.iter().map(|l| json!({
            "id": hex0x(l.id), "seq": l.seq, "ts": l.ts, "height": l.height,
            "block_time_ms": l.block_time_ms, "max_seq": l.max_seq, "max_ts": l.max_ts,
            "encoded": hex0x(l.encode()), "hash": hex0x(l.hash()),
        })).collect::<Vec<_>>(),
        "peaks": peaks.peaks().iter().map(hex0x).collect::<Vec<_>>(),
        "root": hex0x(root),
        "range_3_to_6_proof": proof.iter().map(hex0x).collect::<Vec<_>>(),
        "trie_key": hex0x(iotchain_light::accumulator_key(&device, "temperature")),
        "trie_value": hex0x(alloy_rlp::encode(TrieValue { count: n, root: B256::from(root) })),
    })
}

#[test]
fn vectors_match_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vectors.json");
    let generated = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(path)
        .expect("docs/vectors.json exists (UPDATE_VECTORS=1 writes it)");
    assert_eq!(
        stored, generated,
        "wire format changed: regenerate docs/vectors.json deliberately"
    );
    // The stored vectors decode with our own code too.
    let v: Value = serde_json::from_str(&stored).unwrap();
    let msg = iotchain_block::unhex(v["reading_ed25519"]["message"].as_str().unwrap()).unwrap();
    let r = iotchain_reading::decode(&msg).unwrap();
    assert_eq!((r.alg, r.seq, r.stream), (Alg::EdDsa, 1, "temperature"));
    let raw = iotchain_block::unhex(v["transaction"]["rlp"].as_str().unwrap()).unwrap();
    SignedTx::decode_and_check(&raw, 1337).unwrap();
}
