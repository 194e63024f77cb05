//! Header rules at the proxy boundary: hop-by-hop removal (both directions),
//! `X-Forwarded-*`, request ids, and the path rewrite.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::{Rewrite, TemplatePart};
use crate::router::Params;

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes `Connection`, the headers it names, and the fixed hop-by-hop set
/// (RFC 9110 §7.6.1), plus any `proxy-*` header.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Nearly every message carries none of these, or only `connection`: one
    // pass over the names decides, instead of a hashed lookup per listed name.
    let (mut any, mut others) = (false, false);
    for name in headers.keys() {
        if is_hop_by_hop(name) {
            any = true;
            others |= name != header::CONNECTION;
        }
    }
    if !any {
        return;
    }
    // Headers named by `Connection`, skipping the usual tokens (`keep-alive`,
    // `close`, `upgrade`…) that are removed below anyway or name no header, so
    // that the common `Connection: keep-alive` costs no allocation.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.is_empty()
                || CONNECTION_TOKENS
                    .iter()
                    .any(|t| token.eq_ignore_ascii_case(t))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    if !others {
        headers.remove(header::CONNECTION);
        return;
    }
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
        headers.remove(name);
    }
}

/// `Connection` tokens that need no lookup: hop-by-hop anyway, or not a header.
const CONNECTION_TOKENS: [&str; 7] = [
    "close",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "transfer-encoding",
    "proxy-connection",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The client's address. Without trusted proxies it is the peer. When the peer
/// is trusted, `X-Forwarded-For` is read from the right (the entry the nearest
/// proxy added) past every trusted hop; the first untrusted address is the
/// client. Entries left of it were written by the client and are never believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(list) = value.to_str() else {
            return client;
        };
        for entry in list.rsplit(',') {
            let Some(ip) = forwarded_ip(entry.trim()) else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443` (proxies write all of these).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return port_ok
            .then(|| ip.parse::<std::net::Ipv6Addr>().ok())
            .flatten()
            .map(IpAddr::V6);
    }
    entry
        .parse::<std::net::SocketAddrV4>()
        .ok()
        .map(|a| IpAddr::V4(*a.ip()))
}

/// The peer address as a header value, made once per connection (it is what
/// every request on it appends to `X-Forwarded-For`).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends the peer (`peer_value`) to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto`/`-Host`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    scheme: &'static str,
    host: Option<HeaderValue>,
) {
    let xff = match headers.get(&X_FORWARDED_FOR) {
        Some(prev) if !prev.is_empty() => {
            HeaderValue::from_bytes(&[prev.as_bytes(), b", ", peer.as_bytes()].concat()).ok()
        }
        _ => Some(peer.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h);
    }
}

/// Keeps a client's `X-Request-Id` when it is sane (1-128 visible ASCII
/// characters), otherwise generates a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut buf = [0u8; 32];
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in a
        .to_be_bytes()
        .iter()
        .chain(b.to_be_bytes().iter())
        .enumerate()
    {
        buf[2 * i] = HEX[(byte >> 4) as usize];
        buf[2 * i + 1] = HEX[(byte & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Applies a route's rewrite to `path`; `params` index into `matched`, the path
/// the router saw. Returns the new path (always starting with `/`).
pub fn rewrite_path(
    rw: &Rewrite,
    path: &str,
    matched: &str,
    params: &Params,
    names: &[std::sync::Arc<str>],
) -> String {
    match rw {
        Rewrite::StripPrefix(prefix) => {
            let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
            if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        }
        Rewrite::Template(parts) => {
            let mut out = String::with_capacity(path.len());
            for part in parts {
                match part {
                    TemplatePart::Literal(l) => out.push_str(l),
                    TemplatePart::Param(p) => {
                        if let Some(i) = names.iter().position(|n| **n == **p) {
                            out.push_str(params.get(matched, i).unwrap_or(""));
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_and_fixed_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("x"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // Each hop-by-hop header alone is enough to be found.
        for name in [
            "transfer-encoding",
            "upgrade",
            "trailer",
            "proxy-connection",
            "proxy-x",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}");
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, request_id(&h));
    }

    #[test]
    fn client_ip_believes_only_trusted_hops() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.1.1"),
        );
        // 10.1.1.1 is a trusted hop; 203.0.113.7 is what it saw; 6.6.6.6 was typed by the client.
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored entirely.
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        assert_eq!(
            client_ip(peer, &h, &[]),
            peer,
            "no trusted proxies: the peer"
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.1.1.1"),
        );
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_peers_and_entries_with_ports_are_understood() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7:5678"),
        );
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443, 10.1.1.1:80"),
        );
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("[2001:db8::2]"));
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("::ffff:198.51.100.9"),
        );
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted mapped peer is reported in its IPv4 form.
        let outsider: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(outsider, &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        for junk in ["[2001:db8::1", "[2001:db8::1]:x", "1.2.3.4:", "host:80"] {
            assert_eq!(forwarded_ip(junk), None, "{junk}");
        }
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        add_forwarded(
            &mut h,
            &peer_value("10.0.0.1".parse().unwrap()),
            "http",
            Some(HeaderValue::from_static("a.com")),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        let mut fresh = HeaderMap::new();
        add_forwarded(
            &mut fresh,
            &peer_value("::1".parse().unwrap()),
            "https",
            None,
        );
        assert_eq!(fresh["x-forwarded-for"], "::1");
        assert!(!fresh.contains_key("x-forwarded-host"));
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com");
    }
}
