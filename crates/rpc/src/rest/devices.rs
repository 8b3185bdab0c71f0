//! Devices and owners.

use std::sync::Arc;

use alloy_primitives::Address;
use axum::{Json, extract::State};
use iotchain_api::StateAt;
use iotchain_state::DeviceRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_device;
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
    hex0x,
};

fn device_json(d: &DeviceRecord) -> Value {
    json!({
        "address": d.address.to_string(),
        "owner": d.owner,
        "alg": d.public_key.alg().to_string(),
        "public_key": hex0x(d.public_key.to_bytes()),
        "key_version": d.key_version(),
        "status": d.status,
        "model": d.model,
        "firmware_hash": d.firmware_hash,
        "labels": d.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "registered_at": d.registered_at,
        "last_seq": d.last_seq,
        "last_ts": d.last_ts,
        "last_reading_id": d.last_reading_id,
        "reading_count": d.reading_count,
        "gap_count": d.gap_count,
        "missing_count": d.missing_count,
        "gaps": d.open_gaps,
        "gaps_closed_through": d.gaps_closed_through,
    })
}

pub(super) async fn get_device<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = &shared.node;
    let address = parse_device(&address)?;
    let record = node
        .device(&address)
        .ok_or_else(|| ApiError::not_found(format!("device {address} is not registered")))?;
    let mut out = device_json(&record);
    out["pending_last_seq"] = json!(node.with_state(StateAt::Pending, |s| {
        s.device(&address).and_then(|d| d.last_seq)
    }));
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    owner: Option<String>,
}

fn parse_owner(s: &str) -> Result<Address, ApiError> {
    s.parse::<Address>().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("owner must be an address, got {s:?}"),
        )
    })
}

pub(super) async fn list_devices<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = q.owner.as_deref().map(parse_owner).transpose()?;
    let devices = shared.node.with_state(StateAt::Committed, |s| {
        s.devices()
            .filter(|d| owner.is_none_or(|o| d.owner == o))
            .map(device_json)
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({"devices": devices})))
}

pub(super) async fn get_owner<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = &shared.node;
    let address = parse_owner(&address)?;
    let pending = node.with_state(StateAt::Pending, |s| s.owner(&address).cloned());
    let committed = node.with_state(StateAt::Committed, |s| s.owner(&address).cloned());
    match (pending, committed) {
        (Some(p), Some(c)) => Ok(Json(json!({
            "address": address, "authorised": true, "nonce": c.nonce, "pending_nonce": p.nonce, "device_count": c.device_count,
        }))),
        _ => Ok(Json(json!({"address": address, "authorised": false}))),
    }
}
