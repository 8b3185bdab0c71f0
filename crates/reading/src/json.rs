//! A reading's CBOR `data` as JSON, by one documented mapping (docs/api.md, "Reading data as
//! JSON"), so that every API and tool that gives device data (the node's REST API, its live
//! feed, `iotchain export`) gives the same JSON for it. Behind the `json` feature (std).
//!
//! | CBOR | JSON |
//! | --- | --- |
//! | integer (major types 0 and 1, and bignums: tags 2 and 3) within ±(2^53 − 1) | number |
//! | any other integer | `{"$bigint": "<decimal>"}` (a bignum beyond 256 bits: `{"$tag": …}`) |
//! | float (half, single, double) | number; NaN, +∞, −∞ as `{"$float": "NaN" / "Infinity" / "-Infinity"}` |
//! | text string | string |
//! | byte string | `{"$bytes": "0x…"}` |
//! | array | array |
//! | map with text keys only | object (a repeated key keeps its last value) |
//! | map with any other key | `{"$map": [[key, value], …]}`, keys and values mapped alike |
//! | `true`, `false`, `null` | the same; `undefined` as `null` |
//! | any other tag | `{"$tag": n, "value": …}` |
//!
//! So that an object with a `$` key always means one of the forms above, a map with a text
//! key that starts with `$` is given as `{"$map": …}` too.

use std::{format, string::ToString, vec::Vec};

use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Value, json};

/// Largest integer a JSON number carries exactly (2^53 − 1).
const MAX_SAFE: i128 = (1 << 53) - 1;

/// Decodes one CBOR item and maps it; `None` if the bytes are not one CBOR item (the node
/// accepted the reading, so this does not happen for stored data).
pub fn data_json(cbor: &[u8]) -> Option<Value> {
    let mut bytes = cbor;
    let v: Cbor = ciborium::de::from_reader(&mut bytes).ok()?;
    bytes.is_empty().then(|| to_json(&v))
}

fn to_json(v: &Cbor) -> Value {
    match v {
        Cbor::Integer(i) => int(*i),
        Cbor::Float(f) => float(*f),
        Cbor::Text(s) => json!(s),
        Cbor::Bytes(b) => json!({"$bytes": format!("0x{}", hex::encode(b))}),
        Cbor::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Cbor::Map(m) => map(m),
        Cbor::Bool(b) => json!(b),
        Cbor::Tag(2 | 3, inner) if matches!(**inner, Cbor::Bytes(_)) => bignum(v),
        Cbor::Tag(t, inner) => json!({"$tag": t, "value": to_json(inner)}),
        // Null; ciborium's Value is non-exhaustive (it decodes `undefined` as null and refuses
        // the other simple values, so nothing else reaches this).
        _ => Value::Null,
    }
}

fn int(i: Integer) -> Value {
    let n = i128::from(i);
    if (-MAX_SAFE..=MAX_SAFE).contains(&n) {
        json!(n as i64)
    } else {
        json!({"$bigint": n.to_string()})
    }
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        json!({"$float": "NaN"})
    } else if f.is_infinite() {
        json!({"$float": if f > 0.0 { "Infinity" } else { "-Infinity" }})
    } else {
        json!(f)
    }
}

/// Tags 2 and 3 (RFC 8949 §3.4.3): an unsigned big-endian magnitude `n`, the value `n` or
/// `-1 - n`, as a decimal string.
fn bignum(v: &Cbor) -> Value {
    let Cbor::Tag(tag, inner) = v else {
        unreachable!("called for tags 2 and 3")
    };
    let Cbor::Bytes(b) = &**inner else {
        unreachable!("called for a byte string")
    };
    let magnitude = alloy_primitives::U256::try_from_be_slice(b);
    let text = match (magnitude, *tag) {
        (Some(m), 2) => m.to_string(),
        (Some(m), _) => format!("-{}", m + alloy_primitives::U256::from(1)),
        // More than 256 bits: kept as the tag and its bytes.
        (None, t) => {
            return json!({"$tag": t, "value": {"$bytes": format!("0x{}", hex::encode(b))}});
        }
    };
    json!({"$bigint": text})
}

fn map(m: &[(Cbor, Cbor)]) -> Value {
    let text_keys = m
        .iter()
        .all(|(k, _)| matches!(k, Cbor::Text(s) if !s.starts_with('$')));
    if text_keys {
        let mut o = Map::new();
        for (k, v) in m {
            if let Cbor::Text(k) = k {
                o.insert(k.clone(), to_json(v));
            }
        }
        Value::Object(o)
    } else {
        json!({"$map": m.iter().map(|(k, v)| json!([to_json(k), to_json(v)])).collect::<Vec<_>>()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn cbor(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn every_kind_of_item_has_its_documented_json() {
        let cases: Vec<(Vec<u8>, Value)> = vec![
            (vec![0x18, 0x2a], json!(42)),
            (vec![0x38, 0x29], json!(-42)),
            (vec![0xf9, 0x4d, 0x60], json!(21.5)),
            (vec![0xf9, 0x7e, 0x00], json!({"$float": "NaN"})),
            (vec![0xf9, 0x7c, 0x00], json!({"$float": "Infinity"})),
            (vec![0xf9, 0xfc, 0x00], json!({"$float": "-Infinity"})),
            // 2^53 fits, 2^53 + 1 does not.
            (
                vec![0x1b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                json!(9_007_199_254_740_991_i64),
            ),
            (
                vec![0x1b, 0, 0x20, 0, 0, 0, 0, 0, 1],
                json!({"$bigint": "9007199254740993"}),
            ),
            (
                vec![0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                json!({"$bigint": "-18446744073709551616"}),
            ),
            // Bignums are integers like the others: tag 2 of 0x0100 = 256, tag 3 of 0x00 = -1,
            // tag 2 of 2^64 and tag 3 of 2^64 (-2^64 - 1).
            (vec![0xc2, 0x42, 0x01, 0x00], json!(256)),
            (vec![0xc3, 0x41, 0x00], json!(-1)),
            (
                vec![0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                json!({"$bigint": "18446744073709551616"}),
            ),
            (
                vec![0xc3, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                json!({"$bigint": "-18446744073709551617"}),
            ),
            (vec![0x43, 1, 2, 3], json!({"$bytes": "0x010203"})),
            (vec![0x62, b'h', b'i'], json!("hi")),
            (vec![0x82, 0x01, 0xf5], json!([1, true])),
            (vec![0xa1, 0x61, b't', 0x22], json!({"t": -3})),
            (vec![0xa1, 0x01, 0x02], json!({"$map": [[1, 2]]})),
            (
                vec![0xa1, 0x62, b'$', b'x', 0x02],
                json!({"$map": [["$x", 2]]}),
            ),
            (
                vec![0xc1, 0x1a, 0x65, 0x53, 0xf1, 0x00],
                json!({"$tag": 1, "value": 1_700_000_000}),
            ),
            (vec![0xf6], Value::Null),
            (vec![0xf4], json!(false)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                data_json(&bytes),
                Some(want.clone()),
                "{}",
                hex::encode(&bytes)
            );
        }
        // Not one item: none.
        assert_eq!(data_json(&[0x01, 0x02]), None);
        assert_eq!(data_json(&[0x19, 0x01]), None);
        // A round trip through ciborium's own encoder agrees.
        let v = Cbor::Map(vec![(
            Cbor::Text("a".into()),
            Cbor::Array(vec![Cbor::Integer(7.into())]),
        )]);
        assert_eq!(data_json(&cbor(&v)), Some(json!({"a": [7]})));
    }
}
