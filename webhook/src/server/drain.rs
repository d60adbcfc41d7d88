//! Graceful shutdown of connections, without refusing a first request.
//!
//! Told to shut down gracefully, hyper finishes the requests a connection has
//! started and closes it. An HTTP/1 connection that has received nothing yet
//! it closes at once. But its client opened it before the server stopped
//! accepting, and may be sending its first request right now: that request
//! would be refused with no sign that the server was leaving, and the API
//! server would apply the webhook's failure policy to it. So, as Go's
//! `net/http` does, a connection that has received nothing is left alone
//! until a grace period after it was accepted (`FIRST_REQUEST_GRACE`, or the
//! header-read timeout if shorter). Its first bytes, or the end of the grace,
//! start its graceful shutdown like any other connection's.
//!
//! [`Drain`] counts the connections still open, so that shutdown can wait for
//! them; [`FirstBytes`] notes when a connection receives its first bytes.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::listener::stopped;

/// How long after it was accepted a connection that has received nothing
/// may still send its first request once shutdown has begun (Go's
/// `net/http` gives new connections the same five seconds).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(5);

/// The open connections, for shutdown to wait for.
pub struct Drain {
    open: watch::Sender<()>,
}

/// Held by a connection's task while the connection is open.
pub struct OpenConnection {
    _open: watch::Receiver<()>,
}

impl Drain {
    pub fn new() -> Self {
        Self {
            open: watch::Sender::new(()),
        }
    }

    /// Counts a connection as open until the returned value is dropped.
    pub fn open(&self) -> OpenConnection {
        OpenConnection {
            _open: self.open.subscribe(),
        }
    }

    /// Resolves once every connection counted by [`Drain::open`] has closed.
    pub async fn closed(&self) {
        self.open.closed().await;
    }
}

/// An I/O stream that notes when it first reads any bytes.
pub struct FirstBytes<S> {
    stream: S,
    received: Arc<AtomicBool>,
}

impl<S> FirstBytes<S> {
    /// Wraps `stream`; the flag turns true at its first non-empty read.
    pub fn new(stream: S) -> (Self, Arc<AtomicBool>) {
        let received = Arc::new(AtomicBool::new(false));
        (
            Self {
                stream,
                received: received.clone(),
            },
            received,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && !self.received.load(Ordering::Relaxed) {
            self.received.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Runs `connection` to its end. Once `shutdown` turns true, `shut_down`
/// (the connection's graceful shutdown) is called — at once if `received`
/// is already set, otherwise when it gets set or at `first_request_by`,
/// whichever comes first.
pub async fn serve<C: Future>(
    connection: C,
    shut_down: impl FnOnce(Pin<&mut C>),
    received: &AtomicBool,
    first_request_by: Instant,
    mut shutdown: watch::Receiver<bool>,
) -> C::Output {
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = stopped(&mut shutdown) => {}
    }
    let mut grace_over = pin!(tokio::time::sleep_until(first_request_by));
    let ended = poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if received.load(Ordering::Relaxed) || grace_over.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    if let Some(result) = ended {
        return result;
    }
    shut_down(connection.as_mut());
    connection.await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    /// Serves a connection that sets `received` after `bytes_after` (if
    /// given) and ends when it is shut down; returns how long after the
    /// start that was. The grace ends `grace` after the start, and shutdown
    /// begins `shutdown_after` it.
    async fn shut_down_after(bytes_after: Option<Duration>, grace: Duration, shutdown_after: Duration) -> Duration {
        let start = Instant::now();
        let received = Arc::new(AtomicBool::new(false));
        let (shut_down, shut_down_at) = oneshot::channel::<Instant>();
        let connection = {
            let received = received.clone();
            async move {
                if let Some(after) = bytes_after {
                    tokio::time::sleep(after).await;
                    received.store(true, Ordering::Relaxed);
                }
                shut_down_at.await.expect("shut down")
            }
        };
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(shutdown_after).await;
            stop.send(true).unwrap();
            stop.closed().await;
        });
        let shut_down = move |_: Pin<&mut _>| shut_down.send(Instant::now()).unwrap();
        serve(connection, shut_down, &received, start + grace, shutdown).await - start
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_has_received_bytes_is_shut_down_when_shutdown_begins() {
        let after = shut_down_after(Some(Duration::from_secs(1)), GRACE, Duration::from_secs(2)).await;
        assert_eq!(after, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_has_received_nothing_is_shut_down_at_the_end_of_its_grace() {
        let after = shut_down_after(None, GRACE, Duration::from_secs(2)).await;
        assert_eq!(after, GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn first_bytes_during_the_grace_start_the_shutdown_at_once() {
        let after = shut_down_after(Some(Duration::from_secs(3)), GRACE, Duration::from_secs(2)).await;
        assert_eq!(after, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_after_the_grace_shuts_an_idle_new_connection_down_at_once() {
        let after = shut_down_after(None, GRACE, Duration::from_secs(7)).await;
        assert_eq!(after, Duration::from_secs(7));
    }

    #[tokio::test]
    async fn first_bytes_notes_the_first_non_empty_read_and_passes_everything_through() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut server, received) = FirstBytes::new(server);
        assert!(!received.load(Ordering::Relaxed));
        client.write_all(b"POST /").await.unwrap();
        let mut buffer = [0u8; 6];
        server.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"POST /");
        assert!(received.load(Ordering::Relaxed));
        server.write_all(b"HTTP/1.1 200 OK").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn the_drain_waits_for_every_open_connection() {
        let drain = Drain::new();
        let first = drain.open();
        let second = drain.open();
        drop(first);
        let waiting = tokio::time::timeout(Duration::from_millis(50), drain.closed()).await;
        assert!(waiting.is_err(), "one connection is still open");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), drain.closed())
            .await
            .expect("every connection has closed");
    }
}
