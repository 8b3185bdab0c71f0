//! The node's HTTP server: hyper's connection handling (HTTP/1.1 and h2c, WebSocket
//! upgrades) under the limits a server shared with parties that do not trust each other
//! needs: a cap on connections below the descriptor limit (descriptors are kept for the
//! stores, consensus and peers), a cap per source address, and a time limit on reading a
//! request's headers, which is also how long an idle keep-alive connection stays open.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use parking_lot::Mutex;
use tokio::{net::TcpListener, sync::watch};

/// The HTTP server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; held below the process's descriptor limit less
    /// [`HttpLimits::reserved_descriptors`]. Beyond it a connection gets a 503 and is
    /// closed.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Longest a client may take to send a request's headers, and longest an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Descriptors kept for everything but HTTP (the chain store, the item log, the
    /// consensus journal, p2p and peer connections).
    pub reserved_descriptors: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 512,
            header_timeout: Duration::from_secs(15),
            reserved_descriptors: 512,
        }
    }
}

/// What the server counts (for `/metrics` and the tests).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections refused because the node serves as many as it may.
    pub refused_full: AtomicU64,
    /// Connections refused because their address holds as many as it may.
    pub refused_per_ip: AtomicU64,
}

/// Raises the soft descriptor limit to the hard one and returns the connection cap that
/// leaves `reserved` descriptors for the rest of the node.
pub(crate) fn connection_cap(limits: &HttpLimits) -> usize {
    let soft = raise_descriptor_limit();
    let room = soft
        .saturating_sub(limits.reserved_descriptors as u64)
        .max(16);
    let cap = (limits.max_connections as u64).min(room) as usize;
    if cap < limits.max_connections {
        tracing::warn!(
            descriptors = soft,
            reserved = limits.reserved_descriptors,
            cap,
            "the descriptor limit holds HTTP to fewer connections than configured; raise `ulimit -n` (LimitNOFILE=)"
        );
    }
    cap
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit where allowed.
fn raise_descriptor_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

/// What a refused connection is told before it is closed (one write, never waited on).
fn refusal() -> Vec<u8> {
    let body = r#"{"error":{"code":"too_many_connections","message":"the node serves as many connections as it may; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One connection's claim on its address's share.
struct PerIp {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut t = table.lock();
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets open connections finish
/// (the caller bounds how long).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    cap: usize,
    stats: Arc<HttpStats>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let per_ip = Arc::new(Mutex::new(HashMap::new()));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (EMFILE) or another passing failure: back off a little
                // instead of spinning; the connections that hold descriptors time out.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_full.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(&refusal());
            continue;
        };
        let Some(share) = PerIp::take(&per_ip, peer.ip(), limits.max_connections_per_ip) else {
            stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(&refusal());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let stats = stats.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = conn.await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop((slot, share));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
