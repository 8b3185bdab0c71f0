//! Fuzzes what the MQTT bridge takes from a broker: the payload splitter (one COSE_Sign1
//! reading or a CBOR batch, told apart by the MQTT 5 content type or the first bytes), the
//! decoding of each reading, and the topic filter (the device level of a topic, the ack topic).
//!
//! Input: content-type selector, max batch, then three length-prefixed strings (topic filter,
//! ack template, topic), then the payload.
#![no_main]

use alloy_primitives::Bytes;
use iotchain_fuzz::Input;
use iotchain_mqtt::{Payload, TopicFilter, split_payload};

fn text<'a>(input: &mut Input<'a>) -> &'a str {
    let n = usize::from(input.u8());
    let b = input.bytes(n);
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap(),
    }
}

fn topics(filter: &str, template: &str, topic: &str) {
    let Ok(f) = TopicFilter::new(filter, template) else {
        return;
    };
    assert_eq!(f.filter(), filter);
    let plus = filter.split('/').filter(|l| *l == "+").count();
    assert_eq!(plus, 1, "{filter:?} accepted");
    assert!(!filter.contains('#'));
    if let Some(device) = f.device(topic) {
        assert!(
            !device.is_empty() && !device.contains('/'),
            "{topic:?} → {device:?}"
        );
        // The topic is the filter with the device in place of `+`.
        let rebuilt: Vec<&str> = filter
            .split('/')
            .map(|l| if l == "+" { device } else { l })
            .collect();
        assert_eq!(rebuilt.join("/"), topic);
        let ack = f.ack_topic(device);
        assert!(ack.contains(device));
    }
    // The filter with any non-empty level in place of `+` matches, giving that level back.
    let probe = filter.replace("+", "0xdev");
    if filter.split('/').all(|l| l == "+" || !l.contains("0xdev")) {
        assert_eq!(f.device(&probe), Some("0xdev"), "{filter:?} {probe:?}");
    }
}

libfuzzer_sys::fuzz_target!(init: iotchain_fuzz::init("mqtt_payload"), |data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.u8();
    let max_batch = usize::from(input.u8());
    let filter = text(&mut input);
    let template = text(&mut input);
    let topic = text(&mut input);
    topics(filter, template, topic);
    let payload = Bytes::copy_from_slice(input.rest());
    let content_type = match selector % 6 {
        0 => None,
        1 => Some("application/cose"),
        2 => Some("application/cbor"),
        3 => Some(" Application/CBOR ; charset=binary"),
        4 => Some(template),
        _ => Some(""),
    };
    match split_payload(&payload, content_type, max_batch) {
        Ok(Payload::Single(m)) => {
            assert_eq!(m, payload);
            let _ = iotchain_reading::decode(&m);
        }
        Ok(Payload::Batch(ms)) => {
            assert!(!ms.is_empty() && ms.len() <= max_batch, "{} of {max_batch}", ms.len());
            // The messages are consecutive slices of the payload, after the array head.
            let total: usize = ms.iter().map(|m| m.len()).sum();
            let head = payload.len() - total;
            assert!((1..=9).contains(&head), "a head of {head} bytes");
            assert_eq!(ms.concat(), payload[head..].to_vec());
            for m in &ms {
                if let Ok(r) = iotchain_reading::decode(m) {
                    assert_eq!(iotchain_reading::reading_id(m).len(), 32);
                    assert!(!r.stream.is_empty());
                }
            }
            // Re-encoded as a (shortest-head) batch, the same messages come back.
            let again = iotchain_reading::encode_batch(&ms);
            let split = iotchain_reading::decode_batch(&again, max_batch).unwrap();
            assert_eq!(split.len(), ms.len());
            assert!(split.iter().zip(&ms).all(|(a, b)| *a == &b[..]));
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
    // The payload the MQTT 3.1.1 way (no content type) never panics either.
    let _ = split_payload(&payload, None, max_batch);
});
