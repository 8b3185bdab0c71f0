//! Fuzzes the COSE_Sign1 reading decoder: no input may panic it; what decodes has one id
//! whatever its encoding (the leaf hash of its canonical message, which decodes to the same
//! reading and is its own canonical form); and its fields re-encode (deterministically,
//! shortest heads) to a message that decodes to the same reading.
#![no_main]

use iotchain_reading::{
    UnsignedReading, canonical_signature, decode, reading_id, sig_structure, write_sig_structure,
};

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("reading"), |data: &[u8]| {
    let Ok(r) = decode(data) else {
        return;
    };
    for aad in [&[][..], &[0x9e; 32][..]] {
        let signed = sig_structure(r.protected, aad, r.payload);
        let mut small = vec![0u8; signed.len().saturating_sub(1)];
        assert!(write_sig_structure(r.protected, aad, r.payload, &mut small).is_err());
    }

    // One id for every encoding: the canonical message's.
    let id = r.id();
    assert_eq!(reading_id(data), id);
    let canonical = r.to_canonical();
    assert_eq!(canonical.len(), r.canonical_len());
    assert_eq!(reading_id(&canonical), id);
    assert_eq!(iotchain_merkle::leaf_hash(&canonical), id);
    let c = decode(&canonical).expect("the canonical message decodes");
    assert_eq!(
        (c.alg, c.device, c.seq, c.ts, c.stream, c.data, c.protected, c.payload),
        (r.alg, r.device, r.seq, r.ts, r.stream, r.data, r.protected, r.payload)
    );
    assert_eq!(*c.signature, r.canonical_signature());
    assert_eq!(canonical_signature(r.alg, c.signature), *c.signature);
    assert!(c.is_canonical_encoding(&canonical));
    assert_eq!(c.to_canonical(), canonical);
    assert_eq!(r.is_canonical_encoding(data), data == &canonical[..]);
    let mut short = vec![0u8; canonical.len() - 1];
    assert!(r.write_canonical(&mut short).is_err());

    // The fields re-encode to the same reading, deterministically.
    let again = UnsignedReading::try_new(r.alg, r.device, r.seq, r.ts, Some(r.stream), r.data)
        .expect("a decoded reading's fields encode");
    let message = again.into_message(r.signature);
    let d = decode(&message).expect("the re-encoded reading decodes");
    assert_eq!(
        (d.alg, d.device, d.seq, d.ts, d.stream, d.data, d.signature),
        (r.alg, r.device, r.seq, r.ts, r.stream, r.data, r.signature)
    );
    let twice = UnsignedReading::try_new(d.alg, d.device, d.seq, d.ts, Some(d.stream), d.data)
        .unwrap()
        .into_message(d.signature);
    assert_eq!(twice, message);
});
