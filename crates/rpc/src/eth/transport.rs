//! The transports of JSON-RPC at `/`: `POST` (one request or a batch) and a WebSocket
//! upgrade on `GET`, both handed to jsonrpsee's low-level server with the node's limits.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use jsonrpsee::server::{
    ConnectionState,
    http::{call_with_service_builder, response},
    middleware::rpc::RpcServiceBuilder,
    ws::{connect, is_upgrade_request},
};

use super::batch::RawTxBatchLayer;
use crate::{ApiError, NodeApi, Shared, error::json_rpc_error, rest::origin};

/// The JSON-RPC answer to a call whose body is over `limit` bytes (HTTP 413, jsonrpsee's
/// "request is too big" object with `"id": null`), whether its length was declared or not.
pub(crate) fn too_large(limit: usize) -> Response {
    response::too_large(u32::try_from(limit).unwrap_or(u32::MAX)).map(Body::new)
}

/// Reads a call's body, at most `limit` bytes: a chunked body without a declared length is
/// cut off as soon as it passes the limit, and answered like a declared one.
async fn read_call(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    let mut data = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            json_rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                &format!("the request body could not be read: {e}"),
            )
        })?;
        if data.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.into())
}

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
    let (parts, body) = req.into_parts();
    let body = match read_call(body, shared.config.max_body_bytes).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let rp = call_with_service_builder(
        Request::from_parts(parts, Body::from(body)),
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
