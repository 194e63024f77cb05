//! The request path, one call per stage: route → plugin chain (request) →
//! balancer → upstream → plugin chain (response, reverse) → client.

mod forward;
mod headers;
mod stages;
mod trail;
mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::{GatewayError, render};
use crate::gateway::Shared;
use crate::router::{RequestKey, normalize_host};
use crate::snapshot::Snapshot;
use crate::telemetry::trace::TraceContext;
pub use headers::{X_REQUEST_ID, peer_value};
use trail::Trail;

/// What a TLS listener learned in the handshake.
#[derive(Debug)]
pub struct TlsConn {
    /// The verified client certificate's identity (mTLS).
    pub peer: Option<crate::tls::PeerIdentity>,
    /// Header that carries `peer` upstream, from the listener's config.
    pub client_cert_header: Option<http::HeaderName>,
}

impl TlsConn {
    /// Plugin attributes: `tls.client.subject` and `tls.client.san`.
    pub fn attributes(&self) -> Vec<(String, String)> {
        match &self.peer {
            Some(p) => vec![
                ("tls.client.subject".into(), p.subject.clone()),
                ("tls.client.san".into(), p.san_list()),
            ],
            None => Vec::new(),
        }
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
    /// The client's address: the peer, or the nearest untrusted address in
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    pub client: IpAddr,
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
pub async fn serve(shared: Arc<Shared>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let snapshot = shared.snapshot();
    let tel = &shared.telemetry;
    let mut trail = Trail::start(conn.remote.ip());
    if tel.spans.is_some() {
        trail.trace = Some(TraceContext::from_headers(req.headers(), tel.sample_ratio));
    }
    if tel.is_on() {
        trail.bytes_in = Some(Arc::default());
    }
    let method = req.method().clone();
    let path = tel.is_on().then(|| req.uri().path().to_string());
    let request_id = headers::request_id(req.headers());
    let mut resp = match handle(&snapshot, conn, req, &request_id, &mut trail).await {
        Ok(r) => r,
        Err(e) => render(&e, request_id.to_str().unwrap_or("")),
    };
    let elapsed = trail.started.elapsed();
    let route = trail.route.and_then(|i| snapshot.routes.get(i));
    match route {
        Some(r) => r.metrics.record(&method, resp.status(), elapsed),
        None => shared.unmatched.record(&method, resp.status(), elapsed),
    }
    if let Some(path) = path {
        let route_id = route.map(|r| r.id.clone());
        let status = resp.status();
        let id = request_id.to_str().unwrap_or("").to_string();
        let shared = shared.clone();
        let done = trail::Done {
            method,
            path,
            route_id,
            status,
            request_id: id,
        };
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

async fn handle(
    snap: &Snapshot,
    mut conn: ConnInfo,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    let upgrade_to = upgrade::requested(req.headers());
    let client_upgrade = upgrade_to.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    crate::accept::accept(&snap.ingress, &mut parts)?;
    conn.client = headers::client_ip(
        conn.remote.ip(),
        &parts.headers,
        &snap.config.trusted_proxies,
    );
    trail.client_ip = conn.client;
    let raw_host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = normalize_host(raw_host);
    let path = parts.uri.path();
    let key = RequestKey {
        host: &host,
        method: &parts.method,
        path,
        headers: &parts.headers,
    };
    let matched = snap
        .router
        .match_request(&key)
        .ok_or(GatewayError::NoRoute)?;
    let route = &snap.routes[matched.route];
    trail.route = Some(matched.route);
    let limit = snap.limits.max_body_bytes;
    if content_length(&parts.headers).is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let params = if route.chain.is_empty() {
        Vec::new()
    } else {
        let names = route.param_names.iter();
        names
            .enumerate()
            .filter_map(|(i, n)| Some((n.clone(), matched.params.get(path, i)?.to_string())))
            .collect()
    };
    // Only plugins read the normalised host back; skip the allocation otherwise.
    let host: Arc<str> = if route.chain.is_empty() {
        no_host()
    } else {
        host.into()
    };
    let head = stages::prepare_request(parts, &conn, route, &matched, host, request_id, upgrade_to);
    let body = Body::stream(body, limit, snap.limits.body_read_timeout);
    let body = match &trail.bytes_in {
        None => body,
        Some(n) => {
            let n = n.clone();
            let report = move |bytes| n.store(bytes, std::sync::atomic::Ordering::Relaxed);
            Body::counted(body, Box::new(report))
        }
    };
    if route.chain.is_empty() {
        let resp = forward::forward(route, conn.client, head, body, trail).await?;
        return Ok(match client_upgrade {
            Some(up) if upgrade::switched(&resp) => upgrade::tunnel(resp, up),
            _ => stages::downstream_response(resp),
        });
    }
    let call = stages::PluginCall {
        route,
        conn: &conn,
        request_id,
        params,
        client_upgrade,
    };
    Box::pin(stages::with_plugins(call, head, body, trail)).await
}

fn no_host() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
