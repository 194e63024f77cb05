//! The stages of [`super::handle`]: prepare the upstream request, run the plugin
//! chain around the upstream call, forward to a selected instance.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, Uri, header};
use http_body_util::{BodyExt, Limited};

use super::ConnInfo;
use super::forward::forward;
use super::headers::{X_REQUEST_ID, add_forwarded, rewrite_path, strip_hop_by_hop};
use super::trail::Trail;
use crate::body::Body;
use crate::error::GatewayError;
use crate::plugin::chain::{BodyFlow, PluginResponse, ResponseFlow};
use crate::plugin::{ChainRun, Exchange, Flow, PluginError, RequestHead, ResponseHead};
use crate::router::RouteMatch;
use crate::snapshot::Route;
use crate::telemetry::trace::SpanKind;

/// Turns the client's head into the head the upstream will get: hop-by-hop
/// headers removed, forwarding headers added, the route's rewrite applied.
pub fn prepare_request(
    parts: http::request::Parts,
    conn: &ConnInfo,
    route: &Route,
    m: &RouteMatch,
    host: Arc<str>,
    request_id: &HeaderValue,
    upgrade: Option<HeaderValue>,
) -> RequestHead {
    let mut headers = parts.headers;
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let te_trailers = headers.get(header::TE).is_some_and(|v| {
        v.as_bytes()
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"trailers"))
    });
    strip_hop_by_hop(&mut headers);
    if te_trailers {
        // gRPC needs `te: trailers` end to end; it is the one TE value kept.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let Some(tls) = &conn.tls {
        tls.apply(&mut headers);
    }
    add_forwarded(
        &mut headers,
        &conn.peer_value,
        conn.scheme,
        original_host.clone(),
    );
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if !headers.contains_key(header::HOST)
        && let Some(h) = original_host
    {
        headers.insert(header::HOST, h);
    }
    let uri = match &route.rewrite {
        None => origin_form(&parts.uri),
        Some(rw) => {
            let path = parts.uri.path();
            let new_path = rewrite_path(rw, path, path, &m.params, &route.param_names);
            let pq = match parts.uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            pq.parse().unwrap_or_else(|_| origin_form(&parts.uri))
        }
    };
    RequestHead {
        method: parts.method,
        uri,
        headers,
        scheme: conn.scheme,
        host,
    }
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() => Uri::from(pq.clone()),
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// The upstream response as the client gets it: hop-by-hop headers removed,
/// body streaming through.
pub fn downstream_response(mut resp: Response<Body>) -> Response<Body> {
    strip_hop_by_hop(resp.headers_mut());
    resp
}

/// An answer before the response hooks: from the upstream or from a plugin.
enum Answer {
    Upstream(Response<Body>),
    Plugin(PluginResponse),
}

/// The request path with plugins: request hooks, optional request body hooks,
/// the upstream call, then response hooks in reverse order.
pub async fn with_plugins(
    call: PluginCall<'_>,
    head: RequestHead,
    body: Body,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    let mut run = call.route.chain.start();
    if trail.sampled() {
        run.record_calls();
    }
    let result = run_chain(call, &mut run, head, body, trail).await;
    for c in run.take_calls() {
        let name = format!("plugin {} {}", c.plugin, c.hook);
        let attrs = vec![("gatehouse.plugin", c.plugin.to_string())];
        trail.child_span(None, name, SpanKind::Internal, c.start, attrs, c.failed);
    }
    result
}

/// A request's inputs to the plugin path.
pub struct PluginCall<'a> {
    /// The matched route.
    pub route: &'a Route,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// `x-request-id`.
    pub request_id: &'a HeaderValue,
    /// Path parameters.
    pub params: Vec<(Arc<str>, String)>,
    /// The client side of a protocol upgrade, if one was asked for.
    pub client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

async fn run_chain(
    call: PluginCall<'_>,
    run: &mut ChainRun,
    head: RequestHead,
    body: Body,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    let PluginCall {
        route,
        conn,
        request_id,
        params,
        client_upgrade,
    } = call;
    let ex = Box::new(Exchange {
        request_id: request_id.to_str().unwrap_or("").into(),
        route_id: route.id.clone(),
        client_ip: conn.client,
        params,
        attributes: conn
            .tls
            .as_ref()
            .map(|t| t.attributes())
            .unwrap_or_default(),
        req: head,
        resp: None,
        response_headers: Vec::new(),
        counters: route.chain.counters(),
        attachment: 0,
    });
    let (mut ex, flow) = run.on_request(ex).await;
    if trail.reports() {
        for key in ["consumer", "tenant"] {
            if let Some(v) = ex.attribute(key) {
                trail.attributes.push((key.to_string(), v.to_string()));
            }
        }
    }
    let answer = match flow? {
        Flow::Respond(r) => Answer::Plugin(r),
        Flow::Continue => {
            let (back, body) = request_body(run, ex, body).await?;
            ex = back;
            match body {
                Err(r) => Answer::Plugin(r),
                Ok(body) => {
                    if run.response_body_limit().is_some() {
                        // A body hook edits what it can read: ask the upstream
                        // for an uncompressed answer rather than let a
                        // compressed one pass unedited.
                        ex.req.headers.remove(header::ACCEPT_ENCODING);
                    }
                    let req = if run.wants_response() {
                        ex.req.clone()
                    } else {
                        ex.req.take()
                    };
                    Answer::Upstream(forward(route, conn.client, req, body, trail).await?)
                }
            }
        }
    };
    if let Answer::Plugin(r) = &answer {
        trail.answered_by = Some(r.plugin.clone());
    }
    let answer = match (answer, client_upgrade) {
        (Answer::Upstream(resp), Some(up)) if super::upgrade::switched(&resp) => {
            // The connection now belongs to another protocol: response hooks
            // have nothing to edit.
            return Ok(super::upgrade::tunnel(resp, up));
        }
        (answer, _) => answer,
    };
    let mut body = match answer {
        Answer::Upstream(resp) => {
            let (mut parts, b) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            ex.respond_with(parts.status, parts.headers);
            b
        }
        Answer::Plugin(r) => {
            ex.respond_with(r.status, r.headers);
            Body::full(r.body)
        }
    };
    if run.wants_response() {
        let (back, flow) = run.on_response(ex).await;
        ex = back;
        if let ResponseFlow::Replace(r) = flow? {
            ex.resp = Some(ResponseHead {
                status: r.status,
                headers: r.headers,
            });
            body = Body::full(r.body);
        }
    }
    if let Some(limit) = run.response_body_limit() {
        let bytes = collect(body, limit)
            .await
            .map_err(|_| GatewayError::ResponseTooLarge)?;
        let (back, flow) = run.on_response_body(ex, bytes).await;
        ex = back;
        body = match flow? {
            BodyFlow::Body(b) => replaced(&mut ex.resp, b),
            BodyFlow::Respond(r) => {
                ex.resp = Some(ResponseHead {
                    status: r.status,
                    headers: r.headers,
                });
                Body::full(r.body)
            }
        };
    }
    let head = ex.resp.take().unwrap_or(ResponseHead {
        status: http::StatusCode::BAD_GATEWAY,
        headers: Default::default(),
    });
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

/// Buffers the request body for the plugins that asked for it. `Err(response)`
/// when a body hook answered the client itself.
async fn request_body(
    run: &mut ChainRun,
    ex: Box<Exchange>,
    body: Body,
) -> Result<(Box<Exchange>, Result<Body, PluginResponse>), GatewayError> {
    let Some(limit) = run.request_body_limit() else {
        return Ok((ex, Ok(body)));
    };
    let bytes = collect(body, limit).await.map_err(|e| match e {
        CollectError::TooLarge => GatewayError::Plugin(PluginError::BodyTooLarge(limit)),
        CollectError::TimedOut => GatewayError::BodyTimeout,
        CollectError::Stream(m) => GatewayError::Plugin(PluginError::Body(m)),
    })?;
    let (mut ex, flow) = run.on_request_body(ex, bytes).await;
    match flow? {
        BodyFlow::Body(b) => {
            let len = b.len();
            ex.req
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            Ok((ex, Ok(Body::full(b))))
        }
        BodyFlow::Respond(r) => Ok((ex, Err(r))),
    }
}

/// Fixes `content-length` after a body hook (the body may have changed size).
fn replaced(resp: &mut Option<ResponseHead>, b: Bytes) -> Body {
    if let Some(r) = resp.as_mut() {
        r.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    Body::full(b)
}

enum CollectError {
    TooLarge,
    TimedOut,
    Stream(String),
}

async fn collect(body: Body, limit: usize) -> Result<Bytes, CollectError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(CollectError::TooLarge)
        }
        Err(e) if crate::body::is_too_large(&*e) => Err(CollectError::TooLarge),
        Err(e) if crate::body::is_timed_out(&*e) => Err(CollectError::TimedOut),
        Err(e) => Err(CollectError::Stream(e.to_string())),
    }
}
