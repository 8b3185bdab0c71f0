//! Where time and threads come from: the Commonware runtime the node runs on (its tokio
//! runtime in production, its deterministic runtime in simulations), handed to the pool and
//! the engine so that no consensus-critical code reads the wall clock or starts a thread.

use std::{future::Future, pin::Pin, time::Duration};

use commonware_runtime::{Clock, Spawner, Supervisor};

/// A boxed task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Time and tasks, from the runtime the node runs on.
pub trait Runtime: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, by the runtime's clock.
    fn now_ms(&self) -> u64;
    /// Runs `work` where blocking is allowed (fsync, a batch of signatures).
    fn spawn_blocking(&self, label: &'static str, work: Box<dyn FnOnce() + Send + 'static>);
    /// Runs a task.
    fn spawn(&self, label: &'static str, task: Task);
    /// Resolves after `duration` of the runtime's clock.
    fn sleep(&self, duration: Duration) -> Task;
}

/// Runs `work` on the runtime's blocking pool and waits for its result (`None` if the task
/// was dropped: the runtime is stopping).
pub async fn blocking<T: Send + 'static>(
    runtime: &dyn Runtime,
    label: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    runtime.spawn_blocking(
        label,
        Box::new(move || {
            let _ = tx.send(work());
        }),
    );
    rx.await.ok()
}

/// Runs `f` for at most `timeout` of the runtime's clock.
pub async fn within<F: Future>(
    runtime: &dyn Runtime,
    timeout: Duration,
    f: F,
) -> Option<F::Output> {
    let sleep = runtime.sleep(timeout);
    futures::pin_mut!(f);
    match futures::future::select(f, sleep).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// A Commonware runtime context as a [`Runtime`]. The context's supervision-tree node must
/// outlive the tasks spawned through it (give it a child of the node's root context).
pub struct CommonwareRuntime<E>(pub E);

impl<E> std::fmt::Debug for CommonwareRuntime<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommonwareRuntime")
    }
}

impl<E: Spawner + Clock + Supervisor> Runtime for CommonwareRuntime<E> {
    fn now_ms(&self) -> u64 {
        self.0
            .current()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn spawn_blocking(&self, label: &'static str, work: Box<dyn FnOnce() + Send + 'static>) {
        drop(
            self.0
                .child(label)
                .shared(true)
                .spawn(move |_| async move { work() }),
        );
    }

    fn spawn(&self, label: &'static str, task: Task) {
        drop(self.0.child(label).spawn(move |_| task));
    }

    fn sleep(&self, duration: Duration) -> Task {
        Box::pin(self.0.sleep(duration))
    }
}
