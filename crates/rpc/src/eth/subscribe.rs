//! `eth_subscribe` over WebSocket: `newHeads` and `logs` of the blocks finalized after the
//! subscription (its filter parsed once), and `eth_unsubscribe`.

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
            match parse(&params) {
                Ok(sub) => run(ctx.node.clone(), sub, pending).await,
                Err(e) => pending.reject(e).await,
            }
        },
    )
    .expect("method names are unique");
}
