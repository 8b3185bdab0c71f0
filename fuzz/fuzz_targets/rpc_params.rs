//! Fuzzes the Ethereum JSON-RPC parameter parsers (crates/rpc/src/eth/params.rs) with arbitrary
//! JSON: positional parameters, quantities, data, block parameters, call objects and log
//! filters. Every refusal is -32602 (invalid params), and what parses prints back to itself.
#![no_main]

use alloy_primitives::{Address, B256, Log, U256};
use iotchain_rpc::fuzzing as p;
use serde_json::{Value, json};

fn invalid_params<T: std::fmt::Debug>(what: &str, v: &Value, r: &Result<T, p::Error>) {
    if let Err((code, message)) = r {
        assert_eq!(*code, -32602, "{what}({v}) failed with {code}: {message}");
        assert!(!message.is_empty(), "{what}({v}): an empty message");
    }
}

/// Every parser on one value.
fn check(v: &Value) {
    let u256 = p::parse_u256(v);
    invalid_params("parse_u256", v, &u256);
    if let Ok(x) = &u256 {
        // A quantity prints as 0x-hex and parses back.
        assert_eq!(p::parse_u256(&json!(format!("{x:#x}"))), Ok(*x), "{v}");
        assert!(v.as_str().is_some_and(|s| s.starts_with("0x")), "{v}");
    }
    let u64 = p::parse_u64(v);
    invalid_params("parse_u64", v, &u64);
    match (&u64, &u256) {
        (Ok(x), Ok(y)) => assert_eq!(U256::from(*x), *y, "{v}"),
        (Ok(_), Err(_)) => panic!("{v} is a u64 but not a u256"),
        (Err(_), Ok(y)) => assert!(*y > U256::from(u64::MAX), "{v} fits in 64 bits"),
        (Err(_), Err(_)) => {}
    }
    let bytes = p::parse_bytes(v);
    invalid_params("parse_bytes", v, &bytes);
    if let Ok(b) = &bytes {
        assert_eq!(p::parse_bytes(&json!(b)).as_ref(), Ok(b), "{v}");
        let s = v.as_str().expect("data is a string");
        assert_eq!(s.len(), 2 + 2 * b.len(), "{v}");
    }
    let block = p::block_id(Some(v));
    invalid_params("block_id", v, &block);
    if let (Ok(b), Ok(n)) = (&block, &u64) {
        // A quantity that is not a tag is a block number.
        assert_eq!(*b, format!("Number({n})"), "{v}");
    }
    if let Ok(b) = &block {
        let again = match b.strip_prefix("Number(").and_then(|s| s.strip_suffix(')')) {
            Some(n) => p::block_id(Some(&json!(format!("{:#x}", n.parse::<u64>().unwrap())))),
            None => p::block_id(Some(v)),
        };
        assert_eq!(again.as_ref(), Ok(b), "{v}");
    }
    let call = p::call_request(v);
    invalid_params("call_request", v, &call);
    if let Ok(c) = &call {
        let o = v.as_object().expect("a call is an object");
        let field = |k: &str| o.get(k).filter(|v| !v.is_null());
        assert_eq!(c.gas, field("gas").map(|g| p::parse_u64(g).unwrap()), "{v}");
        assert_eq!(
            c.value,
            field("value").map(|x| p::parse_u256(x).unwrap()),
            "{v}"
        );
        let input = field("input").or_else(|| field("data"));
        assert_eq!(
            c.input,
            input
                .map(|i| p::parse_bytes(i).unwrap())
                .unwrap_or_default(),
            "{v}"
        );
        if let Some(price) = field("gasPrice").or_else(|| field("maxFeePerGas")) {
            let full = p::parse_u256(price).unwrap();
            assert_eq!(c.gas_price, Some(full.saturating_to::<u128>()), "{v}");
        }
        for (k, got) in [("from", c.from), ("to", c.to)] {
            assert_eq!(got.is_some(), field(k).is_some(), "{k} of {v}");
        }
    }
    if let Some(o) = v.as_object() {
        let filter = p::log_filter(o);
        invalid_params("log_filter", v, &filter);
        if let Ok((addresses, topics)) = &filter {
            // A log with the first accepted address and topics matches; with an address the
            // filter does not name (when it names some), it does not.
            let address = addresses.first().copied().unwrap_or(Address::ZERO);
            let log_topics: Vec<B256> = topics
                .iter()
                .map(|t| t.first().copied().unwrap_or(B256::ZERO))
                .collect();
            let log = Log::new_unchecked(address, log_topics.clone(), Default::default());
            assert_eq!(p::log_filter_matches(o, &log), Ok(true), "{v}");
            let stranger = Address::repeat_byte(0xee);
            if !addresses.is_empty() && !addresses.contains(&stranger) {
                let log = Log::new_unchecked(stranger, log_topics, Default::default());
                assert_eq!(p::log_filter_matches(o, &log), Ok(false), "{v}");
            }
        }
    } else {
        assert!(call.is_err(), "{v}: a call that is not an object");
    }
}

/// Every value, nested at most `depth` levels (bounded: a deep array would be quadratic).
fn walk(v: &Value, depth: usize, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    check(v);
    if depth == 0 {
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, depth - 1, budget)),
        Value::Object(o) => o.values().for_each(|x| walk(x, depth - 1, budget)),
        _ => {}
    }
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("rpc_params"), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As a request's `params`: an array, null (none), or refused.
    match p::params(Some(text)) {
        Ok(ps) => {
            // jsonrpsee trims the raw params (Unicode whitespace) before the method sees them.
            let v: Value = serde_json::from_str(text.trim()).expect("params were JSON");
            assert!(v.is_array() || v.is_null(), "params {v} accepted");
            assert_eq!(ps, v.as_array().cloned().unwrap_or_default());
        }
        Err((code, _)) => assert_eq!(code, -32602),
    }
    assert_eq!(p::params(None), Ok(vec![]));
    assert_eq!(p::block_id(None).as_deref(), Ok("Latest"));
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    walk(&v, 3, &mut 64);
});
