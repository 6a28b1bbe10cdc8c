//! The hyper HTTP/1.1 server: accepts connections up to the limit, serves each with the
//! router, and drains in-flight requests at shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::limits::HttpLimits;
use super::router;
use crate::flow::App;

/// Connections the kernel may hold for us before we accept them. The standard library's (and
/// tokio's) 128 overflowed when a load generator opened 256 connections at once: the kernel
/// dropped the excess SYNs and those clients retried after a second (a 1 s "max latency" in every
/// benchmark phase). An on-sale rush opens connections the same way. Linux caps this at
/// `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the HTTP listener with `LISTEN_BACKLOG`.
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown` turns true, then stops accepting and drains in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    assert!(limits.connections_max > 0);
    assert!(limits.header_bytes_max >= 8192, "hyper needs at least 8 KiB of read buffer");
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = Arc::new(limits);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "connection limit reached: refusing");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let limits_for_service = limits.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    let limits = limits_for_service.clone();
                    async move { Ok::<_, Infallible>(router::handle(app, &limits, peer, request).await) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
                    .max_buf_size(limits.header_bytes_max)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    let drain = Duration::from_millis(limits.drain_timeout_ms);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain_ms = limits.drain_timeout_ms, "drain timed out; closing remaining connections");
    }
    Ok(())
}
