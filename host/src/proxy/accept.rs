//! Stage one: what the client sent becomes the canonical request
//! ([`crate::accept`]), from a known client address, within the size limit.

use http::request::Parts;
use http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::{ConnInfo, headers, upgrade};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::snapshot::Snapshot;

/// A request the gateway agreed to handle.
pub struct Accepted {
    /// The canonical head.
    pub parts: Parts,
    /// The body, not yet read.
    pub body: Incoming,
    /// A protocol upgrade the client asked for.
    pub upgrade: Option<Upgrade>,
}

/// A protocol upgrade (WebSocket) asked for by the client.
pub struct Upgrade {
    /// The protocol, for the upstream's `Upgrade` header.
    pub protocol: HeaderValue,
    /// The client's side of the connection, once switched.
    pub client: OnUpgrade,
}

/// Canonicalises `req`, sets the exchange's client address and checks the
/// declared body size.
pub fn accept(
    snap: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    ex: &mut Exchange,
) -> Result<Accepted, GatewayError> {
    let upgrade = upgrade::requested(req.headers()).map(|protocol| Upgrade {
        protocol,
        client: hyper::upgrade::on(&mut req),
    });
    let (mut parts, body) = req.into_parts();
    crate::accept::canonicalize(&snap.ingress, &mut parts)?;
    let trusted = &snap.config.trusted_proxies;
    ex.view.client_ip = headers::client_ip(conn.remote.ip(), &parts.headers, trusted);
    if content_length(&parts.headers).is_some_and(|n| n > snap.limits.max_body_bytes) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(Accepted {
        parts,
        body,
        upgrade,
    })
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
