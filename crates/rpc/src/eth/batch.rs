//! A JSON-RPC middleware for batches: consecutive `eth_sendRawTransaction` calls of a batch
//! are submitted to the pool together, in order (their senders recovered in parallel, one
//! log sync for all), instead of one after the other.

use std::{future::Future, sync::Arc};

use alloy_primitives::Bytes;
use iotchain_api::{Item, Origin};
use jsonrpsee::{
    ResponsePayload,
    core::middleware::{Batch, BatchEntry, RpcServiceT},
    server::{BatchResponseBuilder, MethodResponse},
    types::{Id, Request},
};
use serde_json::Value;

use super::{Budget, params::parse_bytes, state::pool_error};
use crate::NodeApi;

/// Adds [`RawTxBatch`] to the JSON-RPC service.
#[derive(Clone)]
pub(crate) struct RawTxBatchLayer<N> {
    pub(crate) node: N,
    pub(crate) max_response: usize,
    pub(crate) calls: super::CallConfig,
}

impl<S, N: Clone> tower::Layer<S> for RawTxBatchLayer<N> {
    type Service = RawTxBatch<S, N>;

    fn layer(&self, inner: S) -> Self::Service {
        RawTxBatch {
            inner,
            node: self.node.clone(),
            max_response: self.max_response,
            calls: self.calls,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct RawTxBatch<S, N> {
    inner: S,
    node: N,
    max_response: usize,
    calls: super::CallConfig,
}

/// The raw transaction of a well-formed `eth_sendRawTransaction` call.
fn raw_tx(req: &Request<'_>) -> Option<Bytes> {
    if req.method != "eth_sendRawTransaction" {
        return None;
    }
    let params: Vec<Value> = serde_json::from_str(req.params.as_ref()?.get()).ok()?;
    match params.as_slice() {
        [raw] => parse_bytes(raw).ok(),
        _ => None,
    }
}

impl<S, N> RpcServiceT for RawTxBatch<S, N>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
    N: NodeApi,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        request
            .extensions
            .insert(Arc::new(Budget::new(&self.calls)));
        self.inner.call(request)
    }

    fn notification<'a>(
        &self,
        n: jsonrpsee::core::middleware::Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let mut out = BatchResponseBuilder::new_with_limit(this.max_response);
            // The calls of a batch share one budget of EVM work and one deadline.
            let budget = Arc::new(Budget::new(&this.calls));
            let mut got_notification = false;
            let mut entries = batch.into_iter().peekable();
            while let Some(entry) = entries.next() {
                let response = match entry {
                    Ok(BatchEntry::Call(req)) => match raw_tx(&req) {
                        Some(first) => {
                            let origin = req
                                .extensions
                                .get::<Origin>()
                                .copied()
                                .unwrap_or(Origin::Local);
                            let mut run: Vec<(Id<'a>, Bytes)> = vec![(req.id, first)];
                            while let Some(Ok(BatchEntry::Call(next))) = entries.peek() {
                                let Some(raw) = raw_tx(next) else { break };
                                let Some(Ok(BatchEntry::Call(next))) = entries.next() else {
                                    unreachable!("peeked a call");
                                };
                                run.push((next.id, raw));
                            }
                            let items = run
                                .iter()
                                .map(|(_, raw)| Item::EthTx(raw.clone()))
                                .collect();
                            let results = this.node.submit(items, origin).await;
                            let mut responses = Vec::with_capacity(run.len());
                            for ((id, _), result) in run.into_iter().zip(results) {
                                responses.push(match result {
                                    Ok(hash) => MethodResponse::response(
                                        id,
                                        ResponsePayload::success(hash),
                                        this.max_response,
                                    ),
                                    Err(e) => MethodResponse::error(id, pool_error(&e)),
                                });
                            }
                            for rp in responses {
                                if let Err(too_large) = out.append(rp) {
                                    return too_large;
                                }
                            }
                            continue;
                        }
                        None => {
                            let mut req = req;
                            req.extensions.insert(budget.clone());
                            this.inner.call(req).await
                        }
                    },
                    Ok(BatchEntry::Notification(n)) => {
                        got_notification = true;
                        this.inner.notification(n).await;
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if let Err(too_large) = out.append(response) {
                    return too_large;
                }
            }
            if out.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(out.finish())
            }
        }
    }
}
