//! The command line's wall clock: device timestamps of the readings it signs, the
//! benchmark's stopwatch and progress output. Nodes take time from their runtime instead.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[expect(
    clippy::disallowed_methods,
    reason = "a client command stamps readings with the machine's time, as a device does"
)]
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stopwatch of benchmarks and progress lines.
#[expect(
    clippy::disallowed_methods,
    reason = "benchmarks and progress output measure wall-clock time"
)]
pub(crate) fn stopwatch() -> Instant {
    Instant::now()
}
