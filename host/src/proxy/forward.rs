//! The forward stage: bulkhead, circuit breaker, instance selection and the
//! upstream call, repeated under the retry policy. Every try's outcome feeds
//! the breaker and outlier detection.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::trail::Trail;
use crate::balancer::SelectKey;
use crate::body::Body;
use crate::error::GatewayError;
use crate::plugin::RequestHead;
use crate::resilience::Outcome;
use crate::resilience::retry::{TryFailure, backoff, is_idempotent, retries_on};
use crate::snapshot::{Route, Service};
use crate::telemetry::trace::{SpanKind, new_span_id};
use crate::upstream::UpstreamError;
use std::time::{Instant as StdInstant, SystemTime};

/// Sends the request to the route's service and returns the response head,
/// its body still streaming.
pub async fn forward(
    route: &Route,
    client: IpAddr,
    head: RequestHead,
    body: Body,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    let service = route.target.service(client, &head.headers);
    let _slot = match &service.bulkhead {
        Some(b) => Some(
            b.enter()
                .ok_or_else(|| GatewayError::Overloaded(service.name.clone()))?,
        ),
        None => None,
    };
    let cfg = &service.config;
    let pq = head
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let first_timeout = cfg
        .per_try_timeout
        .map_or(cfg.timeout, |t| t.min(cfg.timeout));
    let policy = cfg
        .retries
        .as_ref()
        .filter(|_| route.retry_non_idempotent || is_idempotent(&head.method));
    if let Some(budget) = &service.retry_budget {
        budget.deposit();
    }
    let Some(policy) = policy else {
        let t = Try::new(route, service, client, &head.method, &pq);
        return t
            .send(head.headers, body, first_timeout, &[], trail)
            .await
            .1;
    };
    let body = match replayable(body, policy.max_body_bytes).await? {
        Ok(bytes) => bytes,
        Err(body) => {
            // Too big (or of unknown size) to keep: one try only.
            let t = Try::new(route, service, client, &head.method, &pq);
            return t
                .send(head.headers, body, first_timeout, &[], trail)
                .await
                .1;
        }
    };
    let deadline = Instant::now() + cfg.timeout;
    let mut tried = Vec::with_capacity(policy.attempts as usize);
    let mut attempt = 1;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(UpstreamError::Timeout(cfg.timeout).into());
        }
        let per_try = cfg.per_try_timeout.map_or(remaining, |t| t.min(remaining));
        let t = Try::new(route, service, client, &head.method, &pq);
        let (idx, result) = t
            .send(
                head.headers.clone(),
                Body::full(body.clone()),
                per_try,
                &tried,
                trail,
            )
            .await;
        let failure = match &result {
            Ok(resp) => Some(TryFailure::Status(resp.status().as_u16())),
            Err(GatewayError::Upstream(UpstreamError::Connect(_))) => {
                Some(TryFailure::ConnectFailure)
            }
            Err(GatewayError::Upstream(UpstreamError::Failed(_))) => Some(TryFailure::Reset),
            Err(GatewayError::Upstream(UpstreamError::Timeout(_))) => Some(TryFailure::Timeout),
            Err(_) => None,
        };
        let again = attempt < policy.attempts
            && failure.is_some_and(|f| retries_on(policy, f))
            && service.retry_budget.as_ref().is_none_or(|b| b.withdraw());
        if !again {
            return result;
        }
        if let Some(i) = idx {
            tried.push(i);
        }
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

/// The body as bytes when it can be sent again; otherwise the body untouched.
async fn replayable(body: Body, max: usize) -> Result<Result<Bytes, Body>, GatewayError> {
    use http_body::Body as _;
    let size = body.size_hint().exact();
    match body {
        Body::Full(b) => Ok(Ok(b.unwrap_or_default())),
        body if body.is_end_stream() => Ok(Ok(Bytes::new())),
        body if size.is_some_and(|n| n <= max as u64) => {
            match Limited::new(body, max).collect().await {
                Ok(c) => Ok(Ok(c.to_bytes())),
                Err(e) if crate::body::is_too_large(&*e) => Err(GatewayError::PayloadTooLarge),
                Err(e) if crate::body::is_timed_out(&*e) => Err(GatewayError::BodyTimeout),
                Err(_) => Err(GatewayError::BadRequest("request body could not be read")),
            }
        }
        body => Ok(Err(body)),
    }
}

/// One try's fixed inputs.
struct Try<'a> {
    route: &'a Route,
    service: &'a Arc<Service>,
    client: IpAddr,
    method: &'a Method,
    pq: &'a PathAndQuery,
}

impl<'a> Try<'a> {
    fn new(
        route: &'a Route,
        service: &'a Arc<Service>,
        client: IpAddr,
        method: &'a Method,
        pq: &'a PathAndQuery,
    ) -> Self {
        Self {
            route,
            service,
            client,
            method,
            pq,
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
        trail: &mut Trail,
    ) -> (Option<usize>, Result<Response<Body>, GatewayError>) {
        let service = self.service;
        let ticket = match &service.breaker {
            Some(b) => match b.admit() {
                Ok(t) => Some(t),
                Err(open) => {
                    let err = GatewayError::CircuitOpen {
                        service: service.name.clone(),
                        retry_after: open.retry_after,
                    };
                    return (None, Err(err));
                }
            },
            None => None,
        };
        let key = SelectKey {
            client_ip: self.client,
            headers: &headers,
        };
        let Some(idx) = service
            .balancer
            .select_avoiding(&service.instances, &key, tried)
        else {
            return (
                None,
                Err(GatewayError::NoHealthyUpstream(service.name.clone())),
            );
        };
        let instance = &service.instances[idx];
        // Each try is its own client span; the upstream continues the trace from it.
        let span_id = trail.trace.as_ref().map(|t| {
            let id = new_span_id();
            t.propagate(&mut headers, &id);
            id
        });
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from(self.pq.clone());
        *req.headers_mut() = headers;
        if !self.route.preserve_host {
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
        service.metrics.record(status, took);
        trail.tries += 1;
        trail.upstream_time += took;
        trail.service = Some(service.name.clone());
        trail.instance = Some(instance.authority.clone());
        if trail.sampled() {
            let mut attrs = vec![("server.address", instance.authority.to_string())];
            if let Some(s) = status {
                attrs.push(("http.response.status_code", s.as_u16().to_string()));
            }
            let failed = status.is_none_or(|s| s.is_server_error());
            let name = format!("upstream {}", service.name);
            trail.child_span(span_id, name, SpanKind::Client, wall, attrs, failed);
        }
        let outcome = match &result {
            Ok(resp) if resp.status().is_server_error() => Some(Outcome::Failure),
            Ok(_) => Some(Outcome::Success),
            Err(UpstreamError::BodyTooLarge | UpstreamError::BodyTimeout) => None,
            Err(_) => Some(Outcome::Failure),
        };
        if let Some(outcome) = outcome {
            if let Some(t) = ticket {
                t.finish(outcome);
            }
            if let Some(od) = &service.config.outlier_detection {
                instance.health.record(outcome, od);
            }
        }
        (Some(idx), result.map_err(GatewayError::from))
    }
}
