//! Stage three: the head and body the upstream will get, put in the
//! exchange for the request hooks to edit.

use http::{HeaderMap, HeaderValue, Uri, header};
use hyper::upgrade::OnUpgrade;

use super::ConnInfo;
use super::accept::Accepted;
use super::headers::{X_REQUEST_ID, add_forwarded, rewrite_path, strip_hop_by_hop};
use crate::body::Body;
use crate::exchange::Exchange;
use crate::router::RouteMatch;
use crate::snapshot::{Route, Snapshot};

/// Hop-by-hop headers removed, forwarding headers added, the route's rewrite
/// applied; the body bounded by the listener's limits (and counted when
/// telemetry reads it). Returns the client's side of an upgrade.
pub fn upstream_request(
    snap: &Snapshot,
    conn: &ConnInfo,
    route: &Route,
    m: &RouteMatch,
    req: Accepted,
    ex: &mut Exchange,
) -> Option<OnUpgrade> {
    let Accepted {
        parts,
        body,
        upgrade,
    } = req;
    let protocol = upgrade.as_ref().map(|u| u.protocol.clone());
    let headers = upstream_headers(parts.headers, &parts.uri, conn, protocol, ex);
    let head = &mut ex.view.req;
    head.uri = upstream_uri(route, m, &parts.uri);
    head.method = parts.method;
    head.headers = headers;
    head.scheme = conn.scheme;
    if let Some(tls) = &conn.tls
        && (!route.chain.is_empty() || tls.consumer.is_some())
    {
        ex.view.attributes = tls.attributes(route.chain.is_empty());
    }
    ex.body = bounded(snap, body, ex);
    upgrade.map(|u| u.client)
}

/// The client's headers as the upstream gets them: hop-by-hop removed (but
/// `te: trailers` and an upgrade), the client certificate's identity, the
/// forwarding headers, `x-request-id`, and `Host`.
fn upstream_headers(
    mut headers: HeaderMap,
    uri: &Uri,
    conn: &ConnInfo,
    upgrade: Option<HeaderValue>,
    ex: &Exchange,
) -> HeaderMap {
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
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
    headers.insert(X_REQUEST_ID.clone(), ex.view.request_id.clone());
    if !headers.contains_key(header::HOST)
        && let Some(h) = original_host
    {
        headers.insert(header::HOST, h);
    }
    headers
}

fn upstream_uri(route: &Route, m: &RouteMatch, uri: &Uri) -> Uri {
    let Some(rw) = &route.rewrite else {
        return origin_form(uri);
    };
    let path = uri.path();
    let new_path = rewrite_path(rw, path, path, &m.params, &route.param_names);
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    pq.parse().unwrap_or_else(|_| origin_form(uri))
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

fn bounded(snap: &Snapshot, body: hyper::body::Incoming, ex: &Exchange) -> Body {
    let limits = &snap.limits;
    let body = Body::stream(body, limits.max_body_bytes, limits.body_read_timeout);
    match &ex.trail.bytes_in {
        None => body,
        Some(n) => {
            let n = n.clone();
            let report = move |bytes| n.store(bytes, std::sync::atomic::Ordering::Relaxed);
            Body::counted(body, Box::new(report))
        }
    }
}
