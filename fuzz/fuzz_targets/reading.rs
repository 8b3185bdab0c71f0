//! Fuzzes the COSE_Sign1 reading decoder: no input may panic it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(r) = iotchain_reading::decode(data) {
        let _ = iotchain_reading::sig_structure(r.protected, r.payload);
    }
});
