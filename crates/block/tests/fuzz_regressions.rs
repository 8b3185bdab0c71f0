//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found, decoded byte for byte: each
//! once failed a target and must keep passing. See fuzz/README.md for adding one.

use iotchain_block::{BlockError, DeviceOp, SignedTx};

/// Decodes hex (the fuzz artifact, `xxd -p`).
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).unwrap()
}

/// `fuzz/artifacts/transaction/crash-69e5461244ff5f1a81a664fda15ecc512664e0fd`: a register
/// (signed by the fixtures' owner for chain 1337) whose unused `device` field is not zero.
/// The signature covers the operation as it re-encodes (device zero), so these bytes were
/// accepted as the same transaction as the canonical ones, under a hash that is not the
/// keccak256 of the bytes a block would hold.
#[test]
fn transaction_with_a_device_in_a_register_is_refused() {
    let raw = hex(
        "f8cc94c171033d5cbff7175f29dfd3a63dda3d6f8f385e80f871019400000000000000ffffff13000000
         00000000000008a066be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a8974
         73656e736f722d31a0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaacd
         cc847369746586646f636b2034b841bf34e04e75af63996aacd0d015957e549d0113c8de17f43c3e5a51
         333f9b1ed129896ff9f38ca31b44bf1b6362440ddc7c15d90d454f1b63f1497a4ba2929fab1c",
    );
    let err = SignedTx::decode_and_check(&raw, 1337).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::InvalidField {
                field: "encoding",
                ..
            }
        ),
        "{err}"
    );
    // The same transaction with the device zeroed is the canonical one, and it is accepted.
    // (bytes 28..48: owner list head 2, owner 21, nonce 1, op list head 2, kind 1, device head 1)
    let mut canonical = raw.clone();
    canonical[28..48].fill(0);
    let tx = SignedTx::decode_and_check(&canonical, 1337).unwrap();
    assert!(matches!(tx.op, DeviceOp::Register { .. }));
    assert_eq!(tx.encode_rlp(), canonical);
}
