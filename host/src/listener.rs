//! Listeners: accept TCP connections (within the connection caps), terminate
//! TLS when configured (ALPN `h2` / `http/1.1`), and serve HTTP/1.1 and
//! HTTP/2 (h2c with prior knowledge on cleartext) with the configured
//! protection limits. First stage of the flow; graceful drain on shutdown.

mod admit;
mod idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub use admit::PerIp;

use crate::data_plane::DataPlane;
use crate::proxy::{self, ConnInfo, TlsConn, peer_value};
use crate::tls::{PeerIdentity, TlsServer};

/// What every connection task of one listener holds: the shutdown signal,
/// and a sender whose drop tells the drain that the connection is gone.
#[derive(Clone)]
struct Drain {
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
}

/// Accepts connections on `listener` until `shutdown` flips, then waits up to the
/// drain timeout for in-flight requests to finish.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    shared: Arc<DataPlane>,
    per_ip: Arc<PerIp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (alive, gone) = mpsc::channel::<()>(1);
    let drain = Drain {
        shutdown: shutdown.clone(),
        alive,
    };
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let limits = shared.snapshot().limits;
        let Some(slot) = admit(&shared, &limits, &open, &per_ip, remote) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            shared: shared.clone(),
            limits,
            drain: drain.clone(),
            slot,
            accepted: tokio::time::Instant::now(),
            _counted: Counted::new(shared.metrics.clone()),
        };
        match &tls {
            None => {
                let info = ConnInfo {
                    remote,
                    peer_value: peer_value(remote.ip()),
                    scheme: "http",
                    tls: None,
                };
                tokio::spawn(async move {
                    if first_bytes(&stream, &conn).await {
                        // Boxed: hyper's connection state is large, and the
                        // task would otherwise reserve room for it from accept.
                        Box::pin(serve(stream, info, conn)).await;
                    }
                });
            }
            Some(tls) => {
                tokio::spawn(handshake(stream, remote, tls.clone(), conn));
            }
        }
    }
    drop(listener);
    drop(drain);
    drained(&shared, gone).await;
}

/// Takes a connection slot within the caps, or counts the refusal.
fn admit(
    shared: &DataPlane,
    limits: &crate::config::Limits,
    open: &Arc<AtomicUsize>,
    per_ip: &Arc<PerIp>,
    remote: SocketAddr,
) -> Option<admit::Slot> {
    match admit::admit(limits, open, per_ip, remote.ip()) {
        Ok(slot) => Some(slot),
        Err(refusal) => {
            let m = &shared.metrics;
            let counter = match refusal {
                admit::Refusal::Listener => &m.connections_rejected_listener,
                admit::Refusal::PerIp => &m.connections_rejected_per_ip,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, ?refusal, "connection refused at accept");
            None
        }
    }
}

/// Waits, up to the drain timeout, for every connection task to end.
async fn drained(shared: &DataPlane, mut gone: mpsc::Receiver<()>) {
    let limit = shared.snapshot().limits.drain_timeout;
    // Every connection task holds a sender: `recv` ends when the last is gone.
    if tokio::time::timeout(limit, gone.recv()).await.is_err() {
        tracing::warn!(
            drain = ?limit,
            "drain deadline passed; closing remaining connections"
        );
    }
}

/// What a connection carries from accept to its end.
struct Conn {
    shared: Arc<DataPlane>,
    /// The limits of the snapshot current at accept.
    limits: crate::config::Limits,
    drain: Drain,
    slot: admit::Slot,
    /// When the connection was accepted: the first-request deadline counts
    /// from here, however long the client took to send its first bytes.
    accepted: tokio::time::Instant,
    /// Counts the connection as open from accept (a silent or handshaking
    /// connection included) until its task ends.
    _counted: Counted,
}

/// One open connection in `gatehouse_connections_active`.
struct Counted(Arc<crate::metrics::Metrics>);

impl Counted {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        metrics.connections_active.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the TLS handshake off the accept loop, bounded by the header read
/// timeout (a client that never finishes it holds nothing for long).
async fn handshake(stream: TcpStream, remote: SocketAddr, tls: Arc<TlsServer>, conn: Conn) {
    let limit = conn.limits.header_read_timeout;
    let stream = match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %remote, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(PeerIdentity::from_cert);
    let consumer = match (&peer, tls.client_consumer()) {
        (Some(p), Some(rule)) => p.consumer(rule).map(Arc::from),
        _ => None,
    };
    let info = ConnInfo {
        remote,
        peer_value: peer_value(remote.ip()),
        scheme: "https",
        tls: Some(Arc::new(TlsConn {
            peer,
            client_cert_header: tls.client_cert_header().cloned(),
            consumer,
        })),
    };
    serve(stream, info, conn).await;
}

/// Waits, holding nothing but the socket, until a cleartext client sends its
/// first bytes: a browser's preconnect or a pool's spare connection then costs
/// its socket and this small future, not hyper's buffers and connection state
/// (about 3 KB more each, `bench/idle.py`). `false` when the client said
/// nothing within the header read timeout or the listener is shutting down:
/// the connection is dropped, as hyper's own header timer would have.
async fn first_bytes(stream: &TcpStream, conn: &Conn) -> bool {
    let mut shutdown = conn.drain.shutdown.clone();
    if *shutdown.borrow() {
        return false;
    }
    let deadline = conn.accepted + conn.limits.header_read_timeout;
    // `peek`, not `readable()`: a freshly registered socket reports itself
    // readable before anything arrived (tested below); peeking one byte
    // retries past that, and sees a client that closed (0 bytes).
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        _ = shutdown.changed() => false,
    }
}

/// Serves HTTP/1.1 or HTTP/2 (chosen by the client's preface) on one connection.
async fn serve<I>(io: I, info: ConnInfo, conn: Conn)
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
    let remote = info.remote;
    let activity = Arc::new(idle::Activity::opened_at(accepted));
    let seen = activity.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let info = info.clone();
        let request = seen.start();
        async move {
            // Boxed: hyper keeps room for the service's future in every
            // connection from accept to close (`in_flight`), so inline the
            // request's ~8 KB state machine would be held by each idle
            // keep-alive connection too; boxed, only a request in flight has it.
            let resp = Box::pin(proxy::serve(shared, info, req)).await;
            drop(request);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder(&limits)
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned();
    let deadlines = idle::Deadlines {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        close_grace: limits.drain_timeout,
    };
    {
        let _slot = slot;
        let _alive = drain.alive;
        let _counted = _counted;
        let mut lifetime = idle::Lifetime::new(activity, deadlines, drain.shutdown);
        let mut conn = std::pin::pin!(conn);
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, %remote, "connection ended with an error");
                    }
                    break;
                }
                close = lifetime.next() => match close {
                    idle::Close::Graceful => {
                        tracing::debug!(%remote, "closing connection (idle or shutdown)");
                        conn.as_mut().graceful_shutdown();
                    }
                    idle::Close::Now => {
                        tracing::debug!(%remote, "connection did not close in time; dropped");
                        break;
                    }
                },
            }
        }
    }
}

/// HTTP/1.1 and HTTP/2 settings from the limits current at accept.
fn builder(limits: &crate::config::Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};

    /// What `first_bytes` relies on: a peek waits for real bytes (tokio's
    /// `readable()` is ready at once on a fresh socket, tokio 1.x).
    #[tokio::test]
    async fn a_peek_waits_for_the_clients_first_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut byte = [0u8; 1];
        let peeked = tokio::time::timeout(Duration::from_millis(300), server.peek(&mut byte)).await;
        assert!(peeked.is_err(), "peeked with nothing sent");
        tokio::io::AsyncWriteExt::write_all(&mut client, b"G")
            .await
            .unwrap();
        let peeked = tokio::time::timeout(Duration::from_secs(2), server.peek(&mut byte)).await;
        assert_eq!(peeked.unwrap().unwrap(), 1);
        assert_eq!(&byte, b"G");
    }
}
