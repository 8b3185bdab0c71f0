//! Devices and owners.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes};
use axum::{Json, extract::State};
use iotchain_api::StateAt;
use iotchain_state::{DeviceRecord, DeviceStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    openapi::{Address20, ErrorBody, Hash32, HexBytes},
    parse_device,
};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
    hex0x,
};

/// A registered device, as of the last final block.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeviceJson {
    /// The device address (from its first key).
    #[schema(value_type = Address20)]
    address: String,
    /// The owner account.
    #[schema(value_type = Address20)]
    owner: Address,
    /// The key algorithm: `EdDSA` or `ES256`.
    #[schema(pattern = "^(EdDSA|ES256)$")]
    alg: String,
    /// The current public key (Ed25519 32 bytes; P-256 uncompressed SEC1 65).
    #[schema(value_type = HexBytes)]
    public_key: String,
    /// How many times the key was replaced.
    key_version: u32,
    /// The keys it had before, oldest first (the key history: version 0, 1, …).
    previous_keys: Vec<KeyJson>,
    /// `active`, or `revoked` (readings refused).
    #[schema(value_type = String, pattern = "^(active|revoked)$")]
    status: DeviceStatus,
    /// Model string.
    model: String,
    /// Firmware hash.
    #[schema(value_type = HexBytes)]
    firmware_hash: Bytes,
    /// Free-form labels, in registration order.
    labels: Vec<LabelJson>,
    /// Height of the block that registered it.
    registered_at: u64,
    /// The manufacturer whose certificate of the key its registration carried; `null` if
    /// none.
    #[schema(value_type = Option<Address20>)]
    manufacturer: Option<Address>,
    /// Highest final `seq`; `null` before the first reading.
    last_seq: Option<u64>,
    /// Device time of the reading with the highest `seq`.
    last_ts: u64,
    /// Id of the reading with the highest `seq` (zero before the first).
    #[schema(value_type = Hash32)]
    last_reading_id: B256,
    /// Final readings.
    reading_count: u64,
    /// Gaps opened (a reading whose `seq` skipped values).
    gap_count: u64,
    /// `seq` values skipped and not filled since.
    missing_count: u64,
    /// The open gaps, oldest first (at most 64): runs of skipped `seq` a late reading may
    /// still fill.
    gaps: Vec<GapJson>,
    /// Every `seq` at or below it was in a gap closed to make room for newer ones; `null` if
    /// none was closed.
    gaps_closed_through: Option<u64>,
    /// The contracts its readings call (`onReading`), by stream.
    hooks: Vec<HookJson>,
}

/// A device key.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KeyJson {
    /// `EdDSA` or `ES256`.
    alg: String,
    /// The public key.
    #[schema(value_type = HexBytes)]
    public_key: String,
}

/// A reading hook: the contract a stream's readings call.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookJson {
    /// The stream.
    stream: String,
    /// The contract.
    #[schema(value_type = Address20)]
    contract: Address,
    /// Gas limit of each call.
    gas_limit: u64,
    /// What is left of the owner's deposit, wei (decimal).
    deposit: String,
}

/// A label of a device.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LabelJson {
    key: String,
    value: String,
}

/// A run of `seq` values a device skipped.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GapJson {
    /// First missing `seq`.
    from: u64,
    /// Last missing `seq` (inclusive).
    to: u64,
}

impl DeviceJson {
    fn of(d: &DeviceRecord) -> Self {
        Self {
            address: d.address.to_string(),
            owner: d.owner,
            alg: d.public_key.alg().to_string(),
            public_key: hex0x(d.public_key.to_bytes()),
            key_version: d.key_version(),
            previous_keys: d
                .previous_keys
                .iter()
                .map(|k| KeyJson {
                    alg: k.alg().to_string(),
                    public_key: hex0x(k.to_bytes()),
                })
                .collect(),
            status: d.status,
            model: d.model.clone(),
            firmware_hash: d.firmware_hash.clone(),
            labels: d
                .labels
                .iter()
                .map(|(key, value)| LabelJson {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            registered_at: d.registered_at,
            manufacturer: d.manufacturer,
            last_seq: d.last_seq,
            last_ts: d.last_ts,
            last_reading_id: d.last_reading_id,
            reading_count: d.reading_count,
            gap_count: d.gap_count,
            missing_count: d.missing_count,
            gaps: d
                .open_gaps
                .iter()
                .map(|g| GapJson {
                    from: g.from,
                    to: g.to,
                })
                .collect(),
            gaps_closed_through: d.gaps_closed_through,
            hooks: d
                .hooks
                .iter()
                .map(|h| HookJson {
                    stream: h.stream.clone(),
                    contract: h.contract,
                    gas_limit: h.gas_limit,
                    deposit: h.deposit.to_string(),
                })
                .collect(),
        }
    }
}

/// `GET /v1/devices/{address}`: the device, and its highest `seq` counting readings accepted
/// and not yet final.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeviceDetailJson {
    #[serde(flatten)]
    device: DeviceJson,
    /// The highest `seq` including accepted readings not yet final; `null` if none.
    pending_last_seq: Option<u64>,
}

/// Query of `GET /v1/devices/{address}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeviceQuery {
    /// The device as of this final block (one the node's state history keeps); the head's
    /// by default.
    block: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/devices/{address}",
    tag = "devices",
    params(("address" = String, Path, description = "The device address (20 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{40}$"), DeviceQuery),
    responses(
        (status = 200, description = "The device", body = DeviceDetailJson),
        (status = 400, description = "`bad_address`, `bad_path`, `bad_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such device is registered (at that block), or the block is not final yet", body = ErrorBody),
        (status = 410, description = "`state_not_kept`: the block is older than the node's state history", body = ErrorBody),
    ),
)]
pub(super) async fn get_device<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<DeviceDetailJson>, ApiError> {
    let node = &shared.node;
    let address = parse_device(&address)?;
    let not_registered = || ApiError::not_found(format!("device {address} is not registered"));
    if let Some(height) = query.block {
        // Off the async threads: an older block's state is rebuilt from the store.
        let node = node.clone();
        let record = super::off_thread(move || {
            Ok(node.with_state_at(height, |s| s.device(&address).cloned())?)
        })
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "device {address} is not registered at block {height}"
            ))
        })?;
        // Pending readings belong to the head, not to an older block.
        let pending_last_seq = record.last_seq;
        return Ok(Json(DeviceDetailJson {
            device: DeviceJson::of(&record),
            pending_last_seq,
        }));
    }
    let record = node.device(&address).ok_or_else(not_registered)?;
    let pending_last_seq = node.with_state(StateAt::Pending, |s| {
        s.device(&address).and_then(|d| d.last_seq)
    });
    Ok(Json(DeviceDetailJson {
        device: DeviceJson::of(&record),
        pending_last_seq,
    }))
}

/// Query of `GET /v1/devices`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this owner's devices (an address, 0x-hex).
    #[param(pattern = "^(0x)?[0-9a-fA-F]{40}$")]
    owner: Option<String>,
    /// Only devices whose address, owner, model or a label key or value contains this text
    /// (case-insensitive).
    q: Option<String>,
    /// Most devices in the answer (1 to 1000; default 100).
    limit: Option<usize>,
    /// Only devices whose address comes after this one: the `next` of the previous page.
    #[param(pattern = "^(0x)?[0-9a-fA-F]{40}$")]
    after: Option<String>,
}

/// Devices a page of `GET /v1/devices` holds unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Most devices one page may hold.
const MAX_PAGE: usize = 1000;

/// `GET /v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DevicesJson {
    /// The devices, by address.
    devices: Vec<DeviceJson>,
    /// Where the next page starts (pass it as `after`); `null` on the last page.
    #[schema(value_type = Option<Address20>)]
    next: Option<String>,
}

/// Whether `text` (lower case) is part of the device's address, owner, model or a label.
fn matches_text(d: &DeviceRecord, text: &str) -> bool {
    let has = |s: &str| s.to_lowercase().contains(text);
    has(&d.address.to_string())
        || has(&d.owner.to_string())
        || has(&d.model)
        || d.labels.iter().any(|(k, v)| has(k) || has(v))
}

fn parse_owner(s: &str) -> Result<Address, ApiError> {
    s.parse::<Address>().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("owner must be an address, got {s:?}"),
        )
    })
}

#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "devices",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the registered devices (of `owner`, matching `q`), by address", body = DevicesJson),
        (status = 400, description = "`bad_address`: `owner` or `after` is not an address; `bad_query`: `limit` out of range", body = ErrorBody),
    ),
)]
pub(super) async fn list_devices<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DevicesJson>, ApiError> {
    let owner = q.owner.as_deref().map(parse_owner).transpose()?;
    let text = q.q.as_deref().map(str::to_lowercase);
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1 to {MAX_PAGE}, got {limit}"),
        ));
    }
    let after = q.after.as_deref().map(parse_device).transpose()?;
    let (devices, more) = shared.node.with_state(StateAt::Committed, |s| {
        let mut page = s
            .devices_after(after.as_ref())
            .filter(|d| owner.is_none_or(|o| d.owner == o))
            .filter(|d| text.as_deref().is_none_or(|t| matches_text(d, t)))
            .take(limit + 1)
            .map(DeviceJson::of)
            .collect::<Vec<_>>();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    });
    let next = more
        .then(|| devices.last().map(|d| d.address.clone()))
        .flatten();
    Ok(Json(DevicesJson { devices, next }))
}

/// `GET /v1/owners/{address}`: whether genesis lists the account as an owner, and its nonces.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OwnerJson {
    /// The account.
    #[schema(value_type = Address20)]
    address: Address,
    /// Whether it is an owner listed in genesis (the other fields are absent when not).
    authorised: bool,
    /// The nonce its next owner transaction must carry, as of the last final block.
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<u64>,
    /// The same, counting its transactions accepted and not yet final.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_nonce: Option<u64>,
    /// Devices it registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_count: Option<u64>,
    /// Manufacturers whose certificates it authorised (those genesis authorises for every
    /// owner are in `/v1/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Address20>>)]
    manufacturers: Option<Vec<Address>>,
}

#[utoipa::path(
    get,
    path = "/v1/owners/{address}",
    tag = "devices",
    params(("address" = String, Path, description = "The account (20 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{40}$")),
    responses(
        (status = 200, description = "The account as an owner", body = OwnerJson),
        (status = 400, description = "`bad_address`, `bad_path`", body = ErrorBody),
    ),
)]
pub(super) async fn get_owner<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
) -> Result<Json<OwnerJson>, ApiError> {
    let node = &shared.node;
    let address = parse_owner(&address)?;
    let pending = node.with_state(StateAt::Pending, |s| s.owner(&address).cloned());
    let committed = node.with_state(StateAt::Committed, |s| s.owner(&address).cloned());
    let (pending, committed) = match (pending, committed) {
        (Some(p), Some(c)) => (Some(p), Some(c)),
        _ => (None, None),
    };
    Ok(Json(OwnerJson {
        address,
        authorised: committed.is_some(),
        nonce: committed.as_ref().map(|c| c.nonce),
        pending_nonce: pending.map(|p| p.nonce),
        manufacturers: committed
            .as_ref()
            .map(|c| c.manufacturers.clone().unwrap_or_default()),
        device_count: committed.map(|c| c.device_count),
    }))
}
