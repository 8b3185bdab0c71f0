//! Tests of the reading codec: rejections, a golden vector and properties.

extern crate std;

use alloc::vec::Vec;
use proptest::prelude::*;

use super::*;

const DEVICE: DeviceAddress = DeviceAddress([0xab; 20]);

fn message(seq: u64, stream: Option<&str>, data: &[u8]) -> Vec<u8> {
    UnsignedReading::new(Alg::EdDsa, DEVICE, seq, 1_700_000_000_000, stream, data)
        .into_message(&[0x11; 64])
}

/// Builds a COSE_Sign1 from raw parts (for malformed variants).
fn cose(protected: &[u8], payload: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; protected.len() + payload.len() + sig.len() + 32];
    let mut w = Writer::new(&mut out);
    w.head(6, 18).unwrap();
    w.head(4, 4).unwrap();
    w.bytes(protected).unwrap();
    w.head(5, 0).unwrap();
    w.bytes(payload).unwrap();
    w.bytes(sig).unwrap();
    let n = w.len();
    out.truncate(n);
    out
}

fn protected(alg: i64, kid: &[u8]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; 64];
    let mut w = Writer::new(&mut out);
    w.head(5, 2).unwrap();
    w.int(1).unwrap();
    w.int(alg).unwrap();
    w.int(4).unwrap();
    w.bytes(kid).unwrap();
    let n = w.len();
    out.truncate(n);
    out
}

/// A payload map from (key, encoded value) pairs.
fn payload(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; 256];
    let mut w = Writer::new(&mut out);
    w.head(5, pairs.len() as u64).unwrap();
    for (k, v) in pairs {
        w.text(k).unwrap();
        w.raw(v).unwrap();
    }
    let n = w.len();
    out.truncate(n);
    out
}

#[test]
fn golden_vector() {
    // Pins the wire format: seq 1, ts 1700000000000, stream "temp", data 21 (CBOR 0x15),
    // device 0xabab…ab, EdDSA, signature 0x11 × 64. Changing this is a format change.
    let m = UnsignedReading::new(
        Alg::EdDsa,
        DEVICE,
        1,
        1_700_000_000_000,
        Some("temp"),
        &[0x15],
    )
    .into_message(&[0x11; 64]);
    let expected = concat!(
        "d2",   // tag 18
        "84",   // array(4)
        "5819", // protected: bstr(25)
        "a2",
        "01",
        "27",
        "04",
        "54",                                       //   {1: -8, 4: bstr(20)
        "abababababababababababababababababababab", //    kid}
        "a0",                                       // unprotected: {}
        "5824",                                     // payload: bstr(36)
        "a4",
        "63736571",
        "01", //   {"seq": 1,
        "627473",
        "1b0000018bcfe56800", //    "ts": 1700000000000,
        "6673747265616d",
        "6474656d70", //    "stream": "temp",
        "6464617461",
        "15",   //    "data": 21}
        "5840", // signature: bstr(64)
        "11111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(hex::encode(&m), expected);
    let r = decode(&m).unwrap();
    assert_eq!(
        (r.alg, r.device, r.seq, r.ts, r.stream, r.data),
        (
            Alg::EdDsa,
            DEVICE,
            1,
            1_700_000_000_000,
            "temp",
            &[0x15][..]
        )
    );
    let s = sig_structure(r.protected, &[], r.payload);
    assert_eq!(
        &s[..12],
        &hex::decode("846a5369676e617475726531").unwrap()[..]
    );
    // The external_aad (a genesis hash) is the third element, a 32-byte string.
    let bound = sig_structure(r.protected, &[0xab; 32], r.payload);
    let at = 12 + 2 + r.protected.len(); // after the 25-byte protected header and its head
    assert_eq!(bound[at..at + 2], [0x58, 0x20]);
    assert_eq!(bound[at + 2..at + 34], [0xab; 32]);
    assert_eq!(bound.len(), s.len() + 33);
    let mut small = [0u8; 16];
    assert!(write_sig_structure(r.protected, &[0xab; 32], r.payload, &mut small).is_err());
}

#[test]
fn untagged_and_default_stream() {
    let m = message(3, None, &[0xf5]);
    let r = decode(&m[1..]).unwrap(); // drop tag 18 (one byte 0xd2)
    assert_eq!(r.stream, DEFAULT_STREAM);
    assert_eq!(r.data, &[0xf5]);
}

#[test]
fn rejections_have_codes() {
    let kid = [0xab; 20];
    let ok_payload = payload(&[("seq", &[1]), ("ts", &[2]), ("data", &[3])]);
    let cases: Vec<(Vec<u8>, &str)> = alloc::vec![
        (alloc::vec![], "malformed_cbor"),
        (alloc::vec![0xff], "malformed_cbor"),
        (alloc::vec![0x9f, 0xff], "malformed_cbor"),
        (alloc::vec![0x83, 0x40, 0xa0, 0x40], "malformed_cose"),
        (alloc::vec![0xd3, 0x80], "malformed_cose"),
        (alloc::vec![0x01], "malformed_cose"),
        (
            cose(&protected(-35, &kid), &ok_payload, &[0; 64]),
            "unsupported_alg"
        ),
        (
            cose(&protected(-8, &kid[..19]), &ok_payload, &[0; 64]),
            "bad_kid"
        ),
        (
            cose(&[0xa1, 0x01, 0x27], &ok_payload, &[0; 64]),
            "missing_kid"
        ),
        (
            cose(
                &[&[0xa1, 0x04, 0x54][..], &[0xab; 20]].concat(),
                &ok_payload,
                &[0; 64]
            ),
            "missing_field"
        ),
        (
            cose(&[0xa2, 0x01, 0x27, 0x01, 0x27], &ok_payload, &[0; 64]),
            "duplicate_field"
        ),
        (
            cose(&[0xa1, 0x02, 0x80], &ok_payload, &[0; 64]),
            "malformed_cose"
        ),
        (
            cose(&protected(-8, &kid), &ok_payload, &[0; 63]),
            "bad_signature_length"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[("seq", &[1]), ("data", &[3])]),
                &[0; 64]
            ),
            "missing_field"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[("seq", &[1]), ("seq", &[1]), ("ts", &[2]), ("data", &[3])]),
                &[0; 64]
            ),
            "duplicate_field"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[("seq", &[1]), ("ts", &[2]), ("data", &[3]), ("x", &[3])]),
                &[0; 64]
            ),
            "unknown_field"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[("seq", &[0x20]), ("ts", &[2]), ("data", &[3])]),
                &[0; 64]
            ),
            "wrong_type"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[
                    ("seq", &[1]),
                    ("ts", &[2]),
                    ("stream", &[0x60]),
                    ("data", &[3])
                ]),
                &[0; 64]
            ),
            "malformed_payload"
        ),
        (
            cose(&protected(-8, &kid), &[0x80], &[0; 64]),
            "malformed_payload"
        ),
        (
            cose(
                &protected(-8, &kid),
                &payload(&[("seq", &[1]), ("ts", &[2]), ("data", &[0x9f, 0xff])]),
                &[0; 64]
            ),
            "malformed_cbor"
        ),
    ];
    for (bytes, code) in cases {
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.code(), code, "{} gave {err}", hex::encode(&bytes));
    }
    let mut trailing = message(1, None, &[1]);
    trailing.push(0);
    assert_eq!(decode(&trailing).unwrap_err().code(), "trailing_bytes");
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    let mut data = alloc::vec![0x81u8; 10_000];
    data.push(0x01);
    let mut p = payload(&[("seq", &[1]), ("ts", &[2])]);
    p[0] = 0xa3;
    p.extend_from_slice(&[0x64, b'd', b'a', b't', b'a']);
    p.extend_from_slice(&data);
    let m = cose(&protected(-8, &[0xab; 20]), &p, &[0; 64]);
    assert_eq!(decode(&m).unwrap_err().code(), "too_deep");
    let mut ok = alloc::vec![0x81u8; MAX_DEPTH];
    ok.push(0x01);
    assert!(UnsignedReading::try_new(Alg::EdDsa, DEVICE, 1, 1, None, &ok).is_ok());
}

#[test]
fn every_truncation_errors() {
    let m = message(42, Some("s"), &[0x82, 0x01, 0x63, b'a', b'b', b'c']);
    for cut in 0..m.len() {
        assert!(decode(&m[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn batches() {
    let a = message(1, None, &[1]);
    let b = message(2, None, &[2]);
    let mut body = alloc::vec![0x82];
    body.extend_from_slice(&a);
    body.extend_from_slice(&b);
    assert_eq!(
        decode_batch(&body, 10).unwrap(),
        alloc::vec![&a[..], &b[..]]
    );
    assert_eq!(
        decode_batch(&body, 1).unwrap_err().code(),
        "batch_too_large"
    );
    assert_eq!(decode_batch(&[0x80], 10).unwrap_err().code(), "empty_batch");
    assert_eq!(
        decode_batch(&[0xa0], 10).unwrap_err().code(),
        "malformed_batch"
    );
    assert_eq!(
        decode_batch(&body[..body.len() - 1], 10)
            .unwrap_err()
            .code(),
        "malformed_cbor"
    );
    // A count far beyond the input is rejected before any allocation of that size.
    assert!(
        decode_batch(
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            usize::MAX
        )
        .is_err()
    );
}

#[test]
fn no_alloc_encoding_reports_small_buffers() {
    let mut small = [0u8; 10];
    assert_eq!(
        encode_protected(Alg::Es256, &DEVICE, &mut small).unwrap_err(),
        ReadingError::BufferTooSmall
    );
    let mut buf = [0u8; 25];
    assert_eq!(encode_protected(Alg::Es256, &DEVICE, &mut buf).unwrap(), 25);
}

#[test]
fn addresses_parse_and_print() {
    let s = "0xabababababababababababababababababababab";
    assert_eq!(s.parse::<DeviceAddress>().unwrap(), DEVICE);
    assert_eq!(std::format!("{DEVICE}"), s);
    assert!("0xabab".parse::<DeviceAddress>().is_err());
    assert!("zz".repeat(20).parse::<DeviceAddress>().is_err());
}

fn cbor_data() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|v| {
            let mut b = alloc::vec![0u8; 9];
            let mut w = Writer::new(&mut b);
            w.head(0, v).unwrap();
            let n = w.len();
            b.truncate(n);
            b
        }),
        any::<i32>().prop_map(|v| {
            let mut b = alloc::vec![0u8; 9];
            let mut w = Writer::new(&mut b);
            w.int(v as i64).unwrap();
            let n = w.len();
            b.truncate(n);
            b
        }),
        "[a-z]{0,12}".prop_map(|s| {
            let mut b = alloc::vec![0u8; 20];
            let mut w = Writer::new(&mut b);
            w.text(&s).unwrap();
            let n = w.len();
            b.truncate(n);
            b
        }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| {
            let mut b = alloc::vec![0u8; 50];
            let mut w = Writer::new(&mut b);
            w.bytes(&v).unwrap();
            let n = w.len();
            b.truncate(n);
            b
        }),
        any::<f64>().prop_map(|f| {
            let mut b = alloc::vec![0xfb];
            b.extend_from_slice(&f.to_be_bytes());
            b
        }),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(|items| {
            let mut b = alloc::vec![0u8; 9];
            let mut w = Writer::new(&mut b);
            w.head(4, items.len() as u64).unwrap();
            let n = w.len();
            b.truncate(n);
            for i in items {
                b.extend_from_slice(&i);
            }
            b
        })
    })
}

proptest! {
    #[test]
    fn round_trip(seq in any::<u64>(), ts in any::<u64>(), stream in proptest::option::of("[a-zA-Z0-9/_-]{1,64}"), data in cbor_data(), es256 in any::<bool>(), sig in proptest::array::uniform32(any::<u8>())) {
        let alg = if es256 { Alg::Es256 } else { Alg::EdDsa };
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&sig);
        let m = UnsignedReading::new(alg, DEVICE, seq, ts, stream.as_deref(), &data).into_message(&signature);
        let r = decode(&m).unwrap();
        prop_assert_eq!(r.alg, alg);
        prop_assert_eq!(r.seq, seq);
        prop_assert_eq!(r.ts, ts);
        prop_assert_eq!(r.stream, stream.as_deref().unwrap_or(DEFAULT_STREAM));
        prop_assert_eq!(r.data, &data[..]);
        prop_assert_eq!(r.signature, &signature);
        prop_assert_eq!(reading_id(&m), iotchain_merkle::leaf_hash(&m));
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = decode_batch(&bytes, 100);
    }

    #[test]
    fn mutations_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), data in cbor_data()) {
        let mut m = UnsignedReading::new(Alg::EdDsa, DEVICE, 9, 9, Some("x"), &data).into_message(&[7; 64]);
        let i = pos.index(m.len());
        m[i] = byte;
        if let Ok(r) = decode(&m) {
            // Whatever still decodes is self-consistent.
            prop_assert!(r.stream.len() <= MAX_STREAM_LEN);
        }
        let mut batch = alloc::vec![0x81];
        batch.extend_from_slice(&m);
        let _ = decode_batch(&batch, 4);
    }
}

/// A COSE_Sign1 envelope put together from raw pieces (each head given as bytes).
fn envelope_of(pieces: &[&[u8]]) -> Vec<u8> {
    pieces.concat()
}

/// The `n - s` twin of an ES256 signature (the same signature to a verifier).
fn twin(signature: &[u8; 64]) -> [u8; 64] {
    let n = num(&P256_ORDER);
    let s = num(&signature[32..]);
    let mut out = *signature;
    out[32..].copy_from_slice(&(n - s).to_be_bytes());
    out
}

fn num(b: &[u8]) -> U256Halves {
    U256Halves(
        u128::from_be_bytes(b[..16].try_into().unwrap()),
        u128::from_be_bytes(b[16..].try_into().unwrap()),
    )
}

/// A 256-bit number as two halves, just for `n - s` in tests (written apart from the
/// crate's byte-wise subtraction).
#[derive(Clone, Copy)]
struct U256Halves(u128, u128);

impl core::ops::Sub for U256Halves {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        let (lo, borrow) = self.1.overflowing_sub(o.1);
        Self(self.0 - o.0 - u128::from(borrow), lo)
    }
}

impl U256Halves {
    fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&self.0.to_be_bytes());
        out[16..].copy_from_slice(&self.1.to_be_bytes());
        out
    }
}

#[test]
fn every_envelope_of_one_reading_has_its_id() {
    let m = message(7, Some("temp"), &[0x15]);
    let r = decode(&m).unwrap();
    assert!(r.is_canonical_encoding(&m));
    assert_eq!(r.to_canonical(), m);
    assert_eq!(r.canonical_len(), m.len());
    let id = reading_id(&m);
    assert_eq!(
        id,
        iotchain_merkle::leaf_hash(&m),
        "canonical bytes: the plain leaf hash"
    );
    assert_eq!(r.id(), id);
    let (p, l, sig) = (r.protected, r.payload, &r.signature[..]);
    let pl = [0x58, p.len() as u8];
    let ll = [0x58, l.len() as u8];
    let variants: Vec<(&str, Vec<u8>)> = alloc::vec![
        ("untagged", m[1..].to_vec()),
        (
            "tag in a two-byte head",
            [&[0xd8, 0x12][..], &m[1..]].concat()
        ),
        (
            "array head of two bytes",
            envelope_of(&[
                &[0xd2, 0x98, 0x04],
                &pl,
                p,
                &[0xa0],
                &ll,
                l,
                &[0x58, 0x40],
                sig
            ])
        ),
        (
            "protected head of three bytes",
            envelope_of(&[
                &[0xd2, 0x84, 0x59, 0x00, p.len() as u8],
                p,
                &[0xa0],
                &ll,
                l,
                &[0x58, 0x40],
                sig
            ])
        ),
        (
            "map head of two bytes",
            envelope_of(&[
                &[0xd2, 0x84],
                &pl,
                p,
                &[0xb8, 0x00],
                &ll,
                l,
                &[0x58, 0x40],
                sig
            ])
        ),
        (
            "unprotected headers",
            envelope_of(&[
                &[0xd2, 0x84],
                &pl,
                p,
                &[0xa2, 0x05, 0x41, 0x00, 0x61, b'x', 0xf5],
                &ll,
                l,
                &[0x58, 0x40],
                sig
            ])
        ),
        (
            "payload head of five bytes",
            envelope_of(&[
                &[0xd2, 0x84],
                &pl,
                p,
                &[0xa0, 0x5a, 0, 0, 0, l.len() as u8],
                l,
                &[0x58, 0x40],
                sig
            ])
        ),
        (
            "signature head of nine bytes",
            envelope_of(&[
                &[0xd2, 0x84],
                &pl,
                p,
                &[0xa0],
                &ll,
                l,
                &[0x5b, 0, 0, 0, 0, 0, 0, 0, 0x40],
                sig
            ])
        ),
        (
            "untagged, longer heads",
            envelope_of(&[
                &[0x98, 0x04],
                &pl,
                p,
                &[0xa0],
                &ll,
                l,
                &[0x59, 0x00, 0x40],
                sig
            ])
        ),
    ];
    for (what, v) in variants {
        let d = decode(&v).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reading_id(&v), id, "{what}");
        assert_eq!(d.id(), id, "{what}");
        assert!(!d.is_canonical_encoding(&v), "{what}");
        assert_eq!(d.to_canonical(), m, "{what}");
    }
}

#[test]
fn an_es256_signature_and_its_twin_have_one_id() {
    // s just above and below n/2, the largest s below n, and a small s.
    let mut s_values = alloc::vec![P256_HALF_ORDER, P256_ORDER, [0u8; 32]];
    s_values[1][31] -= 1; // n - 1
    s_values[2][31] = 1;
    let mut above_half = P256_HALF_ORDER;
    above_half[31] += 1;
    s_values.push(above_half);
    for s in s_values {
        let mut sig = [0x42u8; 64];
        sig[32..].copy_from_slice(&s);
        let m = UnsignedReading::new(Alg::Es256, DEVICE, 1, 2, None, &[0x01]).into_message(&sig);
        let twin_m =
            UnsignedReading::new(Alg::Es256, DEVICE, 1, 2, None, &[0x01]).into_message(&twin(&sig));
        assert_eq!(
            reading_id(&m),
            reading_id(&twin_m),
            "s = {}",
            hex::encode(s)
        );
        let low = canonical_signature(Alg::Es256, &sig);
        assert!(low[32..] <= P256_HALF_ORDER[..]);
        assert!(low == sig || low == twin(&sig));
        assert_eq!(canonical_signature(Alg::Es256, &low), low);
        let r = decode(&m).unwrap();
        assert_eq!(r.is_canonical_encoding(&m), low == sig);
        // EdDSA signatures are left as they are.
        assert_eq!(canonical_signature(Alg::EdDsa, &sig), sig);
    }
    // n is odd: n - (⌊n/2⌋ + 1) = ⌊n/2⌋.
    let mut sig = [0u8; 64];
    sig[32..].copy_from_slice(&above_half);
    assert_eq!(
        canonical_signature(Alg::Es256, &sig)[32..],
        P256_HALF_ORDER[..]
    );
    // s = n or above is no signature: left alone (it fails verification anyway).
    let mut sig = [0u8; 64];
    sig[32..].copy_from_slice(&P256_ORDER);
    assert_eq!(canonical_signature(Alg::Es256, &sig), sig);
}

proptest! {
    /// Stripping or adding the tag, or taking the twin of an ES256 signature, never changes
    /// a reading's id; and the id is the plain leaf hash of the canonical message.
    #[test]
    fn the_tag_never_changes_the_id(seq in any::<u64>(), stream in proptest::option::of("[a-z]{1,64}"), data in cbor_data(), es256 in any::<bool>(), sig in proptest::array::uniform32(any::<u8>()), s in proptest::array::uniform32(any::<u8>())) {
        let alg = if es256 { Alg::Es256 } else { Alg::EdDsa };
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&sig);
        signature[32..].copy_from_slice(&s);
        let tagged = UnsignedReading::new(alg, DEVICE, seq, 5, stream.as_deref(), &data).into_message(&signature);
        let untagged = &tagged[1..];
        let id = reading_id(&tagged);
        prop_assert_eq!(reading_id(untagged), id);
        prop_assert_eq!(reading_id(&[&[0xd8, 0x12][..], untagged].concat()), id);
        let canonical = decode(untagged).unwrap().to_canonical();
        prop_assert_eq!(iotchain_merkle::leaf_hash(&canonical), id);
        prop_assert_eq!(reading_id(&canonical), id);
        if es256 && s[..] < P256_ORDER[..] && s != [0u8; 32] {
            let other = UnsignedReading::new(alg, DEVICE, seq, 5, stream.as_deref(), &data).into_message(&twin(&signature));
            prop_assert_eq!(reading_id(&other), id);
            prop_assert_eq!(reading_id(&other[1..]), id);
        }
    }
}
