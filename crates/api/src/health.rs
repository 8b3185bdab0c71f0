//! The node's health: whether a critical task (consensus, the item log, the committer, the
//! block producer, the relay) has stopped. Once one has, the node takes no more writes (an
//! acknowledged item must be one the node can finalize) and its binary exits non-zero so a
//! supervisor restarts it.

use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Why the node stopped taking writes: the first critical task that stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task (`consensus`, `item_log`, `committer`, `producer`, `relay`, `http`).
    pub task: &'static str,
    /// Stable machine-readable code (`consensus_stopped`, `item_log_failed`, …).
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// Shared record of the first critical failure; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    failure: OnceLock<Failure>,
    changed: Notify,
}

impl Health {
    /// A healthy record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `task` stopped (only the first failure is kept) and wakes
    /// [`Health::failed`].
    pub fn fail(&self, task: &'static str, code: &'static str, message: impl Into<String>) {
        let failure = Failure {
            task,
            code,
            message: message.into(),
        };
        if self.inner.failure.set(failure.clone()).is_ok() {
            tracing::error!(
                task,
                code,
                message = %failure.message,
                "a critical task stopped: the node takes no more writes"
            );
        }
        self.inner.changed.notify_waiters();
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.inner.failure.get()
    }

    /// Resolves with the first failure, once there is one.
    pub async fn failed(&self) -> Failure {
        loop {
            let mut notified = std::pin::pin!(self.inner.changed.notified());
            notified.as_mut().enable();
            if let Some(f) = self.inner.failure.get() {
                return f.clone();
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_kept_and_wakes_waiters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let h = Health::new();
            assert!(h.failure().is_none());
            let waiter = {
                let h = h.clone();
                tokio::spawn(async move { h.failed().await })
            };
            tokio::task::yield_now().await;
            h.fail("consensus", "consensus_stopped", "voter exited");
            h.fail("relay", "relay_stopped", "later");
            let f = waiter.await.expect("waiter");
            assert_eq!(f.code, "consensus_stopped");
            assert_eq!(h.failure().map(|f| f.task), Some("consensus"));
        });
    }
}
