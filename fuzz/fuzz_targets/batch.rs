//! Fuzzes the batch splitter and the decoding of each element.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(items) = iotchain_reading::decode_batch(data, 1000) {
        for m in items {
            let _ = iotchain_reading::decode(m);
        }
    }
});
