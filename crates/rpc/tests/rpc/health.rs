//! Health and peers: a stopped critical task makes the node unready and refuse writes; status,
//! metrics and `net_peerCount` report the same peers.

use super::*;

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
