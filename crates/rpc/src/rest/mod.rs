//! REST under `/v1`: submissions, statuses, proofs, devices, blocks and block sync, and
//! their OpenAPI document.

mod blocks;
mod devices;
mod feed;
pub(crate) mod openapi;
mod range_proof;
mod readings;
pub(crate) mod status;
mod streams;
mod submit;

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use axum::{Router, http::HeaderMap};
use iotchain_api::{ChainQuery, Origin};
use iotchain_reading::DeviceAddress;
// The data-to-JSON mapping lives with the reading format, shared with `iotchain export`.
use iotchain_reading::json as cbor_json;

use crate::{ApiError, NodeApi, Shared};
use openapi::Info as OpenApiInfo;

pub(crate) use status::metrics;

use crate::forwarded::FORWARDED_HEADER;

/// Longest a request may wait for finality with `?wait_ms=`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Declares the `/v1` operations once: the OpenAPI document lists their annotations
/// (`#[utoipa::path]`, which give each one's method and path) and [`routes`] serves their
/// handlers at those paths, so no `/v1` route exists without its documentation.
macro_rules! v1_operations {
    (
        node: $($module:ident :: $handler:ident),+;
        plain: $($pmodule:ident :: $phandler:ident),+ $(,)?
    ) => {
        /// The OpenAPI document of the `/v1` operations.
        #[derive(utoipa::OpenApi)]
        #[openapi(
            paths($($module::$handler),+, $($pmodule::$phandler),+),
            components(schemas(openapi::ErrorBody, feed::FeedReadingJson, feed::FeedBlockJson)),
            modifiers(&OpenApiInfo),
            tags(
                (name = "chain", description = "Status, health, blocks and block sync"),
                (name = "readings", description = "Signed readings in; their status and proofs"),
                (name = "devices", description = "Devices, owners and their transactions"),
                (name = "data", description = "A device's data read back: streams, pages, series, the live feed"),
                (name = "meta", description = "This document"),
            ),
        )]
        struct V1Api;

        /// The `/v1` routes, each at the method and path its annotation gives.
        pub(crate) fn routes<N: NodeApi>() -> Router<Arc<Shared<N>>> {
            let doc = openapi();
            let router = Router::new();
            $(
                let router = openapi::route(router, &doc, stringify!($handler), |method| {
                    axum::routing::on(method, $module::$handler::<N>)
                });
            )+
            $(
                let router = openapi::route(router, &doc, stringify!($phandler), |method| {
                    axum::routing::on(method, $pmodule::$phandler)
                });
            )+
            router
        }
    };
}

v1_operations!(
    // The handlers that reach the node.
    node:
    status::status,
    status::health,
    submit::post_readings,
    readings::get_reading,
    readings::get_proof,
    submit::post_transaction,
    readings::get_transaction,
    devices::list_devices,
    devices::get_device,
    streams::get_streams,
    streams::get_readings,
    streams::get_series,
    devices::get_owner,
    blocks::list_blocks,
    blocks::latest_block,
    blocks::get_block,
    blocks::get_block_items,
    blocks::get_sync,
    feed::feed;
    // Those that do not.
    plain:
    openapi::openapi_json,
);

/// The OpenAPI 3.1 document of the `/v1` routes (served at `GET /v1/openapi.json`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <V1Api as utoipa::OpenApi>::openapi()
}

/// Who sent a submission: another node (its [`FORWARDED_HEADER`] signed over `body` by a
/// validator or a configured forwarder) or a client; a mark that does not hold is refused.
pub(crate) fn origin<N: NodeApi>(
    shared: &Shared<N>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Origin, ApiError> {
    let Some(value) = headers.get(FORWARDED_HEADER) else {
        return Ok(Origin::Local);
    };
    let value = value.to_str().unwrap_or("");
    crate::forwarded::verify_forwarded(value, &shared.node.genesis_hash(), body, &shared.forwarders)
        .map(|_| Origin::Forwarded)
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "bad_forward",
                e.to_string(),
            )
        })
}

pub(crate) fn parse_b256(s: &str, what: &str) -> Result<B256, ApiError> {
    s.parse::<B256>().map_err(|_| {
        ApiError::bad_request(
            "bad_id",
            format!("{what} must be 32 bytes of 0x-hex, got {s:?}"),
        )
    })
}

pub(crate) fn parse_device(s: &str) -> Result<DeviceAddress, ApiError> {
    s.parse::<DeviceAddress>().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("device address must be 20 bytes of 0x-hex, got {s:?}"),
        )
    })
}

/// A page size: `given` (else `default`) when it is 1 to `max`, else `bad_limit`.
pub(crate) fn page_limit<T>(given: Option<T>, default: T, max: T) -> Result<T, ApiError>
where
    T: Copy + PartialOrd + From<u8> + std::fmt::Display,
{
    let limit = given.unwrap_or(default);
    if limit < T::from(1) || limit > max {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit is 1 to {max}, not {limit}"),
        ));
    }
    Ok(limit)
}

pub(crate) fn parse_height(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request("bad_height", format!("height must be a number, got {s:?}"))
    })
}

/// Waits until `is_final` holds or `wait_ms` elapses (at most [`MAX_WAIT`]), looking again at
/// every new block.
pub(crate) async fn wait_final<Q: ChainQuery>(
    chain: &Q,
    wait_ms: Option<u64>,
    mut is_final: impl FnMut() -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let Some(ms) = wait_ms else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms).min(MAX_WAIT);
    let mut head = chain.subscribe_head();
    while !is_final()? {
        match tokio::time::timeout_at(deadline, head.changed()).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    Ok(())
}

/// Runs store work off the async workers.
pub(crate) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "a request's store work failed");
        ApiError::storage()
    })?
}
