//! `GET /v1/status` and Prometheus `GET /metrics`.

use std::sync::{Arc, atomic::Ordering::Relaxed};

use alloy_primitives::B256;
use axum::{Json, extract::State, http::header::CONTENT_TYPE, response::IntoResponse};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::{ErrorDetail, Hash32, HexBytes};
use crate::{NodeApi, Shared, hex0x};

/// How far back a p2p message counts for "validators heard from".
pub(crate) const HEARD_WINDOW_MS: u64 = 10_000;

/// The node's peers: the other validators a p2p message arrived from (any channel) in the
/// last [`HEARD_WINDOW_MS`]. `/v1/status`, `/metrics` and `net_peerCount` all report it.
pub(crate) fn peers<N: NodeApi>(node: &N, now_ms: u64, me: &alloy_primitives::B256) -> usize {
    node.consensus_stats()
        .peers_seen(now_ms, HEARD_WINDOW_MS, me)
}

/// `GET /v1/status`: the chain, this node's queue and limits, what consensus reports.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatusJson {
    /// Chain id from genesis.
    chain_id: u64,
    /// Height of the last final block.
    height: u64,
    /// Its header hash.
    #[schema(value_type = Hash32)]
    head_hash: B256,
    /// Its time, ms since the Unix epoch.
    head_time_ms: u64,
    /// Hash of the genesis header.
    #[schema(value_type = Hash32)]
    genesis_hash: B256,
    /// What this chain's devices sign as COSE `external_aad`: the genesis hash, or `0x` on a
    /// chain created before readings named their chain.
    #[schema(value_type = HexBytes)]
    reading_aad: String,
    /// The validators' Ed25519 public keys.
    #[schema(value_type = Vec<Hash32>)]
    validators: Vec<String>,
    /// Manufacturers genesis authorises for every owner: their device certificates are
    /// accepted in any owner's registrations.
    #[schema(value_type = Vec<crate::rest::openapi::Address20>)]
    manufacturers: Vec<alloy_primitives::Address>,
    /// Readings accepted, not yet final.
    pending_readings: usize,
    /// Transactions accepted, not yet final.
    pending_transactions: usize,
    /// Largest reading, in bytes.
    max_reading_bytes: u64,
    /// Most readings in one batch.
    max_batch_readings: usize,
    /// Largest request body, in bytes.
    max_body_bytes: usize,
    /// What consensus reports.
    consensus: ConsensusJson,
    /// The node's version.
    version: &'static str,
}

/// Consensus figures of `/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConsensusJson {
    /// Latest simplex view seen notarized or finalized.
    view: u64,
    /// The other validators a p2p message arrived from in the last 10 s (this node's peers;
    /// 0 on a follower).
    validators_heard_10s: usize,
    /// Proposal time to commit here of the last block, ms.
    last_finality_ms: u64,
    /// Validator misbehaviour seen: conflicting votes in one view.
    faults: u64,
    /// Each genesis validator as this node sees it, in genesis order.
    peers: Vec<PeerJson>,
}

/// A validator as `/v1/status` sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PeerJson {
    /// Its Ed25519 public key.
    #[schema(value_type = Hash32)]
    public_key: alloy_primitives::B256,
    /// Whether it is this node.
    this_node: bool,
    /// Milliseconds since a p2p message of it arrived here; `null` when none has (and for this
    /// node).
    heard_ms_ago: Option<u64>,
    /// Heard from in the last 10 s (this node always is).
    live: bool,
}

#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "chain",
    responses((status = 200, description = "The chain and this node", body = StatusJson)),
)]
pub(super) async fn status<N: NodeApi>(State(shared): State<Arc<Shared<N>>>) -> Json<StatusJson> {
    let node = &shared.node;
    let head = node.head();
    let (pending_readings, pending_transactions) = node.pending_counts();
    let g = node.genesis();
    let stats = node.consensus_stats();
    let now = shared.config.runtime.now_ms();
    Json(StatusJson {
        chain_id: g.chain_id,
        height: head.height,
        head_hash: head.hash,
        head_time_ms: head.timestamp_ms,
        genesis_hash: node.genesis_hash(),
        reading_aad: hex0x(g.reading_aad(&node.genesis_hash())),
        validators: g.validators.iter().map(|v| hex0x(v.public_key)).collect(),
        manufacturers: g.manufacturers.clone(),
        pending_readings,
        pending_transactions,
        max_reading_bytes: g.params.max_reading_bytes,
        max_batch_readings: node.max_batch(),
        max_body_bytes: shared.config.max_body_bytes,
        consensus: ConsensusJson {
            view: stats.view.load(Relaxed),
            validators_heard_10s: peers(node, now, &shared.config.node_key),
            last_finality_ms: stats.last_finality_ms.load(Relaxed),
            faults: stats.faults.load(Relaxed),
            peers: g
                .validators
                .iter()
                .map(|v| {
                    let key = alloy_primitives::B256::from(v.public_key);
                    let this_node = key == shared.config.node_key;
                    let heard_ms_ago = stats
                        .last_heard(&key)
                        .filter(|_| !this_node)
                        .map(|t| now.saturating_sub(t));
                    PeerJson {
                        public_key: key,
                        this_node,
                        heard_ms_ago,
                        live: this_node || heard_ms_ago.is_some_and(|a| a <= HEARD_WINDOW_MS),
                    }
                })
                .collect(),
        },
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /v1/health`: live while the node answers, ready while it takes writes.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HealthJson {
    /// Always true: a node that is not live does not answer.
    live: bool,
    /// Whether it takes writes.
    ready: bool,
    /// Height of the last final block.
    height: u64,
    /// Why it is not ready (absent when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

/// `GET /v1/health`: for load balancers and service managers. Live while the process serves
/// HTTP; ready while it takes writes (200), otherwise 503 with the reason in the documented
/// error shape (a failed critical task, a failed item log, a follower that reaches no
/// validator, a full pool).
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "chain",
    responses(
        (status = 200, description = "Live and ready: the node takes writes", body = HealthJson),
        (status = 503, description = "Live, not ready: `error` says why (`consensus_stopped`, \
         `item_log_failed`, `store_failed`, `task_stopped`, `storage_unavailable`, `no_peers`, \
         `validators_unreachable`, `overloaded`)", body = HealthJson),
    ),
)]
pub(super) async fn health<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
) -> axum::response::Response {
    let node = &shared.node;
    let head = node.head();
    let (status, error) = match node.not_ready() {
        None => (axum::http::StatusCode::OK, None),
        Some(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Some(ErrorDetail {
                code: e.code().to_string(),
                message: e.to_string(),
            }),
        ),
    };
    let body = HealthJson {
        live: true,
        ready: error.is_none(),
        height: head.height,
        error,
    };
    (status, Json(body)).into_response()
}

/// The figures read at each scrape: the head, the pool's queue, what consensus reports.
pub(crate) struct NodeCollector<N> {
    pub(crate) shared: std::sync::Weak<Shared<N>>,
}

impl<N> std::fmt::Debug for NodeCollector<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value as i64);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl<N: NodeApi> Collector for NodeCollector<N> {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let node = &shared.node;
        let head = node.head();
        let (pr, pt) = node.pending_counts();
        let stats = node.consensus_stats();
        let now = shared.config.runtime.now_ms();
        let faults = ConstCounter::new(stats.faults.load(Relaxed));
        faults.encode(encoder.encode_descriptor(
            "iotchain_consensus_faults",
            "Validator misbehaviour seen by simplex: conflicting votes in one view.",
            None,
            faults.metric_type(),
        )?)?;
        gauge(
            &mut encoder,
            "iotchain_consensus_view",
            "Latest simplex view seen notarized or finalized.",
            stats.view.load(Relaxed),
        )?;
        gauge(
            &mut encoder,
            "iotchain_validators_heard",
            "Other validators a p2p message arrived from in the last 10 s (this node's peers).",
            peers(node, now, &shared.config.node_key) as u64,
        )?;
        gauge(
            &mut encoder,
            "iotchain_last_finality_ms",
            "Proposal time to commit here of the last block, in milliseconds.",
            stats.last_finality_ms.load(Relaxed),
        )?;
        gauge(
            &mut encoder,
            "iotchain_height",
            "Height of the last final block.",
            head.height,
        )?;
        gauge(
            &mut encoder,
            "iotchain_head_age_ms",
            "Time since the last final block's timestamp.",
            now.saturating_sub(head.timestamp_ms),
        )?;
        gauge(
            &mut encoder,
            "iotchain_pending_readings",
            "Readings accepted, not yet final.",
            pr as u64,
        )?;
        gauge(
            &mut encoder,
            "iotchain_pending_transactions",
            "Transactions accepted, not yet final.",
            pt as u64,
        )
    }
}

/// `GET /metrics`: every registered metric in the Prometheus text format, then the
/// runtime's own (tasks, p2p, simplex) when the node runs on one.
pub(crate) async fn metrics<N: NodeApi>(State(shared): State<Arc<Shared<N>>>) -> impl IntoResponse {
    let mut out = String::new();
    if let Err(e) =
        prometheus_client::encoding::text::encode_registry(&mut out, &shared.config.metrics.lock())
    {
        tracing::error!(error = %e, "metrics do not encode");
    }
    if let Some(extra) = &shared.config.runtime_metrics {
        // The runtime's registry ends its text with its own `# EOF`: one ends the whole.
        let extra = extra();
        let extra = extra.trim_end();
        out.push_str(extra.strip_suffix("# EOF").unwrap_or(extra).trim_end());
        out.push('\n');
    }
    out.push_str("# EOF\n");
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
