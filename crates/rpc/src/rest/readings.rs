//! A reading's status and proof, a transaction's status.

use std::sync::Arc;

use axum::{Json, extract::State};
use iotchain_api::{ReadingStatus, TxStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{off_thread, parse_b256, wait_final};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
};

#[derive(Debug, Deserialize)]
pub(super) struct WaitQuery {
    /// Wait up to this many ms for the item to become final.
    wait_ms: Option<u64>,
}

pub(super) async fn get_reading<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let node = &shared.node;
    let id = parse_b256(&id, "reading id")?;
    wait_final(node, q.wait_ms, || {
        Ok(matches!(
            node.reading_status(&id)?,
            Some(ReadingStatus::Final { .. } | ReadingStatus::Refused(_)) | None
        ))
    })
    .await?;
    match node.reading_status(&id)? {
        None => Err(ApiError::not_found(format!("reading {id} is unknown"))),
        Some(ReadingStatus::Pending { arrival_ms, ts }) => Ok(Json(json!({
            "id": id, "status": "pending", "arrival_ms": arrival_ms, "ts": ts,
            "delay_ms": iotchain_storage::delay_ms(arrival_ms, ts),
        }))),
        Some(ReadingStatus::Refused(r)) => Ok(Json(refused_json(&r))),
        Some(ReadingStatus::Final {
            location,
            block_time_ms,
        }) => Ok(Json(json!({
            "id": id,
            "status": "final",
            "height": location.height,
            "index": location.index,
            "arrival_ms": location.arrival_ms,
            "ts": location.ts,
            "delay_ms": location.delay_ms(),
            "block_time_ms": block_time_ms,
        }))),
    }
}

/// An acknowledged item a final block refused for good.
fn refused_json(r: &iotchain_api::Refused) -> Value {
    json!({
        "id": r.id,
        "status": "refused",
        "height": r.height,
        "error": {"code": r.code, "message": r.message},
    })
}

pub(super) async fn get_proof<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_b256(&id, "reading id")?;
    let node = shared.node.clone();
    let proof = off_thread(move || node.proof(&id).map_err(ApiError::from)).await?;
    Ok(Json(serde_json::to_value(proof).expect("proof serializes")))
}

pub(super) async fn get_transaction<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(hash): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let node = &shared.node;
    let hash = parse_b256(&hash, "transaction hash")?;
    wait_final(node, q.wait_ms, || {
        Ok(!matches!(node.tx_status(&hash)?, TxStatus::Pending))
    })
    .await?;
    match node.tx_status(&hash)? {
        TxStatus::Final(loc) => Ok(Json(
            json!({"hash": hash, "status": "final", "height": loc.height}),
        )),
        TxStatus::Pending => Ok(Json(json!({"hash": hash, "status": "pending"}))),
        TxStatus::Refused(r) => {
            let mut j = refused_json(&r);
            if let Some(o) = j.as_object_mut() {
                o.remove("id");
                o.insert("hash".into(), json!(hash));
            }
            Ok(Json(j))
        }
        TxStatus::Unknown => Err(ApiError::not_found(format!(
            "transaction {hash} is unknown"
        ))),
    }
}
