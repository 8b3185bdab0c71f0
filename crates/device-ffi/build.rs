//! Generates `include/iotchain_device.h` from the crate's `extern "C"` items with cbindgen.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("the C API can be expressed in C");
    let path = format!("{dir}/include/iotchain_device.h");
    // Rewrite only on change, so the header's timestamp does not trigger C rebuilds.
    bindings.write_to_file(path);
}
