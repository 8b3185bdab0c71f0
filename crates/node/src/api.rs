//! The HTTP API under `/v1`, and `/metrics`.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{Address, B256, Bytes};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, Query, State as AxState, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use iotchain_reading::DeviceAddress;
use iotchain_state::DeviceRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, Chain, ReadingStatus, chain::now_ms};

/// Longest a request may wait for finality with `?wait_ms=`.
const MAX_WAIT: Duration = Duration::from_secs(60);

type Shared = AxState<Arc<Chain>>;

/// The node's HTTP routes.
pub fn router(chain: Arc<Chain>) -> Router {
    let limit = chain.max_body();
    Router::new()
        .route("/", post(crate::rpc::handle).get(crate::rpc::ws))
        .route("/v1/status", get(status))
        .route("/v1/readings", post(post_readings))
        .route("/v1/readings/{id}", get(get_reading))
        .route("/v1/readings/{id}/proof", get(get_proof))
        .route("/v1/transactions", post(post_transaction))
        .route("/v1/transactions/{hash}", get(get_transaction))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{address}", get(get_device))
        .route("/v1/owners/{address}", get(get_owner))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{height}", get(get_block))
        .route("/v1/sync/{height}", get(get_sync))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/api.md") })
        .layer(axum::middleware::from_fn(move |req, next| {
            refuse_oversized(limit, req, next)
        }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(chain)
}

/// Refuses a body whose declared length is over the limit before reading any of it.
async fn refuse_oversized(
    limit: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body of {} bytes exceeds the node's limit of {limit}",
                declared.unwrap_or(0)
            ),
        )
        .into_response();
    }
    next.run(req).await
}

fn hex0x(b: impl AsRef<[u8]>) -> String {
    iotchain_block::hex0x(b)
}

fn parse_b256(s: &str, what: &str) -> Result<B256, ApiError> {
    s.parse::<B256>().map_err(|_| {
        ApiError::bad_request(
            "bad_id",
            format!("{what} must be 32 bytes of 0x-hex, got {s:?}"),
        )
    })
}

fn parse_device(s: &str) -> Result<DeviceAddress, ApiError> {
    s.parse::<DeviceAddress>().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("device address must be 20 bytes of 0x-hex, got {s:?}"),
        )
    })
}

fn body_bytes(
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body exceeds the node's limit",
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

async fn status(AxState(chain): Shared) -> Json<Value> {
    let head = chain.head();
    let (pending_readings, pending_transactions) = chain.pending_counts();
    let g = chain.genesis();
    Json(json!({
        "chain_id": g.chain_id,
        "height": head.height,
        "head_hash": head.hash,
        "head_time_ms": head.timestamp_ms,
        "genesis_hash": chain.genesis_hash(),
        "validators": g.validators.iter().map(|v| hex0x(v.public_key)).collect::<Vec<_>>(),
        "pending_readings": pending_readings,
        "pending_transactions": pending_transactions,
        "max_reading_bytes": g.params.max_reading_bytes,
        "max_batch_readings": chain.max_batch(),
        "max_body_bytes": chain.max_body(),
        "consensus": {
            "view": chain.consensus_stats().view.load(std::sync::atomic::Ordering::Relaxed),
            "validators_heard_10s": chain.consensus_stats().peers_seen(Duration::from_secs(10)),
            "last_finality_ms": chain.consensus_stats().last_finality_ms.load(std::sync::atomic::Ordering::Relaxed),
            "faults": chain.consensus_stats().faults.load(std::sync::atomic::Ordering::Relaxed),
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// One entry of a submission's `results`, serialized without an intermediate JSON tree (a
/// batch answers thousands of these).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ItemJson<'a> {
    Accepted { id: &'a B256, status: &'static str },
    Rejected { status: u16, error: ErrorJson<'a> },
}

#[derive(serde::Serialize)]
struct ErrorJson<'a> {
    code: &'static str,
    message: &'a str,
}

fn item_json(r: &Result<B256, ApiError>) -> ItemJson<'_> {
    match r {
        Ok(id) => ItemJson::Accepted {
            id,
            status: "pending",
        },
        Err(e) => ItemJson::Rejected {
            status: e.status.as_u16(),
            error: ErrorJson {
                code: e.code,
                message: &e.message,
            },
        },
    }
}

#[derive(serde::Serialize)]
struct BatchJson<'a> {
    accepted: usize,
    rejected: usize,
    results: Vec<ItemJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
}

async fn post_readings(
    AxState(chain): Shared,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match content_type.as_str() {
        "application/cose" => {
            let mut results = chain
                .submit_readings_from(vec![Bytes::from(body)], !forwarded(&headers))
                .await;
            let r = results.pop().expect("one result per message");
            match &r {
                Ok(_) => Ok((StatusCode::ACCEPTED, Json(item_json(&r))).into_response()),
                Err(e) => Err(e.clone()),
            }
        }
        "application/cbor" => {
            let messages = iotchain_reading::decode_batch(&body, chain.max_batch())
                .map_err(|e| ApiError::from_batch(&e))?;
            let body = Bytes::from(body.clone());
            let messages: Vec<Bytes> = messages.into_iter().map(|m| body.slice_ref(m)).collect();
            let results = chain
                .submit_readings_from(messages, !forwarded(&headers))
                .await;
            let accepted = results.iter().filter(|r| r.is_ok()).count();
            let rejected = results.len() - accepted;
            let mut out = BatchJson {
                accepted,
                rejected,
                results: results.iter().map(item_json).collect(),
                error: None,
            };
            if accepted == 0 {
                // Nothing taken: answer with the first rejection's status and code.
                let first = results
                    .iter()
                    .find_map(|r| r.as_ref().err())
                    .expect("rejected > 0");
                let message = format!(
                    "no reading of the batch was accepted; first: {}",
                    first.message
                );
                out.error = Some(ErrorJson {
                    code: first.code,
                    message: &message,
                });
                return Ok((first.status, Json(out)).into_response());
            }
            Ok((StatusCode::ACCEPTED, Json(out)).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {other:?}: use application/cose (one reading) or application/cbor (an array of readings)"
            ),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    /// Wait up to this many ms for the item to become final.
    wait_ms: Option<u64>,
}

/// Waits until `is_final` holds or `wait` elapses, re-checking at every new block.
async fn wait_final(
    chain: &Chain,
    wait: Option<u64>,
    mut is_final: impl FnMut() -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let Some(ms) = wait else { return Ok(()) };
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

async fn get_reading(
    AxState(chain): Shared,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_b256(&id, "reading id")?;
    wait_final(&chain, q.wait_ms, || {
        Ok(matches!(
            chain.reading_status(&id)?,
            Some(ReadingStatus::Final { .. }) | None
        ))
    })
    .await?;
    match chain.reading_status(&id)? {
        None => Err(ApiError::not_found(format!("reading {id} is unknown"))),
        Some(ReadingStatus::Pending { arrival_ms, ts }) => Ok(Json(json!({
            "id": id, "status": "pending", "arrival_ms": arrival_ms, "ts": ts,
            "delay_ms": iotchain_storage::delay_ms(arrival_ms, ts),
        }))),
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

async fn get_proof(
    AxState(chain): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_b256(&id, "reading id")?;
    let c = chain.clone();
    let proof = tokio::task::spawn_blocking(move || c.proof(&id))
        .await
        .map_err(|e| ApiError::storage(&e))??;
    Ok(Json(serde_json::to_value(proof).expect("proof serializes")))
}

#[derive(Debug, Deserialize)]
struct TxBody {
    /// 0x-hex RLP of a signed transaction.
    raw: String,
}

/// Whether a submission was forwarded by another node (and is not to be forwarded again).
fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(crate::forward::FORWARDED_HEADER)
}

async fn post_transaction(
    AxState(chain): Shared,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let tx: TxBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("bad_json", format!("expected {{\"raw\": \"0x…\"}}: {e}"))
    })?;
    let raw = iotchain_block::unhex(&tx.raw)
        .map_err(|e| ApiError::bad_request("bad_hex", format!("raw: {e}")))?;
    let hash = chain
        .submit_tx_from(Bytes::from(raw), !forwarded(&headers))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"hash": hash, "status": "pending"})),
    )
        .into_response())
}

async fn get_transaction(
    AxState(chain): Shared,
    Path(hash): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let hash = parse_b256(&hash, "transaction hash")?;
    wait_final(&chain, q.wait_ms, || {
        let (loc, pending) = chain.tx_status(&hash)?;
        Ok(loc.is_some() || !pending)
    })
    .await?;
    match chain.tx_status(&hash)? {
        (Some(loc), _) => Ok(Json(
            json!({"hash": hash, "status": "final", "height": loc.height}),
        )),
        (None, true) => Ok(Json(json!({"hash": hash, "status": "pending"}))),
        (None, false) => Err(ApiError::not_found(format!(
            "transaction {hash} is unknown"
        ))),
    }
}

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
    })
}

async fn get_device(
    AxState(chain): Shared,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let address = parse_device(&address)?;
    let record = chain
        .device(&address)
        .ok_or_else(|| ApiError::not_found(format!("device {address} is not registered")))?;
    let mut out = device_json(&record);
    out["pending_last_seq"] =
        json!(chain.with_pending(|s| s.device(&address).and_then(|d| d.last_seq)));
    let gaps = chain
        .store()
        .gaps(&address, 100)
        .map_err(|e| ApiError::storage(&e))?;
    out["gaps"] = json!(gaps);
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    owner: Option<String>,
}

async fn list_devices(
    AxState(chain): Shared,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = q
        .owner
        .map(|o| {
            o.parse::<Address>().map_err(|_| {
                ApiError::bad_request(
                    "bad_address",
                    format!("owner must be an address, got {o:?}"),
                )
            })
        })
        .transpose()?;
    let devices = chain.with_committed(|s| {
        s.devices()
            .filter(|d| owner.is_none_or(|o| d.owner == o))
            .map(device_json)
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({"devices": devices})))
}

async fn get_owner(
    AxState(chain): Shared,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let address = address.parse::<Address>().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("owner must be an address, got {address:?}"),
        )
    })?;
    let pending = chain.with_pending(|s| s.owner(&address).cloned());
    let committed = chain.with_committed(|s| s.owner(&address).cloned());
    match (pending, committed) {
        (Some(p), Some(c)) => Ok(Json(json!({
            "address": address, "authorised": true, "nonce": c.nonce, "pending_nonce": p.nonce, "device_count": c.device_count,
        }))),
        _ => Ok(Json(json!({"address": address, "authorised": false}))),
    }
}

async fn latest_block(AxState(chain): Shared) -> Result<Json<Value>, ApiError> {
    block_json(&chain, chain.head().height)
}

async fn get_block(
    AxState(chain): Shared,
    Path(height): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let height: u64 = height.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_height",
            format!("height must be a number, got {height:?}"),
        )
    })?;
    block_json(&chain, height)
}

fn block_json(chain: &Chain, height: u64) -> Result<Json<Value>, ApiError> {
    let store = chain.store();
    let header = store
        .header(height)
        .map_err(|e| ApiError::storage(&e))?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let certificate = store
        .certificate(height)
        .map_err(|e| ApiError::storage(&e))?;
    Ok(Json(
        json!({"hash": header.hash(), "header": header, "certificate": certificate}),
    ))
}

/// Query of `GET /v1/sync/{height}`.
#[derive(Debug, Deserialize)]
struct SyncQuery {
    /// Wait up to this long (at most 10 s) for the block at `height` to be final.
    #[serde(default)]
    wait_ms: u64,
    /// Most blocks in the answer (default and limit 64; fewer when they are large).
    #[serde(default)]
    max: Option<u64>,
}

/// Most bytes of blocks in one sync answer.
const SYNC_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Finalized blocks with their certificates, from `height` on: what block sync fetches.
async fn get_sync(
    AxState(chain): Shared,
    Path(height): Path<String>,
    Query(q): Query<SyncQuery>,
) -> Result<Json<iotchain_block::SyncBlocks>, ApiError> {
    let from: u64 = height.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_height",
            format!("height must be a number, got {height:?}"),
        )
    })?;
    if from == 0 {
        return Err(ApiError::bad_request(
            "bad_height",
            "sync starts at height 1 (the genesis block comes from the genesis file)",
        ));
    }
    if chain.head().height < from && q.wait_ms > 0 {
        let mut head = chain.subscribe_head();
        let wait = Duration::from_millis(q.wait_ms.min(10_000));
        let _ = tokio::time::timeout(wait, head.wait_for(|h| h.height >= from)).await;
    }
    let max = q.max.unwrap_or(64).clamp(1, 64);
    let chain2 = chain.clone();
    let page = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let store = chain2.store();
        let head = chain2.head().height;
        let mut out = iotchain_block::SyncBlocks::default();
        let mut bytes = 0usize;
        let mut last = head.min(from.saturating_add(max - 1));
        let mut h = from;
        while h <= last {
            let storage = |e: iotchain_storage::StorageError| ApiError::storage(&e);
            let (Some(block), Some(certificate)) = (
                store.block(h).map_err(storage)?,
                store.certificate(h).map_err(storage)?,
            ) else {
                break;
            };
            let rlp = block.encode_rlp();
            bytes += rlp.len();
            // A block finalized through a descendant is only importable with that
            // descendant: a page never ends between them.
            let certified_here = certificate.height == h;
            out.blocks.push(iotchain_block::SyncBlock {
                block: rlp.into(),
                certificate,
            });
            if !certified_here {
                // Reach the certified descendant, past the page's size limits if need be
                // (at most the depth simplex leaves unfinalized, bounded by the head).
                last = last.max(h + 1).min(head);
            } else if bytes >= SYNC_PAGE_BYTES {
                break;
            }
            h += 1;
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::storage(&e))??;
    Ok(Json(page))
}

async fn metrics(AxState(chain): Shared) -> impl IntoResponse {
    use std::{fmt::Write, sync::atomic::Ordering::Relaxed};
    let m = &chain.metrics;
    let head = chain.head();
    let (pr, pt) = chain.pending_counts();
    let stats = chain.consensus_stats();
    let series: [(&str, &str, &str, u64); 13] = [
        (
            "iotchain_consensus_faults_total",
            "Validator misbehaviour seen by simplex: conflicting votes in one view.",
            "counter",
            stats.faults.load(Relaxed),
        ),
        (
            "iotchain_consensus_view",
            "Latest simplex view seen notarized or finalized.",
            "gauge",
            stats.view.load(Relaxed),
        ),
        (
            "iotchain_validators_heard",
            "Other validators whose votes arrived in the last 10 s (connected peers).",
            "gauge",
            stats.peers_seen(Duration::from_secs(10)) as u64,
        ),
        (
            "iotchain_last_finality_ms",
            "Proposal time to commit here of the last block, in milliseconds.",
            "gauge",
            stats.last_finality_ms.load(Relaxed),
        ),
        (
            "iotchain_height",
            "Height of the last final block.",
            "gauge",
            head.height,
        ),
        (
            "iotchain_head_age_ms",
            "Time since the last final block's timestamp.",
            "gauge",
            now_ms().saturating_sub(head.timestamp_ms),
        ),
        (
            "iotchain_readings_accepted_total",
            "Readings accepted.",
            "counter",
            m.readings_accepted.load(Relaxed),
        ),
        (
            "iotchain_readings_final_total",
            "Readings in final blocks.",
            "counter",
            m.readings_final.load(Relaxed),
        ),
        (
            "iotchain_transactions_accepted_total",
            "Owner transactions accepted.",
            "counter",
            m.txs_accepted.load(Relaxed),
        ),
        (
            "iotchain_blocks_total",
            "Blocks produced since start.",
            "counter",
            m.blocks.load(Relaxed),
        ),
        (
            "iotchain_log_syncs_total",
            "Item log group commits (fsyncs).",
            "counter",
            m.log_syncs.load(Relaxed),
        ),
        (
            "iotchain_pending_readings",
            "Readings accepted, not yet final.",
            "gauge",
            pr as u64,
        ),
        (
            "iotchain_pending_transactions",
            "Transactions accepted, not yet final.",
            "gauge",
            pt as u64,
        ),
    ];
    let mut out = String::new();
    for (name, help, kind, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP iotchain_rejected_total Items rejected, by error code.\n# TYPE iotchain_rejected_total counter"
    );
    for (code, n) in m.rejected.lock().iter() {
        let _ = writeln!(out, "iotchain_rejected_total{{code=\"{code}\"}} {n}");
    }
    chain.render_metrics_sources(&mut out);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
