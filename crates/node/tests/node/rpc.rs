//! Ethereum JSON-RPC at `/` over real HTTP: a transfer from send to receipt, blocks, logs,
//! calls that revert with their data, EIP-1186 proofs that verify against the block's state
//! root, and every kind of bad input answered with the error code clients expect.

use std::time::Duration;

use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_trie::{Nibbles, proof::verify_proof};
use commonware_runtime::{Supervisor as _, tokio::Context};
use iotchain_block::Genesis;
use iotchain_crypto::ValidatorKey;
use iotchain_engine::testing::run;
use iotchain_evm::{key_address, sign_tx};
use iotchain_node::{Node, NodeConfig};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};

const CHAIN_ID: u64 = 31;
const GWEI: u128 = 1_000_000_000;

struct Rpc {
    node: Node,
    client: reqwest::Client,
    url: String,
    alice: SigningKey,
    _dir: tempfile::TempDir,
}

impl Rpc {
    async fn start(context: &Context) -> Self {
        let alice = SigningKey::from_bytes(&[5u8; 32].into()).unwrap();
        let key = ValidatorKey::from_secret(&[1; 32]);
        let mut genesis =
            Genesis::single_validator(CHAIN_ID, 1, B256::from(key.public_key()), vec![]);
        genesis
            .alloc
            .insert(key_address(&alice), U256::from(10u128.pow(21)));
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(dir.path().to_path_buf(), genesis, key);
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.block_interval = Duration::from_millis(20);
        let node = Node::start(context.child("node"), config).await.unwrap();
        let url = format!("http://{}/", node.http_addr);
        Self {
            node,
            client: reqwest::Client::new(),
            url,
            alice,
            _dir: dir,
        }
    }

    async fn raw(&self, body: String) -> Value {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let mut r = self.raw(body.to_string()).await;
        assert_eq!(r["id"], 7);
        match r.get_mut("error") {
            Some(e) => Err(e.take()),
            None => Ok(r["result"].take()),
        }
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params).await.unwrap()
    }

    async fn err(&self, method: &str, params: Value) -> (i64, String) {
        let e = self.call(method, params).await.unwrap_err();
        (
            e["code"].as_i64().unwrap(),
            e["message"].as_str().unwrap().to_string(),
        )
    }

    /// Waits for the transaction's receipt, block by block.
    async fn receipt(&self, hash: &Value) -> Value {
        let mut heads = iotchain_api::ChainQuery::subscribe_head(&self.node.engine);
        loop {
            let r = self.ok("eth_getTransactionReceipt", json!([hash])).await;
            if !r.is_null() {
                return r;
            }
            heads.changed().await.unwrap();
        }
    }

    fn tx(&self, nonce: u64, to: TxKind, value: u128, input: Bytes, gas: u64) -> String {
        let raw = sign_tx(
            &self.alice,
            TxEip1559 {
                chain_id: CHAIN_ID,
                nonce,
                gas_limit: gas,
                max_fee_per_gas: 5 * GWEI,
                max_priority_fee_per_gas: GWEI,
                to,
                value: U256::from(value),
                access_list: Default::default(),
                input,
            },
        )
        .unwrap();
        format!("0x{}", hex::encode(raw))
    }
}

fn u(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Init code of a contract that emits `LOG1(0xbb…)` with the call data as data, or reverts
/// with the call data as revert data when the first byte is 0xff.
fn echo_init() -> Bytes {
    // CALLDATASIZE PUSH1 0 PUSH1 0 CALLDATACOPY      (memory = calldata)
    // PUSH1 0 CALLDATALOAD PUSH1 248 SHR PUSH1 0xff EQ PUSH1 rev JUMPI
    // PUSH32 topic CALLDATASIZE PUSH1 0 LOG1 STOP
    // rev: JUMPDEST CALLDATASIZE PUSH1 0 REVERT
    let mut runtime = vec![
        0x36, 0x60, 0x00, 0x60, 0x00, 0x37, 0x60, 0x00, 0x35, 0x60, 0xf8, 0x1c, 0x60, 0xff, 0x14,
        0x60, 0x00, 0x57, 0x7f,
    ];
    runtime.extend_from_slice(&[0xbb; 32]);
    runtime.extend_from_slice(&[0x36, 0x60, 0x00, 0xa1, 0x00]);
    let rev = runtime.len() as u8;
    runtime[16] = rev;
    runtime.extend_from_slice(&[0x5b, 0x36, 0x60, 0x00, 0xfd]);
    let len = runtime.len() as u8;
    let mut init = vec![
        0x60, len, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00, 0xf3,
    ];
    init.extend_from_slice(&runtime);
    init.into()
}

#[test]
fn json_rpc_end_to_end() {
    run(|context| async move {
        let rpc = Rpc::start(&context).await;
        let alice = key_address(&rpc.alice);
        assert_eq!(rpc.ok("eth_chainId", json!([])).await, "0x1f");
        assert_eq!(rpc.ok("net_version", json!([])).await, "31");
        assert!(
            rpc.ok("web3_clientVersion", json!([]))
                .await
                .as_str()
                .unwrap()
                .starts_with("iotchain/")
        );
        assert_eq!(u(&rpc.ok("eth_gasPrice", json!([])).await), 2 * GWEI);

        // A transfer, from send to receipt and block.
        let bob = Address::repeat_byte(0xb0);
        let hash = rpc
            .ok(
                "eth_sendRawTransaction",
                json!([rpc.tx(0, TxKind::Call(bob), 1234, Bytes::new(), 21_000)]),
            )
            .await;
        let pending = rpc
            .ok("eth_getTransactionCount", json!([alice, "pending"]))
            .await;
        assert_eq!(pending, "0x1");
        let receipt = rpc.receipt(&hash).await;
        assert_eq!(receipt["status"], "0x1");
        assert_eq!(receipt["gasUsed"], "0x5208");
        assert_eq!(
            u(&rpc.ok("eth_getBalance", json!([bob, "latest"])).await),
            1234
        );
        let tx = rpc.ok("eth_getTransactionByHash", json!([hash])).await;
        assert_eq!(tx["from"], json!(alice));
        assert_eq!(tx["blockHash"], receipt["blockHash"]);
        let block = rpc
            .ok(
                "eth_getBlockByNumber",
                json!([receipt["blockNumber"], true]),
            )
            .await;
        assert_eq!(block["hash"], receipt["blockHash"]);
        assert_eq!(block["transactions"][0]["hash"], hash);
        let same = rpc
            .ok("eth_getBlockByHash", json!([receipt["blockHash"], false]))
            .await;
        assert_eq!(same["transactions"][0], hash);
        let history = rpc
            .ok("eth_feeHistory", json!(["0x4", "latest", [50.0]]))
            .await;
        // One base fee per block reported, plus the next block's.
        let blocks = history["gasUsedRatio"].as_array().unwrap().len();
        assert!((1..=4).contains(&blocks));
        assert_eq!(
            history["baseFeePerGas"].as_array().unwrap().len(),
            blocks + 1
        );
        assert_eq!(history["reward"].as_array().unwrap().len(), blocks);

        // A contract: deployed, its log found by eth_getLogs, its revert data returned by eth_call.
        let deploy = rpc
            .ok(
                "eth_sendRawTransaction",
                json!([rpc.tx(1, TxKind::Create, 0, echo_init(), 200_000)]),
            )
            .await;
        let r = rpc.receipt(&deploy).await;
        let contract = r["contractAddress"].clone();
        assert_ne!(
            rpc.ok("eth_getCode", json!([contract, "latest"])).await,
            "0x"
        );
        let to: Address = serde_json::from_value(contract.clone()).unwrap();
        let logged = rpc
            .ok(
                "eth_sendRawTransaction",
                json!([rpc.tx(
                    2,
                    TxKind::Call(to),
                    0,
                    Bytes::from_static(&[1, 2, 3]),
                    100_000
                )]),
            )
            .await;
        let r = rpc.receipt(&logged).await;
        assert_eq!(r["logs"][0]["data"], "0x010203");
        let logs = rpc
            .ok(
                "eth_getLogs",
                json!([{"fromBlock": "0x0", "toBlock": "latest", "address": contract,
                        "topics": [B256::repeat_byte(0xbb)]}]),
            )
            .await;
        assert_eq!(logs.as_array().unwrap().len(), 1);
        assert_eq!(logs[0]["transactionHash"], logged);
        let none = rpc
            .ok(
                "eth_getLogs",
                json!([{"fromBlock": "0x0", "toBlock": "latest", "topics": [B256::repeat_byte(0xcc)]}]),
            )
            .await;
        assert_eq!(none, json!([]));
        let out = rpc
            .ok(
                "eth_call",
                json!([{"to": contract, "data": "0x0102"}, "latest"]),
            )
            .await;
        assert_eq!(out, "0x");
        let reverted = rpc
            .call(
                "eth_call",
                json!([{"to": contract, "data": "0xff01"}, "latest"]),
            )
            .await
            .unwrap_err();
        assert_eq!(reverted["code"], 3);
        assert_eq!(reverted["data"], "0xff01");
        let gas = u(&rpc
            .ok(
                "eth_estimateGas",
                json!([{"from": alice, "to": contract, "data": "0x01"}]),
            )
            .await);
        assert!(gas > 21_000 && gas < 40_000, "{gas}");

        // EIP-1186: the proof of alice's account verifies against the head block's stateRoot.
        let head = rpc
            .ok("eth_getBlockByNumber", json!(["latest", false]))
            .await;
        let proof = rpc
            .ok("eth_getProof", json!([alice, [], head["number"]]))
            .await;
        let nodes: Vec<Bytes> = serde_json::from_value(proof["accountProof"].clone()).unwrap();
        let root: B256 = serde_json::from_value(head["stateRoot"].clone()).unwrap();
        let account = iotchain_state::Account {
            nonce: 3,
            balance: U256::from(u(&proof["balance"])),
            code_hash: serde_json::from_value(proof["codeHash"].clone()).unwrap(),
        };
        let storage_root: B256 = serde_json::from_value(proof["storageHash"].clone()).unwrap();
        verify_proof(
            root,
            Nibbles::unpack(keccak256(alice)),
            Some(account.trie_value(storage_root)),
            &nodes,
        )
        .unwrap();
        rpc.node.stop().await;
    })
}

#[test]
fn bad_input_gets_clear_errors_and_the_node_stays_up() {
    run(|context| async move {
        let rpc = Rpc::start(&context).await;
        let bob = TxKind::Call(Address::repeat_byte(0xb0));
        let send = |raw: String| {
            let rpc = &rpc;
            async move { rpc.err("eth_sendRawTransaction", json!([raw])).await }
        };
        let (code, msg) = send("0xdeadbeef".into()).await;
        assert_eq!(code, -32000);
        assert!(msg.starts_with("malformed transaction"), "{msg}");
        let (code, _) = send("0x12345".into()).await;
        assert_eq!(code, -32602);
        let foreign = sign_tx(
            &rpc.alice,
            TxEip1559 {
                chain_id: 1,
                gas_limit: 21_000,
                max_fee_per_gas: 5 * GWEI,
                to: bob,
                ..Default::default()
            },
        )
        .unwrap();
        let (_, msg) = send(format!("0x{}", hex::encode(&foreign))).await;
        assert!(msg.contains("chain id"), "{msg}");
        let unprotected = sign_tx(
            &rpc.alice,
            TxLegacy {
                gas_limit: 21_000,
                gas_price: 5 * GWEI,
                to: bob,
                ..Default::default()
            },
        )
        .unwrap();
        let (_, msg) = send(format!("0x{}", hex::encode(&unprotected))).await;
        assert!(msg.contains("chain id"), "{msg}");
        let good = rpc.tx(0, bob, 1, Bytes::new(), 21_000);
        let forged = format!("{}{}", &good[..good.len() - 64], "f".repeat(64));
        let (_, msg) = send(forged).await;
        assert_eq!(msg, "invalid transaction signature");
        let (_, msg) = send(rpc.tx(3, bob, 1, Bytes::new(), 21_000)).await;
        assert!(msg.starts_with("nonce too high"), "{msg}");
        let (_, msg) = send(rpc.tx(0, bob, 1, Bytes::new(), 30_000_001)).await;
        assert!(msg.starts_with("exceeds block gas limit"), "{msg}");
        let (_, msg) = send(rpc.tx(0, bob, 10u128.pow(22), Bytes::new(), 21_000)).await;
        assert!(msg.starts_with("insufficient funds"), "{msg}");
        let big = Bytes::from(vec![1u8; 200_000]);
        let (_, msg) = send(rpc.tx(0, bob, 0, big, 29_000_000)).await;
        assert!(msg.contains("the limit is 131072"), "{msg}");
        let hash = rpc.ok("eth_sendRawTransaction", json!([good])).await;
        let (_, msg) = send(good.clone()).await;
        assert!(msg.starts_with("already known"), "{msg}");
        let (_, msg) = send(rpc.tx(0, bob, 2, Bytes::new(), 21_000)).await;
        assert!(msg.starts_with("nonce too low"), "{msg}");

        // Malformed requests.
        assert_eq!(rpc.raw("{oops".into()).await["error"]["code"], -32700);
        assert_eq!(rpc.raw("{\"id\":1}".into()).await["error"]["code"], -32600);
        assert_eq!(rpc.raw("[]".into()).await["error"]["code"], -32600);
        assert_eq!(rpc.err("eth_nothing", json!([])).await.0, -32601);
        assert_eq!(rpc.err("eth_getBalance", json!(["0x12"])).await.0, -32602);
        assert_eq!(rpc.err("eth_getBalance", json!([])).await.0, -32602);
        assert_eq!(
            rpc.err(
                "eth_getStorageAt",
                json!([Address::ZERO, "0x1", "0xffffffff"])
            )
            .await
            .0,
            -32000
        );
        let batch = rpc
            .raw(r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#.into())
            .await;
        assert_eq!(batch[0]["result"], "0x1f");
        assert_eq!(batch[1]["error"]["code"], -32601);

        // The node is unharmed: the good transaction becomes final.
        assert_eq!(rpc.receipt(&hash).await["status"], "0x1");
        rpc.node.stop().await;
    })
}
