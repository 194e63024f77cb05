//! The body type used in both directions: a stream straight from the peer
//! (never buffered), or bytes a plugin or the gateway produced.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub mod lease;
mod tee;

pub use tee::OnCopy;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

/// Why a body stream failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The stream went past its byte limit.
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The peer sent nothing for longer than `body_read_timeout`.
    #[error("no request body bytes for {0:?}")]
    Timeout(std::time::Duration),
    /// The peer's stream failed (reset, bad chunk, ...).
    #[error(transparent)]
    Stream(#[from] hyper::Error),
}

/// An HTTP body: streamed from a peer with a byte limit, or complete bytes.
#[derive(Debug)]
pub enum Body {
    /// A complete body (possibly empty).
    Full(Option<Bytes>),
    /// A peer's body, forwarded frame by frame; fails past `limit` bytes or
    /// when the peer goes quiet for longer than `idle`.
    Stream {
        /// The peer's body.
        inner: Incoming,
        /// Bytes still allowed.
        remaining: u64,
        /// The configured limit, for the error.
        limit: u64,
        /// The read timeout between frames (a body sent a byte a minute
        /// holds a connection, a task and an upstream slot for nothing).
        idle: Idle,
    },
    /// An upstream's response body; its connection goes back to the pool
    /// once the body has been read to the end.
    Upstream(lease::Leased),
    /// Another body, counted; the count is reported once, when it ends or is
    /// dropped (access log, trace spans).
    Counted(Box<Counted>),
    /// Another body, passed through while a copy is kept (a cache fill).
    Tee(Box<tee::Tee>),
}

/// What [`Body::Counted`] reports to when the body is done.
pub type OnEnd = Box<dyn FnOnce(u64) + Send + Sync>;

/// A counted body and its report.
pub struct Counted {
    inner: Body,
    bytes: u64,
    on_end: Option<OnEnd>,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Counted {
    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        Self::Full((!b.is_empty()).then_some(b))
    }

    /// Counts the bytes of `inner` and calls `on_end` with the total once it
    /// ends (or is dropped half-way).
    pub fn counted(inner: Body, on_end: OnEnd) -> Self {
        Self::Counted(Box::new(Counted {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }))
    }

    /// Passes `inner` through and reports a copy of it to `on_done` when it
    /// ends within `limit` bytes (`None` otherwise, see [`OnCopy`]).
    pub fn tee(inner: Body, limit: usize, on_done: OnCopy) -> Self {
        if inner.is_end_stream() {
            // Never polled: the copy is already whole.
            on_done(Some(Bytes::new()));
            return inner;
        }
        Self::Tee(Box::new(tee::Tee::new(inner, limit, on_done)))
    }

    /// Streams `inner`, failing once more than `limit` bytes went through or
    /// once nothing arrived for `timeout`.
    pub fn stream(inner: Incoming, limit: u64, timeout: std::time::Duration) -> Self {
        Self::Stream {
            inner,
            remaining: limit,
            limit,
            idle: Idle {
                timeout,
                timer: None,
                armed: false,
            },
        }
    }
}

/// The timer of [`Body::Stream`]: made the first time the peer keeps us
/// waiting (a body that arrives in one go never allocates it), re-armed after
/// each frame.
#[derive(Debug)]
pub struct Idle {
    timeout: std::time::Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl Idle {
    /// Ready when the peer has been silent for the whole timeout.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        // Armed above, so the timer exists; without one, fail as timed out.
        self.timer
            .as_mut()
            .map_or(Poll::Ready(()), |t| t.as_mut().poll(cx))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream {
                inner,
                remaining,
                limit,
                idle,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.armed = false;
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        if n > *remaining {
                            return Poll::Ready(Some(Err(BodyError::TooLarge(*limit))));
                        }
                        *remaining -= n;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => match idle.poll_expired(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout(idle.timeout)))),
                    Poll::Pending => Poll::Pending,
                },
            },
            Self::Upstream(l) => Pin::new(&mut l.inner)
                .poll_frame(cx)
                .map_err(BodyError::from),
            Self::Counted(c) => {
                let polled = Pin::new(&mut c.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        c.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => c.finish(),
                    Poll::Pending => {}
                }
                polled
            }
            Self::Tee(t) => {
                let polled = Pin::new(&mut t.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                        Some(data) => {
                            t.keep(data);
                            // hyper stops polling once the body says it has
                            // ended, so the end is seen here, not at `None`.
                            if t.inner.is_end_stream() {
                                t.ended();
                            }
                        }
                        None => t.give_up(),
                    },
                    Poll::Ready(None) => t.ended(),
                    Poll::Ready(Some(Err(_))) => t.give_up(),
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Stream { inner, .. } => inner.is_end_stream(),
            Self::Upstream(l) => l.inner.is_end_stream(),
            // An empty body is never polled: it reports when dropped.
            Self::Counted(c) => c.inner.is_end_stream(),
            Self::Tee(t) => t.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { inner, .. } => inner.size_hint(),
            Self::Upstream(l) => l.inner.size_hint(),
            Self::Counted(c) => c.inner.size_hint(),
            Self::Tee(t) => t.inner.size_hint(),
        }
    }
}

/// Why a body could not be buffered.
#[derive(Debug)]
pub enum CollectError {
    /// Over the limit (the caller's, or the stream's own).
    TooLarge,
    /// The peer stopped sending (`limits.body_read_timeout`).
    TimedOut,
    /// The stream failed.
    Stream(String),
}

/// Buffers `body`, up to `limit` bytes: for the body hooks and for retries.
pub async fn collect(body: Body, limit: usize) -> Result<Bytes, CollectError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
                || is_too_large(&*e) =>
        {
            Err(CollectError::TooLarge)
        }
        Err(e) if is_timed_out(&*e) => Err(CollectError::TimedOut),
        Err(e) => Err(CollectError::Stream(e.to_string())),
    }
}

/// Finds a [`BodyError::TooLarge`] anywhere in an error's source chain.
pub fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    find(err, |b| matches!(b, BodyError::TooLarge(_)))
}

/// Finds a [`BodyError::Timeout`] anywhere in an error's source chain.
pub fn is_timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    find(err, |b| matches!(b, BodyError::Timeout(_)))
}

fn find(err: &(dyn std::error::Error + 'static), f: impl Fn(&BodyError) -> bool) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<BodyError>().is_some_and(&f) {
            return true;
        }
        cur = e.source();
    }
    false
}
