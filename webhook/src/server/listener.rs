//! Accept loops: TLS for admission, plain HTTP for health and metrics.
//!
//! The TLS handshake runs in the per-connection task, under a timeout, so a
//! client that stalls mid-handshake never blocks others from connecting.
//! Connections are tracked for graceful shutdown: on shutdown the loop stops
//! accepting, every connection finishes the requests it has started (HTTP/1
//! closes after the response, HTTP/2 sends GOAWAY), and the drain is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Connection-level timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// Time allowed for the TLS handshake.
    pub handshake: Duration,
    /// Time allowed for a request's headers to arrive; on HTTP/1 this also
    /// closes a keep-alive connection idle for this long.
    pub header_read: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` flips to true, then drains.
/// With `tls`, connections are TLS; without, plain HTTP.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    timeouts: ConnectionTimeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(250);
    let builder = Arc::new(builder);
    let scheme = if tls.is_some() { "https" } else { "http" };

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        watcher.watch(connection).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::debug!(scheme, "stopped accepting; draining connections");
    if tokio::time::timeout(timeouts.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(scheme, drain = ?timeouts.drain, "connections still open after the drain timeout; closing them");
    }
}

/// Resolves once `shutdown` flips to true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Binds a TCP listener, with the address in the error.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|error| std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}")))
}
