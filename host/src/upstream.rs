//! Upstream calls: a pooled keep-alive client per service speaking
//! HTTP/1.1 (our own per-instance pool), HTTP/2 over TLS or h2c (hyper-util's
//! client), TLS verified against the system roots or a CA file, and the
//! mapping of failures to gateway errors. Stage five of the flow.

pub mod pool;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::uri::{Parts, PathAndQuery};
use http::{Request, Response, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use self::pool::H1Pool;
use crate::body::lease::Leased;
use crate::body::{Body, is_too_large};
use crate::config::{ServiceConfig, UpstreamProtocol, UpstreamTls};
use crate::pem::{self, TlsError};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why an upstream call failed; each maps to one status in `proxy::error`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection could be opened (refused, unreachable, connect timeout).
    #[error("upstream connect failed: {0}")]
    Connect(String),
    /// No response head within the service's `timeout`.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The request body went past the listener's limit while streaming.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client stopped sending its request body (`body_read_timeout`).
    #[error("request body read timed out")]
    BodyTimeout,
    /// The connection failed after it was opened (reset, protocol error).
    #[error("upstream connection failed: {0}")]
    Failed(String),
}

/// A pooled client for one service's instances.
#[derive(Debug)]
pub enum Upstream {
    /// HTTP/1.1: a pool per instance.
    Http1(H1Pool),
    /// HTTP/2 (TLS or h2c): hyper-util's client, which multiplexes.
    H2 {
        /// The shared client (boxed: several times the size of the pool).
        client: Box<Client<Connector, Body>>,
        /// `scheme://authority` of each instance, in config order.
        targets: Box<[Uri]>,
    },
}

impl Upstream {
    /// Builds a client with keep-alive pooling, the service's connect timeout,
    /// protocol and TLS settings.
    pub fn new(cfg: &ServiceConfig) -> Result<Self, TlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        // The TLS layer decides per URI scheme.
        http.enforce_http(false);
        let https = cfg
            .instances
            .iter()
            .any(|i| i.url.scheme_str() == Some("https"));
        let tls = client_tls(&cfg.tls, https)?;
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match &cfg.tls.server_name {
            Some(name) => match ServerName::try_from(name.clone()) {
                Ok(n) => builder.with_server_name_resolver(FixedServerNameResolver::new(n)),
                Err(e) => return Err(TlsError::Config(format!("server_name `{name}`: {e}"))),
            },
            None => builder,
        };
        let targets: Box<[Uri]> = cfg
            .instances
            .iter()
            .map(|i| {
                let mut parts = i.url.clone().into_parts();
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
                Uri::from_parts(parts).unwrap_or_else(|_| i.url.clone())
            })
            .collect();
        if cfg.protocol == UpstreamProtocol::Http1 {
            let connector = builder.enable_http1().wrap_connector(http);
            return Ok(Self::Http1(H1Pool::new(connector, targets)));
        }
        let connector = builder.enable_http2().wrap_connector(http);
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .http2_only(true);
        Ok(Self::H2 {
            client: Box::new(client.build(connector)),
            targets,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) to instance `idx` (its index
    /// in the service's config) and waits up to `timeout` for the response
    /// head. The body streams on after this returns.
    pub async fn send(
        &self,
        idx: usize,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        let sent = async {
            match self {
                Self::Http1(pool) => pool.send(idx, req).await,
                Self::H2 { client, targets } => {
                    let Some(target) = targets.get(idx) else {
                        return Err(UpstreamError::Connect(format!("no instance #{idx}")));
                    };
                    let req = absolute(req, target);
                    match client.request(req).await {
                        Ok(resp) => Ok(resp.map(|b| Body::Upstream(Leased::unpooled(b)))),
                        Err(e)
                            if e.is_connect()
                                && !is_too_large(&e)
                                && !crate::body::is_timed_out(&e) =>
                        {
                            Err(UpstreamError::Connect(error_chain(&e)))
                        }
                        Err(e) => Err(failed(&e)),
                    }
                }
            }
        };
        tokio::time::timeout(timeout, sent)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }
}

/// `req` with its origin-form URI made absolute against `target`, as
/// hyper-util's client picks its connection by scheme and authority.
fn absolute(mut req: Request<Body>, target: &Uri) -> Request<Body> {
    let mut parts = Parts::default();
    parts.scheme = target.scheme().cloned();
    parts.authority = target.authority().cloned();
    parts.path_and_query = req.uri().path_and_query().cloned();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req
}

/// The system's CA certificates, read once (a few hundred files).
static SYSTEM_ROOTS: LazyLock<Arc<rustls::RootCertStore>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "skipping a system CA certificate");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    Arc::new(roots)
});

fn client_tls(tls: &UpstreamTls, https: bool) -> Result<ClientConfig, TlsError> {
    let roots = match &tls.ca_file {
        Some(ca) => Arc::new(pem::root_store(ca)?),
        None if https => SYSTEM_ROOTS.clone(),
        None => Arc::new(rustls::RootCertStore::empty()),
    };
    let builder = ClientConfig::builder_with_provider(pem::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match &tls.client_cert {
        Some(p) => builder
            .with_client_auth_cert(pem::load_certs(&p.cert_file)?, pem::load_key(&p.key_file)?)
            .map_err(|e| TlsError::Config(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A failure after the connection was open: the request body past its limit,
/// or anything else that broke the exchange.
fn failed(e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    if is_too_large(e) {
        UpstreamError::BodyTooLarge
    } else if crate::body::is_timed_out(e) {
        UpstreamError::BodyTimeout
    } else {
        UpstreamError::Failed(error_chain(e))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
