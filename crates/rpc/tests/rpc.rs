//! The HTTP API in-process, without a socket (axum's testing pattern): each route's answers
//! and its errors in the documented shape, JSON-RPC envelopes and batches, against a real
//! engine.

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header::CONTENT_TYPE},
};
use commonware_runtime::tokio::Context;
use iotchain_block::{DeviceOp, Genesis, SignedTx};
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey, ValidatorKey};
use iotchain_engine::{
    Engine,
    testing::{config, open, run, runtime},
};
use iotchain_evm::{key_address, sign_tx};
use iotchain_rpc::{RpcConfig, router};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use tower::ServiceExt;

const CHAIN_ID: u64 = 21;

struct Api {
    router: Router,
    engine: Engine,
    owner: OwnerKey,
    device: DeviceSigner,
    alice: SigningKey,
    _dir: tempfile::TempDir,
}

fn api(context: &Context) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
    let alice = SigningKey::from_bytes(&[5u8; 32].into()).unwrap();
    let key = ValidatorKey::from_secret(&[2; 32]);
    let mut genesis = Genesis::single_validator(
        CHAIN_ID,
        1,
        B256::from(key.public_key()),
        vec![owner.address()],
    );
    genesis
        .alloc
        .insert(key_address(&alice), U256::from(10u128.pow(20)));
    let engine = open(context, config(dir.path().to_path_buf(), genesis, key)).unwrap();
    let (router, _) = router(
        engine.clone(),
        RpcConfig {
            max_body_bytes: 64 * 1024,
            max_rpc_connections: 16,
            runtime: runtime(context),
            node_key: engine.proposer(),
            metrics: iotchain_api::registry(),
            runtime_metrics: None,
            calls: Default::default(),
            forwarders: vec![],
        },
    );
    Api {
        router,
        engine,
        owner,
        device: DeviceSigner::from_secret(KeyAlg::Ed25519, &[3; 32]).unwrap(),
        alice,
        _dir: dir,
    }
}

impl Api {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        self.send(
            Request::post(path)
                .header(CONTENT_TYPE, content_type)
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn rpc(&self, body: Value) -> Value {
        let (status, v) = self.post("/", "application/json", body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn register(&self) {
        let op = DeviceOp::Register {
            public_key: self.device.public_key(),
            model: "m".into(),
            firmware_hash: Bytes::new(),
            labels: vec![],
        };
        let tx = SignedTx::sign(&self.owner, CHAIN_ID, 0, op).unwrap();
        let (status, body) = self
            .post(
                "/v1/transactions",
                "application/json",
                json!({"raw": format!("0x{}", hex::encode(tx.encode_rlp()))}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        while self.engine.produce_next_block().unwrap().is_some() {}
    }

    fn transfer(&self, nonce: u64) -> String {
        let raw = sign_tx(
            &self.alice,
            TxEip1559 {
                chain_id: CHAIN_ID,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: 10_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(Address::repeat_byte(0xb0)),
                value: U256::from(1),
                access_list: Default::default(),
                input: Bytes::new(),
            },
        )
        .unwrap();
        format!("0x{}", hex::encode(raw))
    }
}

/// An error in the documented shape: its status and `error.code`.
fn code(r: &(StatusCode, Value)) -> (u16, &str) {
    (
        r.0.as_u16(),
        r.1["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", r.1)),
    )
}

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

#[test]
fn json_rpc_envelopes_batches_and_raw_transaction_runs() {
    run(|context| async move {
        let api = api(&context);
        let r = api
            .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
            .await;
        assert_eq!(r["result"], format!("{CHAIN_ID:#x}"));
        let r = api
            .rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "eth_nothing"}))
            .await;
        assert_eq!(r["error"]["code"], -32601);
        let r = api
            .rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": ["0x12"]}))
            .await;
        assert_eq!(r["error"]["code"], -32602);
        // A batch of consecutive raw transactions is taken in order (nonce 0 before 1) in one
        // submission; a call between runs is answered in its place.
        let batch = json!([
            {"jsonrpc": "2.0", "id": 10, "method": "eth_sendRawTransaction", "params": [api.transfer(0)]},
            {"jsonrpc": "2.0", "id": 11, "method": "eth_sendRawTransaction", "params": [api.transfer(1)]},
            {"jsonrpc": "2.0", "id": 12, "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "id": 13, "method": "eth_sendRawTransaction", "params": [api.transfer(1)]},
            {"jsonrpc": "2.0", "id": 14, "method": "eth_sendRawTransaction", "params": ["0x123"]},
        ]);
        let r = api.rpc(batch).await;
        let answers = r.as_array().unwrap();
        assert_eq!(answers.len(), 5);
        assert!(answers[0]["result"].is_string(), "{}", answers[0]);
        assert!(answers[1]["result"].is_string(), "{}", answers[1]);
        assert_eq!(answers[2]["result"], "0x0");
        assert!(
            answers[3]["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("already known"),
            "{}",
            answers[3]
        );
        assert_eq!(answers[4]["error"]["code"], -32602);
        let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
        assert_eq!(
            ids,
            [&json!(10), &json!(11), &json!(12), &json!(13), &json!(14)]
        );
        let r = api
            .rpc(
                json!({"jsonrpc": "2.0", "id": 4, "method": "eth_getTransactionCount",
                "params": [key_address(&api.alice), "pending"]}),
            )
            .await;
        assert_eq!(r["result"], "0x2");
        // Envelopes: not JSON, no method, an empty batch.
        let (s, r) = api.post("/", "application/json", "{oops").await;
        assert_eq!((s, &r["error"]["code"]), (StatusCode::OK, &json!(-32700)));
        let r = api.rpc(json!({"jsonrpc": "2.0", "id": 1})).await;
        assert_eq!(r["error"]["code"], -32600);
        let r = api.rpc(json!([])).await;
        assert_eq!(r["error"]["code"], -32600);
        // A client that says nothing of the body's type is served as JSON.
        let (s, r) = api
            .send(
                Request::post("/")
                    .body(Body::from(
                        json!({"jsonrpc": "2.0", "id": 5, "method": "net_version"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            (s, &r["result"]),
            (StatusCode::OK, &json!(CHAIN_ID.to_string()))
        );
    })
}

#[test]
fn a_stopped_critical_task_makes_the_node_unready_and_refuse_writes() {
    run(|context| async move {
        let api = api(&context);
        api.register().await;
        let (s, body) = api.get("/v1/health").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["live"], true);
        assert_eq!(body["ready"], true);
        let before = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            0,
            1,
            None,
            &[0x01],
        );
        let (s, ok) = api.post("/v1/readings", "application/cose", before).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{ok}");

        // Consensus reports that one of its tasks ended.
        iotchain_api::BlockEngine::task_stopped(
            &api.engine,
            "consensus",
            "consensus_stopped",
            "voter ended".into(),
        );
        let (s, body) = api.get("/v1/health").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["live"], true);
        assert_eq!(body["ready"], false);
        assert_eq!(body["error"]["code"], "consensus_stopped");
        // No write is acknowledged any more, on REST or JSON-RPC; reads still answer.
        let after = api.device.sign_reading(
            &iotchain_api::ChainQuery::genesis_hash(&api.engine)[..],
            1,
            2,
            None,
            &[0x02],
        );
        assert_eq!(
            code(&api.post("/v1/readings", "application/cose", after).await),
            (503, "consensus_stopped")
        );
        let rpc = api
            .rpc(json!({
                "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                "params": [api.transfer(0)]
            }))
            .await;
        assert!(
            rpc["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("consensus")),
            "{rpc}"
        );
        assert_eq!(api.get("/v1/status").await.0, StatusCode::OK);
        // The failure is what the node's binary waits for to exit non-zero.
        let failure = iotchain_api::ItemPool::health(&api.engine).failed().await;
        assert_eq!(failure.task, "consensus");
    });
}

#[test]
fn a_batch_of_expensive_calls_is_bounded_in_total_work() {
    run(|context| async move {
        let api = api(&context);
        // Init code that loops for ever: each execution burns all the gas it may.
        let call = |id: u64| {
            json!({
                "jsonrpc": "2.0", "id": id, "method": "eth_estimateGas",
                "params": [{"data": "0x5b600056"}]
            })
        };
        let batch: Vec<Value> = (0..100).map(call).collect();
        let answers = api.rpc(Value::Array(batch)).await;
        let answers = answers.as_array().expect("a batch answer");
        assert_eq!(answers.len(), 100);
        let message = |a: &Value| a["error"]["message"].as_str().unwrap_or("").to_string();
        // The first runs out of gas at the cap; the batch then stops at its gas budget (or
        // its deadline), and every later call is refused without running.
        assert!(message(&answers[0]).contains("halted"), "{}", answers[0]);
        let last = message(&answers[99]);
        assert!(
            last.contains("work budget") || last.contains("timeout"),
            "{last}"
        );
        // The node still answers at once.
        assert_eq!(api.get("/v1/status").await.0, StatusCode::OK);
    });
}

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

/// An answer as it leaves the router: status, content type and the raw body.
async fn raw(api: &Api, req: Request<Body>) -> (StatusCode, String, axum::body::Bytes) {
    let r = api.router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, content_type, bytes)
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

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
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

/// The peer count as `/v1/status`, `/metrics` and `net_peerCount` report it.
async fn peer_figures(api: &Api) -> (u64, u64, String) {
    let (_, status) = api.get("/v1/status").await;
    let r = api
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let metric = text
        .lines()
        .find_map(|l| l.strip_prefix("iotchain_validators_heard "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse::<u64>()
        .unwrap();
    let count = api
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "net_peerCount"}))
        .await;
    (
        status["consensus"]["validators_heard_10s"]
            .as_u64()
            .unwrap(),
        metric,
        count["result"].as_str().unwrap().to_string(),
    )
}

#[test]
fn status_metrics_and_net_peer_count_report_the_same_peers() {
    run(|context| async move {
        let api = api(&context);
        assert_eq!(peer_figures(&api).await, (0, 0, "0x0".into()));
        // Two other validators heard from now, one long ago, and this node itself (which
        // consensus never records; a record of it would still not count).
        let now = iotchain_api::Runtime::now_ms(&*runtime(&context));
        let stats = iotchain_api::ChainQuery::consensus_stats(&api.engine);
        stats.heard_from(B256::repeat_byte(1), now);
        stats.heard_from(B256::repeat_byte(2), now.saturating_sub(3_000));
        stats.heard_from(B256::repeat_byte(3), now.saturating_sub(60_000));
        stats.heard_from(api.engine.proposer(), now);
        assert_eq!(peer_figures(&api).await, (2, 2, "0x2".into()));
    })
}

/// The `/v1` paths the router serves, read from its `Debug` form (axum lists its routes'
/// paths there and has no other way to enumerate them). Not a stable format: the caller
/// asserts that it found the routes, so a change of axum's output fails loudly instead of
/// passing with nothing compared.
fn served_v1_paths(router: &Router) -> std::collections::BTreeSet<String> {
    let text = format!("{router:?}");
    text.split('"')
        .filter(|s| s.starts_with("/v1/"))
        .map(str::to_string)
        .collect()
}

/// Every `$ref` in `v` names a schema of `components.schemas`.
fn refs_resolve(v: &Value, schemas: &serde_json::Map<String, Value>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{r} is not a component schema"));
                assert!(schemas.contains_key(name), "{r} names no schema");
            }
            o.values().for_each(|v| refs_resolve(v, schemas));
        }
        Value::Array(a) => a.iter().for_each(|v| refs_resolve(v, schemas)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_describes_every_route_the_router_serves() {
    run(|context| async move {
        let api = api(&context);
        let (status, doc) = api.get("/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            doc["openapi"]
        );
        assert_eq!(doc["info"]["title"], "iotchain");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let paths = doc["paths"].as_object().unwrap();
        let documented: std::collections::BTreeSet<String> = paths.keys().cloned().collect();

        // Every route of the router under /v1 is documented, and nothing else is.
        let served = served_v1_paths(&api.router);
        assert!(
            served.len() >= 18 && served.contains("/v1/status"),
            "the router's routes were not found in its Debug form: {served:?}"
        );
        assert_eq!(served, documented);

        let schemas = doc["components"]["schemas"].as_object().unwrap();
        refs_resolve(&doc, schemas);
        for name in ["ErrorBody", "FeedReadingJson", "FeedBlockJson"] {
            assert!(schemas.contains_key(name), "{name}");
        }

        // Each documented operation is routed at its method (not the fallback's 404 nor a
        // 405), documents a success and its errors in the one error shape.
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}: no success documented"
                );
                for (status, r) in responses {
                    assert!(
                        r["content"].is_object(),
                        "{method} {path} {status}: no content"
                    );
                    if status.starts_with('4') && path != "/v1/readings" {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
                let uri = path
                    .replace("{height}", "1")
                    .replace("{stream}", "default")
                    .replace("{id}", &format!("{}", B256::ZERO))
                    .replace("{hash}", &format!("{}", B256::ZERO))
                    .replace("{address}", &Address::ZERO.to_string());
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let r = api.router.clone().oneshot(req).await.unwrap();
                let status = r.status().as_u16();
                assert_ne!(status, 405, "{method} {uri}");
                if status == 404 {
                    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert!(
                        !v["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains("no such endpoint"),
                        "{method} {uri} is documented and not routed"
                    );
                }
            }
        }
        // The feed is an event stream.
        assert!(
            paths["/v1/feed"]["get"]["responses"]["200"]["content"]["text/event-stream"]
                .is_object()
        );
    })
}
