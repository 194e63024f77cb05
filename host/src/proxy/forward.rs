//! The forward stage: the head and body the request hooks left go to the
//! route's service through [`dispatch`](crate::dispatch) (bulkhead, circuit
//! breaker, instance selection, tries under the retry policy).

use http::Response;

use crate::body::Body;
use crate::dispatch::{self, Target};
use crate::error::GatewayError;
use crate::exchange::{Exchange, RequestHead};
use crate::plugin::ChainRun;
use crate::snapshot::{Route, Service};
use std::sync::Arc;

/// Stage five: the head and body the request hooks left go to the route's
/// service; what the tries learned goes into the trail's
/// [`Upstreamed`](crate::exchange::Upstreamed). When the route (or else the
/// service) names a fallback, it answers for a failed service.
pub async fn to_upstream(
    route: &Route,
    services: &[Arc<Service>],
    run: &ChainRun,
    ex: &mut Exchange,
) -> Result<Response<Body>, GatewayError> {
    let head = run.upstream_head(&mut ex.view);
    let body = ex.take_body();
    let service = route.target.service(ex.view.client_ip, &head.headers);
    match route.fallback.as_ref().or(service.config.fallback.as_ref()) {
        None => send(route, service, head, body, ex).await,
        // Boxed for the same reason as the cache stage: only routes with a
        // fallback pay for its (large) state machine.
        Some(f) => {
            Box::pin(super::fallback::around(
                route, service, f, services, head, body, ex,
            ))
            .await
        }
    }
}

/// Sends `head` and `body` to `service` (chosen for the route already) on
/// the route's terms.
pub async fn send(
    route: &Route,
    service: &Arc<Service>,
    head: RequestHead,
    body: Body,
    ex: &mut Exchange,
) -> Result<Response<Body>, GatewayError> {
    let to = Target {
        service,
        client: ex.view.client_ip,
        trace: ex.trail.trace.as_ref(),
        preserve_host: route.preserve_host,
        retry_non_idempotent: route.retry_non_idempotent,
        terms: &route.terms,
    };
    dispatch::send(&to, head, body, &mut ex.trail.upstream).await
}
