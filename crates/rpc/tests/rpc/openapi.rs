//! The OpenAPI document: it describes every route the router serves, and nothing else.

use super::*;

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
