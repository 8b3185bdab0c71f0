//! What the explorer reads beyond the other routes: block listings and a block's items,
//! device search and key history, validators' liveness, and the page's own files.

use super::*;

/// A registered device with two readings (CBOR 21.5 and a map) and an Ethereum transfer, all
/// final; the height of the block that holds the readings.
async fn chain_with_items(api: &Api) -> u64 {
    api.register().await;
    let aad = iotchain_api::ChainQuery::genesis_hash(&api.engine);
    for (seq, data) in [
        (0u64, vec![0xf9, 0x4d, 0x60]),
        (1, vec![0xa1, 0x61, 0x74, 0x05]),
    ] {
        let m = api
            .device
            .sign_reading(&aad[..], seq, 1_700_000_000_000 + seq, None, &data);
        let (s, body) = api.post("/v1/readings", "application/cose", m).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    }
    let sent = api
        .rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [api.transfer(0)]}))
        .await;
    assert!(sent["result"].is_string(), "{sent}");
    while api.engine.produce_next_block().unwrap().is_some() {}
    iotchain_api::ChainQuery::head(&api.engine).height
}

#[test]
fn a_blocks_items_are_its_readings_decoded_and_its_transactions() {
    run(|context| async move {
        let api = api(&context);
        let head = chain_with_items(&api).await;
        // The registration is an owner transaction in some block; the readings in the last.
        let (s, list) = api.get("/v1/blocks?has_transactions=true&limit=100").await;
        assert_eq!(s, StatusCode::OK, "{list}");
        let with_tx: Vec<u64> = list["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["header"]["height"].as_u64().unwrap())
            .collect();
        assert!(
            !with_tx.is_empty() && with_tx.windows(2).all(|w| w[0] > w[1]),
            "{list}"
        );
        let mut kinds = vec![];
        for h in &with_tx {
            let (_, items) = api.get(&format!("/v1/blocks/{h}/items")).await;
            for t in items["transactions"].as_array().unwrap() {
                kinds.push(t["kind"].as_str().unwrap().to_string());
                if t["kind"] == "owner" {
                    assert_eq!(t["owner"], api.owner.address().to_string().to_lowercase());
                    assert_eq!(t["op"]["type"], "register");
                    let (s, st) = api
                        .get(&format!("/v1/transactions/{}", t["hash"].as_str().unwrap()))
                        .await;
                    assert_eq!(
                        (s, st["status"].as_str()),
                        (StatusCode::OK, Some("final")),
                        "{st}"
                    );
                }
            }
        }
        kinds.sort();
        assert_eq!(kinds, ["ethereum", "owner"]);

        let readings: Vec<Value> = (0..=head)
            .flat_map(|h| {
                let api = &api;
                futures::executor::block_on(async move {
                    api.get(&format!("/v1/blocks/{h}/items")).await.1
                })["readings"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0]["data"], 21.5);
        assert_eq!(readings[1]["data"], json!({"t": 5}));
        assert_eq!(readings[1]["seq"], 1);
        assert_eq!(readings[1]["device"], api.device.address().to_string());
        // Each id is the one the reading's own status knows.
        for r in &readings {
            let (s, st) = api
                .get(&format!("/v1/readings/{}", r["id"].as_str().unwrap()))
                .await;
            assert_eq!((s, st["status"].as_str()), (StatusCode::OK, Some("final")));
        }
        // A page of one, from the second reading of its block.
        let h = (0..=head).rev().find(|h| {
            futures::executor::block_on(api.get(&format!("/v1/blocks/{h}/items"))).1["reading_count"] == 2
        });
        if let Some(h) = h {
            let (_, page) = api
                .get(&format!("/v1/blocks/{h}/items?offset=1&limit=1"))
                .await;
            assert_eq!(page["readings"].as_array().unwrap().len(), 1);
            assert_eq!(page["readings"][0]["seq"], 1);
        }

        // Listing: newest first, `next_to` continues, genesis ends it.
        let (_, first) = api.get("/v1/blocks?limit=2").await;
        assert_eq!(first["blocks"][0]["header"]["height"], head);
        assert_eq!(first["next_to"], head - 2);
        let (_, last) = api.get("/v1/blocks?to=0").await;
        assert_eq!(last["blocks"].as_array().unwrap().len(), 1);
        assert_eq!(last["next_to"], Value::Null);

        for (path, want) in [
            ("/v1/blocks?limit=0", (400, "bad_limit")),
            ("/v1/blocks?limit=101", (400, "bad_limit")),
            ("/v1/blocks?to=x", (400, "bad_query")),
            ("/v1/blocks/1/items?limit=1001", (400, "bad_limit")),
            ("/v1/blocks/1/items?offset=-1", (400, "bad_query")),
            ("/v1/blocks/x/items", (400, "bad_height")),
            ("/v1/blocks/99999/items", (404, "not_found")),
        ] {
            assert_eq!(code(&api.get(path).await), want, "{path}");
        }
    })
}

#[test]
fn devices_are_searched_and_show_their_keys_and_hooks() {
    run(|context| async move {
        let api = api(&context);
        api.register().await;
        let address = api.device.address().to_string();
        let count = |v: &Value| v["devices"].as_array().unwrap().len();
        for (q, n) in [("M", 1), (&address[2..10], 1), ("nothing-like-it", 0)] {
            let (s, list) = api.get(&format!("/v1/devices?q={q}")).await;
            assert_eq!((s, count(&list)), (StatusCode::OK, n), "q={q}: {list}");
        }
        let (_, d) = api.get(&format!("/v1/devices/{address}")).await;
        assert_eq!(d["previous_keys"], json!([]));
        assert_eq!(d["hooks"], json!([]));
        assert_eq!(
            code(&api.get("/v1/devices?q=a&q=b").await),
            (400, "bad_query")
        );
    })
}

#[test]
fn status_lists_each_validator_with_its_liveness() {
    run(|context| async move {
        let api = api(&context);
        let (_, st) = api.get("/v1/status").await;
        let peers = st["consensus"]["peers"].as_array().unwrap();
        assert_eq!(peers.len(), st["validators"].as_array().unwrap().len());
        assert_eq!(peers[0]["public_key"], st["validators"][0]);
        assert_eq!(peers[0]["this_node"], true);
        assert_eq!(peers[0]["live"], true);
        assert_eq!(peers[0]["heard_ms_ago"], Value::Null);
    })
}

#[test]
fn the_explorer_is_served_from_the_binary() {
    run(|context| async move {
        let api = api(&context);
        let r = api
            .router
            .clone()
            .oneshot(request("GET", "/explorer"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "/explorer/");
        let (s, ty, body) = raw(&api, request("GET", "/explorer/")).await;
        assert_eq!(
            (s, ty.as_str()),
            (StatusCode::OK, "text/html; charset=utf-8")
        );
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains(r#"<script type="module" src="app.js">"#));
        // Every file the page names, and every module those import, is served.
        let mut todo = names_in(&html);
        let mut seen = std::collections::BTreeSet::new();
        while let Some(file) = todo.pop() {
            if !seen.insert(file.clone()) {
                continue;
            }
            let (s, _, body) = raw(&api, request("GET", &format!("/explorer/{file}"))).await;
            assert_eq!(s, StatusCode::OK, "{file}");
            if file.ends_with(".js") {
                todo.extend(names_in(std::str::from_utf8(&body).unwrap()));
            }
        }
        assert!(
            seen.contains("cbor.js") && seen.contains("verify.js"),
            "{seen:?}"
        );
        let (s, ty, _) = raw(&api, request("GET", "/explorer/..%2FCargo.toml")).await;
        assert_eq!((s.as_u16(), ty.as_str()), (404, "application/json"));
        let (s, _, _) = raw(&api, request("POST", "/explorer/app.js")).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    })
}

/// The local files a page or module names: `src="x"`, `href="x"` and `from './x'`.
fn names_in(text: &str) -> Vec<String> {
    let mut out = vec![];
    for (open, close) in [("src=\"", '"'), ("href=\"", '"'), ("from './", '\'')] {
        for part in text.split(open).skip(1) {
            let name = part.split(close).next().unwrap();
            if !name.contains(':') && !name.starts_with('#') && !name.is_empty() {
                out.push(name.to_string());
            }
        }
    }
    out
}
