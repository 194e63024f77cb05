//! One client connection from its first bytes to its close: the protocol
//! sniffed, then HTTP/2 served by hyper as one session, or HTTP/1 served by
//! hyper request after request, and parked while it is idle.
//!
//! Parking: hyper's HTTP/1 connection keeps an 8-16 KB read buffer and an
//! 8 KB write buffer from its first request to its close, so an idle
//! keep-alive client would cost ~19 KB. Once a connection has been idle for
//! [`PARK_AFTER`], hyper's connection is ended at that idle point (its
//! shutdown of the socket skipped, its unparsed bytes kept), and the task
//! waits on the bare socket; the client's next bytes build a new one. A
//! parked connection costs its socket and a small future, as one that was
//! never used does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Conn;
use super::idle::{self, Activity, Close, Held, Lifetime};
use super::replay::Replay;
use super::sniff::{self, Protocol};
use crate::config::Limits;
use crate::proxy::{self, ConnInfo};

/// `fut`'s output, or `None` when the connection should close first (its
/// deadline passed, or the listener is shutting down). Nothing is in flight
/// then, so nothing to park or finish: any reason to wake is one to close.
/// A macro, not an `async fn`: the future is built inside the `select!`, so
/// the connection's future holds it once, not also as an argument.
macro_rules! until_close {
    ($fut:expr, $lifetime:expr) => {
        tokio::select! {
            out = $fut => Some(out),
            _ = $lifetime.next() => None,
        }
    };
}

/// How long an HTTP/1 connection waits without a request in flight before it
/// is parked. Parking and waking again cost ~16k instructions (a new hyper
/// connection and its buffers; `bench/instructions.py --pause 2.5`), a third
/// of a request: so a client sending a request every second or more often, as a
/// busy pool's connections do, never pays it, and a mostly idle client
/// (mobile, long polling, a pool's spare connection) holds almost nothing
/// after two seconds.
pub const PARK_AFTER: Duration = Duration::from_secs(2);

/// Serves one connection until it closes. Until the client's first bytes
/// arrive, and again while an HTTP/1 connection is parked, the connection
/// holds its socket, its service and its deadlines: no HTTP state.
///
/// Not an `async fn`: everything the connection keeps is built here, so
/// that the task's future holds each value once (an `async fn` keeps its
/// arguments for its whole life, beside what is built from them).
pub fn serve<I>(mut io: I, info: ConnInfo, conn: Conn) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        shared,
        limits,
        drain,
        slot,
        accepted,
        _counted,
    } = conn;
    let wire = Wire::from(&limits);
    let stopping = *drain.shutdown.borrow();
    let activity = Arc::new(Activity::opened_at(accepted));
    let deadlines = idle::Deadlines {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        close_grace: limits.drain_timeout,
        park: None,
    };
    let mut lifetime = Lifetime::new(activity.clone(), deadlines, drain.shutdown);
    let remote = info.remote;
    let metrics = shared.metrics.clone();
    let seen = activity.clone();
    let mut svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let info = info.clone();
        let request = seen.start();
        async move {
            // Boxed: hyper keeps room for the service's future in every
            // connection (`in_flight`), so inline the request's ~8 KB state
            // machine would be held by each idle keep-alive connection too.
            let resp = Box::pin(proxy::serve(shared, info, req)).await;
            Ok::<_, Infallible>(resp.map(|body| Held::new(body, request)))
        }
    });
    let guards = (slot, drain.alive, _counted);
    // Everything the block names is moved into it once, and used in place.
    async move {
        let _held_until_the_end = &guards;
        if stopping {
            return;
        }
        let Some(Ok(Some((protocol, mut pre)))) = until_close!(sniff::sniff(&mut io), lifetime)
        else {
            return close(io, wire.drain_timeout).await;
        };
        // hyper's connections are boxed: this future lives as long as the
        // connection, and should keep no room for them while nothing is served.
        if protocol == Protocol::Http2 {
            let io = Replay::new(io, pre, activity);
            let conn = http2_builder(&wire).serve_connection(TokioIo::new(io), svc);
            return Box::pin(run_http2(conn, lifetime, remote)).await;
        }
        lifetime.http1(PARK_AFTER, wire.header_read_timeout);
        loop {
            // In a block, so that the parked connection's parts are not kept
            // beside `io` and `svc` in this future while it waits.
            let pending = {
                let io_now = Replay::new(io, pre, activity.clone());
                let served = run_http1(io_now, svc, &wire, &activity, &mut lifetime, remote);
                let Some(parked) = Box::pin(served).await else {
                    return;
                };
                (io, svc) = (parked.io, parked.service);
                parked.pending
            };
            pre = if pending.is_empty() {
                let _parked = Parked::count(&metrics.connections_parked);
                match until_close!(sniff::next_bytes(&mut io), lifetime) {
                    Some(Ok(Some(bytes))) => bytes,
                    _ => return close(io, wire.drain_timeout).await,
                }
            } else {
                // A pipelined or partly received request: served at once.
                pending
            };
            lifetime.resumed();
        }
    }
}

/// Closes a connection that has no HTTP state (TLS sends its close_notify).
async fn close<I: AsyncWrite + Unpin>(mut io: I, grace: Duration) {
    let _ = tokio::time::timeout(grace, io.shutdown()).await;
}

/// Serves HTTP/2 until the session ends.
async fn run_http2<I, S>(
    conn: http2::Connection<I, S, TokioExecutor>,
    mut lifetime: Lifetime,
    remote: std::net::SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Held>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                return;
            }
            close = lifetime.next() => match close {
                Close::Graceful | Close::Park => {
                    tracing::debug!(%remote, "closing connection (idle or shutdown)");
                    conn.as_mut().graceful_shutdown();
                }
                Close::Now => {
                    tracing::debug!(%remote, "connection did not close in time; dropped");
                    return;
                }
            },
        }
    }
}

/// An HTTP/1 connection ended at an idle point: its socket, its service, and
/// the bytes hyper had read but not parsed yet.
struct Idle<I, S> {
    io: I,
    service: S,
    pending: Bytes,
}

/// Serves HTTP/1 on one hyper connection, request after request, until the
/// connection closes (`None`) or has been idle for [`PARK_AFTER`] and is
/// parked (`Some`).
async fn run_http1<I, S>(
    io: Replay<I>,
    svc: S,
    wire: &Wire,
    activity: &Activity,
    lifetime: &mut Lifetime,
    remote: std::net::SocketAddr,
) -> Option<Idle<I, S>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Held> + Unpin,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = http1_builder(wire)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    loop {
        let close = tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                return None;
            }
            close = lifetime.next() => close,
        };
        match close {
            Close::Park => {
                activity.set_parking(true);
                Pin::new(&mut conn).graceful_shutdown();
                // Idle, hyper's connection ends in this poll. Busy (a
                // rejected request's body still arriving, or a client not
                // reading its response), it goes on, and closes when done,
                // as an idle close would.
                let once =
                    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll(cx))).await;
                match once {
                    Poll::Ready(Ok(())) => break,
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, %remote, "connection ended with an error");
                        return None;
                    }
                    Poll::Pending => activity.set_parking(false),
                }
            }
            Close::Graceful => {
                tracing::debug!(%remote, "closing connection (idle or shutdown)");
                Pin::new(&mut conn).graceful_shutdown();
            }
            Close::Now => {
                tracing::debug!(%remote, "connection did not close in time; dropped");
                return None;
            }
        }
    }
    activity.set_parking(false);
    // `None`: the connection was upgraded (not idle, so not parked).
    let parts = conn.into_parts()?;
    let (io, unread) = parts.io.into_inner().into_parts();
    Some(Idle {
        io,
        service: parts.service,
        pending: join(parts.read_buf, unread),
    })
}

/// One connection in `gatehouse_connections_parked` while it lives.
struct Parked<'a>(&'a AtomicI64);

impl<'a> Parked<'a> {
    fn count(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes hyper read but did not parse, then bytes it never read.
fn join(read: Bytes, unread: Bytes) -> Bytes {
    match (read.is_empty(), unread.is_empty()) {
        // An empty `read` may still hold hyper's whole read buffer.
        (true, true) => Bytes::new(),
        (false, true) => read,
        (true, false) => unread,
        (false, false) => {
            let mut all = BytesMut::with_capacity(read.len() + unread.len());
            all.extend_from_slice(&read);
            all.extend_from_slice(&unread);
            all.freeze()
        }
    }
}

/// The limits a connection's HTTP serving needs, taken at accept: the
/// connection keeps these, not all of [`Limits`].
#[derive(Debug, Clone, Copy)]
struct Wire {
    header_read_timeout: Duration,
    drain_timeout: Duration,
    max_header_bytes: usize,
    h2_keepalive_interval: Duration,
    h2_keepalive_timeout: Duration,
}

impl From<&Limits> for Wire {
    fn from(l: &Limits) -> Self {
        Self {
            header_read_timeout: l.header_read_timeout,
            drain_timeout: l.drain_timeout,
            max_header_bytes: l.max_header_bytes,
            h2_keepalive_interval: l.h2_keepalive_interval,
            h2_keepalive_timeout: l.h2_keepalive_timeout,
        }
    }
}

/// HTTP/1 settings from the limits current at accept.
fn http1_builder(limits: &Wire) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
}

/// HTTP/2 settings from the limits current at accept.
fn http2_builder(limits: &Wire) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsed_bytes_come_before_unread_ones() {
        let j = join(
            Bytes::from_static(b"GET / H"),
            Bytes::from_static(b"TTP/1.1"),
        );
        assert_eq!(&j[..], b"GET / HTTP/1.1");
        assert_eq!(&join(Bytes::new(), Bytes::from_static(b"x"))[..], b"x");
        assert_eq!(&join(Bytes::from_static(b"y"), Bytes::new())[..], b"y");
        assert!(join(Bytes::new(), Bytes::new()).is_empty());
    }
}
