//! Accept loops: TLS for admission, plain HTTP for health and metrics.
//!
//! The TLS handshake runs in the per-connection task, under a timeout, so a
//! client that stalls mid-handshake never blocks others from connecting.
//! Connections are tracked for graceful shutdown: on shutdown the loop stops
//! accepting, every connection finishes the requests it has started (HTTP/1
//! closes after the response, HTTP/2 sends GOAWAY), and the drain is bounded.
//!
//! A TLS connection speaks the protocol its handshake negotiated by ALPN
//! (`h2`, otherwise HTTP/1.1) and a plain one (health and metrics) HTTP/1.1,
//! instead of having hyper sniff the first bytes. Besides sparing the
//! sniffing, this matters at shutdown: hyper drops a connection it is still
//! sniffing, without TLS's close_notify and without reading the request its
//! client may already have sent. How a connection that has not sent its
//! first request yet is shut down is in [`super::drain`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder, Connection};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::drain::{self, Drain, FIRST_REQUEST_GRACE, FirstBytes};
use super::metrics::Metrics;

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
/// With `tls`, connections are TLS; without, plain HTTP. Connections that end
/// because of the client are counted in `metrics`, when given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    timeouts: ConnectionTimeouts,
    metrics: Option<Arc<Metrics>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let drain = Drain::new();
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
    let builders = Arc::new(Builders {
        http1: builder.clone().http1_only(),
        http2: builder.http2_only(),
    });
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
        let builders = builders.clone();
        let tls = tls.clone();
        let open = drain.open();
        let shutdown = shutdown.clone();
        let first_request_by = tokio::time::Instant::now() + FIRST_REQUEST_GRACE.min(timeouts.header_read);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _open = open;
            let count = |reason| {
                if let Some(metrics) = &metrics {
                    metrics.connection_error(reason);
                }
            };
            let service = TowerToHyperService::new(app);
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let builder = builders.negotiated(stream.get_ref().1.alpn_protocol());
                        serve_connection(builder, stream, service, first_request_by, shutdown).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        count("tls_handshake_failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        count("tls_handshake_timeout");
                        return;
                    }
                },
                None => serve_connection(&builders.http1, stream, service, first_request_by, shutdown).await,
            };
            if let Err(error) = result {
                let reason = connection_error_reason(&*error);
                tracing::debug!(%peer, %error, reason, "connection ended with an error");
                count(reason);
            }
        });
    }

    drop(listener);
    tracing::debug!(scheme, "stopped accepting; draining connections");
    if tokio::time::timeout(timeouts.drain, drain.closed()).await.is_err() {
        tracing::warn!(scheme, drain = ?timeouts.drain, "connections still open after the drain timeout; closing them");
    }
}

/// The service every connection runs: the app, as hyper calls it.
type AppService = TowerToHyperService<Router>;

/// Serves one accepted (and, for TLS, handshaken) connection with `builder`'s
/// protocol until it ends, shutting it down gracefully once `shutdown` turns
/// true (see [`drain::serve`] for a connection that has received nothing yet).
async fn serve_connection<S>(
    builder: &Builder<TokioExecutor>,
    stream: S,
    service: AppService,
    first_request_by: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (stream, received) = FirstBytes::new(stream);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    drain::serve(
        connection,
        Connection::graceful_shutdown,
        &received,
        first_request_by,
        shutdown,
    )
    .await
}

/// The connection builders, configured alike, one per protocol.
struct Builders {
    http1: Builder<TokioExecutor>,
    http2: Builder<TokioExecutor>,
}

impl Builders {
    /// The builder for the protocol a TLS handshake negotiated: HTTP/2 for
    /// `h2`, HTTP/1.1 otherwise (`http/1.1`, or a client that offered none).
    fn negotiated(&self, alpn: Option<&[u8]>) -> &Builder<TokioExecutor> {
        if alpn == Some(b"h2") { &self.http2 } else { &self.http1 }
    }
}

/// A metric label for why a connection ended in an error.
fn connection_error_reason(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut hyper_error = None;
    let mut lost = false;
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            hyper_error.get_or_insert(error);
        }
        lost |= error.downcast_ref::<std::io::Error>().is_some();
        source = error.source();
    }
    match hyper_error {
        Some(error) if error.is_timeout() => "header_timeout",
        Some(error) if error.is_incomplete_message() => "incomplete_request",
        Some(error) if error.is_parse() || error.is_parse_status() => "malformed_http",
        // Reading or writing a connection the client has gone from.
        _ if lost => "connection_lost",
        _ => "other",
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
