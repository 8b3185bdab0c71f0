//! Fuzzes the COSE_Sign1 reading decoder: no input may panic it, and what decodes re-encodes
//! (deterministically, shortest heads) to a message that decodes to the same reading.
#![no_main]

use iotchain_reading::{UnsignedReading, decode, sig_structure, write_sig_structure};

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("reading"), |data: &[u8]| {
    let Ok(r) = decode(data) else {
        return;
    };
    let signed = sig_structure(r.protected, r.payload);
    let mut small = vec![0u8; signed.len().saturating_sub(1)];
    assert!(write_sig_structure(r.protected, r.payload, &mut small).is_err());
    let again = UnsignedReading::try_new(r.alg, r.device, r.seq, r.ts, Some(r.stream), r.data)
        .expect("a decoded reading's fields encode");
    let message = again.into_message(r.signature);
    let d = decode(&message).expect("the re-encoded reading decodes");
    assert_eq!(
        (d.alg, d.device, d.seq, d.ts, d.stream, d.data, d.signature),
        (r.alg, r.device, r.seq, r.ts, r.stream, r.data, r.signature)
    );
    // The encoding is deterministic: encoding the decoded copy gives the same bytes.
    let twice = UnsignedReading::try_new(d.alg, d.device, d.seq, d.ts, Some(d.stream), d.data)
        .unwrap()
        .into_message(d.signature);
    assert_eq!(twice, message);
});
