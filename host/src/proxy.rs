//! The request path, one call per stage (see [`handle`]): accept → route →
//! prepare → request hooks → forward (or a fallback, or a plugin's answer)
//! → respond.
//! [`serve`] wraps it with what every request gets whatever happens:
//! an error response, metrics, the access log and spans.

mod accept;
mod cache;
mod fallback;
mod forward;
mod headers;
mod prepare;
pub(crate) mod request;
pub(crate) mod respond;
mod route;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::data_plane::DataPlane;
use crate::error::{GatewayError, render};
use crate::exchange::{Done, Exchange, Trail};
use crate::plugin::Flow;
use crate::snapshot::Snapshot;
use crate::telemetry::trace::TraceContext;
pub use headers::{X_REQUEST_ID, peer_value};
use respond::Answer;

/// What a TLS listener learned in the handshake.
#[derive(Debug)]
pub struct TlsConn {
    /// The verified client certificate's identity (mTLS).
    pub peer: Option<crate::tls::PeerIdentity>,
    /// Header that carries `peer` upstream, from the listener's config.
    pub client_cert_header: Option<http::HeaderName>,
    /// The consumer the certificate names (the listener's `client_consumer`),
    /// worked out once per connection.
    pub consumer: Option<Arc<str>>,
}

impl TlsConn {
    /// Plugin attributes: `tls.client.subject`, `tls.client.san` and the
    /// certificate's `consumer`; only the consumer when `identity_only` (a
    /// route without plugins, whose access log still names it).
    pub fn attributes(&self, identity_only: bool) -> Vec<(String, String)> {
        let mut attrs = Vec::new();
        if let Some(p) = self.peer.as_ref().filter(|_| !identity_only) {
            attrs.push(("tls.client.subject".into(), p.subject.clone()));
            attrs.push(("tls.client.san".into(), p.san_list()));
        }
        if let Some(c) = &self.consumer {
            attrs.push(("consumer".into(), c.to_string()));
        }
        attrs
    }

    /// Sets the identity header, replacing any copy the client sent.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        let Some(name) = &self.client_cert_header else {
            return;
        };
        headers.remove(name);
        if let Some(v) = self.peer.as_ref().and_then(|p| p.header_value()) {
            headers.insert(name.clone(), v);
        }
    }
}

/// What the listener knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The peer address as a header value, for `X-Forwarded-For`.
    pub peer_value: http::HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// TLS details; `None` on cleartext listeners.
    pub tls: Option<Arc<TlsConn>>,
}

/// Serves one request on the snapshot current when it arrived and always
/// produces a response: failures become JSON errors via [`render`]. Metrics
/// are recorded at the response head; the access log line and trace spans
/// when the response body is done.
pub async fn serve(
    shared: Arc<DataPlane>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let snapshot = shared.snapshot();
    let tel = &shared.telemetry;
    let mut trail = Trail::start();
    if tel.spans.is_some() {
        trail.trace = Some(TraceContext::from_headers(req.headers(), tel.sample_ratio));
    }
    if tel.is_on() {
        trail.bytes_in = Some(Arc::default());
    }
    let request_id = headers::request_id(req.headers());
    let mut ex = Exchange::new(request_id, conn.remote.ip(), trail);
    let method = req.method().clone();
    let path = tel.is_on().then(|| req.uri().path().to_string());
    let mut resp = match handle(&snapshot, &conn, req, &mut ex).await {
        Ok(r) => r,
        Err(e) => {
            shared.metrics.error(e.status().1);
            render(&e, ex.view.request_id.to_str().unwrap_or(""))
        }
    };
    let elapsed = ex.trail.started.elapsed();
    let route = ex.trail.route.and_then(|i| snapshot.routes.get(i));
    match route {
        Some(r) => r.metrics.record(&method, resp.status(), elapsed),
        None => shared.unmatched.record(&method, resp.status(), elapsed),
    }
    let request_id = std::mem::replace(&mut ex.view.request_id, HeaderValue::from_static(""));
    if let Some(path) = path {
        let Exchange { view, trail, .. } = ex;
        let done = Done {
            method,
            path,
            route_id: route.map(|r| r.id.clone()),
            status: resp.status(),
            request_id: request_id.to_str().unwrap_or("").to_string(),
            client_ip: view.client_ip,
            attributes: view.attributes,
        };
        let shared = shared.clone();
        resp = resp.map(move |body| {
            Body::counted(
                body,
                Box::new(move |bytes_out| trail.finish(&shared.telemetry, done, bytes_out)),
            )
        });
    }
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    // Our own HTTP version, not the upstream's (RFC 9110 §6.2): an HTTP/1.0
    // upstream must not hand its version, and its connection rules, to the client.
    *resp.version_mut() = http::Version::HTTP_11;
    resp
}

/// The flow, one call per stage. A route without plugins takes the same
/// path: its chain has nothing to run.
async fn handle(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    ex: &mut Exchange,
) -> Result<Response<Body>, GatewayError> {
    let req = accept::accept(snap, conn, req, ex)?;
    let (route, matched) = route::route(snap, &req, ex)?;
    let client_upgrade = prepare::upstream_request(snap, conn, route, &matched, req, ex);
    let mut run = route.chain.start();
    let answer = match request::hooks(&mut run, ex).await? {
        Flow::Continue => Answer::Upstream(match &route.cache {
            None => forward::to_upstream(route, &snap.services, &run, ex).await?,
            // Boxed: the cache's state machine is large, and inline it would
            // make every request's future larger (and costlier to move),
            // cached route or not.
            Some(c) => {
                Box::pin(cache::answer(route, c, &run, ex, client_upgrade.is_some())).await?
            }
        }),
        Flow::Respond(plugin) => Answer::Plugin(plugin),
    };
    respond::respond(&mut run, ex, answer, client_upgrade).await
}
