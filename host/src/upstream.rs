//! Upstream calls: a pooled keep-alive hyper client per service, the response
//! timeout, and the mapping of failures to gateway errors. Stage five of the flow.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{Body, is_too_large};

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
    /// The connection failed after it was opened (reset, protocol error).
    #[error("upstream connection failed: {0}")]
    Failed(String),
}

/// A pooled HTTP/1.1 client for one service.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    timeout: Duration,
}

impl Upstream {
    /// Builds a client with keep-alive pooling and the service's timeouts.
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self { client, timeout }
    }

    /// Sends `req` (its URI already absolute) and waits for the response head.
    /// The body streams on after this returns.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if is_too_large(&e) => Err(UpstreamError::BodyTooLarge),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Failed(error_chain(&e))),
        }
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
