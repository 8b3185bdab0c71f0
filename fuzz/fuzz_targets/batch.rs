//! Fuzzes the batch splitter and the decoding of each element: the elements are consecutive
//! slices of the body, at most the limit, and re-encode to a batch that splits the same.
#![no_main]

use iotchain_reading::{decode, decode_batch, encode_batch};

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("batch"), |data: &[u8]| {
    let max = 1000;
    let Ok(items) = decode_batch(data, max) else {
        return;
    };
    assert!(!items.is_empty() && items.len() <= max);
    let total: usize = items.iter().map(|m| m.len()).sum();
    assert!(data.len() > total && data.len() - total <= 9, "the array head");
    assert_eq!(items.concat(), data[data.len() - total..]);
    let again = encode_batch(&items);
    assert_eq!(decode_batch(&again, max).unwrap(), items);
    for m in items {
        let _ = decode(m);
    }
});
