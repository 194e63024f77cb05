//! Stage two: the route, and what plugins will read of the match.

use http::header;

use super::accept::Accepted;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::router::{RequestKey, RouteMatch, normalize_host};
use crate::snapshot::{Route, Snapshot};

/// The route matching `req`. Its id, path parameters and the host are
/// copied into the exchange for the plugins; a route without plugins skips
/// the copies.
pub fn route<'s>(
    snap: &'s Snapshot,
    req: &Accepted,
    ex: &mut Exchange,
) -> Result<(&'s Route, RouteMatch), GatewayError> {
    let parts = &req.parts;
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
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let matched = snap
        .router
        .match_request(&key)
        .ok_or(GatewayError::NoRoute)?;
    let route = &snap.routes[matched.route];
    ex.trail.route = Some(matched.route);
    if !route.chain.is_empty() || route.cache.is_some() {
        // Plugins read it; the cache keys on it.
        ex.view.req.host = host.as_ref().into();
    }
    if !route.chain.is_empty() {
        ex.view.route_id = route.id.clone();
        let names = route.param_names.iter().enumerate();
        ex.view.params = names
            .filter_map(|(i, n)| Some((n.clone(), matched.params.get(path, i)?.to_string())))
            .collect();
        ex.view.counters = route.chain.counters();
    }
    Ok((route, matched))
}
