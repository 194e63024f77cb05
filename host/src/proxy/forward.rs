//! The forward stage: the head and body the request hooks left go to the
//! route's service through [`dispatch`](crate::dispatch) (bulkhead, circuit
//! breaker, instance selection, tries under the retry policy).

use http::Response;

use crate::body::Body;
use crate::dispatch::{self, Target};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::plugin::ChainRun;
use crate::snapshot::Route;

/// Stage five: the head and body the request hooks left go to the route's
/// service; what the tries learned goes into the trail's
/// [`Upstreamed`](crate::exchange::Upstreamed).
pub async fn to_upstream(
    route: &Route,
    run: &ChainRun,
    ex: &mut Exchange,
) -> Result<Response<Body>, GatewayError> {
    let head = run.upstream_head(&mut ex.view);
    let body = ex.take_body();
    let to = Target {
        service: route.target.service(ex.view.client_ip, &head.headers),
        client: ex.view.client_ip,
        trace: ex.trail.trace.as_ref(),
        preserve_host: route.preserve_host,
        retry_non_idempotent: route.retry_non_idempotent,
    };
    dispatch::send(&to, head, body, &mut ex.trail.upstream).await
}
