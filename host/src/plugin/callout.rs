//! Plugin callouts: HTTP requests a plugin sends to the services its
//! attachment is granted (`callouts:` in the config), through the same
//! [`dispatch`](crate::dispatch) as proxied requests (balancer, pools, TLS,
//! retries, breaker, tracing). The guest waits as for any function call; the
//! host awaits the I/O without holding a thread.

mod cache;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use tokio::time::Instant;

use crate::body::{Body, CollectError, collect};
use crate::config::AttachmentConfig;
use crate::dispatch::{self, Target};
use crate::error::GatewayError;
use crate::exchange::{RequestHead, Upstreamed};
use crate::metrics::CalloutMetrics;
use crate::plugin::PluginRuntime;
use crate::plugin::bindings::callout::{Error, Request, Response};
use crate::service::Service;
use crate::telemetry::trace::{Span, TraceContext};

/// What one attachment may call, resolved against the services of the
/// snapshot it belongs to (a reload resolves them again).
#[derive(Debug)]
pub struct Grants {
    services: Box<[(Arc<Service>, Arc<CalloutMetrics>)]>,
    timeout: Duration,
    total: Duration,
    max_body: usize,
    cache: cache::AnswerCache,
}

impl Grants {
    /// The grants of `cfg`, or `None` when it lists no callouts (the
    /// common case costs nothing per call). Validation has checked that
    /// every name is a service.
    pub fn new(
        cfg: &AttachmentConfig,
        services: &[Arc<Service>],
        runtime: &PluginRuntime,
    ) -> Option<Arc<Self>> {
        if cfg.callouts.is_empty() {
            return None;
        }
        let metrics = runtime.metrics();
        let store = runtime.shared(&cfg.name).callout_cache.clone();
        let services = cfg
            .callouts
            .iter()
            .filter_map(|name| services.iter().find(|s| s.name == *name))
            .map(|s| (s.clone(), metrics.callouts(&cfg.name, &s.name)))
            .collect();
        Some(Arc::new(Self {
            services,
            timeout: cfg.callout_timeout,
            total: cfg.callout_total_timeout,
            max_body: cfg.callout_max_body,
            cache: cache::AnswerCache::new(store, cfg.callout_cache_ttl),
        }))
    }

    /// Every granted service name, in config order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|(s, _)| &*s.name)
    }
}

/// What one hook call may reach: the grants, the request's client and trace,
/// and the hook's deadline for all its waiting. The pool puts it in the
/// instance's store for the call and takes it back (with the spans) after.
#[derive(Debug)]
pub struct Scope {
    grants: Arc<Grants>,
    client: IpAddr,
    trace: Option<TraceContext>,
    deadline: Instant,
    /// Client spans of the callouts' tries, for the request's trace.
    pub spans: Vec<Span>,
}

impl Scope {
    /// A scope starting now: its callouts may wait `callout_total_timeout`.
    pub fn new(grants: Arc<Grants>, client: IpAddr, trace: Option<TraceContext>) -> Self {
        let deadline = Instant::now() + grants.total;
        Self {
            grants,
            client,
            trace,
            deadline,
            spans: Vec::new(),
        }
    }

    /// Sends every request at once and waits for all: the wait is about the
    /// slowest one. Answers are in request order.
    pub async fn send_all(&mut self, requests: Vec<Request>) -> Vec<Result<Response, Error>> {
        let this = &*self;
        let results =
            futures_util::future::join_all(requests.into_iter().map(|r| this.send(r))).await;
        let mut out = Vec::with_capacity(results.len());
        for (result, learned) in results {
            self.spans.extend(learned.spans);
            out.push(result);
        }
        out
    }

    /// One callout, with what its tries learned.
    async fn send(&self, r: Request) -> (Result<Response, Error>, Upstreamed) {
        let mut learned = Upstreamed::default();
        let Some((service, metrics)) = self
            .grants
            .services
            .iter()
            .find(|(s, _)| *s.name == r.service)
        else {
            let granted: Vec<&str> = self.grants.names().collect();
            let msg = format!(
                "`{}` is not granted to this plugin (callouts: [{}])",
                r.service,
                granted.join(", ")
            );
            return (Err(Error::NotGranted(msg)), learned);
        };
        let started = std::time::Instant::now();
        let result = match head(&r) {
            Ok(head) => self.cached(service, head, r, &mut learned).await,
            Err(msg) => Err(Error::InvalidRequest(msg)),
        };
        metrics.duration.record(started.elapsed());
        let counter = match &result {
            Ok(Answer::Cached(_)) => &metrics.cached,
            Ok(Answer::Sent(_)) => &metrics.answered,
            Err(Error::NotGranted(_) | Error::InvalidRequest(_)) => &metrics.refused,
            Err(Error::Timeout) => &metrics.timeouts,
            Err(Error::Unavailable(_) | Error::TooLarge) => &metrics.failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (result.map(Answer::into_response), learned)
    }

    /// The kept answer when the cache has a fresh one, else the service's
    /// (kept if it may be).
    async fn cached(
        &self,
        service: &Arc<Service>,
        head: RequestHead,
        r: Request,
        learned: &mut Upstreamed,
    ) -> Result<Answer, Error> {
        let ask = self.grants.cache.ask(&service.name, &head, &r.body);
        if let Some(hit) = ask.as_ref().and_then(|a| self.grants.cache.get(a)) {
            return Ok(Answer::Cached(hit));
        }
        let answer = self.call(service, head, r, learned).await?;
        if let Some(ask) = ask {
            self.grants.cache.put(ask, &answer);
        }
        Ok(Answer::Sent(answer))
    }

    /// Sends through the service's dispatch and reads the whole answer,
    /// within the callout's timeout and what is left of the hook's bound.
    async fn call(
        &self,
        service: &Arc<Service>,
        head: RequestHead,
        r: Request,
        learned: &mut Upstreamed,
    ) -> Result<Response, Error> {
        let asked = r.timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let timeout = asked
            .map_or(self.grants.timeout, |t| t.min(self.grants.timeout))
            .min(self.deadline.saturating_duration_since(Instant::now()));
        if timeout.is_zero() {
            return Err(Error::Timeout);
        }
        let to = Target {
            service,
            client: self.client,
            trace: self.trace.as_ref(),
            preserve_host: false,
            retry_non_idempotent: false,
            terms: &dispatch::SERVICE_TERMS,
        };
        let max = self.grants.max_body;
        let exchange = async {
            let resp = dispatch::send(&to, head, Body::full(Bytes::from(r.body)), learned)
                .await
                .map_err(unavailable)?;
            let (parts, body) = resp.into_parts();
            let body = collect(body, max).await.map_err(|e| match e {
                CollectError::TooLarge => Error::TooLarge,
                CollectError::TimedOut => Error::Timeout,
                CollectError::Stream(e) => Error::Unavailable(format!("answer body: {e}")),
            })?;
            Ok(Response {
                status: parts.status.as_u16(),
                headers: super::host_api::all(&parts.headers),
                body: body.to_vec(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout),
        }
    }
}

/// Where an answer came from (for the metrics).
enum Answer {
    Cached(Response),
    Sent(Response),
}

impl Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Cached(r) | Self::Sent(r) => r,
        }
    }
}

/// The request head a callout sends, or why it is not valid HTTP.
fn head(r: &Request) -> Result<RequestHead, String> {
    let method = Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", r.method))?;
    if !r.path.starts_with('/') {
        return Err(format!("path `{}` must start with `/`", r.path));
    }
    let uri: Uri = r
        .path
        .parse()
        .map_err(|_| format!("`{}` is not a valid path and query", r.path))?;
    let mut headers = HeaderMap::with_capacity(r.headers.len() + 1);
    for h in &r.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", h.name))?;
        let value = HeaderValue::from_bytes(&h.value)
            .map_err(|_| format!("the value of `{}` is not a valid header value", h.name))?;
        // The host frames the message and picks the instance's Host.
        if !matches!(
            name,
            header::HOST | header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            headers.append(name, value);
        }
    }
    if !r.body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    }
    let mut head = RequestHead::blank();
    head.method = method;
    head.uri = uri;
    head.headers = headers;
    Ok(head)
}

/// Why no instance answered, as the plugin sees it.
fn unavailable(e: GatewayError) -> Error {
    match e {
        GatewayError::Upstream(crate::upstream::UpstreamError::Timeout(_)) => Error::Timeout,
        GatewayError::ResponseTooLarge => Error::TooLarge,
        e => Error::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::types::Header;

    fn request(method: &str, path: &str, headers: &[(&str, &[u8])]) -> Request {
        Request {
            service: "s".into(),
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_vec(),
                })
                .collect(),
            body: b"{}".to_vec(),
            timeout_ms: None,
        }
    }

    #[test]
    fn the_head_is_checked_and_framed_by_the_host() {
        let h = head(&request(
            "POST",
            "/introspect?x=1",
            &[("host", b"evil"), ("content-length", b"99"), ("x-a", b"1")],
        ))
        .expect("valid");
        assert_eq!(h.method, Method::POST);
        assert_eq!(h.uri, "/introspect?x=1");
        assert!(h.headers.get("host").is_none());
        assert_eq!(h.headers["content-length"], "2");
        assert_eq!(h.headers["x-a"], "1");
    }

    #[test]
    fn invalid_requests_say_why() {
        assert!(head(&request("GET", "http://elsewhere/", &[])).is_err());
        assert!(head(&request("GE T", "/", &[])).is_err());
        assert!(head(&request("GET", "/", &[("bad name", b"v")])).is_err());
        assert!(head(&request("GET", "/", &[("x", b"a\nb")])).is_err());
    }
}
