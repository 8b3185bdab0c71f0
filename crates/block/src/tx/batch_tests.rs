//! Batch registrations and manufacturer authorisations: their encoding, and a bad device in a
//! batch named by its index.

use super::*;
use iotchain_crypto::{DeviceSigner, KeyAlg};

fn signer(i: u32) -> DeviceSigner {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    DeviceSigner::from_secret(
        if i.is_multiple_of(5) {
            KeyAlg::P256
        } else {
            KeyAlg::Ed25519
        },
        &secret,
    )
    .unwrap()
}

fn batch(n: u32) -> Vec<NewDevice> {
    (0..n)
        .map(|i| NewDevice::new(signer(i).public_key(), "meter"))
        .collect()
}

/// A signed transaction's bytes with its operation replaced (decoding checks the operation
/// before the signature, so the signature need not match).
fn with_op(tx: &SignedTx, op: OpRlp) -> Vec<u8> {
    alloy_rlp::encode(SignedRlp {
        owner: tx.owner,
        nonce: tx.nonce,
        op,
        signature: Bytes::copy_from_slice(&tx.signature),
    })
}

#[test]
fn ten_thousand_devices_in_one_transaction_one_bad_key_named_by_its_index() {
    let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
    let devices = batch(MAX_BATCH_DEVICES as u32);
    let tx = SignedTx::sign(
        &owner,
        7,
        0,
        DeviceOp::RegisterMany {
            devices: devices.clone(),
        },
    )
    .unwrap();
    let raw = tx.encode_rlp();
    let back = SignedTx::decode_and_check(&raw, 7).unwrap();
    assert_eq!(back, tx);
    assert_eq!(back.op.devices().len(), MAX_BATCH_DEVICES);
    assert_eq!(back.op.devices()[4711], devices[4711].public_key.address());

    // Device 4711's key replaced by the Ed25519 identity point (small order: a weak key).
    let mut op = tx.op.to_rlp();
    let bad = &mut op.devices.as_mut().unwrap()[4711];
    bad.alg = 8;
    bad.public_key = {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        Bytes::copy_from_slice(&identity)
    };
    let err = SignedTx::decode_and_check(&with_op(&tx, op), 7)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("device 4711:") && err.contains("weak"),
        "{err}"
    );

    // A truncated P-256 key at index 5.
    let mut op = tx.op.to_rlp();
    op.devices.as_mut().unwrap()[5].public_key.truncate(64);
    let err = SignedTx::decode_and_check(&with_op(&tx, op), 7)
        .unwrap_err()
        .to_string();
    assert!(err.contains("device 5:"), "{err}");

    // More bytes than an owner transaction may have, whatever they are.
    let err = SignedTx::decode_and_check(&vec![0u8; MAX_OWNER_TX_BYTES + 1], 7).unwrap_err();
    assert!(
        err.to_string().contains("is at most 2097152 bytes"),
        "{err}"
    );

    // One device more than a batch may hold, and an empty batch.
    for n in [MAX_BATCH_DEVICES + 1, 0] {
        let mut op = tx.op.to_rlp();
        let list = op.devices.as_mut().unwrap();
        list.truncate(n.min(list.len()));
        if n > MAX_BATCH_DEVICES {
            let extra = NewDevice::new(signer(99_999).public_key(), "m");
            list.push(
                DeviceOp::RegisterMany {
                    devices: vec![extra],
                }
                .to_rlp()
                .devices
                .unwrap()
                .remove(0),
            );
        }
        let err = SignedTx::decode_and_check(&with_op(&tx, op), 7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a batch registers 1 to 10000 devices"),
            "{err}"
        );
    }
}

#[test]
fn certificates_recover_their_manufacturer_through_the_encoding() {
    let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
    let factory = OwnerKey::from_secret(&[4; 32]).unwrap();
    let mut devices = batch(3);
    devices[1].certificate =
        Some(DeviceCertificate::sign(&factory, &devices[1].public_key, "meter").unwrap());
    let tx = SignedTx::sign(&owner, 7, 0, DeviceOp::RegisterMany { devices }).unwrap();
    let back = SignedTx::decode_and_check(&tx.encode_rlp(), 7).unwrap();
    let DeviceOp::RegisterMany { devices } = &back.op else {
        panic!("{back:?}")
    };
    assert_eq!(
        devices[1].certificate.unwrap().manufacturer,
        factory.address()
    );
    assert!(devices[0].certificate.is_none());

    // A certificate of another length is refused by its device's index.
    let mut op = tx.op.to_rlp();
    op.devices.as_mut().unwrap()[2].certificate = Bytes::from(vec![1u8; 64]);
    let err = SignedTx::decode_and_check(&with_op(&tx, op), 7)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("device 2: certificate: must be empty or 65 bytes"),
        "{err}"
    );
}

#[test]
fn manufacturer_authorisations_round_trip_and_other_operations_keep_their_encoding() {
    let owner = OwnerKey::from_secret(&[3; 32]).unwrap();
    for authorised in [true, false] {
        let op = DeviceOp::Manufacturer {
            manufacturer: Address::repeat_byte(9),
            authorised,
        };
        let tx = SignedTx::sign(&owner, 7, 3, op).unwrap();
        assert_eq!(SignedTx::decode_and_check(&tx.encode_rlp(), 7).unwrap(), tx);
        assert!(tx.op.devices().is_empty());
    }
    // A single registration with a `devices` list appended is not canonical.
    let single = DeviceOp::Register {
        public_key: signer(1).public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    let tx = SignedTx::sign(&owner, 7, 0, single).unwrap();
    let mut op = tx.op.to_rlp();
    assert!(op.devices.is_none());
    op.devices = Some(vec![]);
    assert!(SignedTx::decode_and_check(&with_op(&tx, op), 7).is_err());
}
