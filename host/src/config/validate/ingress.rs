//! The ingress keys: `path_normalization`, `strip_request_headers`, the
//! attachments' `counter`, and the bounds of plugin state (`plugin_state`).

use std::sync::Arc;

use http::HeaderName;

use super::Errors;
use crate::accept::EscapedSlashes;
use crate::config::PluginStateBounds;
use crate::config::raw::{RawPathNormalization, RawPluginState};

/// `path_normalization.escaped_slashes`: `reject` (default) or `keep`.
pub(super) fn escaped_slashes(
    raw: Option<&RawPathNormalization>,
    errs: &mut Errors,
) -> EscapedSlashes {
    match raw.and_then(|r| r.escaped_slashes.as_deref()) {
        None | Some("reject") => EscapedSlashes::Reject,
        Some("keep") => EscapedSlashes::Keep,
        Some(other) => {
            errs.push(
                "path_normalization.escaped_slashes",
                format!("`{other}`: expected `reject` or `keep`"),
            );
            EscapedSlashes::Reject
        }
    }
}

/// `strip_request_headers`: header names, lower-cased.
pub(super) fn strip_headers(raw: &[String], errs: &mut Errors) -> Vec<HeaderName> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, h)| match HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                errs.push(
                    format!("strip_request_headers[{i}]"),
                    format!("`{h}` is not a header name"),
                );
                None
            }
        })
        .collect()
}

/// An attachment's `counter`: a shared rate-limit namespace name.
pub(super) fn counter(raw: Option<&str>, path: &str, errs: &mut Errors) -> Option<Arc<str>> {
    let name = raw?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(
            format!("{path}.counter"),
            format!("`{name}`: 1-64 letters, digits, `-`, `_` or `.`"),
        );
        return None;
    }
    Some(name.into())
}

/// `plugin_state`: every bound at least 1.
pub(super) fn plugin_state(raw: Option<&RawPluginState>, errs: &mut Errors) -> PluginStateBounds {
    let d = PluginStateBounds::default();
    let Some(r) = raw else { return d };
    let mut bound = |v: Option<usize>, default: usize, key: &str| match v {
        Some(0) => {
            errs.push(format!("plugin_state.{key}"), "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    };
    PluginStateBounds {
        rate_limit_keys: bound(r.rate_limit_keys, d.rate_limit_keys, "rate_limit_keys"),
        kv_keys: bound(r.kv_keys, d.kv_keys, "kv_keys"),
        kv_bytes: bound(r.kv_bytes, d.kv_bytes, "kv_bytes"),
        callout_cache_bytes: bound(
            r.callout_cache_bytes,
            d.callout_cache_bytes,
            "callout_cache_bytes",
        ),
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
pub(super) fn trusted_proxies(raw: &[String], errs: &mut Errors) -> Vec<ipnet::IpNet> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, c)| match parse_cidr(c) {
            Some(net) => Some(net),
            None => {
                errs.push(
                    format!("trusted_proxies[{i}]"),
                    format!("`{c}` is not an IP address or CIDR (10.0.0.0/8, fd00::/8)"),
                );
                None
            }
        })
        .collect()
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (one host).
fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
