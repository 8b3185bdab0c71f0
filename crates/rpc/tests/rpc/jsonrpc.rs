//! The JSON-RPC endpoint: envelopes, batches, raw transactions, and the bound on a batch of
//! expensive calls.

use super::*;

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
