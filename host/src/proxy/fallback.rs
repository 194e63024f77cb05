//! Part of the forward stage: when a route (or its service) names a
//! fallback, a failed upstream request is answered by it — a fixed response
//! or another service — instead of the gateway's 502/503/504. Response hooks
//! run on the fallback's answer as on any upstream response.

use std::sync::Arc;

use http::{Response, StatusCode};

use super::forward;
use crate::body::Body;
use crate::config::{Fallback, FallbackAnswer};
use crate::dispatch::{self, Target};
use crate::error::GatewayError;
use crate::exchange::{Exchange, RequestHead};
use crate::snapshot::{Route, Service};
use crate::upstream::UpstreamError;

/// The most request body a service fallback keeps to send again; a bigger
/// (or chunked) body is streamed to the first service only, and a failure
/// then gets the gateway's error.
const REPLAY_MAX: usize = 64 * 1024;

/// Sends the request to `service`; when that fails as `fallback` says, the
/// fallback answers and the trail records why.
pub async fn around(
    route: &Route,
    service: &Arc<Service>,
    fallback: &Fallback,
    services: &[Arc<Service>],
    head: RequestHead,
    body: Body,
    ex: &mut Exchange,
) -> Result<Response<Body>, GatewayError> {
    let (result, again) = match &fallback.answer {
        FallbackAnswer::Static { .. } => {
            (forward::send(route, service, head, body, ex).await, None)
        }
        FallbackAnswer::Service(i) => match dispatch::replayable(body, REPLAY_MAX).await? {
            Ok(bytes) => {
                let again = (head.clone(), bytes.clone(), &services[*i]);
                let first = forward::send(route, service, head, Body::full(bytes), ex).await;
                (first, Some(again))
            }
            Err(body) => (forward::send(route, service, head, body, ex).await, None),
        },
    };
    let reason = match &result {
        Ok(resp) if fallback.on_status.contains(&resp.status()) => "upstream_status",
        Ok(_) => return result,
        Err(e) => match trigger(e) {
            Some(code) => code,
            None => return result,
        },
    };
    match &fallback.answer {
        FallbackAnswer::Static {
            status,
            headers,
            body,
        } => {
            ex.trail.fallback = Some(reason);
            Ok(fixed(*status, headers, body.clone()))
        }
        FallbackAnswer::Service(_) => {
            let Some((head, bytes, to)) = again else {
                return result;
            };
            ex.trail.fallback = Some(reason);
            let target = Target {
                service: to,
                client: ex.view.client_ip,
                trace: ex.trail.trace.as_ref(),
                preserve_host: route.preserve_host,
                retry_non_idempotent: route.retry_non_idempotent,
                // The fallback service's own timeouts and retries.
                terms: &dispatch::SERVICE_TERMS,
            };
            dispatch::send(&target, head, Body::full(bytes), &mut ex.trail.upstream).await
        }
    }
}

/// The gateway error code of a failure a fallback answers for: the service
/// could not be reached or did not answer. Client-side failures (a body too
/// large, a client too slow) are not the service's and keep their error.
fn trigger(e: &GatewayError) -> Option<&'static str> {
    match e {
        GatewayError::CircuitOpen { .. }
        | GatewayError::NoHealthyUpstream(_)
        | GatewayError::Overloaded(_)
        | GatewayError::Upstream(
            UpstreamError::Connect(_) | UpstreamError::Failed(_) | UpstreamError::Timeout(_),
        ) => Some(e.status().1),
        _ => None,
    }
}

/// A static fallback's response.
fn fixed(
    status: StatusCode,
    headers: &[(http::HeaderName, http::HeaderValue)],
    body: bytes::Bytes,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in headers {
        h.append(name.clone(), value.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_side_failures_trigger() {
        let timeout = GatewayError::Upstream(UpstreamError::Timeout(std::time::Duration::ZERO));
        assert_eq!(trigger(&timeout), Some("upstream_timeout"));
        assert_eq!(
            trigger(&GatewayError::NoHealthyUpstream("s".into())),
            Some("no_healthy_upstream")
        );
        assert_eq!(
            trigger(&GatewayError::Overloaded("s".into())),
            Some("upstream_overloaded")
        );
        assert_eq!(trigger(&GatewayError::PayloadTooLarge), None);
        assert_eq!(trigger(&GatewayError::BodyTimeout), None);
        assert_eq!(trigger(&GatewayError::NoRoute), None);
    }
}
