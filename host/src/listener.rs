//! Listeners: accept TCP connections, terminate TLS when configured (ALPN
//! `h2` / `http/1.1`), and serve HTTP/1.1 and HTTP/2 (h2c with prior knowledge
//! on cleartext) with the configured protection limits. First stage of the
//! flow; graceful drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::gateway::Shared;
use crate::proxy::{self, ConnInfo, TlsConn, peer_value};
use crate::tls::{PeerIdentity, TlsServer};

/// Accepts connections on `listener` until `shutdown` flips, then waits up to the
/// drain timeout for in-flight requests to finish.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = ConnInfo {
                    remote,
                    client: remote.ip(),
                    peer_value: peer_value(remote.ip()),
                    scheme: "http",
                    tls: None,
                };
                serve(stream, conn, shared.clone(), watcher);
            }
            Some(tls) => {
                tokio::spawn(handshake(
                    stream,
                    remote,
                    tls.clone(),
                    shared.clone(),
                    watcher,
                ));
            }
        }
    }
    drop(listener);
    let drain = shared.snapshot().limits.drain_timeout;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "drain deadline passed; closing remaining connections"
        );
    }
}

/// Runs the TLS handshake off the accept loop, bounded by the header read
/// timeout (a client that never finishes it holds nothing for long).
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Arc<TlsServer>,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    let limit = shared.snapshot().limits.header_read_timeout;
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
    let conn = ConnInfo {
        remote,
        client: remote.ip(),
        peer_value: peer_value(remote.ip()),
        scheme: "https",
        tls: Some(Arc::new(TlsConn {
            peer,
            client_cert_header: tls.client_cert_header().cloned(),
        })),
    };
    serve(stream, conn, shared, watcher);
}

/// Serves HTTP/1.1 or HTTP/2 (chosen by the client's preface) on one connection.
fn serve<I>(io: I, conn: ConnInfo, shared: Arc<Shared>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.snapshot().limits;
    let remote = conn.remote;
    let metrics = &shared.metrics.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(proxy::serve(shared, conn, req).await) }
    });
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned();
    let conn = watcher.watch(conn);
    let metrics = metrics.clone();
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    metrics.connections_active.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %remote, "connection ended with an error");
        }
        metrics.connections_active.fetch_sub(1, Ordering::Relaxed);
    });
}
