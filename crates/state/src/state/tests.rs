//! The registry rules, the state root, and the seq rule: each seq once, in any order.

use super::*;
use crate::accumulator_key;
use alloy_primitives::Bytes;
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};

fn setup() -> (State, OwnerKey, DeviceSigner) {
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let genesis = Genesis::single_validator(1, 0, B256::repeat_byte(9), vec![owner.address()]);
    (
        State::genesis(&genesis),
        owner,
        DeviceSigner::from_secret(KeyAlg::Ed25519, &[2; 32]).unwrap(),
    )
}

fn register(state: &mut State, owner: &OwnerKey, device: &DeviceSigner, nonce: u64) -> Result<()> {
    let op = DeviceOp::Register {
        public_key: device.public_key(),
        model: "m".into(),
        firmware_hash: Bytes::new(),
        labels: vec![],
    };
    state.apply_tx(&SignedTx::sign(owner, 1, nonce, op).unwrap(), 1)
}

#[test]
fn registry_rules() {
    let (mut state, owner, device) = setup();
    let root0 = state.root().unwrap();
    register(&mut state, &owner, &device, 0).unwrap();
    assert_ne!(state.root().unwrap(), root0);
    assert_eq!(
        register(&mut state, &owner, &device, 0).unwrap_err().code(),
        "bad_nonce"
    );
    assert_eq!(
        register(&mut state, &owner, &device, 1).unwrap_err().code(),
        "device_exists"
    );
    let stranger = OwnerKey::from_secret(&[5; 32]).unwrap();
    let other = DeviceSigner::from_secret(KeyAlg::P256, &[6; 32]).unwrap();
    assert_eq!(
        register(&mut state, &stranger, &other, 0)
            .unwrap_err()
            .code(),
        "unauthorised_owner"
    );

    let a = device.address();
    state
        .apply_reading(&a, 0, 5, 10, B256::repeat_byte(1))
        .unwrap();
    assert_eq!(
        state
            .apply_reading(&a, 0, 5, 11, B256::ZERO)
            .unwrap_err()
            .code(),
        "replayed_seq"
    );
    let applied = state
        .apply_reading(&a, 0, 9, 12, B256::repeat_byte(2))
        .unwrap();
    assert_eq!(applied.gap, Some(Gap { from: 6, to: 8 }));
    // The first reading, seq 5, opened 0..=4.
    assert_eq!(state.device(&a).unwrap().missing_count, 5 + 3);

    let rotate = DeviceOp::Rotate {
        device: a,
        public_key: other.public_key(),
    };
    state
        .apply_tx(&SignedTx::sign(&owner, 1, 1, rotate).unwrap(), 2)
        .unwrap();
    assert_eq!(
        state.check_reading(&a, 0, 10).unwrap_err().code(),
        "rotated_key"
    );
    state.check_reading(&a, 1, 10).unwrap();
    let revoke = DeviceOp::Revoke { device: a };
    state
        .apply_tx(&SignedTx::sign(&owner, 1, 2, revoke.clone()).unwrap(), 3)
        .unwrap();
    assert_eq!(
        state.check_reading(&a, 1, 10).unwrap_err().code(),
        "revoked_device"
    );
    assert_eq!(
        state
            .apply_tx(&SignedTx::sign(&owner, 1, 3, revoke).unwrap(), 3)
            .unwrap_err()
            .code(),
        "revoked_device"
    );
}

#[test]
fn root_is_independent_of_insertion_order_and_rebuild() {
    let (mut state, owner, device) = setup();
    register(&mut state, &owner, &device, 0).unwrap();
    state
        .apply_reading(&device.address(), 0, 1, 1, B256::repeat_byte(3))
        .unwrap();
    let root = state.root().unwrap();
    let (devices, owners) = {
        let mut s = state.clone();
        s.dirty_devices = s.devices.keys().copied().collect();
        s.dirty_owners = s.owners.keys().copied().collect();
        let r = s.changed_records();
        (r.devices, r.owners)
    };
    let decoded: Vec<DeviceRecord> = devices
        .iter()
        .map(|d| DeviceRecord::decode_rlp(&d.encode_rlp()).unwrap())
        .collect();
    let mut rebuilt = State::from_records(decoded, owners);
    assert_eq!(rebuilt.root().unwrap(), root);
}

fn registered() -> (State, DeviceAddress) {
    let (mut state, owner, device) = setup();
    register(&mut state, &owner, &device, 0).unwrap();
    (state, device.address())
}

fn id(seq: u64) -> B256 {
    B256::left_padding_from(&seq.to_be_bytes())
}

#[test]
fn a_late_reading_fills_its_gap_and_leaves_the_head() {
    let (mut state, a) = registered();
    for seq in [0, 4, 9] {
        state.apply_reading(&a, 0, seq, seq, id(seq)).unwrap();
    }
    let record = state.device(&a).unwrap();
    assert_eq!(
        record.open_gaps,
        vec![Gap { from: 1, to: 3 }, Gap { from: 5, to: 8 }]
    );
    assert_eq!((record.gap_count, record.missing_count), (2, 7));
    // seq 6 splits 5..=8; seq 1 trims 1..=3; the head stays at 9.
    let applied = state.apply_reading(&a, 0, 6, 6, id(6)).unwrap();
    assert_eq!((applied.gap, applied.filled), (None, true));
    state.apply_reading(&a, 0, 1, 1, id(1)).unwrap();
    let record = state.device(&a).unwrap();
    assert_eq!(
        record.open_gaps,
        vec![
            Gap { from: 2, to: 3 },
            Gap { from: 5, to: 5 },
            Gap { from: 7, to: 8 }
        ]
    );
    assert_eq!(record.missing_count, 5);
    assert_eq!((record.last_seq, record.last_reading_id), (Some(9), id(9)));
    assert_eq!(record.reading_count, 5);
    // A filled seq, the head and a seq never skipped are replays.
    for seq in [1, 6, 9, 0] {
        assert_eq!(
            state.check_reading(&a, 0, seq).unwrap_err().code(),
            "replayed_seq",
            "seq {seq}"
        );
    }
    // The record, gaps and all, survives its encoding.
    let record = state.device(&a).unwrap();
    assert_eq!(
        &DeviceRecord::decode_rlp(&record.encode_rlp()).unwrap(),
        record
    );
}

#[test]
fn a_stream_head_is_the_latest_reading_by_seq() {
    let (mut state, a) = registered();
    let head = |seq: u64| StreamHead {
        stream: "t",
        seq,
        ts: 100 + seq,
        id: id(seq),
        value: None,
    };
    for seq in [2, 5, 3] {
        state.apply_reading(&a, 0, seq, 100 + seq, id(seq)).unwrap();
        state.record_stream(&a, &head(seq));
    }
    // Seq 3 arrived last and filled its gap; the head (what contracts read as the latest
    // reading) stays at seq 5.
    let streams = &state.device(&a).unwrap().streams;
    assert_eq!(
        (streams[0].seq, streams[0].id, streams[0].ts),
        (5, id(5), 105)
    );
}

#[test]
fn opening_more_than_the_limit_closes_the_oldest_gaps() {
    let (mut state, a) = registered();
    state.apply_reading(&a, 0, 0, 0, id(0)).unwrap();
    // Every even seq skips the odd one before it: gaps {1}, {3}, … one more than the limit.
    let last = 2 * (MAX_OPEN_GAPS as u64 + 1);
    for seq in (2..=last).step_by(2) {
        state.apply_reading(&a, 0, seq, seq, id(seq)).unwrap();
    }
    let record = state.device(&a).unwrap();
    assert_eq!(record.open_gaps.len(), MAX_OPEN_GAPS);
    assert_eq!(record.open_gaps[0], Gap { from: 3, to: 3 });
    assert_eq!(record.gaps_closed_through, Some(1));
    let err = state.check_reading(&a, 0, 1).unwrap_err();
    assert_eq!(err.code(), "gap_closed");
    assert!(err.to_string().contains("seq 1"), "{err}");
    state.apply_reading(&a, 0, 3, 3, id(3)).unwrap();
    let record = state.device(&a).unwrap();
    assert_eq!(record.open_gaps.len(), MAX_OPEN_GAPS - 1);
    let decoded = DeviceRecord::decode_rlp(&record.encode_rlp()).unwrap();
    assert_eq!(&decoded, record);
}

proptest::proptest! {
    /// Whatever order a device's readings arrive in (they reach different nodes, blocks
    /// commit in any order), each is accepted exactly once and the record ends as if
    /// they had come in order.
    #[test]
    fn any_delivery_order_accepts_each_seq_once(
        order in proptest::strategy::Strategy::prop_shuffle(
            proptest::sample::subsequence((0..40u64).collect::<Vec<_>>(), 40),
        ),
        replays in proptest::collection::vec(0..40usize, 0..20),
    ) {
        let (mut state, a) = registered();
        for (i, &seq) in order.iter().enumerate() {
            state.apply_reading(&a, 0, seq, seq, id(seq)).unwrap();
            for &r in &replays {
                let again = order[r % (i + 1)];
                proptest::prop_assert!(state.check_reading(&a, 0, again).is_err());
            }
        }
        let record = state.device(&a).unwrap();
        proptest::prop_assert_eq!(record.last_seq, Some(39));
        proptest::prop_assert_eq!(record.last_reading_id, id(39));
        proptest::prop_assert!(record.open_gaps.is_empty(), "{:?}", record.open_gaps);
        proptest::prop_assert_eq!(record.missing_count, 0);
        proptest::prop_assert_eq!(record.reading_count, 40);
        proptest::prop_assert_eq!(record.gaps_closed_through, None);
    }
}

/// A stream's accumulator is in the trie: its proof checks with the light client (present,
/// and absent for a stream without one), a stream beyond the tracked ones gets none, and the
/// accumulators rebuild from their records to the same root.
#[test]
fn stream_accumulators_are_committed_by_the_root_and_provable() {
    let (mut state, a) = registered();
    let at = |h: u64| LeafPlace {
        height: h,
        block_time_ms: 1_000 * h,
    };
    let mut leaves = Vec::new();
    let mut last = None;
    for seq in [0u64, 1, 5, 3, 6] {
        state.apply_reading(&a, 0, seq, 100 + seq, id(seq)).unwrap();
        let head = StreamHead {
            stream: "t",
            seq,
            ts: 100 + seq,
            id: id(seq),
            value: None,
        };
        state.record_stream(&a, &head);
        state.accumulate(&a, "t", id(seq), (seq, 100 + seq), at(seq + 1));
        let leaf = iotchain_reading::StreamLeaf::next(
            last.as_ref(),
            id(seq).0,
            seq,
            100 + seq,
            seq + 1,
            1_000 * (seq + 1),
        );
        leaves.push(leaf.hash());
        last = Some(leaf);
    }
    // The late seq 3 carries the running maxima on.
    let acc = state.accumulator(&a, "t").unwrap().clone();
    assert_eq!(acc.peaks.count(), 5);
    assert_eq!((acc.last.seq, acc.last.max_seq), (6, 6));
    let mut reference = iotchain_merkle::mmr::Peaks::default();
    for l in &leaves {
        reference.push(*l);
    }
    assert_eq!(acc.root().0, reference.root());
    let records = state.changed_records();
    let root = state.root().unwrap();
    let nodes = state.accumulator_proof(&a, "t").unwrap();
    let nodes: Vec<&[u8]> = nodes.iter().map(|n| n.as_ref()).collect();
    let key = iotchain_light::accumulator_key(&a, "t");
    assert_eq!(key, accumulator_key(&a, "t").0);
    let value = iotchain_light::verify_mpt(&root.0, &key, &nodes)
        .unwrap()
        .expect("the accumulator is in the trie");
    assert_eq!(value, acc.trie_value().as_slice());
    // Another state root, or a node changed: refused.
    assert!(iotchain_light::verify_mpt(&[7; 32], &key, &nodes).is_err());
    // A stream without an accumulator: its absence is proven.
    let none = state.accumulator_proof(&a, "other").unwrap();
    let none: Vec<&[u8]> = none.iter().map(|n| n.as_ref()).collect();
    let other = iotchain_light::accumulator_key(&a, "other");
    assert_eq!(iotchain_light::verify_mpt(&root.0, &other, &none), Ok(None));
    // The absence proof does not show the present key's value.
    assert_ne!(
        iotchain_light::verify_mpt(&root.0, &key, &none),
        Ok(Some(value))
    );

    // An untracked stream (the device already tracks the most streams) gets no accumulator.
    for i in 0..MAX_STREAMS as u64 {
        let name = format!("s{i:02}");
        state.apply_reading(&a, 0, 10 + i, 0, id(10 + i)).unwrap();
        let head = StreamHead {
            stream: name.as_str(),
            seq: 10 + i,
            ts: 0,
            id: id(10 + i),
            value: None,
        };
        state.record_stream(&a, &head);
        state.accumulate(&a, &name, id(10 + i), (10 + i, 0), at(20));
    }
    let tracked = state.device(&a).unwrap().streams.len();
    assert_eq!(tracked, MAX_STREAMS);
    let untracked = (0..MAX_STREAMS)
        .map(|i| format!("s{i:02}"))
        .filter(|s| state.accumulator(&a, s).is_none())
        .count();
    // "t" took one place: the last new stream did not fit.
    assert_eq!(untracked, 1);

    // Rebuilt from the stored records (the first ones, updated by the later ones): the same
    // root.
    let later = state.changed_records();
    let root = state.root().unwrap();
    let mut rebuilt = State::from_records(later.devices, records.owners).with_accumulators(
        records
            .accumulators
            .into_iter()
            .filter(|(d, _)| !later.accumulators.iter().any(|(l, _)| l == d))
            .chain(later.accumulators.clone()),
    );
    assert_eq!(rebuilt.root().unwrap(), root);
}
