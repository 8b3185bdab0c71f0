//! The iotchain HTTP API: REST under `/v1`, Ethereum JSON-RPC and its WebSocket
//! subscriptions at `/`, Prometheus metrics.
//!
//! One axum router on one port. Handlers reach the node only through its seams
//! ([`iotchain_api::ChainQuery`] and [`iotchain_api::ItemPool`]), so they are tested
//! in-process against any node, without a socket. Domain errors become HTTP statuses and
//! stable codes here and nowhere else ([`ApiError`]).
//!
//! ```text
//!   POST /v1/readings ─┐        POST / ─┐  GET / (upgrade) ─┐     GET /metrics
//!   GET  /v1/...   ────┤  rest          ├─ jsonrpsee methods ┘         │
//!                      ▼                ▼  (+ raw-tx batch middleware) ▼
//!              ItemPool::submit / ChainQuery reads          registry (+ runtime metrics)
//! ```

mod error;
pub mod eth;
mod explorer;
mod extract;
mod forwarded;
mod rest;

/// The Ethereum JSON-RPC parameter parsers, for the fuzz targets (`fuzz/`): thin wrappers
/// that turn the crate's error objects into their code and message. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use alloy_primitives::{Address, B256, Bytes, U256};
    use iotchain_evm::CallRequest;
    use serde_json::Value;

    use crate::eth::params;

    /// A JSON-RPC error: its code and message.
    pub type Error = (i32, String);

    fn err(e: params::RpcError) -> Error {
        (e.code(), e.message().to_string())
    }

    /// Positional parameters as a method sees them (`raw`: the request's `params` JSON).
    pub fn params(raw: Option<&str>) -> Result<Vec<Value>, Error> {
        let p = jsonrpsee::types::Params::new(raw);
        params::Params::of(&p).map(|p| p.0).map_err(err)
    }

    /// A 256-bit hex quantity.
    pub fn parse_u256(v: &Value) -> Result<U256, Error> {
        params::parse_u256(v).map_err(err)
    }

    /// A 64-bit hex quantity.
    pub fn parse_u64(v: &Value) -> Result<u64, Error> {
        params::parse_u64(v).map_err(err)
    }

    /// 0x-prefixed hex data.
    pub fn parse_bytes(v: &Value) -> Result<Bytes, Error> {
        params::parse_bytes(v).map_err(err)
    }

    /// A call object (`eth_call`, `eth_estimateGas`).
    pub fn call_request(v: &Value) -> Result<CallRequest, Error> {
        params::call_request(v).map_err(err)
    }

    /// A block parameter, in its `Debug` form (`Latest`, `Number(5)`, `Hash(0x…)`, …).
    pub fn block_id(v: Option<&Value>) -> Result<String, Error> {
        params::block_id(v).map(|b| format!("{b:?}")).map_err(err)
    }

    /// A log filter's addresses and topics (`eth_getLogs`, `logs` subscriptions).
    pub fn log_filter(
        o: &serde_json::Map<String, Value>,
    ) -> Result<(Vec<Address>, Vec<Vec<B256>>), Error> {
        params::LogMatch::parse(o)
            .map(|m| (m.addresses, m.topics))
            .map_err(err)
    }

    /// Whether a log filter accepts a log.
    pub fn log_filter_matches(
        o: &serde_json::Map<String, Value>,
        log: &alloy_primitives::Log,
    ) -> Result<bool, Error> {
        params::LogMatch::parse(o)
            .map(|m| m.matches(log))
            .map_err(err)
    }
}

use std::sync::{Arc, atomic::AtomicU32};

use alloy_primitives::B256;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::Method,
    response::{IntoResponse, Response},
    routing::get,
};
use iotchain_api::{ChainQuery, ItemPool, MetricsRegistry, Runtime};
use jsonrpsee::server::{
    BatchRequestConfig, ConnectionGuard, IdProvider, Methods, ServerConfig, ServerHandle,
    StopHandle, stop_channel,
};

pub use error::{ApiError, item_status};
pub use forwarded::{FORWARDED_HEADER, ForwardError, sign_forwarded, verify_forwarded};

/// What the API needs of a node: its pool and its queries.
pub trait NodeApi: ChainQuery + ItemPool + Clone {}

impl<T: ChainQuery + ItemPool + Clone> NodeApi for T {}

/// Largest JSON-RPC response (a wide `eth_getLogs`, a full block).
const MAX_RESPONSE_BYTES: u32 = 128 * 1024 * 1024;

/// How the API is set up.
#[derive(Clone)]
pub struct RpcConfig {
    /// Largest request body, in bytes (REST and JSON-RPC).
    pub max_body_bytes: usize,
    /// Most JSON-RPC connections (HTTP requests in flight and WebSocket sessions) at once.
    pub max_rpc_connections: u32,
    /// Where time comes from (the node's runtime).
    pub runtime: Arc<dyn Runtime>,
    /// This node's validator key (not counted among the validators it heard from).
    pub node_key: B256,
    /// The registry `/metrics` renders.
    pub metrics: MetricsRegistry,
    /// The runtime's own metrics (tasks, p2p, simplex), appended to `/metrics`.
    pub runtime_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// The bounds of `eth_call` and `eth_estimateGas`.
    pub calls: eth::CallConfig,
    /// Keys besides the genesis validators' whose relays (signed [`FORWARDED_HEADER`]) this
    /// node takes: the followers that forward to it.
    pub forwarders: Vec<B256>,
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The JSON-RPC server's parts.
pub(crate) struct JsonRpc {
    pub(crate) methods: Methods,
    pub(crate) server: ServerConfig,
    pub(crate) guard: ConnectionGuard,
    pub(crate) stop: StopHandle,
    pub(crate) next_conn: AtomicU32,
}

/// What every handler sees.
pub(crate) struct Shared<N> {
    pub(crate) node: N,
    pub(crate) config: RpcConfig,
    pub(crate) rpc: JsonRpc,
    /// Whose relays are taken: the genesis validators and `config.forwarders`.
    pub(crate) forwarders: Vec<B256>,
}

/// Subscription ids as geth gives them: 16 random bytes in 0x-hex.
#[derive(Debug)]
struct HexIds;

impl IdProvider for HexIds {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        jsonrpsee::types::SubscriptionId::Str(format!("0x{:032x}", rand::random::<u128>()).into())
    }
}

/// Ends the WebSocket sessions of a router when the node stops.
#[derive(Debug)]
pub struct RpcHandle(ServerHandle);

impl RpcHandle {
    /// Closes the WebSocket sessions.
    pub fn stop(&self) {
        let _ = self.0.stop();
    }
}

pub(crate) fn hex0x(b: impl AsRef<[u8]>) -> String {
    iotchain_block::hex0x(b)
}

/// The node's HTTP routes, and the handle that stops their WebSocket sessions.
pub fn router<N: NodeApi>(node: N, config: RpcConfig) -> (Router, RpcHandle) {
    let limit = config.max_body_bytes;
    let (stop, handle) = stop_channel();
    let server = ServerConfig::builder()
        .max_request_body_size(limit as u32)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(config.max_rpc_connections)
        .max_subscriptions_per_connection(eth::MAX_SUBSCRIPTIONS)
        .set_batch_request_config(BatchRequestConfig::Limit(eth::MAX_BATCH as u32))
        .set_id_provider(HexIds)
        .build();
    let forwarders = node
        .genesis()
        .validators
        .iter()
        .map(|v| v.public_key)
        .chain(config.forwarders.iter().copied())
        .collect();
    let shared = Arc::new(Shared {
        forwarders,
        rpc: JsonRpc {
            methods: eth::module(
                node.clone(),
                config.calls,
                config.runtime.clone(),
                config.node_key,
            )
            .into(),
            server,
            guard: ConnectionGuard::new(config.max_rpc_connections as usize),
            stop,
            next_conn: AtomicU32::new(0),
        },
        node,
        config,
    });
    shared
        .config
        .metrics
        .lock()
        .register_collector(Box::new(rest::status::NodeCollector {
            shared: Arc::downgrade(&shared),
        }));
    let router = rest::routes::<N>()
        .route("/", get(eth::ws::<N>).post(eth::http::<N>))
        .route("/metrics", get(rest::metrics::<N>))
        .merge(explorer::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/api.md") })
        .layer(axum::middleware::from_fn(move |req, next| {
            refuse_oversized(limit, req, next)
        }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(shared);
    (router, RpcHandle(handle))
}

/// Refuses a body whose declared length is over the limit before reading any of it (a
/// JSON-RPC call with a JSON-RPC error object).
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
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if req.method() == Method::POST && req.uri().path() == "/" {
            return eth::too_large(limit);
        }
        return ApiError::body_too_large(format!(
            "request body of {n} bytes exceeds the node's limit of {limit}"
        ))
        .into_response();
    }
    next.run(req).await
}
