//! The gateway's error type: every failure on the request path, where it came
//! from, and — in [`render`], the only place — the HTTP response it becomes.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;
use crate::plugin::PluginError;
use crate::resilience::retry::TryFailure;
use crate::upstream::UpstreamError;

/// Where a failure originated; decides status and whether a retry could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client's request was at fault.
    Downstream,
    /// The upstream failed.
    Upstream,
    /// A plugin failed.
    Plugin,
}

/// Any failure while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches.
    #[error("no route matches the request")]
    NoRoute,
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Refused at ingress: the path or authority has no canonical form.
    #[error("bad request: {0}")]
    Request(#[from] crate::accept::RequestError),
    /// The request body is over the limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The client stopped sending its body (`limits.body_read_timeout`).
    #[error("request body read timed out")]
    BodyTimeout,
    /// The service has no healthy instance.
    #[error("no healthy instance of service `{0}`")]
    NoHealthyUpstream(std::sync::Arc<str>),
    /// The service's circuit breaker is open.
    #[error("circuit breaker of service `{service}` is open")]
    CircuitOpen {
        /// The service.
        service: std::sync::Arc<str>,
        /// When the breaker lets probes through again.
        retry_after: std::time::Duration,
    },
    /// The service's `max_concurrent_requests` is reached.
    #[error("service `{0}` is at its concurrency limit")]
    Overloaded(std::sync::Arc<str>),
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream response body is over a plugin's body limit.
    #[error("upstream response body too large for plugin body hooks")]
    ResponseTooLarge,
    /// `Cache-Control: only-if-cached` and nothing usable is stored.
    #[error("not in the cache (only-if-cached)")]
    NotCached,
    /// A plugin failed and its policy is `deny`.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl GatewayError {
    /// The status code and the stable machine-readable code for the body.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Request(e) => (StatusCode::BAD_REQUEST, e.code()),
            Self::BodyTimeout | Self::Upstream(UpstreamError::BodyTimeout) => {
                (StatusCode::REQUEST_TIMEOUT, "request_body_timeout")
            }
            Self::PayloadTooLarge | Self::Upstream(UpstreamError::BodyTooLarge) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            Self::Plugin(PluginError::BodyTooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            Self::NoHealthyUpstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_healthy_upstream"),
            Self::CircuitOpen { .. } => (StatusCode::SERVICE_UNAVAILABLE, "circuit_open"),
            Self::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded"),
            Self::Upstream(UpstreamError::Connect(_)) => {
                (StatusCode::BAD_GATEWAY, "upstream_connect_failed")
            }
            Self::Upstream(UpstreamError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            Self::Upstream(UpstreamError::Failed(_)) => {
                (StatusCode::BAD_GATEWAY, "upstream_failed")
            }
            Self::ResponseTooLarge => (StatusCode::BAD_GATEWAY, "upstream_response_too_large"),
            Self::NotCached => (StatusCode::GATEWAY_TIMEOUT, "not_cached"),
            Self::Plugin(PluginError::Timeout { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "plugin_timeout")
            }
            Self::Plugin(PluginError::Busy { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "plugin_busy")
            }
            Self::Plugin(_) => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_error"),
        }
    }

    /// Where the failure came from.
    pub fn origin(&self) -> Origin {
        match self {
            Self::NoRoute | Self::BadRequest(_) | Self::Request(_) | Self::PayloadTooLarge => {
                Origin::Downstream
            }
            Self::Upstream(UpstreamError::BodyTooLarge | UpstreamError::BodyTimeout) => {
                Origin::Downstream
            }
            Self::BodyTimeout | Self::NotCached => Origin::Downstream,
            Self::Plugin(PluginError::BodyTooLarge(_)) => Origin::Downstream,
            Self::NoHealthyUpstream(_)
            | Self::CircuitOpen { .. }
            | Self::Overloaded(_)
            | Self::Upstream(_)
            | Self::ResponseTooLarge => Origin::Upstream,
            Self::Plugin(_) => Origin::Plugin,
        }
    }

    /// How a failed try is named in retry conditions (`retries.on`); `None`
    /// for failures no retry can help (the breaker is open, no instance is
    /// healthy, the client's body is at fault). The one place retryability
    /// of an error is decided; the policy decides whether it retries it.
    pub fn try_failure(&self) -> Option<TryFailure> {
        match self {
            Self::Upstream(UpstreamError::Connect(_)) => Some(TryFailure::ConnectFailure),
            Self::Upstream(UpstreamError::Failed(_)) => Some(TryFailure::Reset),
            Self::Upstream(UpstreamError::Timeout(_)) => Some(TryFailure::Timeout),
            _ => None,
        }
    }
}

/// Turns an error into the client's response: a small JSON body with a stable
/// code and the request id. Details stay in the log.
pub fn render(err: &GatewayError, request_id: &str) -> Response<Body> {
    let (status, code) = err.status();
    if err.origin() != Origin::Downstream {
        tracing::warn!(request_id, error = %err, "request failed");
    }
    let mut resp = json_error(status, code, request_id);
    if let GatewayError::CircuitOpen { retry_after, .. } = err {
        // Whole seconds, rounded up: a client waiting this long finds the breaker probing.
        let secs = retry_after.as_millis().div_ceil(1000).max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    }
    if matches!(
        err,
        GatewayError::BadRequest(_)
            | GatewayError::BodyTimeout
            | GatewayError::Upstream(UpstreamError::BodyTimeout)
    ) {
        // The connection's framing can no longer be trusted.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// `{"error":"<code>","request_id":"<id>"}` with the given status.
pub fn json_error(status: StatusCode, code: &str, request_id: &str) -> Response<Body> {
    let body = format!(
        r#"{{"error":"{code}","request_id":"{}"}}"#,
        json_escape(request_id)
    );
    let mut resp = Response::new(Body::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(
            serde_json::to_string(s)
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
        )
    }
}
