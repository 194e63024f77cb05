//! Stage five on a cached route: after the request hooks (so authentication
//! has run), a fresh stored answer is served here; a miss fetches once for
//! every concurrent miss of its key and fills the store while its client
//! reads; a stale one is revalidated, served while refreshed, or stands in
//! for a failing upstream. Every answer says what happened in
//! `Cache-Status`.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, Method, Response, header};

use super::forward;
use super::headers::strip_hop_by_hop;
use crate::body::Body;
use crate::cache::{
    CacheControl, Filled, Freshness, Join, Key, Object, Outcome, RouteCache, STALE_IF_ERROR,
    STALE_WHILE_REVALIDATE, Slot, State, Status, Store, storable,
};
use crate::config::CachePolicy;
use crate::dispatch::{self, Target};
use crate::error::GatewayError;
use crate::exchange::{Exchange, RequestHead, Upstreamed};
use crate::plugin::ChainRun;
use crate::snapshot::{Route, Service};

const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The answer on a cached route, with its `Cache-Status`; what happened is
/// counted and noted in the trail for the access log.
pub async fn answer(
    route: &Route,
    rc: &RouteCache,
    run: &ChainRun,
    ex: &mut Exchange,
    upgrade: bool,
) -> Result<Response<Body>, GatewayError> {
    let service = route
        .target
        .service(ex.view.client_ip, &ex.view.req.headers);
    let key = Key::primary(&route.id, &service.name, &rc.policy, &ex.view);
    let credentials = ex.view.req.headers.contains_key(header::AUTHORIZATION)
        || ex.view.attribute("consumer").is_some();
    let head = run.upstream_head(&mut ex.view);
    let mut req = Lookup {
        route,
        rc,
        service,
        key,
        credentials,
        head_only: head.method == Method::HEAD,
        client: ex.view.client_ip,
        pass: false,
        head,
    };
    let (mut resp, status) = req.serve(ex, upgrade).await?;
    rc.metrics.record(&status);
    ex.trail.cache = Some(status.outcome);
    resp.headers_mut().append(CACHE_STATUS, status.header());
    Ok(resp)
}

/// One request's way through the cache.
struct Lookup<'a> {
    route: &'a Route,
    rc: &'a RouteCache,
    service: &'a Arc<Service>,
    key: Key,
    credentials: bool,
    /// A `HEAD`: served from a stored `GET`, never filling.
    head_only: bool,
    client: std::net::IpAddr,
    /// The key's last answer was not storable.
    pass: bool,
    head: RequestHead,
}

/// What the store had for a request.
enum Found {
    Object(Arc<Object>),
    /// The key's last answer was not storable.
    Pass,
    Nothing,
}

impl Lookup<'_> {
    async fn serve(
        &mut self,
        ex: &mut Exchange,
        upgrade: bool,
    ) -> Result<(Response<Body>, Status), GatewayError> {
        let rc = self.rc;
        let policy = &rc.policy;
        let cc = if policy.honor_client_cache_control {
            CacheControl::parse(&self.head.headers)
        } else {
            CacheControl::default()
        };
        if let Some(reason) = bypass(&self.head, ex, upgrade, &cc) {
            return self.bypass(ex, reason).await;
        }
        let head_only = self.head_only;
        let now = Instant::now();
        match self.find() {
            Found::Object(obj) => {
                let state = if cc.no_cache {
                    State::Stale
                } else {
                    obj.state(now, cc.max_age)
                };
                match state {
                    State::Fresh => Ok(self.hit(&obj, now, Status::new(Outcome::Hit))),
                    State::StaleWhileRevalidate => {
                        self.refresh_in_background(&obj);
                        let s = Status::new(Outcome::Stale).because(STALE_WHILE_REVALIDATE);
                        Ok(self.hit(&obj, now, s))
                    }
                    State::Stale if cc.only_if_cached => Err(GatewayError::NotCached),
                    State::Stale => self.fetch(ex, Some(obj), head_only, policy.coalesce).await,
                }
            }
            _ if cc.only_if_cached => Err(GatewayError::NotCached),
            // A HEAD fills nothing: it has no body to store.
            _ if head_only => self.fetch(ex, None, true, false).await,
            Found::Pass => {
                // Known not storable: the client's validators go upstream
                // as they are, and a 304 comes back to it.
                self.pass = true;
                self.fetch(ex, None, false, false).await
            }
            Found::Nothing => self.fetch(ex, None, false, policy.coalesce).await,
        }
    }

    /// The stored object for this request (its variant, when it named `Vary`).
    fn find(&self) -> Found {
        let store = &self.rc.store;
        match store.get(&self.key) {
            Some(Slot::Object(o)) => Found::Object(o),
            Some(Slot::Vary(names)) => {
                match store.get(&self.key.variant(&names, &self.head.headers)) {
                    Some(Slot::Object(o)) => Found::Object(o),
                    _ => Found::Nothing,
                }
            }
            Some(Slot::Pass) => Found::Pass,
            None => Found::Nothing,
        }
    }

    /// A stored answer: a `304` when the client's validators match it.
    fn hit(&self, obj: &Object, now: Instant, mut status: Status) -> (Response<Body>, Status) {
        status.ttl = Some(obj.ttl(now));
        let resp = if obj.not_modified_for(&self.head.headers) {
            obj.not_modified(now)
        } else {
            obj.response(now, self.head_only)
        };
        (resp, status)
    }

    /// Not looked up: forwarded as it is. An unsafe method that succeeded
    /// drops what is stored for its key (RFC 9111 §4.4).
    async fn bypass(
        &mut self,
        ex: &mut Exchange,
        reason: &'static str,
    ) -> Result<(Response<Body>, Status), GatewayError> {
        let unsafe_method = !matches!(
            self.head.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let head = self.head.take();
        let body = ex.take_body();
        let resp = forward::send(self.route, self.service, head, body, ex).await?;
        if unsafe_method && (resp.status().is_success() || resp.status().is_redirection()) {
            self.rc.store.remove(&self.key);
        }
        let mut status = Status::new(Outcome::Bypass).because(reason);
        status.fwd_status = Some(resp.status().as_u16());
        Ok((resp, status))
    }

    /// Goes upstream: for a miss, or to revalidate `stale`. With `coalesce`,
    /// only one request per key does; the others wait for what it stores.
    async fn fetch(
        &mut self,
        ex: &mut Exchange,
        stale: Option<Arc<Object>>,
        head_only: bool,
        coalesce: bool,
    ) -> Result<(Response<Body>, Status), GatewayError> {
        let mut fill = None;
        let mut collapsed = false;
        if coalesce {
            match self.rc.store.join(&self.key) {
                Join::Lead(f) => fill = Some(f),
                Join::Wait(rx) => {
                    let how = crate::cache::wait(rx, self.rc.policy.coalesce_timeout).await;
                    collapsed = true;
                    if how == Filled::Stored
                        && let Found::Object(obj) = self.find()
                    {
                        let now = Instant::now();
                        if obj.state(now, None) != State::Stale {
                            return Ok(self.hit(&obj, now, Status::new(Outcome::Coalesced)));
                        }
                    }
                }
            }
        }
        let mut head = self.head.clone();
        // The store wants the whole answer, whatever the client holds; the
        // client's validators are checked against it below.
        if !self.pass {
            head.headers.remove(header::IF_NONE_MATCH);
            head.headers.remove(header::IF_MODIFIED_SINCE);
        }
        if let Some(obj) = &stale {
            add_validators(&mut head.headers, obj);
        }
        if head_only {
            head.method = Method::HEAD;
        }
        let sent = Instant::now();
        let result = forward::send(self.route, self.service, head, Body::empty(), ex).await;
        let resp = match result {
            Ok(resp) if !resp.status().is_server_error() => resp,
            failed => {
                let now = Instant::now();
                if let Some(obj) = stale.as_ref().filter(|o| o.usable_on_error(now)) {
                    let mut s = Status::new(Outcome::Stale).because(STALE_IF_ERROR);
                    s.fwd_status = failed.as_ref().ok().map(|r| r.status().as_u16());
                    return Ok(self.hit(obj, now, s));
                }
                let resp = failed?;
                let mut s = Status::new(Outcome::Miss);
                s.fwd_status = Some(resp.status().as_u16());
                // A 5xx is a failure, not a verdict on the key: the waiters
                // fetch for themselves, and what is stored stays.
                drop(fill);
                return Ok((resp, s));
            }
        };
        if resp.status() == http::StatusCode::NOT_MODIFIED
            && let Some(obj) = &stale
        {
            return Ok(self.revalidated(obj, resp.headers(), sent, fill));
        }
        let mut status = Status::new(if collapsed {
            Outcome::Coalesced
        } else {
            Outcome::Miss
        });
        status.fwd_status = Some(resp.status().as_u16());
        if head_only {
            return Ok((resp, status));
        }
        let policy = &self.rc.policy;
        let freshness = storable(resp.status(), resp.headers(), self.credentials, policy)
            .and_then(|f| fits(&resp, policy).map(|()| f));
        match freshness {
            Err(reason) => {
                if let Some(f) = fill {
                    f.finish(Filled::Uncacheable);
                }
                Ok((resp, status.because(reason)))
            }
            Ok(freshness) => {
                status.stored = true;
                let resp = self.fill(resp, freshness, sent, fill);
                Ok((resp, status))
            }
        }
    }

    /// The upstream confirmed `obj` with a `304`: the refreshed object is
    /// stored and served.
    fn revalidated(
        &self,
        obj: &Object,
        update: &HeaderMap,
        sent: Instant,
        fill: Option<crate::cache::Fill>,
    ) -> (Response<Body>, Status) {
        let now = Instant::now();
        let mut status = Status::new(Outcome::Revalidated);
        status.fwd_status = Some(304);
        let store = &self.rc.store;
        match obj.refreshed(update, sent, self.credentials, &self.rc.policy) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                store.put(&self.key, &self.head.headers, fresh.clone());
                if let Some(f) = fill {
                    f.finish(Filled::Stored);
                }
                status.stored = true;
                self.hit(&fresh, now, status)
            }
            Err(reason) => {
                store.remove(&self.key);
                if let Some(f) = fill {
                    f.finish(Filled::Uncacheable);
                }
                self.hit(obj, now, status.because(reason))
            }
        }
    }

    /// The response streams to its client while the store keeps a copy;
    /// the object is stored, and the waiters woken, when the body ends.
    fn fill(
        &self,
        mut resp: Response<Body>,
        freshness: Freshness,
        sent: Instant,
        fill: Option<crate::cache::Fill>,
    ) -> Response<Body> {
        let mut headers = resp.headers().clone();
        strip_hop_by_hop(&mut headers);
        let stored_status = resp.status();
        let store = self.rc.store.clone();
        let key = self.key.clone();
        // The request's headers pick the variant, when the answer names Vary.
        let request = if headers.contains_key(header::VARY) {
            self.head.headers.clone()
        } else {
            HeaderMap::new()
        };
        let on_done = Box::new(move |copy: Option<bytes::Bytes>| {
            let Some(body) = copy else {
                // Dropping the fill tells the waiters to fetch themselves.
                return;
            };
            let obj = Object::new(stored_status, headers, body, freshness, sent);
            store.put(&key, &request, Arc::new(obj));
            if let Some(f) = fill {
                f.finish(Filled::Stored);
            }
        });
        let body = std::mem::replace(resp.body_mut(), Body::empty());
        *resp.body_mut() = Body::tee(body, self.rc.policy.max_object_bytes, on_done);
        resp
    }

    /// Serves stale now and revalidates off the request path, once per key.
    fn refresh_in_background(&self, obj: &Arc<Object>) {
        let Join::Lead(fill) = self.rc.store.join(&self.key) else {
            return;
        };
        let mut head = self.head.clone();
        head.method = Method::GET;
        head.headers.remove(header::IF_NONE_MATCH);
        head.headers.remove(header::IF_MODIFIED_SINCE);
        add_validators(&mut head.headers, obj);
        let refresh = Refresh {
            store: self.rc.store.clone(),
            policy: self.rc.policy.clone(),
            service: self.service.clone(),
            preserve_host: self.route.preserve_host,
            credentials: self.credentials,
            key: self.key.clone(),
            obj: obj.clone(),
            client: self.client,
        };
        tokio::spawn(refresh.run(head, fill));
    }
}

/// A background revalidation (`stale-while-revalidate`).
struct Refresh {
    store: Arc<Store>,
    policy: Arc<CachePolicy>,
    service: Arc<Service>,
    preserve_host: bool,
    credentials: bool,
    key: Key,
    obj: Arc<Object>,
    client: std::net::IpAddr,
}

impl Refresh {
    async fn run(self, head: RequestHead, fill: crate::cache::Fill) {
        let to = Target {
            service: &self.service,
            client: self.client,
            trace: None,
            preserve_host: self.preserve_host,
            retry_non_idempotent: false,
            terms: &dispatch::SERVICE_TERMS,
        };
        let request = head.headers.clone();
        let sent = Instant::now();
        let mut learned = Upstreamed::default();
        let Ok(resp) = dispatch::send(&to, head, Body::empty(), &mut learned).await else {
            // Failed: the stale object stays for stale-if-error.
            return;
        };
        if resp.status() == http::StatusCode::NOT_MODIFIED {
            if let Ok(fresh) =
                self.obj
                    .refreshed(resp.headers(), sent, self.credentials, &self.policy)
            {
                self.store.put(&self.key, &request, Arc::new(fresh));
                fill.finish(Filled::Stored);
            }
            return;
        }
        if resp.status().is_server_error() {
            return;
        }
        let Ok(freshness) = storable(
            resp.status(),
            resp.headers(),
            self.credentials,
            &self.policy,
        ) else {
            fill.finish(Filled::Uncacheable);
            return;
        };
        let (parts, body) = resp.into_parts();
        let Ok(bytes) = crate::body::collect(body, self.policy.max_object_bytes).await else {
            return;
        };
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let obj = Object::new(parts.status, headers, bytes, freshness, sent);
        self.store.put(&self.key, &request, Arc::new(obj));
        fill.finish(Filled::Stored);
    }
}

/// Why a request is not looked up, if it is not.
fn bypass(
    head: &RequestHead,
    ex: &Exchange,
    upgrade: bool,
    cc: &CacheControl,
) -> Option<&'static str> {
    use http_body::Body as _;
    if head.method != Method::GET && head.method != Method::HEAD {
        return Some("method");
    }
    if upgrade {
        return Some("upgrade");
    }
    if head.headers.contains_key(header::RANGE) {
        return Some("range");
    }
    if !ex.body.is_end_stream() {
        return Some("request-body");
    }
    if cc.no_store {
        return Some("request-no-store");
    }
    None
}

/// A declared length over the object bound: streamed through, not stored.
fn fits(resp: &Response<Body>, policy: &CachePolicy) -> Result<(), &'static str> {
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    match declared {
        Some(n) if n > policy.max_object_bytes as u64 => Err("too-large"),
        _ => Ok(()),
    }
}

/// The stored object's validators on a revalidation request.
fn add_validators(headers: &mut HeaderMap, obj: &Object) {
    let (etag, modified) = obj.validators();
    if let Some(e) = etag {
        headers.insert(header::IF_NONE_MATCH, e.clone());
    }
    if let Some(m) = modified {
        headers.insert(header::IF_MODIFIED_SINCE, m.clone());
    }
}
