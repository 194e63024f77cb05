//! A route's plugin chain: global attachments, then the route's own, in config
//! order for requests and in reverse for responses. Applies each attachment's
//! `on_error` policy, so callers only see failures that must fail the request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::bindings::types::{BodyAction, Features, RequestAction, ResponseAction};
use super::pool::{Call, Outcome, Pool};
use super::{Exchange, PluginError};
use crate::config::{AttachmentConfig, OnError};
use crate::metrics::PluginMetrics;
use std::sync::atomic::Ordering;

/// A plugin attached to a route with its config and the pool running it.
/// Immutable: a hot swap builds a new snapshot with a new attachment, and
/// requests in flight keep the one they started with.
#[derive(Debug)]
pub struct Attachment {
    cfg: AttachmentConfig,
    pool: Option<Arc<Pool>>,
}

impl Attachment {
    /// An attachment running `pool` (or nothing yet, for an optional plugin whose
    /// file is missing).
    pub fn new(cfg: AttachmentConfig, pool: Option<Arc<Pool>>) -> Self {
        Self { cfg, pool }
    }

    /// The attachment's config.
    pub fn config(&self) -> &AttachmentConfig {
        &self.cfg
    }

    /// The running version's hash, if any.
    pub fn version(&self) -> Option<Arc<str>> {
        self.pool.as_ref().map(|p| p.version.clone())
    }

    /// The running pool, if any.
    pub fn pool(&self) -> Option<Arc<Pool>> {
        self.pool.clone()
    }
}

/// An ordered list of attachments, each with its metrics on this route.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    items: Arc<[Arc<Attachment>]>,
    metrics: Arc<[Arc<PluginMetrics>]>,
    counters: Arc<[Arc<str>]>,
}

/// A response a plugin produced.
#[derive(Debug)]
pub struct PluginResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The plugin that answered (for the access log).
    pub plugin: Arc<str>,
}

/// What the request should do next.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the upstream.
    Continue,
    /// Answer with this response.
    Respond(PluginResponse),
}

/// What a response-side hook decided.
#[derive(Debug)]
pub enum ResponseFlow {
    /// Keep the (possibly edited) head.
    Continue,
    /// Replace the whole response.
    Replace(PluginResponse),
}

/// What the body hooks decided.
#[derive(Debug)]
pub enum BodyFlow {
    /// Send this body.
    Body(Bytes),
    /// Answer with this response instead.
    Respond(PluginResponse),
}

impl Chain {
    /// A chain of `items` in order; `metrics` and `counters` (each
    /// attachment's rate-limit namespace) hold one entry per item.
    pub fn new(
        items: Vec<Arc<Attachment>>,
        metrics: Vec<Arc<PluginMetrics>>,
        counters: Vec<Arc<str>>,
    ) -> Self {
        debug_assert_eq!(items.len(), metrics.len());
        debug_assert_eq!(items.len(), counters.len());
        Self {
            items: items.into(),
            metrics: metrics.into(),
            counters: counters.into(),
        }
    }

    /// True when no plugin is attached.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each attachment's rate-limit namespace, by position (shared by every
    /// request on the route: one reference count per request, not per call).
    pub fn counters(&self) -> Arc<[Arc<str>]> {
        self.counters.clone()
    }

    /// The attachments in order.
    pub fn items(&self) -> &[Arc<Attachment>] {
        &self.items
    }

    /// Pins the current version of every attachment for one request.
    pub fn start(&self) -> ChainRun {
        ChainRun {
            pools: self.items.iter().map(|a| a.pool()).collect(),
            metrics: self.metrics.clone(),
            ran: 0,
            calls: None,
        }
    }
}

/// One request's pass through a chain, on the versions current when it started.
#[derive(Debug)]
pub struct ChainRun {
    pools: Vec<Option<Arc<Pool>>>,
    metrics: Arc<[Arc<PluginMetrics>]>,
    /// How many plugins ran `on-request` (only those see the response).
    ran: usize,
    /// Calls made, when the request is traced.
    calls: Option<Vec<CallRecord>>,
}

/// One hook call, for a trace span.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Plugin name.
    pub plugin: Arc<str>,
    /// `on-request`, `on-response`, ...
    pub hook: &'static str,
    /// Start (wall clock).
    pub start: std::time::SystemTime,
    /// End (wall clock).
    pub end: std::time::SystemTime,
    /// Whether the call failed.
    pub failed: bool,
}

impl ChainRun {
    /// Records every hook call from now on (for trace spans).
    pub fn record_calls(&mut self) {
        self.calls = Some(Vec::new());
    }

    /// The calls recorded so far.
    pub fn take_calls(&mut self) -> Vec<CallRecord> {
        self.calls.take().unwrap_or_default()
    }

    fn wants(&self, f: Features) -> bool {
        self.pools
            .iter()
            .flatten()
            .any(|p| p.features().contains(f))
    }

    /// Whether any plugin asked for the request body; and the smallest body limit.
    pub fn request_body_limit(&self) -> Option<usize> {
        self.limit_for(Features::REQUEST_BODY, self.pools.len())
    }

    /// Whether a plugin that ran asked for the response body; and its limit.
    pub fn response_body_limit(&self) -> Option<usize> {
        self.limit_for(Features::RESPONSE_BODY, self.ran)
    }

    fn limit_for(&self, f: Features, upto: usize) -> Option<usize> {
        self.pools[..upto]
            .iter()
            .flatten()
            .filter(|p| p.features().contains(f))
            .map(|p| p.config().body_limit)
            .min()
    }

    /// Whether any plugin that ran wants the response head.
    pub fn wants_response(&self) -> bool {
        self.ran > 0 && self.wants(Features::RESPONSE_HEADERS)
    }

    /// Runs `on-request` in order until one responds.
    pub async fn on_request(
        &mut self,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Result<Flow, PluginError>) {
        for i in 0..self.pools.len() {
            if self.pools[i].is_none() {
                continue;
            }
            self.ran = i + 1;
            let Some(pool) = &self.pools[i] else { continue };
            let m = &self.metrics[i];
            ex.attachment = i;
            let (back, result) = invoke(pool, m, &mut self.calls, ex, Call::Request).await;
            ex = back;
            match result {
                Ok(Some(Outcome::Request(RequestAction::Respond(r)))) => {
                    m.short_circuits.fetch_add(1, Ordering::Relaxed);
                    return (ex, Ok(Flow::Respond(convert(r, pool))));
                }
                Ok(_) => {}
                Err(e) => return (ex, Err(e)),
            }
        }
        (ex, Ok(Flow::Continue))
    }

    /// Runs `on-request-body` for the plugins that asked, in order.
    pub async fn on_request_body(
        &mut self,
        ex: Box<Exchange>,
        body: Bytes,
    ) -> (Box<Exchange>, Result<BodyFlow, PluginError>) {
        self.body_hooks(ex, body, Features::REQUEST_BODY, false)
            .await
    }

    /// Runs `on-response` in reverse order over the plugins that ran.
    pub async fn on_response(
        &mut self,
        mut ex: Box<Exchange>,
    ) -> (Box<Exchange>, Result<ResponseFlow, PluginError>) {
        // Disjoint borrows: the pools are read while calls are recorded.
        let Self {
            pools,
            metrics,
            ran,
            calls,
        } = self;
        let ran = pools[..*ran].iter().zip(metrics.iter()).enumerate();
        for (i, (pool, m)) in ran.rev() {
            let Some(pool) = pool else { continue };
            if !pool.features().contains(Features::RESPONSE_HEADERS) {
                continue;
            }
            ex.attachment = i;
            let (back, result) = invoke(pool, m, calls, ex, Call::Response).await;
            ex = back;
            match result {
                Ok(Some(Outcome::Response(ResponseAction::Replace(r)))) => {
                    return (ex, Ok(ResponseFlow::Replace(convert(r, pool))));
                }
                Ok(_) => {}
                Err(e) => return (ex, Err(e)),
            }
        }
        (ex, Ok(ResponseFlow::Continue))
    }

    /// Runs `on-response-body` in reverse order over the plugins that ran and asked.
    pub async fn on_response_body(
        &mut self,
        ex: Box<Exchange>,
        body: Bytes,
    ) -> (Box<Exchange>, Result<BodyFlow, PluginError>) {
        self.body_hooks(ex, body, Features::RESPONSE_BODY, true)
            .await
    }

    async fn body_hooks(
        &mut self,
        mut ex: Box<Exchange>,
        mut body: Bytes,
        f: Features,
        reverse: bool,
    ) -> (Box<Exchange>, Result<BodyFlow, PluginError>) {
        let upto = if reverse { self.ran } else { self.pools.len() };
        let Self {
            pools: all,
            metrics,
            calls,
            ..
        } = self;
        let mut pools: Vec<(usize, &Arc<Pool>, &Arc<PluginMetrics>)> = all[..upto]
            .iter()
            .zip(metrics.iter())
            .enumerate()
            .filter_map(|(i, (p, m))| Some((i, p.as_ref()?, m)))
            .filter(|(_, p, _)| p.features().contains(f))
            .collect();
        if reverse {
            pools.reverse();
        }
        for (i, pool, m) in pools {
            ex.attachment = i;
            let call = if reverse {
                Call::ResponseBody(body.to_vec())
            } else {
                Call::RequestBody(body.to_vec())
            };
            let (back, result) = invoke(pool, m, calls, ex, call).await;
            ex = back;
            match result {
                Ok(Some(Outcome::Body(BodyAction::Replace(b)))) => body = Bytes::from(b),
                Ok(Some(Outcome::Body(BodyAction::Respond(r)))) => {
                    if !reverse {
                        m.short_circuits.fetch_add(1, Ordering::Relaxed);
                    }
                    return (ex, Ok(BodyFlow::Respond(convert(r, pool))));
                }
                Ok(_) => {}
                Err(e) => return (ex, Err(e)),
            }
        }
        (ex, Ok(BodyFlow::Body(body)))
    }
}

/// One hook call with the attachment's `on_error` applied in one place: a
/// failure under `allow` becomes `Ok(None)` ("skip this plugin").
async fn invoke(
    pool: &Arc<Pool>,
    m: &PluginMetrics,
    calls: &mut Option<Vec<CallRecord>>,
    ex: Box<Exchange>,
    call: Call,
) -> (Box<Exchange>, Result<Option<Outcome>, PluginError>) {
    let hook = match &call {
        Call::Request => "on-request",
        Call::RequestBody(_) => "on-request-body",
        Call::Response => "on-response",
        Call::ResponseBody(_) => "on-response-body",
    };
    let started = std::time::Instant::now();
    let wall = calls.is_some().then(std::time::SystemTime::now);
    let (ex, result) = pool.invoke(ex, call).await;
    m.calls.fetch_add(1, Ordering::Relaxed);
    m.duration.record(started.elapsed());
    if let (Some(calls), Some(start)) = (calls.as_mut(), wall) {
        calls.push(CallRecord {
            plugin: pool.config().name.clone(),
            hook,
            start,
            end: std::time::SystemTime::now(),
            failed: result.is_err(),
        });
    }
    if let Err(e) = &result {
        let counter = match e {
            PluginError::Timeout { .. } => &m.timeouts,
            _ => &m.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let result = match result {
        Ok(outcome) => Ok(Some(outcome)),
        // Every instance taken is load, not a broken plugin: skipping under
        // `allow` would let a flood of requests past an auth or rate-limit
        // plugin. It answers 503 `plugin_busy` whatever `on_error` says.
        Err(e @ PluginError::Busy { .. }) => Err(e),
        Err(e) => match pool.config().on_error {
            OnError::Allow => {
                tracing::warn!(plugin = &*pool.config().name, error = %e, "plugin failed; skipped (on_error: allow)");
                Ok(None)
            }
            OnError::Deny => Err(e),
        },
    };
    (ex, result)
}

fn convert(r: super::bindings::types::Response, pool: &Pool) -> PluginResponse {
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for h in r.headers {
        match (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::warn!(
                plugin = &*pool.config().name,
                header = h.name,
                "invalid header in plugin response; dropped"
            ),
        }
    }
    PluginResponse {
        status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body: Bytes::from(r.body),
        plugin: pool.config().name.clone(),
    }
}
