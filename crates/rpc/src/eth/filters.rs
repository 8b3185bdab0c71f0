//! Polled filters, for clients without WebSockets (web3.py's `create_filter`, ethers'
//! polling provider): `eth_newFilter`, `eth_newBlockFilter`,
//! `eth_newPendingTransactionFilter`, `eth_getFilterChanges`, `eth_getFilterLogs` and
//! `eth_uninstallFilter`, as geth answers them.
//!
//! A filter remembers the next block it has not reported; each poll reports the final blocks
//! (or their matching logs) from there up to the head, at most [`MAX_POLL_BLOCKS`] blocks at a
//! time (the next poll goes on). Filters live in memory: a filter not polled for
//! [`FILTER_TIMEOUT_MS`] is dropped (geth's five minutes), a restart drops them all (the
//! client gets "filter not found" and installs a new one), and at most [`MAX_FILTERS`] exist.

use std::collections::BTreeMap;

use iotchain_api::ChainQuery;
use jsonrpsee::RpcModule;
use serde_json::{Value, json};

use super::{
    EthCtx, header_at,
    logs::{logs_in, parse_range},
    params::{BlockId, LogMatch, RpcError, block_id, params_error, server_error},
    state::blocking,
};
use crate::NodeApi;

/// Most filters installed at once (over all clients).
pub(crate) const MAX_FILTERS: usize = 1024;
/// A filter not polled for this long is dropped.
pub(crate) const FILTER_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// Most blocks one poll reports (or scans for logs); the rest come with the next poll.
pub(crate) const MAX_POLL_BLOCKS: u64 = 1_000;

/// What a filter reports.
#[derive(Debug, Clone)]
enum Kind {
    /// Hashes of new final blocks.
    Blocks,
    /// Pending transactions: none are shown (the pool is not public), so always empty.
    PendingTransactions,
    /// Logs matching `matcher`, up to `to` (a number; `None`: the head, whatever it is).
    Logs {
        /// The filter object as given (for `eth_getFilterLogs`).
        spec: Value,
        matcher: LogMatch,
        to: Option<u64>,
    },
}

#[derive(Debug, Clone)]
struct Filter {
    kind: Kind,
    /// The next block not yet reported.
    next: u64,
    /// When it was installed or last polled (runtime clock, ms).
    touched_ms: u64,
}

/// The installed filters, by id.
#[derive(Debug, Default)]
pub(crate) struct Filters(parking_lot::Mutex<BTreeMap<String, Filter>>);

impl Filters {
    /// Installs `filter` (first dropping the expired ones); its id, or an error when
    /// [`MAX_FILTERS`] are installed.
    fn install(&self, filter: Filter) -> Result<String, RpcError> {
        let mut map = self.0.lock();
        let now = filter.touched_ms;
        map.retain(|_, f| now.saturating_sub(f.touched_ms) < FILTER_TIMEOUT_MS);
        if map.len() >= MAX_FILTERS {
            return Err(server_error(format!(
                "too many filters installed ({MAX_FILTERS}): uninstall some, or use eth_subscribe"
            )));
        }
        let id = format!("0x{:032x}", rand::random::<u128>());
        map.insert(id.clone(), filter);
        Ok(id)
    }

    /// A copy of filter `id`, marked as polled at `now_ms`.
    fn touch(&self, id: &str, now_ms: u64) -> Result<Filter, RpcError> {
        let mut map = self.0.lock();
        match map.get_mut(id) {
            Some(f) if now_ms.saturating_sub(f.touched_ms) < FILTER_TIMEOUT_MS => {
                f.touched_ms = now_ms;
                Ok(f.clone())
            }
            Some(_) => {
                map.remove(id);
                Err(not_found())
            }
            None => Err(not_found()),
        }
    }

    /// Moves filter `id` on to block `next` (unless it was uninstalled meanwhile).
    fn advance(&self, id: &str, next: u64) {
        if let Some(f) = self.0.lock().get_mut(id) {
            f.next = f.next.max(next);
        }
    }

    fn remove(&self, id: &str) -> bool {
        self.0.lock().remove(id).is_some()
    }
}

/// geth's answer for an unknown or expired filter.
fn not_found() -> RpcError {
    server_error("filter not found")
}

pub(super) fn register<N: NodeApi>(m: &mut RpcModule<EthCtx<N>>) {
    blocking(m, "eth_newFilter", |c, p| {
        let spec = p.get(0)?.clone();
        // Checked as eth_getLogs checks it (addresses, topics, range), then kept.
        let (from, to, matcher) = parse_range(&c.node, &spec)?;
        let head = c.node.head().height;
        let o = spec
            .as_object()
            .expect("parse_range checked it is an object");
        let named = |k: &str| {
            o.get(k)
                .filter(|v| !v.is_null())
                .map(|v| block_id(Some(v)))
                .transpose()
        };
        let to = match named("toBlock")? {
            Some(BlockId::Number(n)) => Some(n),
            _ if o.contains_key("blockHash") => Some(to),
            _ => None,
        };
        // Changes are what becomes final after the filter is installed (as in geth), from
        // its fromBlock on when that is still to come.
        let next = match named("fromBlock")? {
            Some(BlockId::Number(n)) if n > head => n,
            _ if o.contains_key("blockHash") => from,
            _ => head + 1,
        };
        let id = c.filters.install(Filter {
            kind: Kind::Logs { spec, matcher, to },
            next,
            touched_ms: c.runtime.now_ms(),
        })?;
        Ok(json!(id))
    });
    blocking(m, "eth_newBlockFilter", |c, _| {
        let id = c.filters.install(Filter {
            kind: Kind::Blocks,
            next: c.node.head().height + 1,
            touched_ms: c.runtime.now_ms(),
        })?;
        Ok(json!(id))
    });
    blocking(m, "eth_newPendingTransactionFilter", |c, _| {
        let id = c.filters.install(Filter {
            kind: Kind::PendingTransactions,
            next: 0,
            touched_ms: c.runtime.now_ms(),
        })?;
        Ok(json!(id))
    });
    blocking(m, "eth_getFilterChanges", |c, p| {
        let id = p.str(0)?;
        let f = c.filters.touch(id, c.runtime.now_ms())?;
        let head = c.node.head().height;
        let (out, next) = changes(&c.node, &f, head)?;
        c.filters.advance(id, next);
        Ok(Value::Array(out))
    });
    blocking(m, "eth_getFilterLogs", |c, p| {
        let id = p.str(0)?;
        let f = c.filters.touch(id, c.runtime.now_ms())?;
        let Kind::Logs { spec, .. } = &f.kind else {
            return Err(params_error(format!("filter {id} is not a log filter")));
        };
        let (from, to, matcher) = parse_range(&c.node, spec)?;
        Ok(Value::Array(logs_in(&c.node, from, to, &matcher)?))
    });
    blocking(m, "eth_uninstallFilter", |c, p| {
        Ok(json!(c.filters.remove(p.str(0)?)))
    });
}

/// What filter `f` reports now that the head is at `head`, and the next block it has not
/// reported.
fn changes<Q: ChainQuery>(chain: &Q, f: &Filter, head: u64) -> Result<(Vec<Value>, u64), RpcError> {
    let end = match &f.kind {
        Kind::PendingTransactions => return Ok((Vec::new(), f.next)),
        Kind::Logs { to: Some(to), .. } => head.min(*to),
        _ => head,
    };
    if f.next > end {
        return Ok((Vec::new(), f.next));
    }
    let last = end.min(f.next + MAX_POLL_BLOCKS - 1);
    let out = match &f.kind {
        Kind::Blocks => (f.next..=last)
            .map(|h| header_at(chain, h).map(|header| json!(header.hash())))
            .collect::<Result<_, _>>()?,
        Kind::Logs { matcher, .. } => logs_in(chain, f.next, last, matcher)?,
        Kind::PendingTransactions => unreachable!("answered above"),
    };
    Ok((out, last + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_at(ms: u64) -> Filter {
        Filter {
            kind: Kind::Blocks,
            next: 1,
            touched_ms: ms,
        }
    }

    #[test]
    fn filters_are_capped_expire_unpolled_and_move_on() {
        let filters = Filters::default();
        let first = filters.install(blocks_at(0)).unwrap();
        for _ in 1..MAX_FILTERS {
            filters.install(blocks_at(0)).unwrap();
        }
        let err = filters.install(blocks_at(1)).unwrap_err();
        assert!(err.message().contains("too many filters"), "{err:?}");
        // Polled filters stay; the others expire, which makes room.
        assert_eq!(
            filters.touch(&first, FILTER_TIMEOUT_MS - 1).unwrap().next,
            1
        );
        let late = FILTER_TIMEOUT_MS + 10;
        let second = filters.install(blocks_at(late)).unwrap();
        assert_eq!(filters.0.lock().len(), 2, "the unpolled ones were dropped");
        assert!(filters.touch(&first, late).is_ok());
        assert_eq!(
            filters
                .touch(&first, late + FILTER_TIMEOUT_MS)
                .unwrap_err()
                .message(),
            "filter not found"
        );
        filters.advance(&second, 9);
        filters.advance(&second, 5);
        assert_eq!(
            filters.touch(&second, late).unwrap().next,
            9,
            "never goes back"
        );
        assert!(filters.remove(&second));
        assert!(!filters.remove(&second));
        assert_ne!(first, second);
        assert_eq!(first.len(), 34);
    }
}
