//! The OpenAPI 3.1 document of the REST API, served at `GET /v1/openapi.json`.
//!
//! It is generated from the code: each handler's `#[utoipa::path]` gives its method, path,
//! parameters and responses, and the answers are typed structs whose `ToSchema` is derived
//! from the very fields the handler serializes. The router takes each route's method and
//! path from the same annotations (the `v1_operations!` list in the parent module), so a
//! route cannot be served without being documented.

use std::sync::OnceLock;

use axum::{
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};
use serde::Serialize;
use utoipa::{
    Modify, ToSchema,
    openapi::{
        HttpMethod, OpenApi, RefOr,
        path::PathItem,
        schema::{ObjectBuilder, Schema, Type},
    },
};

use crate::ApiError;

/// The body of every REST error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// An error's stable code and its explanation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, machine-readable code (`replayed_seq`, `bad_id`, `not_found`, …; the table in
    /// docs/api.md lists them all).
    #[schema(example = "not_found")]
    pub(crate) code: String,
    /// For people; may change between versions.
    pub(crate) message: String,
}

impl ErrorBody {
    /// The body of `e`.
    pub(crate) fn of(e: &ApiError) -> Self {
        Self {
            error: ErrorDetail {
                code: e.code.to_string(),
                message: e.message.clone(),
            },
        }
    }
}

/// A `0x`-hex string schema of the given pattern, named after the type.
macro_rules! hex_schema {
    ($(#[doc = $doc:literal])+ $name:ident = $pattern:literal) => {
        $(#[doc = $doc])+
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some($pattern))
                    .description(Some(concat!($($doc),+).trim()))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

hex_schema! {
    /// 32 bytes in 0x-hex: a hash, a reading id, a validator key.
    Hash32 = "^0x[0-9a-f]{64}$"
}

hex_schema! {
    /// Bytes in 0x-hex (`0x` when empty).
    HexBytes = "^0x([0-9a-f]{2})*$"
}

hex_schema! {
    /// A 20-byte address in 0x-hex: a device, or an owner's Ethereum account.
    Address20 = "^0x[0-9a-fA-F]{40}$"
}

/// A reading's `data` as JSON, by the mapping of docs/api.md ("Reading data as JSON"): any
/// JSON value (an object with a `$` key is one of the mapping's forms).
pub(crate) struct ReadingData;

impl utoipa::PartialSchema for ReadingData {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some(
                "The reading's CBOR data as JSON, by the mapping of docs/api.md (\"Reading data \
                 as JSON\"); null if it does not decode",
            ))
            .into()
    }
}

impl ToSchema for ReadingData {}

/// Names the document: iotchain, this version, and what it covers.
pub(crate) struct Info;

impl Modify for Info {
    fn modify(&self, doc: &mut OpenApi) {
        doc.info.title = "iotchain".into();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.description = Some(
            "The REST API of an iotchain node under `/v1`: signed readings in, their status, \
             proofs and data out, devices, blocks and block sync, a live feed. Every error is \
             the `ErrorBody` shape with a stable `code` (docs/api.md). The Ethereum JSON-RPC at \
             `/` and `/metrics` are described in docs/api.md."
                .into(),
        );
    }
}

/// The method of an operation as axum filters it.
fn method_filter(m: &HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// The operations of a path item, with their methods.
fn operations(
    item: &PathItem,
) -> impl Iterator<Item = (HttpMethod, &utoipa::openapi::path::Operation)> {
    [
        (HttpMethod::Get, &item.get),
        (HttpMethod::Put, &item.put),
        (HttpMethod::Post, &item.post),
        (HttpMethod::Delete, &item.delete),
        (HttpMethod::Options, &item.options),
        (HttpMethod::Head, &item.head),
        (HttpMethod::Patch, &item.patch),
        (HttpMethod::Trace, &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
}

/// Adds the handler of the operation `operation_id` to `router` at the path and method its
/// annotation gives.
///
/// # Panics
///
/// If `doc` has no such operation: the list of operations and the document are generated
/// together, so this happens only if an annotation sets another `operation_id`.
pub(super) fn route<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    doc: &OpenApi,
    operation_id: &str,
    handler: impl FnOnce(MethodFilter) -> MethodRouter<S>,
) -> axum::Router<S> {
    let (path, method) = doc
        .paths
        .paths
        .iter()
        .find_map(|(path, item)| {
            operations(item)
                .find(|(_, op)| op.operation_id.as_deref() == Some(operation_id))
                .map(|(m, _)| (path.as_str(), m))
        })
        .unwrap_or_else(|| panic!("operation {operation_id} is not in the OpenAPI document"));
    router.route(path, handler(method_filter(&method)))
}

/// The document, serialized once.
fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_vec(&super::openapi()).expect("the OpenAPI document serializes")
    })
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of the REST API (this one)",
         content_type = "application/json", body = Object),
    ),
)]
pub(super) async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}
