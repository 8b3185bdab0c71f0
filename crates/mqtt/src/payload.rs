//! A message's payload: one COSE_Sign1 reading or a CBOR array of them.
//!
//! MQTT 3.1.1 has no content type, so the two forms are told apart by their first bytes: a
//! COSE_Sign1 message is tag 18 or a 4-array whose first element is a byte string (the
//! protected header); a batch is an array whose elements are such messages. An MQTT 5
//! `content-type` of `application/cose` or `application/cbor` decides instead, as the HTTP
//! API's `Content-Type` does. Batches are split by the same function the HTTP API uses.

use alloy_primitives::Bytes;
use iotchain_reading::ReadingError;

/// The readings of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The payload is one COSE_Sign1 message.
    Single(Bytes),
    /// The payload is a CBOR array of COSE_Sign1 messages (each a slice of the payload).
    Batch(Vec<Bytes>),
}

impl Payload {
    /// The messages, in order.
    pub fn into_messages(self) -> Vec<Bytes> {
        match self {
            Self::Single(m) => vec![m],
            Self::Batch(ms) => ms,
        }
    }
}

/// Splits a payload into its readings' bytes, refusing a malformed or oversized batch.
pub fn split_payload(
    payload: &Bytes,
    content_type: Option<&str>,
    max_batch: usize,
) -> Result<Payload, ReadingError> {
    let batch = match content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }) {
        Some(c) if c == "application/cose" => false,
        Some(c) if c == "application/cbor" => true,
        _ => looks_like_batch(payload),
    };
    if !batch {
        return Ok(Payload::Single(payload.clone()));
    }
    let parts = iotchain_reading::decode_batch(payload, max_batch)?;
    Ok(Payload::Batch(
        parts.into_iter().map(|m| payload.slice_ref(m)).collect(),
    ))
}

/// Whether the payload is an array whose first element is not a byte string (a COSE_Sign1
/// message's first element is its protected header, a byte string).
fn looks_like_batch(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    if first >> 5 != 4 {
        return false; // not an array: a tagged COSE_Sign1 or garbage, decoded as one reading
    }
    // Skip the array head to the first element.
    let skip = match first & 0x1f {
        0 => return true, // an empty array: an (empty) batch
        n if n < 24 => 1,
        24 => 2,
        25 => 3,
        26 => 5,
        27 => 9,
        31 => 1, // indefinite length
        _ => return false,
    };
    match p.get(skip) {
        Some(b) => b >> 5 != 2,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A COSE_Sign1 shape: [bstr, {}, bstr, bstr], optionally tagged 18.
    fn cose(tagged: bool, fill: u8) -> Vec<u8> {
        let mut m = if tagged { vec![0xd2] } else { vec![] };
        m.extend([0x84, 0x41, fill, 0xa0, 0x41, fill, 0x41, fill]);
        m
    }

    #[test]
    fn single_message_forms() {
        for m in [cose(true, 1), cose(false, 2)] {
            let p = Bytes::from(m.clone());
            assert_eq!(split_payload(&p, None, 10).unwrap(), Payload::Single(p));
        }
    }

    #[test]
    fn batch_of_messages() {
        let (a, b) = (cose(true, 1), cose(false, 2));
        let mut body = vec![0x82];
        body.extend(&a);
        body.extend(&b);
        let p = Bytes::from(body);
        let Payload::Batch(ms) = split_payload(&p, None, 10).unwrap() else {
            panic!("a batch")
        };
        assert_eq!(ms, vec![Bytes::from(a), Bytes::from(b)]);
    }

    #[test]
    fn content_type_decides() {
        let p = Bytes::from(cose(false, 1));
        // Declared a batch, it is one: an array of four non-messages, split as four.
        let Payload::Batch(ms) = split_payload(&p, Some("application/cbor"), 10).unwrap() else {
            panic!("a batch")
        };
        assert_eq!(ms.len(), 4);
        let mut body = vec![0x81];
        body.extend(cose(true, 1));
        let b = Bytes::from(body);
        assert_eq!(
            split_payload(&b, Some("Application/COSE; x=y"), 10).unwrap(),
            Payload::Single(b)
        );
    }

    #[test]
    fn malformed_batches_get_the_http_codes() {
        let code = |bytes: &[u8], max| {
            split_payload(&Bytes::copy_from_slice(bytes), None, max)
                .unwrap_err()
                .code()
        };
        assert_eq!(code(&[0x80], 10), "empty_batch");
        let mut three = vec![0x83];
        for _ in 0..3 {
            three.extend(cose(true, 0));
        }
        assert_eq!(code(&three, 2), "batch_too_large");
        // Truncated: the array says two elements, one follows.
        let mut cut = vec![0x82];
        cut.extend(cose(true, 0));
        assert!(!code(&cut, 10).is_empty());
    }

    #[test]
    fn garbage_is_one_reading_for_the_decoder() {
        for g in [&b""[..], b"\xff", b"hello", b"\x9b", b"\x98", b"\x9f"] {
            // Never panics; anything that is not a batch goes to the reading decoder whole.
            let _ = split_payload(&Bytes::copy_from_slice(g), None, 10);
        }
        assert_eq!(
            split_payload(&Bytes::from_static(b"hello"), None, 10).unwrap(),
            Payload::Single(Bytes::from_static(b"hello"))
        );
    }
}
