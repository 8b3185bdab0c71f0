//! The item log's task: group commit. Everything accepted since the last sync goes out in one
//! append and one fsync (on the runtime's blocking pool); submissions wait for the sync that
//! covers them.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use iotchain_api::{PoolError, blocking, within};

use crate::Inner;

/// How long a submission waits for its log sync before reporting the store unavailable.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Syncs what is accepted, group by group, until the pool stops (having synced it all) or
/// the log fails (then nothing more is accepted).
pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let notified = inner.flush.notified();
        let items = std::mem::take(&mut inner.queue.lock().unsynced);
        if items.is_empty() {
            if inner.stopping.load(Ordering::SeqCst) {
                break;
            }
            notified.await;
            continue;
        }
        let last = items.last().map_or(0, |i| i.seq);
        let i = inner.clone();
        let written = blocking(&*inner.runtime, "item_log_sync", move || {
            i.log.lock().append(&items)
        })
        .await;
        match written {
            Some(Ok(())) => {
                inner.metrics.log_syncs.inc();
                inner.durable.store(last, Ordering::SeqCst);
                inner.synced.notify_waiters();
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot write the item log: refusing further writes");
                inner.failed.store(true, Ordering::SeqCst);
                inner.health.fail(
                    "item_log",
                    "item_log_failed",
                    format!("cannot write the item log: {e}"),
                );
                inner.durable.store(u64::MAX, Ordering::SeqCst);
                inner.synced.notify_waiters();
                break;
            }
            None => break,
        }
    }
    inner.stopped.send_replace(true);
}

impl Inner {
    /// Waits until the log has synced item `seq`.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), PoolError> {
        self.flush.notify_one();
        let synced = within(&*self.runtime, SYNC_TIMEOUT, async {
            loop {
                let mut notified = std::pin::pin!(self.synced.notified());
                notified.as_mut().enable();
                if self.durable.load(Ordering::SeqCst) >= seq {
                    return;
                }
                notified.await;
            }
        })
        .await;
        match synced {
            Some(()) if !self.failed.load(Ordering::SeqCst) => Ok(()),
            _ => {
                tracing::error!(seq, "the item log did not sync");
                Err(PoolError::Storage("the item log did not sync".into()))
            }
        }
    }
}
