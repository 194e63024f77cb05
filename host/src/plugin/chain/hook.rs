//! One hook call: timed into the plugin's metrics and the request's trace,
//! with the attachment's `on_error` applied; and a plugin's response
//! converted for the client.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::PluginResponse;
use crate::config::OnError;
use crate::exchange::Exchange;
use crate::metrics::PluginMetrics;
use crate::plugin::PluginError;
use crate::plugin::callout::{Grants, Scope};
use crate::plugin::pool::{Call, Outcome, Pool};
use crate::telemetry::trace::SpanKind;

/// One hook call with the attachment's `on_error` applied in one place: a
/// failure under `allow` becomes `Ok(None)` ("skip this plugin"). The call
/// is timed into the plugin's metrics and, when sampled, the request's trace.
pub(super) async fn invoke(
    pool: &Arc<Pool>,
    m: &PluginMetrics,
    grants: Option<&Arc<Grants>>,
    position: usize,
    ex: &mut Exchange,
    call: Call,
) -> Result<Option<Outcome>, PluginError> {
    let hook = call.hook();
    let started = std::time::Instant::now();
    let wall = ex.trail.sampled().then(std::time::SystemTime::now);
    ex.view.attachment = position;
    // Only attachments granted callouts pay for a scope.
    let mut scope =
        grants.map(|g| Scope::new(g.clone(), ex.view.client_ip, ex.trail.trace.clone()));
    let result = pool.invoke_with(&mut ex.view, call, &mut scope).await;
    if let Some(scope) = scope {
        ex.trail.spans.extend(scope.spans);
    }
    m.calls.fetch_add(1, Ordering::Relaxed);
    m.duration.record(started.elapsed());
    if let Some(start) = wall {
        let plugin = pool.config().name.clone();
        let name = format!("plugin {plugin} {hook}");
        let attrs = vec![("gatehouse.plugin", plugin.to_string())];
        let failed = result.is_err();
        ex.trail
            .child_span(None, name, SpanKind::Internal, start, attrs, failed);
    }
    if let Err(e) = &result {
        let counter = match e {
            PluginError::Timeout { .. } => &m.timeouts,
            _ => &m.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    match result {
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
    }
}

pub(super) fn convert(r: crate::plugin::bindings::types::Response, pool: &Pool) -> PluginResponse {
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
