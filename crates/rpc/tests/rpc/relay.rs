//! Relayed readings: only a relay signed by a known node counts as one, and a relay that
//! re-encodes a reading does not take it from its device.

use super::*;

#[test]
fn only_a_relay_signed_by_a_known_node_counts_as_one() {
    run(|context| async move {
        let api = api(&context);
        api.register().await;
        let genesis = iotchain_api::ChainQuery::genesis_hash(&api.engine);
        let post_marked = |body: Vec<u8>, mark: String| {
            let api = &api;
            async move {
                api.send(
                    Request::post("/v1/readings")
                        .header(CONTENT_TYPE, "application/cose")
                        .header(iotchain_rpc::FORWARDED_HEADER, mark)
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
            }
        };
        let m = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            0,
            1,
            None,
            &[0x01],
        );
        // The bare mark any client could send, a stranger's signature, a validator's signature
        // over another body: refused, nothing taken.
        for mark in [
            "1".to_string(),
            iotchain_rpc::sign_forwarded(&ValidatorKey::from_secret(&[9; 32]), &genesis, &m),
            iotchain_rpc::sign_forwarded(&ValidatorKey::from_secret(&[2; 32]), &genesis, b"x"),
        ] {
            let r = post_marked(m.clone(), mark).await;
            assert_eq!(code(&r), (401, "bad_forward"), "{}", r.1);
        }
        let id = B256::from(iotchain_reading::reading_id(&m));
        assert_eq!(
            api.get(&format!("/v1/readings/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
        // The validator's own signature over this body: taken, as a relay.
        let mark = iotchain_rpc::sign_forwarded(&ValidatorKey::from_secret(&[2; 32]), &genesis, &m);
        let (s, body) = post_marked(m.clone(), mark).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        // JSON-RPC relays are checked the same way.
        let call = serde_json::to_vec(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
            "params": [api.transfer(0)]
        }))
        .unwrap();
        let r = api
            .send(
                Request::post("/")
                    .header(CONTENT_TYPE, "application/json")
                    .header(iotchain_rpc::FORWARDED_HEADER, "1")
                    .body(Body::from(call))
                    .unwrap(),
            )
            .await;
        assert_eq!(code(&r), (401, "bad_forward"), "{}", r.1);
    });
}

#[test]
fn a_relay_that_strips_the_tag_does_not_take_the_devices_reading() {
    run(|context| async move {
        let api = api(&context);
        api.register().await;
        let m = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            1,
            1,
            None,
            &[0x01],
        );
        assert_eq!(m[0], 0xd2, "the SDK tags its messages");
        let id = format!("{}", B256::from(iotchain_reading::reading_id(&m)));
        // A relay strips the optional tag 18 and submits first: the reading is taken under
        // the id the device computes for its own copy.
        let (s, first) = api
            .post("/v1/readings", "application/cose", m[1..].to_vec())
            .await;
        assert_eq!(
            (s, first["id"].as_str()),
            (StatusCode::ACCEPTED, Some(&*id)),
            "{first}"
        );
        assert!(first.get("duplicate").is_none(), "{first}");
        // The device's own copy is the same reading: a duplicate, not a replay.
        let (s, own) = api
            .post("/v1/readings", "application/cose", m.clone())
            .await;
        assert_eq!(
            (s, own["id"].as_str()),
            (StatusCode::ACCEPTED, Some(&*id)),
            "{own}"
        );
        assert_eq!(own["duplicate"], true, "{own}");
        // In a batch too.
        let batch = iotchain_reading::encode_batch(&[&m[1..]]);
        let (s, b) = api.post("/v1/readings", "application/cbor", batch).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["results"][0]["id"].as_str(), Some(&*id), "{b}");
        assert_eq!(b["results"][0]["duplicate"], true, "{b}");
        // What is kept, and proven, is the device's canonical message: it hashes to the id,
        // and the proof verifies as any other.
        api.engine.produce_next_block().unwrap();
        let (s, proof) = api.get(&format!("/v1/readings/{id}/proof")).await;
        assert_eq!(s, StatusCode::OK, "{proof}");
        assert_eq!(proof["message"], format!("0x{}", hex::encode(&m)));
        let bundle: iotchain_block::ProofBundle = serde_json::from_value(proof).unwrap();
        bundle
            .verify(
                iotchain_api::ChainQuery::genesis(&api.engine),
                &iotchain_api::ChainQuery::genesis_hash(&api.engine),
            )
            .unwrap();
    })
}
