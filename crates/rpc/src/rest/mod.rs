//! REST under `/v1`: submissions, statuses, proofs, devices, blocks and block sync.

mod blocks;
mod cbor_json;
mod devices;
mod feed;
mod readings;
pub(crate) mod status;
mod streams;
mod submit;

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};
use iotchain_api::{ChainQuery, Origin};
use iotchain_reading::DeviceAddress;

use crate::{ApiError, NodeApi, Shared};

pub(crate) use status::metrics;

use crate::forwarded::FORWARDED_HEADER;

/// Longest a request may wait for finality with `?wait_ms=`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The `/v1` routes.
pub(crate) fn routes<N: NodeApi>() -> Router<Arc<Shared<N>>> {
    Router::new()
        .route("/v1/status", get(status::status::<N>))
        .route("/v1/health", get(status::health::<N>))
        .route("/v1/readings", post(submit::post_readings::<N>))
        .route("/v1/readings/{id}", get(readings::get_reading::<N>))
        .route("/v1/readings/{id}/proof", get(readings::get_proof::<N>))
        .route("/v1/transactions", post(submit::post_transaction::<N>))
        .route(
            "/v1/transactions/{hash}",
            get(readings::get_transaction::<N>),
        )
        .route("/v1/devices", get(devices::list_devices::<N>))
        .route("/v1/devices/{address}", get(devices::get_device::<N>))
        .route(
            "/v1/devices/{address}/streams",
            get(streams::get_streams::<N>),
        )
        .route(
            "/v1/devices/{address}/readings",
            get(streams::get_readings::<N>),
        )
        .route(
            "/v1/devices/{address}/streams/{stream}/series",
            get(streams::get_series::<N>),
        )
        .route("/v1/owners/{address}", get(devices::get_owner::<N>))
        .route("/v1/blocks/latest", get(blocks::latest_block::<N>))
        .route("/v1/blocks/{height}", get(blocks::get_block::<N>))
        .route("/v1/sync/{height}", get(blocks::get_sync::<N>))
        .route("/v1/feed", get(feed::feed::<N>))
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
