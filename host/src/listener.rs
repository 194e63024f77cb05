//! Listeners: accept TCP connections (within the connection caps), terminate
//! TLS when configured (ALPN `h2` / `http/1.1`), and serve HTTP/1.1 and
//! HTTP/2 (h2c with prior knowledge on cleartext) with the configured
//! protection limits. First stage of the flow; graceful drain on shutdown.

mod admit;
mod idle;
mod replay;
mod serve;
mod sniff;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub use admit::PerIp;

use crate::data_plane::DataPlane;
use crate::proxy::{ConnInfo, TlsConn, peer_value};
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
                tokio::spawn(serve::serve(stream, info, conn));
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
    serve::serve(stream, info, conn).await;
}
