//! Errors at the edge: domain errors mapped to an HTTP status and a stable machine-readable
//! code (REST), or to a JSON-RPC error object (Ethereum JSON-RPC). Nowhere else in the node
//! is there an HTTP status.
//!
//! Every error leaves as JSON: handlers return [`ApiError`]; the extractors' rejections
//! (a bad path, query or body) convert into it; and [`json_errors`], the router's outermost
//! layer, rewrites whatever other error response would leave in another shape (axum's
//! empty 405, jsonrpsee's `text/plain` answers) into `{"error": {"code", "message"}}`, or,
//! for a JSON-RPC call (`POST /`), into a JSON-RPC error object.

use axum::{
    Json,
    extract::{
        Request,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use iotchain_api::{PoolError, QueryError};
use iotchain_execution::ItemError;
use iotchain_reading::ReadingError;
use iotchain_state::StateError;

use crate::rest::openapi::ErrorBody;

/// A REST error: an HTTP status, a stable machine-readable code and a message.
/// Serialized as `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `replayed_seq`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body (the `ErrorBody` schema of the OpenAPI document).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody::of(self)).expect("an error body serializes")
    }

    /// 404 for an unknown resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400 for a malformed request parameter.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 503 for a store the node cannot use (the cause is logged where it happened).
    pub fn storage() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the node cannot store data right now",
        )
    }

    /// 413 for a body over the node's limit.
    pub fn body_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
    }

    /// An error for a bare status (what `json_errors` makes of an error response that is
    /// not JSON): a stable code for the status and `message`.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            404 => "not_found",
            405 => "method_not_allowed",
            406 => "not_acceptable",
            408 => "request_timeout",
            411 => "length_required",
            413 => "body_too_large",
            414 => "uri_too_long",
            415 => "unsupported_media_type",
            426 => "upgrade_required",
            429 => "too_many_requests",
            503 => "unavailable",
            500..=599 => "internal_error",
            _ => "bad_request",
        };
        Self::new(status, code, message)
    }

    /// A batch of readings that does not decode: 413 when it holds too many, 400 otherwise.
    pub fn from_batch(e: &ReadingError) -> Self {
        let status = if matches!(e, ReadingError::BatchTooLarge { .. }) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// The HTTP status of an item refused by the chain's rules.
pub fn item_status(e: &ItemError) -> StatusCode {
    use iotchain_evm::EvmError as E;
    match e {
        ItemError::TooLarge { .. } | ItemError::Evm(E::TooLarge { .. }) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ItemError::State(
            StateError::Replay { .. }
            | StateError::GapClosed { .. }
            | StateError::BadNonce { .. }
            | StateError::DeviceExists(_),
        )
        | ItemError::Evm(E::NonceTooLow { .. }) => StatusCode::CONFLICT,
        ItemError::State(StateError::UnknownDevice(_)) => StatusCode::NOT_FOUND,
        ItemError::WrongAlg { .. }
        | ItemError::BadSignature(_)
        | ItemError::State(_)
        | ItemError::Evm(E::InsufficientFunds { .. } | E::BadSignature) => StatusCode::FORBIDDEN,
        ItemError::Reading(_) | ItemError::InvalidTransaction(_) | ItemError::Evm(_) => {
            StatusCode::BAD_REQUEST
        }
    }
}

impl From<&PoolError> for ApiError {
    fn from(e: &PoolError) -> Self {
        let status = match e {
            PoolError::Item(i) => item_status(i),
            PoolError::Overloaded { .. }
            | PoolError::Storage(_)
            | PoolError::Unreachable { .. }
            | PoolError::NoPeers
            | PoolError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
            PoolError::Known { .. } => StatusCode::CONFLICT,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        Self::from(&e)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match e {
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            QueryError::NotFinal(_) => StatusCode::CONFLICT,
            QueryError::NotKept(_) => StatusCode::GONE,
            QueryError::Storage(_) => return Self::storage(),
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request("bad_path", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request("bad_query", e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::body_too_large("request body exceeds the node's limit")
        } else {
            Self::bad_request("bad_body", e.body_text())
        }
    }
}

/// Largest non-JSON error body [`json_errors`] quotes as the message.
const MAX_QUOTED: usize = 1024;

/// A JSON-RPC error object answering no request in particular (`"id": null`), with its HTTP
/// status.
pub(crate) fn json_rpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message},
        "id": null,
    });
    (status, Json(body)).into_response()
}

/// The JSON-RPC error code of an HTTP-level failure of a call.
fn json_rpc_code(status: StatusCode) -> i32 {
    match status {
        // jsonrpsee's "request too big".
        StatusCode::PAYLOAD_TOO_LARGE => -32007,
        s if s.is_server_error() => -32603,
        _ => -32600,
    }
}

/// The one place where an error response that is not JSON becomes JSON: a JSON-RPC error
/// object for a call (`POST /`), `{"error": {"code", "message"}}` otherwise. The message is
/// the original body when it is short text, else a sentence built from the status; the
/// headers (`Allow` on a 405) stay.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_QUOTED)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .unwrap_or("none");
            format!("{method} is not allowed on {path} (allowed: {allowed})")
        }
        s => format!(
            "{} {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("error").to_lowercase()
        ),
    });
    let rebuilt = if method == Method::POST && path == "/" {
        json_rpc_error(status, json_rpc_code(status), &message)
    } else {
        ApiError::from_status(status, message).into_response()
    };
    // The original headers stay (`Allow`), but not what described the original body.
    let (_, body) = rebuilt.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::of(&self))).into_response()
    }
}
