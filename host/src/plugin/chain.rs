//! A route's plugin chain: global attachments, then the route's own, in config
//! order for requests and in reverse for responses. Applies each attachment's
//! `on_error` policy, so callers only see failures that must fail the request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

mod hook;

use hook::{convert, invoke};

use super::PluginError;
use super::bindings::types::{BodyAction, Features, RequestAction, ResponseAction};
use super::callout::Grants;
use super::pool::{Call, Outcome, Pool};
use super::shadow::{self, Shadow};
use crate::body::Body;
use crate::config::{AttachmentConfig, VersionKey};
use crate::exchange::{Exchange, Phase, PluginView, RequestHead};
use crate::metrics::PluginMetrics;
use std::sync::atomic::Ordering;

/// A plugin attached to a route with its config and the pool running it.
/// Immutable: a hot swap builds a new snapshot with a new attachment, and
/// requests in flight keep the one they started with.
#[derive(Debug)]
pub struct Attachment {
    cfg: AttachmentConfig,
    pool: Option<Arc<Pool>>,
    /// With `versions`: each version's label, weight and pool (`pool` is the first's).
    variants: Vec<Variant>,
    /// With `shadow`: the version run on a copy of each request.
    shadow: Option<Shadow>,
}

/// One version of a plugin with `versions`.
#[derive(Debug)]
pub struct Variant {
    /// The file's stem (`auth-v2`).
    pub label: Arc<str>,
    /// Its share.
    pub weight: u32,
    /// Its pool.
    pub pool: Arc<Pool>,
    /// Requests that ran it (`gatehouse_plugin_version_requests_total`).
    pub requests: Arc<std::sync::atomic::AtomicU64>,
}

impl Attachment {
    /// An attachment running `pool` (or nothing yet, for an optional plugin whose
    /// file is missing).
    pub fn new(cfg: AttachmentConfig, pool: Option<Arc<Pool>>) -> Self {
        Self {
            cfg,
            pool,
            variants: Vec::new(),
            shadow: None,
        }
    }

    /// The same attachment with a shadow version.
    pub fn with_shadow(mut self, shadow: Shadow) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Its shadow version, if any.
    pub fn shadow(&self) -> Option<&Shadow> {
        self.shadow.as_ref()
    }

    /// An attachment running weighted versions (at least one).
    pub fn versions(cfg: AttachmentConfig, variants: Vec<Variant>) -> Self {
        Self {
            cfg,
            pool: variants.first().map(|v| v.pool.clone()),
            variants,
            shadow: None,
        }
    }

    /// Its versions (empty: one file).
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The version this request runs, by the attachment's `version_key`.
    fn pick(&self, view: &PluginView) -> Option<&Variant> {
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        if total == 0 {
            return None;
        }
        let hash = |b: &[u8]| crate::balancer::stable_hash(b);
        let point = match &self.cfg.version_key {
            VersionKey::Random => fastrand::u64(..),
            VersionKey::ClientIp => crate::balancer::ip_hash(view.client_ip),
            VersionKey::Header(h) => view
                .req
                .headers
                .get(h)
                .map_or_else(|| fastrand::u64(..), |v| hash(v.as_bytes())),
            VersionKey::Consumer => view
                .attribute("consumer")
                .map_or_else(|| fastrand::u64(..), |c| hash(c.as_bytes())),
        } % total;
        let mut acc = 0;
        self.variants.iter().find(|v| {
            acc += u64::from(v.weight);
            point < acc
        })
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
    /// Each attachment's callout grants; `None` when no attachment has any.
    grants: Option<Arc<[Option<Arc<Grants>>]>>,
    /// Whether an attachment has `versions` (its version is picked per
    /// request) or a `shadow`.
    versioned: bool,
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

impl PluginResponse {
    /// The response the client gets.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::full(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// What the request does after a stage of hooks.
#[derive(Debug)]
pub enum Flow {
    /// Go on: to the upstream on the request side, to the client on the
    /// response side, with whatever the hooks edited.
    Continue,
    /// Answer with this response: before the upstream is called on the
    /// request side, in place of the upstream's on the response side.
    Respond(PluginResponse),
}

impl Chain {
    /// A chain of `items` in order; `metrics`, `counters` (each
    /// attachment's rate-limit namespace) and `grants` (what each may call
    /// out to) hold one entry per item.
    pub fn new(
        items: Vec<Arc<Attachment>>,
        metrics: Vec<Arc<PluginMetrics>>,
        counters: Vec<Arc<str>>,
        grants: Vec<Option<Arc<Grants>>>,
    ) -> Self {
        debug_assert_eq!(items.len(), metrics.len());
        debug_assert_eq!(items.len(), counters.len());
        debug_assert_eq!(items.len(), grants.len());
        let versioned = items
            .iter()
            .any(|a| !a.variants.is_empty() || a.shadow.is_some());
        Self {
            items: items.into(),
            metrics: metrics.into(),
            versioned,
            counters: counters.into(),
            grants: grants.iter().any(Option::is_some).then(|| grants.into()),
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
            grants: self.grants.clone(),
            items: self.versioned.then(|| self.items.clone()),
            ran: 0,
        }
    }
}

/// One request's pass through a chain, on the versions current when it started.
#[derive(Debug)]
pub struct ChainRun {
    pools: Vec<Option<Arc<Pool>>>,
    metrics: Arc<[Arc<PluginMetrics>]>,
    grants: Option<Arc<[Option<Arc<Grants>>]>>,
    /// The attachments, when one has versions to pick from.
    items: Option<Arc<[Arc<Attachment>]>>,
    /// How many plugins ran `on-request` (only those see the response).
    ran: usize,
}

impl ChainRun {
    /// What plugin `i` may call out to.
    fn grants(&self, i: usize) -> Option<&Arc<Grants>> {
        self.grants.as_ref().and_then(|g| g[i].as_ref())
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
    fn wants_response(&self) -> bool {
        self.ran > 0 && self.wants(Features::RESPONSE_HEADERS)
    }

    /// The head the upstream gets, as the request hooks left it. A copy
    /// stays in the view when response hooks will read the request; and a
    /// body hook edits what it can read, so the upstream is then asked for
    /// an uncompressed answer rather than let a compressed one pass unedited.
    pub fn upstream_head(&self, view: &mut PluginView) -> RequestHead {
        if self.response_body_limit().is_some() {
            view.req.headers.remove(header::ACCEPT_ENCODING);
        }
        if self.wants_response() {
            view.req.clone()
        } else {
            view.req.take()
        }
    }

    /// Runs `on-request` in order until one responds.
    pub async fn on_request(&mut self, ex: &mut Exchange) -> Result<Flow, PluginError> {
        for i in 0..self.pools.len() {
            if self.pools[i].is_none() {
                continue;
            }
            self.ran = i + 1;
            // A plugin with versions runs one of them for the whole request.
            if let Some(v) = self.items.as_ref().and_then(|a| a[i].pick(&ex.view)) {
                self.pools[i] = Some(v.pool.clone());
                v.requests.fetch_add(1, Ordering::Relaxed);
                let name = v.pool.config().name.clone();
                ex.trail.plugin_versions.push((name, v.label.clone()));
            }
            let Some(pool) = &self.pools[i] else { continue };
            let m = &self.metrics[i];
            // The shadow gets the request as the live version does.
            let shadow = self.items.as_ref().and_then(|a| a[i].shadow.as_ref());
            let copy = shadow.map(|_| shadow::copy(&ex.view, i));
            let outcome = invoke(pool, m, self.grants(i), i, ex, Call::Request).await?;
            if let (Some(s), Some(copy), Some(o)) = (shadow, copy, &outcome) {
                s.spawn(copy, shadow::Decision::of(Some(o), false, &ex.view));
            }
            if let Some(Outcome::Request(RequestAction::Respond(r))) = outcome {
                m.short_circuits.fetch_add(1, Ordering::Relaxed);
                return Ok(Flow::Respond(convert(r, pool)));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs `on-request-body`, in order, over the plugins that asked, on the
    /// buffered body; the result becomes the exchange's body.
    pub async fn on_request_body(
        &mut self,
        ex: &mut Exchange,
        body: Bytes,
    ) -> Result<Flow, PluginError> {
        match self.body_hooks(ex, body, Side::Request).await? {
            Ok(b) => {
                let len = HeaderValue::from(b.len());
                ex.view.req.headers.insert(header::CONTENT_LENGTH, len);
                ex.body = Body::full(b);
                Ok(Flow::Continue)
            }
            Err(r) => Ok(Flow::Respond(r)),
        }
    }

    /// Runs `on-response`, in reverse order, over the plugins that ran and
    /// asked, editing `resp` in place.
    pub async fn on_response(
        &mut self,
        ex: &mut Exchange,
        resp: &mut Response<Body>,
    ) -> Result<Flow, PluginError> {
        if !self.wants_response() {
            return Ok(Flow::Continue);
        }
        lend(&mut ex.view, resp);
        let flow = self.response_hooks(ex).await;
        give_back(&mut ex.view, resp);
        flow
    }

    async fn response_hooks(&mut self, ex: &mut Exchange) -> Result<Flow, PluginError> {
        for i in (0..self.ran).rev() {
            let Some(pool) = &self.pools[i] else { continue };
            if !pool.features().contains(Features::RESPONSE_HEADERS) {
                continue;
            }
            let m = &self.metrics[i];
            let outcome = invoke(pool, m, self.grants(i), i, ex, Call::Response).await;
            if let Some(Outcome::Response(ResponseAction::Replace(r))) = outcome? {
                return Ok(Flow::Respond(convert(r, pool)));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs `on-response-body`, in reverse order, over the plugins that ran
    /// and asked, on the buffered body; the result becomes `resp`'s body.
    pub async fn on_response_body(
        &mut self,
        ex: &mut Exchange,
        resp: &mut Response<Body>,
        body: Bytes,
    ) -> Result<Flow, PluginError> {
        lend(&mut ex.view, resp);
        let result = self.body_hooks(ex, body, Side::Response).await;
        give_back(&mut ex.view, resp);
        match result? {
            Ok(b) => {
                let len = HeaderValue::from(b.len());
                resp.headers_mut().insert(header::CONTENT_LENGTH, len);
                *resp.body_mut() = Body::full(b);
                Ok(Flow::Continue)
            }
            Err(r) => Ok(Flow::Respond(r)),
        }
    }

    /// The body hooks of one side: `Err` carries a hook's own response.
    async fn body_hooks(
        &mut self,
        ex: &mut Exchange,
        mut body: Bytes,
        side: Side,
    ) -> Result<Result<Bytes, PluginResponse>, PluginError> {
        let (f, upto) = match side {
            Side::Request => (Features::REQUEST_BODY, self.pools.len()),
            Side::Response => (Features::RESPONSE_BODY, self.ran),
        };
        let mut order: Vec<usize> = (0..upto)
            .filter(|&i| {
                self.pools[i]
                    .as_ref()
                    .is_some_and(|p| p.features().contains(f))
            })
            .collect();
        if side == Side::Response {
            order.reverse();
        }
        for i in order {
            let Some(pool) = &self.pools[i] else { continue };
            let m = &self.metrics[i];
            let call = match side {
                Side::Request => Call::RequestBody(body.to_vec()),
                Side::Response => Call::ResponseBody(body.to_vec()),
            };
            match invoke(pool, m, self.grants(i), i, ex, call).await? {
                Some(Outcome::Body(BodyAction::Replace(b))) => body = Bytes::from(b),
                Some(Outcome::Body(BodyAction::Respond(r))) => {
                    if side == Side::Request {
                        m.short_circuits.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Err(convert(r, pool)));
                }
                _ => {}
            }
        }
        Ok(Ok(body))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Moves `resp`'s head into the view for the response hooks (they read
/// and edit it through the host API)...
fn lend(view: &mut PluginView, resp: &mut Response<Body>) {
    view.phase = Phase::Response;
    view.resp.status = resp.status();
    std::mem::swap(&mut view.resp.headers, resp.headers_mut());
}

/// ...and back into the response, as the hooks left it.
fn give_back(view: &mut PluginView, resp: &mut Response<Body>) {
    *resp.status_mut() = view.resp.status;
    std::mem::swap(&mut view.resp.headers, resp.headers_mut());
    view.phase = Phase::Request;
}
