//! The transports of JSON-RPC at `/`: `POST` (one request or a batch) and a WebSocket
//! upgrade on `GET`, both handed to jsonrpsee's low-level server with the node's limits.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use jsonrpsee::server::{
    ConnectionState,
    http::call_with_service_builder,
    middleware::rpc::RpcServiceBuilder,
    ws::{connect, is_upgrade_request},
};

use super::batch::RawTxBatchLayer;
use crate::{ApiError, NodeApi, Shared, rest::origin};

fn too_many_connections() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "the node serves as many JSON-RPC connections as it may; retry shortly",
    )
    .into_response()
}

fn connection<N>(shared: &Shared<N>) -> Option<ConnectionState> {
    let permit = shared.rpc.guard.try_acquire()?;
    let id = shared.rpc.next_conn.fetch_add(1, Ordering::Relaxed);
    Some(ConnectionState::new(shared.rpc.stop.clone(), id, permit))
}

fn middleware<N: NodeApi>(
    shared: &Shared<N>,
) -> RpcServiceBuilder<tower::layer::util::Stack<RawTxBatchLayer<N>, tower::layer::util::Identity>>
{
    RpcServiceBuilder::new().layer(RawTxBatchLayer {
        node: shared.node.clone(),
        max_response: shared.config.max_body_bytes,
        calls: shared.config.calls,
    })
}

/// `POST /`: one JSON-RPC request or a batch.
pub(crate) async fn http<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    mut req: Request,
) -> Response {
    // A relay from another node is taken as one only if its mark is signed over the body.
    let origin = if req.headers().contains_key(crate::FORWARDED_HEADER) {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, shared.config.max_body_bytes).await else {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "a relayed request body exceeds the node's limit",
            )
            .into_response();
        };
        let origin = match origin(&shared, &parts.headers, &bytes) {
            Ok(o) => o,
            Err(e) => return e.into_response(),
        };
        req = Request::from_parts(parts, Body::from(bytes));
        origin
    } else {
        iotchain_api::Origin::Local
    };
    req.extensions_mut().insert(origin);
    // Clients that send JSON without saying so (curl -d) are served as JSON.
    if !req.headers().contains_key(CONTENT_TYPE) {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let Some(conn) = connection(&shared) else {
        return too_many_connections();
    };
    let rp = call_with_service_builder(
        req,
        shared.rpc.server.clone(),
        conn,
        shared.rpc.methods.clone(),
        middleware(&shared),
    )
    .await;
    rp.map(Body::new)
}

/// `GET /`: a WebSocket upgrade for JSON-RPC with subscriptions.
pub(crate) async fn ws<N: NodeApi>(State(shared): State<Arc<Shared<N>>>, req: Request) -> Response {
    if !is_upgrade_request(&req) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
            "GET / is a WebSocket upgrade for JSON-RPC with subscriptions; send JSON-RPC over HTTP with POST",
        )
        .into_response();
    }
    let Some(conn) = connection(&shared) else {
        return too_many_connections();
    };
    match connect(
        req,
        shared.rpc.server.clone(),
        shared.rpc.methods.clone(),
        conn,
        middleware(&shared),
    )
    .await
    {
        Ok((rp, session)) => {
            tokio::spawn(session);
            rp.map(Body::new)
        }
        Err(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_websocket_upgrade",
            "the WebSocket upgrade request is malformed",
        )
        .into_response(),
    }
}
