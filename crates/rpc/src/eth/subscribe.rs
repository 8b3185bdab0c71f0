//! `eth_subscribe` over WebSocket: `newHeads` and `logs` of the blocks finalized after the
//! subscription (its filter parsed once), and `eth_unsubscribe`.

use std::sync::atomic::{AtomicUsize, Ordering};

use iotchain_api::ChainQuery;
use jsonrpsee::{PendingSubscriptionSink, RpcModule, SubscriptionMessage};
use serde_json::{Value, json};

use super::{
    EthCtx,
    blocks::block_json,
    logs::logs_in,
    params::{LogMatch, Params, params_error},
};
use crate::NodeApi;

/// What a subscription reports.
enum Subscription {
    NewHeads,
    Logs(LogMatch),
}

fn parse(params: &jsonrpsee::types::Params<'_>) -> Result<Subscription, super::params::RpcError> {
    let p = Params::of(params)?;
    match p.opt(0).and_then(Value::as_str) {
        Some("newHeads") => Ok(Subscription::NewHeads),
        Some("logs") => {
            let filter = p.opt(1).cloned().unwrap_or_else(|| json!({}));
            let o = filter
                .as_object()
                .ok_or_else(|| params_error("the filter must be an object"))?;
            Ok(Subscription::Logs(LogMatch::parse(o)?))
        }
        other => Err(params_error(format!(
            "unsupported subscription {other:?}: newHeads or logs"
        ))),
    }
}

/// What `sub` reports for the final block at `height`.
fn notifications<Q: ChainQuery>(chain: &Q, sub: &Subscription, height: u64) -> Vec<Value> {
    let results = match sub {
        Subscription::NewHeads => block_json(chain, height, false).map(|mut b| {
            if let Some(o) = b.as_object_mut() {
                o.remove("transactions");
            }
            vec![b]
        }),
        Subscription::Logs(matcher) => logs_in(chain, height, height, matcher),
    };
    results.unwrap_or_default()
}

/// Most filter entries (addresses and topics) all `logs` subscriptions of the node may hold
/// together (about 32 MiB); one filter holds at most 1000 addresses and 1000 topics, and one
/// connection at most 64 subscriptions.
pub(crate) const MAX_FILTER_ENTRIES: usize = 1_000_000;

/// A subscription's share of [`MAX_FILTER_ENTRIES`], given back when it ends.
struct FilterShare {
    total: std::sync::Arc<AtomicUsize>,
    size: usize,
}

impl FilterShare {
    fn take(total: &std::sync::Arc<AtomicUsize>, size: usize) -> Option<Self> {
        total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + size <= MAX_FILTER_ENTRIES).then_some(held + size)
            })
            .ok()?;
        Some(Self {
            total: total.clone(),
            size,
        })
    }
}

impl Drop for FilterShare {
    fn drop(&mut self) {
        self.total.fetch_sub(self.size, Ordering::Relaxed);
    }
}

async fn run<N: NodeApi>(node: N, sub: Subscription, pending: PendingSubscriptionSink) {
    let Ok(sink) = pending.accept().await else {
        return;
    };
    // Only blocks finalized after the subscription are reported.
    let mut heads = node.subscribe_head();
    let mut seen = node.head().height;
    loop {
        tokio::select! {
            _ = sink.closed() => return,
            changed = heads.changed() => {
                if changed.is_err() {
                    return;
                }
                let head = heads.borrow_and_update().height;
                for height in seen + 1..=head {
                    for result in notifications(&node, &sub, height) {
                        let Ok(msg) = serde_json::value::to_raw_value(&result) else {
                            continue;
                        };
                        if sink.send(SubscriptionMessage::from(msg)).await.is_err() {
                            return;
                        }
                    }
                }
                seen = seen.max(head);
            }
        }
    }
}

pub(super) fn register<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>) {
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, ctx, _| async move {
            let sub = match parse(&params) {
                Ok(sub) => sub,
                Err(e) => return pending.reject(e).await,
            };
            let size = match &sub {
                Subscription::Logs(m) => m.size(),
                Subscription::NewHeads => 0,
            };
            let Some(_share) = FilterShare::take(&ctx.filter_entries, size) else {
                return pending
                    .reject(super::params::server_error(
                        "the node holds as many log filters as it may; retry later or narrow the filter",
                    ))
                    .await;
            };
            run(ctx.node.clone(), sub, pending).await;
        },
    )
    .expect("method names are unique");
}
