extern crate std;

use std::{string::String, vec};

use iotchain_crypto::{DeviceSigner, KeyAlg, SignatureCheck, verify_signatures};
use proptest::prelude::*;

use super::*;

/// Checks a message the way the node does: decode, key lookup by address, signature.
fn node_accepts(device: &Device, message: &[u8]) -> iotchain_reading::Reading<'static> {
    let leaked: &'static [u8] = std::boxed::Box::leak(message.to_vec().into_boxed_slice());
    let r = iotchain_reading::decode(leaked).expect("the node decodes it");
    assert_eq!(r.device.0, device.address());
    assert_eq!(r.alg, device.alg());
    let key = iotchain_crypto::DevicePublicKey::from_bytes(device.alg(), device.public_key())
        .expect("a valid public key");
    assert_eq!(
        key.address().0,
        device.address(),
        "same address as the node derives"
    );
    let aad: &[u8] = device.chain().map_or(&[], |h| &h[..]);
    let sig_structure = iotchain_reading::sig_structure(r.protected, aad, r.payload);
    assert!(
        verify_signatures(&[SignatureCheck {
            key: &key,
            message: &sig_structure,
            signature: r.signature,
        }])[0],
        "the signature verifies"
    );
    r
}

#[test]
fn ed25519_readings_match_the_host_signer_byte_for_byte() {
    let secret = [9u8; 32];
    let mut device = Device::ed25519(&secret, 5).unwrap();
    device.set_chain(&CHAIN);
    let host = DeviceSigner::from_secret(KeyAlg::Ed25519, &secret).unwrap();
    let mut buf = [0u8; 512];
    let n = device
        .sign_reading(1234, Some("temp"), &[0x18, 0x2a], &mut buf)
        .unwrap();
    // Ed25519 is deterministic: the host signer produces the very same bytes.
    assert_eq!(
        &buf[..n],
        &host.sign_reading(&CHAIN, 5, 1234, Some("temp"), &[0x18, 0x2a])[..]
    );
    let r = node_accepts(&device, &buf[..n]);
    assert_eq!((r.seq, r.ts, r.stream), (5, 1234, "temp"));
    assert_eq!(device.next_seq(), 6);
}

/// A genesis hash the tests' readings name.
const CHAIN: [u8; 32] = [0xc4; 32];

/// A reading names its chain: signed for one genesis hash, it verifies under no other and not
/// without one; an unbound device signs the empty `external_aad` of older chains.
#[test]
fn readings_name_their_chain() {
    let secret = [5u8; 32];
    let host = DeviceSigner::from_secret(KeyAlg::Ed25519, &secret).unwrap();
    let key = host.public_key();
    let verifies = |m: &[u8], aad: &[u8]| {
        let r = iotchain_reading::decode(m).unwrap();
        let s = iotchain_reading::sig_structure(r.protected, aad, r.payload);
        verify_signatures(&[SignatureCheck {
            key: &key,
            message: &s,
            signature: r.signature,
        }])[0]
    };
    let mut bound = Device::ed25519(&secret, 0).unwrap();
    bound.set_chain(&CHAIN);
    assert_eq!(bound.chain(), Some(&CHAIN));
    let mut unbound = Device::ed25519(&secret, 0).unwrap();
    assert_eq!(unbound.chain(), None);
    let mut buf = [0u8; 512];
    let n = bound.sign_reading(1, None, &[0x01], &mut buf).unwrap();
    let on_chain = buf[..n].to_vec();
    let n = unbound.sign_reading(1, None, &[0x01], &mut buf).unwrap();
    let legacy = buf[..n].to_vec();
    assert_ne!(on_chain, legacy);
    assert!(verifies(&on_chain, &CHAIN));
    assert!(!verifies(&on_chain, &[]));
    assert!(!verifies(&on_chain, &[0xc5; 32]));
    assert!(verifies(&legacy, &[]));
    assert!(!verifies(&legacy, &CHAIN));
    // The buffer the SDK asks for still holds the Sig_structure with the 32 bytes more.
    let mut p256 = Device::p256(&[0x11; 32], 0).unwrap();
    p256.set_chain(&CHAIN);
    let data = [0x40u8; 1]; // empty byte string
    let mut exact = vec![0u8; buffer_len(data.len(), 64)];
    p256.sign_reading(1, Some(&"s".repeat(64)), &data, &mut exact)
        .expect("buffer_len covers a bound reading");
}

#[test]
fn p256_readings_verify_with_the_nodes_verifier() {
    let mut secret = [0u8; 32];
    secret[31] = 7;
    let mut device = Device::p256(&secret, 0).unwrap();
    let host = DeviceSigner::from_secret(KeyAlg::P256, &secret).unwrap();
    assert_eq!(device.public_key(), &host.public_key().to_bytes()[..]);
    let mut buf = [0u8; 512];
    for seq in 0..3 {
        let n = device.sign_reading(99, None, &[0xf5], &mut buf).unwrap();
        let r = node_accepts(&device, &buf[..n]);
        assert_eq!(r.seq, seq);
    }
}

#[test]
fn bad_input_is_refused_and_seq_stays() {
    let mut device = Device::ed25519(&[1; 32], 3).unwrap();
    let mut small = [0u8; 64];
    assert_eq!(
        device.sign_reading(1, None, &[0x01], &mut small),
        Err(Error::BufferTooSmall)
    );
    let mut buf = [0u8; 1024];
    // Not one CBOR item: two items, and a truncated one.
    assert!(matches!(
        device.sign_reading(1, None, &[0x01, 0x02], &mut buf),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        device.sign_reading(1, None, &[0x19, 0x01], &mut buf),
        Err(Error::InvalidInput(_))
    ));
    let long = "x".repeat(65);
    assert!(matches!(
        device.sign_reading(1, Some(&long), &[0x01], &mut buf),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(device.next_seq(), 3, "failures do not consume a seq");
    device.set_next_seq(u64::MAX);
    assert_eq!(
        device.sign_reading(1, None, &[0x01], &mut buf),
        Err(Error::SeqExhausted)
    );
    // P-256 scalars: zero and the group order are not keys.
    assert_eq!(Device::p256(&[0; 32], 0).unwrap_err(), Error::InvalidKey);
    assert_eq!(Device::p256(&[0xff; 32], 0).unwrap_err(), Error::InvalidKey);
}

proptest! {
    #[test]
    fn any_reading_round_trips(
        ed in any::<bool>(),
        secret in any::<[u8; 31]>(),
        seq in 0u64..u64::MAX - 1,
        ts in any::<u64>(),
        stream in proptest::option::of("[a-z0-9/_-]{1,64}"),
        value in any::<i64>(),
    ) {
        let mut s = [1u8; 32];
        s[1..].copy_from_slice(&secret);
        let mut device = if ed { Device::ed25519(&s, seq) } else { Device::p256(&s, seq) }.unwrap();
        if value % 2 == 0 {
            device.set_chain(&CHAIN);
        }
        // `value` as a CBOR integer, shortest form.
        let (major, arg) = if value >= 0 { (0u8, value as u64) } else { (1u8, (-1 - value) as u64) };
        let data: std::vec::Vec<u8> = match arg {
            0..=23 => vec![(major << 5) | arg as u8],
            24..=0xff => vec![(major << 5) | 24, arg as u8],
            0x100..=0xffff => [&[(major << 5) | 25][..], &(arg as u16).to_be_bytes()].concat(),
            0x1_0000..=0xffff_ffff => [&[(major << 5) | 26][..], &(arg as u32).to_be_bytes()].concat(),
            _ => [&[(major << 5) | 27][..], &arg.to_be_bytes()].concat(),
        };
        let mut buf = vec![0u8; buffer_len(data.len(), stream.as_ref().map_or(0, String::len))];
        let n = device.sign_reading(ts, stream.as_deref(), &data, &mut buf).unwrap();
        let r = node_accepts(&device, &buf[..n]);
        // Canonical (tagged, low s): its id is the hash of its bytes, and a relay's copy
        // without the tag has the same id.
        prop_assert!(r.is_canonical_encoding(&buf[..n]));
        prop_assert_eq!(buf[0], 0xd2);
        prop_assert_eq!(reading_id(&buf[..n]), r.id());
        prop_assert_eq!(reading_id(&buf[1..n]), r.id());
        prop_assert_eq!(r.seq, seq);
        prop_assert_eq!(r.ts, ts);
        prop_assert_eq!(r.stream, stream.as_deref().unwrap_or("default"));
        prop_assert_eq!(device.next_seq(), seq + 1);
    }
}
