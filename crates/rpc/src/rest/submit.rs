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
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        Ref, RefOr,
        schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type},
    },
};

use super::{
    openapi::{ErrorBody, Hash32},
    origin,
};
use crate::{ApiError, NodeApi, Shared, extract::Body};

/// A reading (or transaction) this node took: durable here, final later.
#[derive(Serialize, ToSchema)]
pub(super) struct AcceptedJson<'a> {
    /// The reading id (or transaction hash).
    #[schema(value_type = Hash32)]
    id: &'a B256,
    /// `pending`, or `final` for a duplicate already in a final block.
    #[schema(value_type = String, pattern = "^(pending|final)$")]
    status: &'static str,
    /// True when this node held the very same bytes already (a resend is acknowledged
    /// again, not refused); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    duplicate: bool,
}

/// One reading of a batch that was refused.
#[derive(Serialize, ToSchema)]
pub(super) struct RejectedJson<'a> {
    /// The HTTP status the reading alone would have had.
    status: u16,
    /// Why.
    error: ErrorJson<'a>,
}

// Serialized without an intermediate JSON tree: a batch answers thousands of these.
/// One reading's result in the answer to a batch, in message order.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum ItemJson<'a> {
    /// Taken.
    Accepted(AcceptedJson<'a>),
    /// Refused.
    Rejected(RejectedJson<'a>),
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

/// An error's stable code and its explanation.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorJson<'a> {
    /// Stable, machine-readable code.
    code: &'static str,
    /// For people.
    message: &'a str,
}

/// The answer to a batch of readings (`application/cbor`).
#[derive(Serialize, ToSchema)]
pub(super) struct BatchJson<'a> {
    /// Readings taken.
    accepted: usize,
    /// Readings refused.
    rejected: usize,
    /// One result per reading, in message order.
    results: Vec<ItemJson<'a>>,
    /// When none was taken: the first refusal (its status is the answer's).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
}

/// A schema that is any of the named component schemas.
fn any_of(description: &str, names: &[&str]) -> RefOr<Schema> {
    let mut b = AnyOfBuilder::new().description(Some(description));
    for n in names {
        b = b.item(Ref::from_schema_name(*n));
    }
    b.into()
}

/// The 202 of `POST /v1/readings`: one reading's answer, or a batch's.
pub(super) struct SubmitAnswer;

impl PartialSchema for SubmitAnswer {
    fn schema() -> RefOr<Schema> {
        any_of(
            "`AcceptedJson` for one reading (`application/cose`), `BatchJson` for a batch \
             (`application/cbor`)",
            &["AcceptedJson", "BatchJson"],
        )
    }
}

impl ToSchema for SubmitAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((AcceptedJson::name().into(), AcceptedJson::schema()));
        AcceptedJson::schemas(schemas);
        schemas.push((BatchJson::name().into(), BatchJson::schema()));
        BatchJson::schemas(schemas);
    }
}

/// A refusal of `POST /v1/readings`: the error of one reading, or a batch none of whose
/// readings was taken (its results, and the first refusal as `error`).
pub(super) struct SubmitRefusal;

impl PartialSchema for SubmitRefusal {
    fn schema() -> RefOr<Schema> {
        any_of(
            "`ErrorBody` for one reading, or for a request refused as a whole; `BatchJson` \
             with `error` for a batch none of whose readings was taken",
            &["ErrorBody", "BatchJson"],
        )
    }
}

impl ToSchema for SubmitRefusal {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ErrorBody::name().into(), ErrorBody::schema()));
        ErrorBody::schemas(schemas);
        SubmitAnswer::schemas(schemas);
    }
}

/// Raw bytes of a request body.
fn binary(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some(description))
        .into()
}

/// One COSE_Sign1 reading (docs/formats.md), as the device signed it.
pub(super) struct CoseReading;

impl PartialSchema for CoseReading {
    fn schema() -> RefOr<Schema> {
        binary("One COSE_Sign1 reading (docs/formats.md), as the device signed it")
    }
}

impl ToSchema for CoseReading {}

/// A CBOR array of COSE_Sign1 readings.
pub(super) struct CborBatch;

impl PartialSchema for CborBatch {
    fn schema() -> RefOr<Schema> {
        binary("A CBOR array of COSE_Sign1 readings (at most `max_batch_readings`)")
    }
}

impl ToSchema for CborBatch {}

#[utoipa::path(
    post,
    path = "/v1/readings",
    tag = "readings",
    request_body(
        description = "One signed reading, or a batch of them",
        content(
            (CoseReading = "application/cose"),
            (CborBatch = "application/cbor"),
        ),
    ),
    responses(
        (status = 202, description = "Taken: durable on this node, which keeps it until a final block \
         holds or refuses it (a batch: when at least one reading was taken)", body = SubmitAnswer),
        (status = 400, description = "The message or batch does not decode (`malformed_cbor`, \
         `malformed_cose`, `malformed_batch`, `empty_batch`, `wrong_type`, `missing_kid`, …)", body = SubmitRefusal),
        (status = 401, description = "`bad_forward`: a relay mark not signed by a known node", body = ErrorBody),
        (status = 403, description = "`revoked_device`, `rotated_key`, `wrong_alg`, `bad_signature`", body = SubmitRefusal),
        (status = 404, description = "`unknown_device`: `kid` is not a registered device", body = SubmitRefusal),
        (status = 409, description = "`replayed_seq`, `gap_closed`", body = SubmitRefusal),
        (status = 413, description = "`body_too_large`, `batch_too_large`, `reading_too_large`", body = SubmitRefusal),
        (status = 415, description = "`unsupported_media_type`: neither `application/cose` nor `application/cbor`", body = ErrorBody),
        (status = 503, description = "The node cannot make the promise now (`overloaded`, \
         `storage_unavailable`, `no_peers`, `validators_unreachable`, `consensus_stopped`, …): retry, or send to another node", body = SubmitRefusal),
    ),
)]
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
                    let answer = AcceptedJson {
                        id: &id,
                        status,
                        duplicate,
                    };
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
            ) => ItemJson::Accepted(AcceptedJson {
                id,
                status,
                duplicate: *duplicate,
            }),
            (Answer::Refused(_), Some(e)) => ItemJson::Rejected(RejectedJson {
                status: e.status.as_u16(),
                error: ErrorJson {
                    code: e.code,
                    message: &e.message,
                },
            }),
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

/// An owner transaction (`iotchain device register|rotate|revoke` builds and signs them).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct TxBody {
    /// 0x-hex RLP of a signed owner transaction.
    #[schema(pattern = "^0x([0-9a-fA-F]{2})*$")]
    raw: String,
}

/// An owner transaction this node took.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TxAcceptedJson {
    /// The transaction hash.
    #[schema(value_type = Hash32)]
    hash: B256,
    /// Always `pending`.
    #[schema(pattern = "^pending$")]
    status: &'static str,
}

#[utoipa::path(
    post,
    path = "/v1/transactions",
    tag = "devices",
    request_body(content = TxBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Taken: durable on this node", body = TxAcceptedJson),
        (status = 400, description = "`bad_json`, `bad_hex`, `invalid_transaction`, `bad_body`", body = ErrorBody),
        (status = 401, description = "`bad_forward`: a relay mark not signed by a known node", body = ErrorBody),
        (status = 403, description = "`unauthorised_owner`, `not_owner`, `bad_rotation`", body = ErrorBody),
        (status = 404, description = "`unknown_device`: the transaction names no registered device", body = ErrorBody),
        (status = 409, description = "`bad_nonce`, `device_exists`, `known_transaction`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`, `no_peers`, … : retry", body = ErrorBody),
    ),
)]
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
        Json(TxAcceptedJson {
            hash,
            status: "pending",
        }),
    )
        .into_response())
}
