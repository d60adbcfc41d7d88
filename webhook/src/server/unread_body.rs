//! What becomes of a request body the server answered without reading.
//!
//! The admission handler answers some requests without reading the whole
//! body: one over `--max-body-bytes` (413), one for an unknown policy (404)
//! or with the wrong content type (415). Answering while the client is still
//! uploading loses the answer for real clients:
//!
//! - over HTTP/2, h2 ends the stream with RST_STREAM(NO_ERROR) right after
//!   the complete answer, as RFC 9113 §8.1 allows, but curl 7.88 (Debian
//!   12's) reports that as "Stream error in the HTTP/2 framing layer" (exit
//!   92) and never shows the status or the JSON error. Reading the rest in
//!   the background while the answer goes out is not enough either: curl then
//!   sometimes ends its upload early, short of its content-length, and h2
//!   resets the stream with PROTOCOL_ERROR (both seen in
//!   `tests/integration/server_http.rs`);
//! - over HTTP/1.1, hyper closes the connection after the answer with the
//!   rest of the body unread in the socket, the kernel answers the client's
//!   next segments with a reset, and the client sometimes sees "broken pipe"
//!   before it has read the answer.
//!
//! So the answer waits until the client has sent its whole body, which is
//! read and discarded: then every client reads the answer as any other, and
//! an HTTP/1.1 connection stays open for the next request. The wait is
//! bounded ([`DRAIN_LIMIT`] more bytes, [`DRAIN_TIMEOUT`]); past that the
//! answer is sent with the body unread, as before. A body the handler read
//! to its end — every review the server evaluates — costs one small shared
//! slot per request and nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::response::Response;
use http_body_util::BodyExt;
use tower::{Layer, Service};

/// How many more bytes of an unread body are read and discarded, at most.
/// Well above any review (the API server sends at most 3 MiB).
pub const DRAIN_LIMIT: usize = 64 << 20;

/// How long the answer waits for the rest of an unread body, at most.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Gives every request body a slot it returns to when dropped unfinished,
/// and drains what it finds there before the answer goes out.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainUnreadLayer;

impl<S> Layer<S> for DrainUnreadLayer {
    type Service = DrainUnread<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainUnread { inner }
    }
}

/// The service [`DrainUnreadLayer`] makes.
#[derive(Debug, Clone)]
pub struct DrainUnread<S> {
    inner: S,
}

/// Where an unfinished body goes when the handler drops it.
type UnreadSlot = Arc<Mutex<Option<Body>>>;

impl<S> Service<Request> for DrainUnread<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let slot = UnreadSlot::default();
        let request = request.map(|body| {
            Body::new(ReturnedOnDrop {
                body: Some(body),
                slot: slot.clone(),
            })
        });
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let unread = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(body) = unread {
                drain(body, DRAIN_LIMIT, DRAIN_TIMEOUT).await;
            }
            Ok(response)
        })
    }
}

/// A request body that, dropped before its end, puts itself in its slot.
struct ReturnedOnDrop {
    body: Option<Body>,
    slot: UnreadSlot,
}

impl HttpBody for ReturnedOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

impl Drop for ReturnedOnDrop {
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && !body.is_end_stream()
        {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// The client finished its body.
    Finished,
    /// The client sent more than the limit.
    OverLimit,
    /// The client did not finish within the timeout.
    TimedOut,
    /// The stream failed (the client reset it, the connection went away).
    Failed,
}

/// Reads and discards the rest of `body`: at most `limit` bytes, for at most
/// `timeout`.
async fn drain(mut body: Body, limit: usize, timeout: Duration) -> Drained {
    let read_rest = async {
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > limit {
                        return Drained::OverLimit;
                    }
                }
                Err(_) => return Drained::Failed,
            }
        }
        Drained::Finished
    };
    let drained = tokio::time::timeout(timeout, read_rest)
        .await
        .unwrap_or(Drained::TimedOut);
    if drained != Drained::Finished {
        tracing::debug!(?drained, "unread request body not drained; answering with it unread");
    }
    drained
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's body: `chunks` chunks of `size` bytes, then the end — or,
    /// with `ends` false, nothing more ever.
    struct Upload {
        chunks: usize,
        size: usize,
        ends: bool,
    }

    impl HttpBody for Upload {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            if self.chunks > 0 {
                self.chunks -= 1;
                return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![b' '; self.size])))));
            }
            if self.ends { Poll::Ready(None) } else { Poll::Pending }
        }
    }

    fn upload(chunks: usize, size: usize, ends: bool) -> Body {
        Body::new(Upload { chunks, size, ends })
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_to_its_end() {
        let drained = drain(upload(8, 1024, true), 8192, Duration::from_secs(5)).await;
        assert_eq!(drained, Drained::Finished);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_given_up() {
        let drained = drain(upload(9, 1024, true), 8192, Duration::from_secs(5)).await;
        assert_eq!(drained, Drained::OverLimit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_is_given_up_at_the_timeout() {
        let drained = drain(upload(1, 1024, false), 8192, Duration::from_secs(5)).await;
        assert_eq!(drained, Drained::TimedOut);
    }

    #[tokio::test]
    async fn an_answer_given_early_waits_for_the_rest_of_the_body() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tower::ServiceExt;
        // The client's body records that it was read to its end.
        struct Recorded {
            upload: Upload,
            ended: Arc<AtomicBool>,
        }
        impl HttpBody for Recorded {
            type Data = Bytes;
            type Error = std::io::Error;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
                let frame = Pin::new(&mut self.upload).poll_frame(cx);
                if let Poll::Ready(None) = frame {
                    self.ended.store(true, Ordering::SeqCst);
                }
                frame
            }
        }
        // A handler that answers after one frame, and one that reads all.
        let early = tower::service_fn(|request: Request| async move {
            let mut body = request.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            Ok::<_, Infallible>(Response::new(Body::from(first.len().to_string())))
        });
        let whole = tower::service_fn(|request: Request| async move {
            let bytes = request.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(Body::from(bytes.len().to_string())))
        });
        for (handler, answer) in [(early.boxed_clone(), "10"), (whole.boxed_clone(), "30")] {
            let ended = Arc::new(AtomicBool::new(false));
            let body = Body::new(Recorded {
                upload: Upload {
                    chunks: 3,
                    size: 10,
                    ends: true,
                },
                ended: ended.clone(),
            });
            let response = DrainUnreadLayer
                .layer(handler)
                .oneshot(Request::new(body))
                .await
                .unwrap();
            assert!(
                ended.load(Ordering::SeqCst),
                "the body was read to its end before the answer"
            );
            let text = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(text, answer);
        }
    }
}
