//! The HTTP/1.1 keep-alive pool: one idle list per instance, connections
//! handed back when their response body has been read to the end.
//!
//! hyper-util's general-purpose pool costs about a tenth of the plain proxy
//! path (a hashed map keyed by scheme and authority on every checkout and
//! return, a spawned task per response to wait for the connection to free up).
//! Here the balancer has already picked the instance, so checkout is a pop
//! from that instance's list and return is a push, done when the body that
//! rode on the connection is dropped after its last byte.

use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;

use super::{UpstreamError, error_chain, failed};
use crate::body::Body;
use crate::body::lease::{IdleList, Leased};

/// HTTP/1.1 connections to one service's instances.
#[derive(Debug)]
pub struct H1Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority` of each instance, in config order.
    targets: Box<[Uri]>,
    idle: Box<[Arc<IdleList>]>,
}

impl H1Pool {
    /// A pool for `targets` (the instances in config order), connecting with
    /// `connector` (TCP options, TLS for `https`).
    pub fn new(connector: HttpsConnector<HttpConnector>, targets: Box<[Uri]>) -> Self {
        let idle = targets.iter().map(|_| Arc::new(IdleList::new())).collect();
        Self {
            connector,
            targets,
            idle,
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to instance `idx` on an idle
    /// connection, or a new one. A request that never left because its idle
    /// connection had just closed goes again on the next one, as hyper-util's
    /// pool does; a fresh connection's failure is final.
    pub async fn send(
        &self,
        idx: usize,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (Some(target), Some(home)) = (self.targets.get(idx), self.idle.get(idx)) else {
            return Err(UpstreamError::Connect(format!("no instance #{idx}")));
        };
        loop {
            let (mut sender, reused) = match home.pop() {
                Some(s) => (s, true),
                // Boxed: the connect future holds a whole connection (TLS
                // state included) and would otherwise grow every request's
                // future, which hyper moves into place per request.
                None => (Box::pin(self.connect(target)).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Failed(
                    "connection closed before the request".into(),
                ));
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // After a 101 the connection belongs to the upgraded
                    // protocol: it must never carry another request.
                    let pooled = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                    return Ok(resp.map(|inner| {
                        Body::Upstream(if pooled {
                            Leased::pooled(inner, sender, home.clone())
                        } else {
                            Leased::unpooled(inner)
                        })
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back,
                    _ => return Err(failed(&e.into_error())),
                },
            }
        }
    }

    async fn connect(&self, target: &Uri) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&*e)))?;
        let io = connector
            .call(target.clone())
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&*e)))?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An upstream that answers every request on a connection with `reply`
    /// and counts the connections it accepted.
    async fn upstream(reply: &'static [u8]) -> (Uri, Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}", l.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (uri, accepted)
    }

    fn pool(target: Uri) -> H1Pool {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(crate::pem::provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                let mut c = HttpConnector::new();
                c.enforce_http(false);
                c
            });
        H1Pool::new(connector, vec![target].into_boxed_slice())
    }

    fn get(host: &str) -> Request<Body> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, host)
            .body(Body::empty())
            .unwrap()
    }

    /// Sends `n` GETs one after the other, reading each body to its end.
    async fn get_n(pool: &H1Pool, uri: &Uri, n: usize) {
        use http_body_util::BodyExt;
        for _ in 0..n {
            let resp = pool.send(0, get(uri.authority().unwrap().as_str())).await;
            let body = resp.unwrap().into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), "ok");
        }
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_is_read() {
        let (uri, accepted) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = pool(uri.clone());
        get_n(&pool, &uri, 5).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle[0].len(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_half_way_closes_its_connection() {
        let (uri, accepted) =
            upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npartial").await;
        let pool = pool(uri.clone());
        let host = uri.authority().unwrap().as_str();
        let resp = pool.send(0, get(host)).await.unwrap();
        drop(resp);
        assert_eq!(pool.idle[0].len(), 0);
        let resp = pool.send(0, get(host)).await.unwrap();
        drop(resp);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_skipped() {
        let (uri, accepted) =
            upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let pool = pool(uri.clone());
        get_n(&pool, &uri, 3).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: Uri = format!("http://{}", l.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(l);
        let pool = pool(uri.clone());
        let err = pool
            .send(0, get(uri.authority().unwrap().as_str()))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    }
}
