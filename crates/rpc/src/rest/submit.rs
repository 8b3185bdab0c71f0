//! `POST /v1/readings` (one COSE message or a CBOR array of them) and `POST
//! /v1/transactions` (an owner transaction).

use std::sync::Arc;

use alloy_primitives::{B256, Bytes};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use iotchain_api::{Item, Submitted};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::origin;
use crate::{ApiError, NodeApi, Shared, extract::Body};

/// One entry of a submission's `results`, serialized without an intermediate JSON tree (a
/// batch answers thousands of these).
#[derive(Serialize)]
#[serde(untagged)]
enum ItemJson<'a> {
    Accepted {
        id: &'a B256,
        status: &'static str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    Rejected {
        status: u16,
        error: ErrorJson<'a>,
    },
}

/// One reading's outcome as the client sees it: accepted (`duplicate` when this node held
/// the very same bytes already, pending or final: a resend is acknowledged again, not
/// refused), or refused.
enum Answer {
    Accepted {
        id: B256,
        status: &'static str,
        duplicate: bool,
    },
    Refused(iotchain_api::PoolError),
}

/// The answers to submitted readings: a refusal of something held already is a duplicate.
fn answers<N: NodeApi>(node: &N, items: &[Item], results: Vec<Submitted>) -> Vec<Answer> {
    items
        .iter()
        .zip(results)
        .map(|(item, r)| match r {
            Ok(id) => Answer::Accepted {
                id,
                status: "pending",
                duplicate: false,
            },
            Err(e) => {
                let Item::Reading(bytes) = item else {
                    return Answer::Refused(e);
                };
                let id = B256::from(iotchain_reading::reading_id(bytes));
                match iotchain_api::held_already(node, &id, &e) {
                    Some(iotchain_api::ReadingStatus::Final { .. }) => Answer::Accepted {
                        id,
                        status: "final",
                        duplicate: true,
                    },
                    Some(_) => Answer::Accepted {
                        id,
                        status: "pending",
                        duplicate: true,
                    },
                    None => Answer::Refused(e),
                }
            }
        })
        .collect()
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct BatchJson<'a> {
    accepted: usize,
    rejected: usize,
    results: Vec<ItemJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
}

pub(super) async fn post_readings<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let node = &shared.node;
    let origin = origin(&shared, &headers, &body)?;
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
            let items = vec![Item::Reading(Bytes::from(body))];
            let results = node.submit(items.clone(), origin).await;
            match answers(node, &items, results).pop() {
                Some(Answer::Accepted {
                    id,
                    status,
                    duplicate,
                }) => {
                    let mut answer = json!({"id": id, "status": status});
                    if duplicate {
                        answer["duplicate"] = true.into();
                    }
                    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
                }
                Some(Answer::Refused(e)) => Err(ApiError::from(e)),
                None => Err(ApiError::storage()),
            }
        }
        "application/cbor" => {
            let messages = iotchain_reading::decode_batch(&body, node.max_batch())
                .map_err(|e| ApiError::from_batch(&e))?;
            let body = Bytes::from(body.clone());
            let items: Vec<Item> = messages
                .into_iter()
                .map(|m| Item::Reading(body.slice_ref(m)))
                .collect();
            let results = node.submit(items.clone(), origin).await;
            Ok(batch_response(&answers(node, &items, results)))
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

/// The answer to a batch: 202 with a result per reading when any was accepted, otherwise
/// the first refusal's status and code.
fn batch_response(answers: &[Answer]) -> Response {
    let errors: Vec<Option<ApiError>> = answers
        .iter()
        .map(|a| match a {
            Answer::Refused(e) => Some(ApiError::from(e)),
            Answer::Accepted { .. } => None,
        })
        .collect();
    let items: Vec<ItemJson<'_>> = answers
        .iter()
        .zip(&errors)
        .map(|(a, e)| match (a, e) {
            (
                Answer::Accepted {
                    id,
                    status,
                    duplicate,
                },
                _,
            ) => ItemJson::Accepted {
                id,
                status,
                duplicate: *duplicate,
            },
            (Answer::Refused(_), Some(e)) => ItemJson::Rejected {
                status: e.status.as_u16(),
                error: ErrorJson {
                    code: e.code,
                    message: &e.message,
                },
            },
            (Answer::Refused(_), None) => unreachable!("every refusal has its error"),
        })
        .collect();
    let accepted = errors.iter().filter(|e| e.is_none()).count();
    let mut out = BatchJson {
        accepted,
        rejected: answers.len() - accepted,
        results: items,
        error: None,
    };
    match errors.iter().flatten().next().filter(|_| accepted == 0) {
        Some(first) => {
            // Nothing taken: answer with the first rejection's status and code.
            let message = format!(
                "no reading of the batch was accepted; first: {}",
                first.message
            );
            out.error = Some(ErrorJson {
                code: first.code,
                message: &message,
            });
            (first.status, Json(&out)).into_response()
        }
        None => (StatusCode::ACCEPTED, Json(&out)).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct TxBody {
    /// 0x-hex RLP of a signed transaction.
    raw: String,
}

pub(super) async fn post_transaction<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let origin = origin(&shared, &headers, &body)?;
    let tx: TxBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("bad_json", format!("expected {{\"raw\": \"0x…\"}}: {e}"))
    })?;
    let raw = iotchain_block::unhex(&tx.raw)
        .map_err(|e| ApiError::bad_request("bad_hex", format!("raw: {e}")))?;
    let mut results = shared
        .node
        .submit(vec![Item::OwnerTx(Bytes::from(raw))], origin)
        .await;
    let hash = results.pop().ok_or_else(ApiError::storage)??;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"hash": hash, "status": "pending"})),
    )
        .into_response())
}
