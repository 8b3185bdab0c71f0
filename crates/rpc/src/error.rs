//! Errors at the edge: domain errors mapped to an HTTP status and a stable machine-readable
//! code (REST), or to a JSON-RPC error object (Ethereum JSON-RPC). Nowhere else in the node
//! is there an HTTP status.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use iotchain_api::{PoolError, QueryError};
use iotchain_execution::ItemError;
use iotchain_reading::ReadingError;
use iotchain_state::StateError;

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

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
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
            QueryError::Storage(_) => return Self::storage(),
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
