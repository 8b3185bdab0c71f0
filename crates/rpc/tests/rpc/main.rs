//! The HTTP API in-process, without a socket (axum's testing pattern): each route's answers
//! and its errors in the documented shape, JSON-RPC envelopes and batches, against a real
//! engine. Here is the harness (an engine behind the router, and requests to it); the tests
//! are in a module per concern.

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

mod explorer;
mod health;
mod jsonrpc;
mod openapi;
mod relay;
mod rest;

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

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}
