//! One request to a service, as the proxy's forward stage and plugin
//! callouts send it: bulkhead, circuit breaker, instance selection and the
//! upstream call, repeated under the retry policy. Every try's outcome feeds
//! the breaker and outlier detection, and what the tries learned is returned
//! in an [`Upstreamed`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri, header};
use tokio::time::Instant;

use crate::balancer::{Instance, SelectKey};
use crate::body::{Body, CollectError, collect};
use crate::config::Retries;
use crate::error::GatewayError;
use crate::exchange::{RequestHead, Upstreamed};
use crate::resilience::Outcome;
use crate::resilience::breaker::Ticket;
use crate::resilience::retry::{RetryBudget, TryFailure, backoff, is_idempotent, retries_on};
use crate::service::Service;
use crate::telemetry::trace::{SpanKind, TraceContext, new_span_id};
use crate::upstream::UpstreamError;

/// Where a request goes and what each try needs to know about it.
pub struct Target<'a> {
    /// The service chosen for the request.
    pub service: &'a Arc<Service>,
    /// The client's address (for `ip_hash` balancing).
    pub client: IpAddr,
    /// The request's trace, when tracing is on: each try is a client span.
    pub trace: Option<&'a TraceContext>,
    /// Keep the request's `Host` header instead of the instance's.
    pub preserve_host: bool,
    /// Retry non-idempotent methods too.
    pub retry_non_idempotent: bool,
    /// The route's own timeouts and retries.
    pub terms: &'a Terms,
}

/// A route's own terms for its upstream requests; each one set overrides
/// its service's (the route table's `timeout`, `per_try_timeout`, `retries`).
#[derive(Debug, Default)]
pub struct Terms {
    /// Time to the response head, all tries included.
    pub timeout: Option<Duration>,
    /// Time for one try.
    pub per_try_timeout: Option<Duration>,
    /// The retry policy, with a budget of the route's own.
    pub retries: Option<(Retries, RetryBudget)>,
}

/// No overrides: the service's terms (callouts, cache refreshes).
pub static SERVICE_TERMS: Terms = Terms {
    timeout: None,
    per_try_timeout: None,
    retries: None,
};

/// The terms one request is sent on, the route's over the service's.
struct Effective<'a> {
    timeout: Duration,
    per_try_timeout: Option<Duration>,
    retries: Option<(&'a Retries, Option<&'a RetryBudget>)>,
}

impl<'a> Effective<'a> {
    fn of(terms: &'a Terms, service: &'a Service) -> Self {
        let cfg = &service.config;
        Self {
            timeout: terms.timeout.unwrap_or(cfg.timeout),
            per_try_timeout: terms.per_try_timeout.or(cfg.per_try_timeout),
            retries: match &terms.retries {
                Some((policy, budget)) => Some((policy, Some(budget))),
                None => cfg
                    .retries
                    .as_ref()
                    .map(|p| (p, service.retry_budget.as_ref())),
            },
        }
    }
}

/// Sends the request to the target's service and returns the response head,
/// its body still streaming. Tries as the retry policy allows when the
/// body can be replayed, once otherwise.
pub async fn send(
    to: &Target<'_>,
    head: RequestHead,
    body: Body,
    learned: &mut Upstreamed,
) -> Result<Response<Body>, GatewayError> {
    let service = to.service;
    let _slot = match &service.bulkhead {
        Some(b) => Some(
            b.enter()
                .ok_or_else(|| GatewayError::Overloaded(service.name.clone()))?,
        ),
        None => None,
    };
    let terms = Effective::of(to.terms, service);
    let pq = head
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if let Some((_, Some(budget))) = terms.retries {
        budget.deposit();
    }
    let t = Try {
        to,
        service,
        method: &head.method,
        pq: &pq,
    };
    let policy = terms
        .retries
        .filter(|_| to.retry_non_idempotent || is_idempotent(&head.method));
    let replay = match policy {
        Some((p, budget)) => replayable(body, p.max_body_bytes)
            .await?
            .map(|b| (p, budget, b)),
        None => Err(body),
    };
    match replay {
        Ok((policy, budget, bytes)) => {
            t.with_retries(&terms, policy, budget, head.headers, bytes, learned)
                .await
        }
        // No policy, or a body too big (or of unknown size) to keep: one try.
        Err(body) => {
            let timeout = terms
                .per_try_timeout
                .map_or(terms.timeout, |t| t.min(terms.timeout));
            t.send(head.headers, body, timeout, &[], learned).await.1
        }
    }
}

/// The body as bytes when it can be sent again (its size known and at most
/// `max`); otherwise the body untouched.
pub(crate) async fn replayable(
    body: Body,
    max: usize,
) -> Result<Result<Bytes, Body>, GatewayError> {
    use http_body::Body as _;
    let size = body.size_hint().exact();
    match body {
        Body::Full(b) => Ok(Ok(b.unwrap_or_default())),
        body if body.is_end_stream() => Ok(Ok(Bytes::new())),
        body if size.is_some_and(|n| n <= max as u64) => match collect(body, max).await {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(CollectError::TooLarge) => Err(GatewayError::PayloadTooLarge),
            Err(CollectError::TimedOut) => Err(GatewayError::BodyTimeout),
            Err(CollectError::Stream(_)) => {
                Err(GatewayError::BadRequest("request body could not be read"))
            }
        },
        body => Ok(Err(body)),
    }
}

/// One try's fixed inputs.
struct Try<'a> {
    to: &'a Target<'a>,
    service: &'a Arc<Service>,
    method: &'a Method,
    pq: &'a PathAndQuery,
}

impl<'a> Try<'a> {
    /// Tries until one succeeds or the policy, the retry budget or the
    /// service's overall timeout says stop.
    async fn with_retries(
        &self,
        terms: &Effective<'_>,
        policy: &Retries,
        budget: Option<&RetryBudget>,
        headers: HeaderMap,
        body: Bytes,
        learned: &mut Upstreamed,
    ) -> Result<Response<Body>, GatewayError> {
        let service = self.service;
        let deadline = Instant::now() + terms.timeout;
        let mut tried = Vec::with_capacity(policy.attempts as usize);
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(UpstreamError::Timeout(terms.timeout).into());
            }
            let per_try = terms
                .per_try_timeout
                .map_or(remaining, |t| t.min(remaining));
            let body = Body::full(body.clone());
            let (idx, result) = self
                .send(headers.clone(), body, per_try, &tried, learned)
                .await;
            let failure = match &result {
                Ok(resp) => Some(TryFailure::Status(resp.status().as_u16())),
                Err(e) => e.try_failure(),
            };
            let again = attempt < policy.attempts
                && failure.is_some_and(|f| retries_on(policy, f))
                && budget.is_none_or(|b| b.withdraw());
            if !again {
                return result;
            }
            tried.extend(idx);
            service
                .metrics
                .retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let pause =
                backoff(policy, attempt).min(deadline.saturating_duration_since(Instant::now()));
            tracing::debug!(
                service = &*service.name,
                attempt,
                ?failure,
                ?pause,
                "retrying"
            );
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Admits through the breaker, picks an instance (avoiding `tried`), sends,
    /// and records the outcome. Returns the instance used, if any.
    async fn send(
        &self,
        mut headers: HeaderMap,
        body: Body,
        timeout: std::time::Duration,
        tried: &[usize],
        learned: &mut Upstreamed,
    ) -> (Option<usize>, Result<Response<Body>, GatewayError>) {
        let service = self.service;
        let ticket = match self.admit() {
            Ok(t) => t,
            Err(e) => return (None, Err(e)),
        };
        let key = SelectKey {
            client_ip: self.to.client,
            headers: &headers,
        };
        let Some(idx) = service
            .balancer
            .select_avoiding(&service.instances, &key, tried)
        else {
            let err = GatewayError::NoHealthyUpstream(service.name.clone());
            return (None, Err(err));
        };
        let instance = &service.instances[idx];
        // Each try is its own client span; the upstream continues the trace from it.
        let span_id = self.to.trace.map(|t| {
            let id = new_span_id();
            t.propagate(&mut headers, &id);
            id
        });
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from(self.pq.clone());
        *req.headers_mut() = headers;
        if !self.to.preserve_host {
            req.headers_mut()
                .insert(header::HOST, instance.host.clone());
        }
        let wall = SystemTime::now();
        let started = StdInstant::now();
        let result = {
            let _in_flight = instance.begin();
            service.upstream.send(idx, req, timeout).await
        };
        let took = started.elapsed();
        let status = result.as_ref().ok().map(|r| r.status());
        self.learn(instance, status, took, (span_id, wall), learned);
        if let Some(outcome) = outcome(&result) {
            if let Some(t) = ticket {
                t.finish(outcome);
            }
            if let Some(od) = &service.config.outlier_detection {
                instance.health.record(outcome, od);
            }
        }
        (Some(idx), result.map_err(GatewayError::from))
    }

    /// The circuit breaker's word on this try: where an open breaker
    /// becomes the request's 503 `circuit_open` (with its `Retry-After`).
    fn admit(&self) -> Result<Option<Ticket<'a>>, GatewayError> {
        let Some(breaker) = &self.service.breaker else {
            return Ok(None);
        };
        breaker
            .admit()
            .map(Some)
            .map_err(|open| GatewayError::CircuitOpen {
                service: self.service.name.clone(),
                retry_after: open.retry_after,
            })
    }

    /// Records one try: the service's metrics, what the request learned and,
    /// when sampled, the try's client span.
    fn learn(
        &self,
        instance: &Instance,
        status: Option<http::StatusCode>,
        took: std::time::Duration,
        (span_id, wall): (Option<[u8; 8]>, SystemTime),
        learned: &mut Upstreamed,
    ) {
        let service = self.service;
        service.metrics.record(status, took);
        learned.tries += 1;
        learned.upstream_time += took;
        learned.service = Some(service.name.clone());
        learned.instance = Some(instance.authority.clone());
        let Some(t) = self.to.trace.filter(|t| t.sampled) else {
            return;
        };
        let mut attrs = vec![("server.address", instance.authority.to_string())];
        if let Some(s) = status {
            attrs.push(("http.response.status_code", s.as_u16().to_string()));
        }
        let failed = status.is_none_or(|s| s.is_server_error());
        let name = format!("upstream {}", service.name);
        let span = t.child(span_id, name, SpanKind::Client, wall, attrs, failed);
        learned.spans.extend(span);
    }
}

/// What a try tells the breaker and outlier detection; `None` when the
/// client's body was at fault, not the upstream.
fn outcome(result: &Result<Response<Body>, UpstreamError>) -> Option<Outcome> {
    match result {
        Ok(resp) if resp.status().is_server_error() => Some(Outcome::Failure),
        Ok(_) => Some(Outcome::Success),
        Err(UpstreamError::BodyTooLarge | UpstreamError::BodyTimeout) => None,
        Err(_) => Some(Outcome::Failure),
    }
}
