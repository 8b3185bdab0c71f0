//! The REST routes: readings taken and refused, devices and blocks, and every error of every
//! route in the documented JSON shape.

use super::*;

#[test]
fn readings_are_taken_and_refused_with_documented_errors() {
    run(|context| async move {
        let api = api(&context);
        let status = api.get("/v1/status").await;
        assert_eq!(status.0, StatusCode::OK);
        assert_eq!(status.1["chain_id"], CHAIN_ID);
        // Unregistered device.
        let m = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            0,
            1,
            None,
            &[0x01],
        );
        assert_eq!(
            code(
                &api.post("/v1/readings", "application/cose", m.clone())
                    .await
            ),
            (404, "unknown_device")
        );
        api.register().await;
        let (s, body) = api
            .post("/v1/readings", "application/cose", m.clone())
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        assert_eq!(body["status"], "pending");
        // The same message again: a retry, acknowledged as the one already held.
        let (s, again) = api.post("/v1/readings", "application/cose", m).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["id"], body["id"]);
        assert_eq!(again["duplicate"], true);
        // A different reading under a seq already taken: a replay.
        let other = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            0,
            1,
            None,
            &[0x02],
        );
        assert_eq!(
            code(&api.post("/v1/readings", "application/cose", other).await),
            (409, "replayed_seq")
        );
        // Malformed, forged, the wrong media type, too large.
        assert_eq!(
            code(
                &api.post("/v1/readings", "application/cose", vec![0x84, 0x01])
                    .await
            )
            .0,
            400
        );
        let mut forged = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            1,
            1,
            None,
            &[0x01],
        );
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert_eq!(
            code(&api.post("/v1/readings", "application/cose", forged).await),
            (403, "bad_signature")
        );
        assert_eq!(
            code(&api.post("/v1/readings", "text/plain", "hi").await),
            (415, "unsupported_media_type")
        );
        assert_eq!(
            code(
                &api.post("/v1/readings", "application/cose", vec![0u8; 70 * 1024])
                    .await
            ),
            (413, "body_too_large")
        );
        // A batch that is not an array of messages.
        assert_eq!(
            code(
                &api.post("/v1/readings", "application/cbor", vec![0x01])
                    .await
            )
            .0,
            400
        );
        // Statuses.
        assert_eq!(
            api.get(&format!("/v1/readings/{id}")).await.1["status"],
            "pending"
        );
        api.engine.produce_next_block().unwrap();
        let (s, r) = api.get(&format!("/v1/readings/{id}")).await;
        assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("final")));
        let (s, proof) = api.get(&format!("/v1/readings/{id}/proof")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(proof["reading_id"], id);
        assert_eq!(code(&api.get("/v1/readings/0x12").await), (400, "bad_id"));
        assert_eq!(
            code(
                &api.get(&format!("/v1/readings/{}", B256::repeat_byte(9)))
                    .await
            ),
            (404, "not_found")
        );
        assert_eq!(
            code(
                &api.get(&format!("/v1/readings/{}/proof", B256::repeat_byte(9)))
                    .await
            ),
            (404, "not_found")
        );
    })
}

#[test]
fn devices_blocks_and_unknown_routes() {
    run(|context| async move {
        let api = api(&context);
        let address = api.device.address();
        assert_eq!(
            code(&api.get(&format!("/v1/devices/{address}")).await),
            (404, "not_found")
        );
        api.register().await;
        let (s, d) = api.get(&format!("/v1/devices/{address}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(d["address"], address.to_string());
        assert_eq!(d["pending_last_seq"], Value::Null);
        let (_, list) = api
            .get(&format!("/v1/devices?owner={}", api.owner.address()))
            .await;
        assert_eq!(list["devices"].as_array().unwrap().len(), 1);
        assert_eq!(
            code(&api.get("/v1/devices?owner=nope").await),
            (400, "bad_address")
        );
        assert_eq!(
            code(&api.get("/v1/devices/0x12").await),
            (400, "bad_address")
        );
        let (s, owner) = api
            .get(&format!("/v1/owners/{}", api.owner.address()))
            .await;
        assert_eq!(
            (s, owner["authorised"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        let (s, block) = api.get("/v1/blocks/latest").await;
        assert_eq!(s, StatusCode::OK);
        assert!(block["certificate"].is_object());
        assert_eq!(code(&api.get("/v1/blocks/x").await), (400, "bad_height"));
        assert_eq!(code(&api.get("/v1/blocks/99").await), (404, "not_found"));
        let (s, page) = api.get("/v1/sync/1").await;
        assert_eq!(s, StatusCode::OK);
        assert!(!page["blocks"].as_array().unwrap().is_empty());
        assert_eq!(code(&api.get("/v1/sync/0").await), (400, "bad_height"));
        assert_eq!(code(&api.get("/v1/nothing").await), (404, "not_found"));
        // GET / without an upgrade is no WebSocket.
        assert_eq!(code(&api.get("/").await), (400, "not_a_websocket"));
        let (s, metrics) = {
            let r = api
                .router
                .clone()
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let s = r.status();
            (
                s,
                axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap(),
            )
        };
        assert_eq!(s, StatusCode::OK);
        let text = String::from_utf8(metrics.to_vec()).unwrap();
        assert!(text.contains("\niotchain_height "), "{text}");
        assert!(text.contains("\niotchain_pending_readings 0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    })
}

/// Asserts a REST error in the documented shape, `{"error": {"code", "message"}}` and nothing
/// else, served as JSON; its status and code.
fn rest_error(
    what: &str,
    (status, content_type, body): &(StatusCode, String, axum::body::Bytes),
) -> (u16, String) {
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{what}: {status} is no error"
    );
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} served as {content_type:?}: {body:?}"
    );
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: {status} is not JSON ({e}): {body:?}"));
    let o = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
    assert_eq!(o.len(), 1, "{what}: {v}");
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "{what}: {v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert_eq!(v["error"].as_object().unwrap().len(), 2, "{what}: {v}");
    (status.as_u16(), code.to_string())
}

/// Asserts a JSON-RPC error object answering no request (`"id": null`); its code.
fn rpc_error(
    what: &str,
    (status, content_type, body): &(StatusCode, String, axum::body::Bytes),
) -> i64 {
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} served as {content_type:?}: {body:?}"
    );
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: {status} is not JSON ({e}): {body:?}"));
    assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
    assert_eq!(v["id"], Value::Null, "{what}: {v}");
    assert!(v["error"]["message"].as_str().is_some(), "{what}: {v}");
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: {v}"))
}

/// A body of `n` bytes in 1 KiB chunks with no declared length (sent chunked).
fn chunked(first: u8, n: usize) -> Body {
    let mut data = vec![b' '; n];
    data[0] = first;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1024).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[test]
fn every_error_of_every_route_is_json() {
    run(|context| async move {
        let api = api(&context);
        let id = B256::repeat_byte(7);
        let address = api.device.address();
        let owner = api.owner.address();
        // (method, path with good parameters, path template with {} for a parameter)
        let gets = [
            "/v1/status".to_string(),
            format!("/v1/readings/{id}"),
            format!("/v1/readings/{id}/proof"),
            format!("/v1/transactions/{id}"),
            "/v1/devices".to_string(),
            format!("/v1/devices/{address}"),
            format!("/v1/owners/{owner}"),
            "/v1/blocks/latest".to_string(),
            "/v1/blocks/0".to_string(),
            "/v1/sync/1".to_string(),
            "/metrics".to_string(),
        ];
        let posts = ["/v1/readings", "/v1/transactions"];
        // Wrong methods, on every route.
        for path in &gets {
            for method in ["DELETE", "PUT", "POST", "PATCH"] {
                let what = format!("{method} {path}");
                let r = raw(&api, request(method, path)).await;
                assert_eq!(rest_error(&what, &r), (405, "method_not_allowed".into()));
            }
        }
        for path in posts.iter().chain(&["/"]) {
            for method in ["DELETE", "PUT", "PATCH"] {
                let what = format!("{method} {path}");
                let r = raw(&api, request(method, path)).await;
                assert_eq!(rest_error(&what, &r), (405, "method_not_allowed".into()));
            }
        }
        assert_eq!(
            rest_error(
                "GET /v1/readings",
                &raw(&api, request("GET", "/v1/readings")).await
            ),
            (405, "method_not_allowed".into())
        );
        // The 405 still says what is allowed.
        let r = api
            .router
            .clone()
            .oneshot(request("DELETE", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(r.headers()["allow"], "GET,HEAD");
        // A bad query: refused as `bad_query` where the route reads one, JSON whatever it is.
        for path in &gets {
            for query in ["wait_ms=abc", "wait_ms=-1&max=x", "max=1e9&wait_ms=%FF"] {
                let what = format!("GET {path}?{query}");
                let r = raw(&api, request("GET", &format!("{path}?{query}"))).await;
                if path.starts_with("/v1/readings/0x") && !path.ends_with("/proof")
                    || path.starts_with("/v1/transactions/")
                    || path.starts_with("/v1/sync/")
                {
                    assert_eq!(rest_error(&what, &r), (400, "bad_query".into()));
                } else if !r.0.is_success() {
                    rest_error(&what, &r);
                }
            }
        }
        let r = raw(&api, request("GET", "/v1/devices?owner=a&owner=b")).await;
        assert_eq!(rest_error("duplicate owner", &r), (400, "bad_query".into()));
        // Bad parameters in the path, and invalid UTF-8 (percent-encoded) in it.
        let templates = [
            "/v1/readings/{}",
            "/v1/readings/{}/proof",
            "/v1/transactions/{}",
            "/v1/devices/{}",
            "/v1/owners/{}",
            "/v1/blocks/{}",
            "/v1/sync/{}",
        ];
        for t in templates {
            let r = raw(&api, request("GET", &t.replace("{}", "nope"))).await;
            assert_eq!(rest_error(t, &r).0, 400);
            let r = raw(&api, request("GET", &t.replace("{}", "%FF%FE"))).await;
            assert_eq!(rest_error(t, &r), (400, "bad_path".into()));
        }
        for path in gets.iter().map(String::as_str).chain(posts).chain(["/"]) {
            let bad = format!("{path}%FF");
            let r = raw(&api, request("GET", &bad)).await;
            let (status, _) = rest_error(&bad, &r);
            assert!(status == 404 || status == 400, "{bad}: {status}");
        }
        // WebSocket upgrades that cannot be.
        assert_eq!(
            rest_error("GET /", &raw(&api, request("GET", "/")).await),
            (400, "not_a_websocket".into())
        );
        let upgrade = Request::get("/")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            rest_error("upgrade without a key", &raw(&api, upgrade).await),
            (400, "bad_websocket_upgrade".into())
        );
        // JSON-RPC keeps its own shape: a body that is not JSON, an over-long body with and
        // without a declared length.
        let wrong_type = Request::post("/")
            .header(CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        let r = raw(&api, wrong_type).await;
        assert_eq!(
            (r.0, rpc_error("text/plain call", &r)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, -32600)
        );
        let r = raw(
            &api,
            Request::post("/")
                .header(CONTENT_TYPE, "application/json")
                .body(chunked(b'{', 70 * 1024))
                .unwrap(),
        )
        .await;
        assert_eq!(
            (r.0, rpc_error("chunked call", &r)),
            (StatusCode::PAYLOAD_TOO_LARGE, -32007)
        );
        let r = raw(
            &api,
            Request::post("/")
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b' '; 70 * 1024]))
                .unwrap(),
        )
        .await;
        assert_eq!(
            (r.0, rpc_error("declared call", &r)),
            (StatusCode::PAYLOAD_TOO_LARGE, -32007)
        );
        // A call within the limit, chunked, is served.
        let mut call = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
            .to_string()
            .into_bytes();
        call.resize(4000, b' ');
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            call.chunks(1000).map(|c| Ok(c.to_vec())).collect();
        let (s, r) = api
            .send(
                Request::post("/")
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::from_stream(futures::stream::iter(chunks)))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            (s, &r["result"]),
            (StatusCode::OK, &json!(format!("{CHAIN_ID:#x}")))
        );
        // REST bodies over the limit, chunked.
        for (path, content_type) in [
            ("/v1/readings", "application/cose"),
            ("/v1/readings", "application/cbor"),
            ("/v1/transactions", "application/json"),
        ] {
            let r = raw(
                &api,
                Request::post(path)
                    .header(CONTENT_TYPE, content_type)
                    .body(chunked(0x84, 70 * 1024))
                    .unwrap(),
            )
            .await;
            assert_eq!(rest_error(path, &r), (413, "body_too_large".into()));
        }
    })
}
