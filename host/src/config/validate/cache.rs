//! `cache:` at the top level (the store, and defaults for every route) and
//! on routes (the route's policy, over the defaults).

use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::Errors;
use crate::config::cache::{CachePolicy, CacheStoreConfig, VaryBy};
use crate::config::raw::RawCache;

/// The store's bound, from the top-level block.
pub(super) fn store(raw: Option<&RawCache>, errs: &mut Errors) -> CacheStoreConfig {
    let mut out = CacheStoreConfig::default();
    if let Some(n) = raw.and_then(|r| r.max_bytes) {
        if n == 0 {
            errs.push("cache.max_bytes", "must be more than 0");
        }
        out.max_bytes = n;
    }
    out
}

/// A route's block: the store's keys belong to the top level only.
pub(super) fn route_block(raw: &RawCache, path: &str, errs: &mut Errors) -> Partial {
    if raw.max_bytes.is_some() {
        errs.push(
            format!("{path}.max_bytes"),
            "the store's bound is set once, in the top-level `cache` block",
        );
    }
    partial(raw, path, errs)
}

/// One `cache:` block, checked on its own: every key it sets, errors named
/// at `path`. Routes merge theirs over the top-level one ([`merge`]).
#[derive(Debug, Default)]
pub(super) struct Partial {
    enabled: Option<bool>,
    default_ttl: Option<Duration>,
    status_ttl: Option<Vec<(StatusCode, Duration)>>,
    max_object_bytes: Option<usize>,
    vary_by: Option<Vec<VaryBy>>,
    ignore_query: Option<Vec<String>>,
    store_set_cookie: Option<bool>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    coalesce: Option<bool>,
    coalesce_timeout: Option<Duration>,
    honor_client_cache_control: Option<bool>,
}

/// Checks the block at `path` (`cache`, `routes[3].cache`).
pub(super) fn partial(raw: &RawCache, path: &str, errs: &mut Errors) -> Partial {
    let status_ttl = raw.status_ttl.as_ref().map(|map| {
        map.iter()
            .filter_map(|(k, d)| {
                let status =
                    k.0.parse::<u16>()
                        .ok()
                        .and_then(|n| StatusCode::from_u16(n).ok());
                match status {
                    Some(s) if s.as_u16() >= 200 && s != StatusCode::PARTIAL_CONTENT => {
                        Some((s, d.0))
                    }
                    _ => {
                        errs.push(
                            format!("{path}.status_ttl.{k}"),
                            "expected a final status code (200-599, not 206)",
                        );
                        None
                    }
                }
            })
            .collect()
    });
    if raw.max_object_bytes == Some(0) {
        errs.push(format!("{path}.max_object_bytes"), "must be more than 0");
    }
    let vary_by = raw.vary_by.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, v)| {
                vary_by(v)
                    .map_err(|e| errs.push(format!("{path}.vary_by[{i}]"), e))
                    .ok()
            })
            .collect()
    });
    if raw
        .coalesce_timeout
        .is_some_and(|d| d.0.is_zero() || d.0 > Duration::from_secs(60))
    {
        errs.push(
            format!("{path}.coalesce_timeout"),
            "must be more than 0 and at most 60s",
        );
    }
    let honor = raw.client_cache_control.as_deref().and_then(|v| match v {
        "honor" => Some(true),
        "ignore" => Some(false),
        other => {
            errs.push(
                format!("{path}.client_cache_control"),
                format!("`{other}` is not one of honor, ignore"),
            );
            None
        }
    });
    Partial {
        enabled: raw.enabled,
        default_ttl: raw.default_ttl.map(|d| d.0),
        status_ttl,
        max_object_bytes: raw
            .max_object_bytes
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        vary_by,
        ignore_query: raw.ignore_query.clone(),
        store_set_cookie: raw.store_set_cookie,
        stale_while_revalidate: raw.stale_while_revalidate.map(|d| d.0),
        stale_if_error: raw.stale_if_error.map(|d| d.0),
        coalesce: raw.coalesce,
        coalesce_timeout: raw.coalesce_timeout.map(|d| d.0),
        honor_client_cache_control: honor,
    }
}

/// The policy of a route: its own block over the top-level one, key by key.
/// `None` when the route is not cached: no block of its own and no
/// top-level `enabled: true`, or its own `enabled: false`.
pub(super) fn merge(top: Option<&Partial>, own: Option<&Partial>) -> Option<CachePolicy> {
    let enabled = own
        .and_then(|o| o.enabled)
        .or(own.map(|_| true))
        .or(top.and_then(|t| t.enabled))
        .unwrap_or(false);
    if !enabled {
        return None;
    }
    let empty = Partial::default();
    let (top, own) = (top.unwrap_or(&empty), own.unwrap_or(&empty));
    let d = CachePolicy::default();
    macro_rules! pick {
        ($f:ident) => {
            own.$f.clone().or_else(|| top.$f.clone())
        };
    }
    Some(CachePolicy {
        default_ttl: pick!(default_ttl),
        status_ttl: pick!(status_ttl).unwrap_or(d.status_ttl),
        max_object_bytes: pick!(max_object_bytes).unwrap_or(d.max_object_bytes),
        vary_by: pick!(vary_by).unwrap_or(d.vary_by),
        ignore_query: pick!(ignore_query).unwrap_or(d.ignore_query),
        store_set_cookie: pick!(store_set_cookie).unwrap_or(d.store_set_cookie),
        stale_while_revalidate: pick!(stale_while_revalidate).unwrap_or(d.stale_while_revalidate),
        stale_if_error: pick!(stale_if_error).unwrap_or(d.stale_if_error),
        coalesce: pick!(coalesce).unwrap_or(d.coalesce),
        coalesce_timeout: pick!(coalesce_timeout).unwrap_or(d.coalesce_timeout),
        honor_client_cache_control: pick!(honor_client_cache_control)
            .unwrap_or(d.honor_client_cache_control),
    })
}

/// `attr.<name>` or `header.<name>`.
fn vary_by(v: &str) -> Result<VaryBy, String> {
    if let Some(name) = v.strip_prefix("attr.")
        && !name.is_empty()
    {
        return Ok(VaryBy::Attribute(name.to_string()));
    }
    if let Some(name) = v.strip_prefix("header.") {
        return HeaderName::from_bytes(name.as_bytes())
            .map(VaryBy::Header)
            .map_err(|_| format!("`{name}` is not a header name"));
    }
    Err(format!(
        "`{v}` is not attr.<name> (attr.consumer, attr.tenant) or header.<name>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawCache {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn part(yaml: &str, path: &str, errs: &mut Errors) -> Partial {
        partial(&raw(yaml), path, errs)
    }

    #[test]
    fn a_route_block_overrides_the_top_level_defaults_key_by_key() {
        let mut errs = Errors(Vec::new());
        let top = part(
            "{default_ttl: 30s, vary_by: [attr.tenant], stale_if_error: 1m}",
            "cache",
            &mut errs,
        );
        let own = part(
            "{default_ttl: 5s, status_ttl: {404: 2s}}",
            "routes[0].cache",
            &mut errs,
        );
        assert!(errs.0.is_empty(), "{:?}", errs.0);
        let p = merge(Some(&top), Some(&own)).unwrap();
        assert_eq!(p.default_ttl, Some(Duration::from_secs(5)));
        assert_eq!(p.vary_by, vec![VaryBy::Attribute("tenant".into())]);
        assert_eq!(p.stale_if_error, Duration::from_secs(60));
        assert_eq!(
            p.default_freshness(StatusCode::NOT_FOUND),
            Some(Duration::from_secs(2))
        );
        // Not heuristically cacheable: the default TTL does not reach it.
        assert_eq!(p.default_freshness(StatusCode::BAD_GATEWAY), None);
    }

    #[test]
    fn routes_are_cached_only_when_asked() {
        let mut errs = Errors(Vec::new());
        let on = part("{enabled: true}", "cache", &mut errs);
        let off = part("{enabled: false}", "r", &mut errs);
        let plain = part("{}", "r", &mut errs);
        assert!(merge(None, None).is_none());
        assert!(merge(Some(&on), None).is_some());
        assert!(merge(Some(&on), Some(&off)).is_none());
        assert!(merge(None, Some(&plain)).is_some());
    }

    #[test]
    fn bad_entries_are_named() {
        let mut errs = Errors(Vec::new());
        part(
            "{vary_by: [consumer, 'header.bad name'], status_ttl: {206: 1s}, client_cache_control: maybe, max_object_bytes: 0}",
            "routes[1].cache",
            &mut errs,
        );
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                "routes[1].cache.status_ttl.206",
                "routes[1].cache.max_object_bytes",
                "routes[1].cache.vary_by[0]",
                "routes[1].cache.vary_by[1]",
                "routes[1].cache.client_cache_control",
            ]
        );
    }
}
