//! Node errors and the HTTP error type.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Errors starting or running the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] iotchain_storage::StorageError),
    /// The data directory belongs to another chain or is inconsistent.
    #[error("data directory: {0}")]
    DataDir(String),
    /// A consensus step was asked for something inconsistent with the chain.
    #[error("consensus: {0}")]
    Consensus(String),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// An API error: an HTTP status, a stable machine-readable code and a message.
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

    /// A reading decoding error.
    pub fn from_reading(e: &iotchain_reading::ReadingError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }

    /// A batch that does not decode: 413 when it holds too many readings, 400 otherwise.
    pub fn from_batch(e: &iotchain_reading::ReadingError) -> Self {
        let status = if e.code() == "batch_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, e.code(), e.to_string())
    }

    /// A state-rule error.
    pub fn from_state(e: &iotchain_state::StateError) -> Self {
        use iotchain_state::StateError as S;
        let status = match e {
            S::Replay { .. } | S::BadNonce { .. } | S::DeviceExists(_) => StatusCode::CONFLICT,
            S::UnknownDevice(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::FORBIDDEN,
        };
        Self::new(status, e.code(), e.to_string())
    }

    /// An Ethereum transaction or call refused by the contract lane.
    pub fn from_evm(e: &iotchain_evm::EvmError) -> Self {
        use iotchain_evm::EvmError as E;
        let status = match e {
            E::NonceTooLow { .. } => StatusCode::CONFLICT,
            E::InsufficientFunds { .. } | E::BadSignature => StatusCode::FORBIDDEN,
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }

    /// A storage failure: logged, reported without internals.
    pub fn storage(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the node cannot store data right now",
        )
    }

    /// 404 for an unknown resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400 for a malformed request parameter.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
