//! Raw → model. Collects every error with its path instead of stopping at the first.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use super::model::*;
use super::raw::*;

mod cache;
mod edge;
mod fallback;
mod ingress;
mod observe;
mod pattern;
mod policy;
mod resilience;
mod route;
mod service;

use route::{attachments, check_callouts, route};

/// Collects errors while walking the raw document.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(ConfigError::new(path, msg));
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

pub fn validate(mut raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());
    policy::expand(&mut raw, base, &mut errs);
    let listeners = raw
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| listener(l, &format!("listeners[{i}]"), base, &mut errs))
        .collect();
    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| observe::admin(a, &mut errs));
    let access_log = raw
        .access_log
        .as_ref()
        .map(|a| observe::access_log(a, base, &mut errs));
    let tracing = raw
        .tracing
        .as_ref()
        .and_then(|t| observe::tracing(t, &mut errs));
    let redis = raw.redis.and_then(|r| redis(r, &mut errs));
    let plugin_dir = base.join(raw.plugin_dir.unwrap_or_else(|| "plugins".into()));
    let global_plugins = attachments(&raw.plugins, "plugins", base, &mut errs);

    let (services, service_index) = services(&raw.services, base, &mut errs);
    let cache_store = cache::store(raw.cache.as_ref(), &mut errs);
    let cache_defaults = raw
        .cache
        .as_ref()
        .map(|c| cache::partial(c, "cache", &mut errs));
    let routes = routes(
        &raw.routes,
        &service_index,
        cache_defaults.as_ref(),
        base,
        &mut errs,
    );
    let limits = raw
        .limits
        .as_ref()
        .map(|l| limits(l, &mut errs))
        .unwrap_or_default();
    let trusted_proxies = ingress::trusted_proxies(&raw.trusted_proxies, &mut errs);
    check_callouts(&global_plugins, &routes, &service_index, &mut errs);
    let consumers = observe::consumers(&raw.consumers, &mut errs);
    let consumer_store = observe::consumer_store(raw.consumer_store.as_ref(), base, &mut errs);
    let escaped_slashes = ingress::escaped_slashes(raw.path_normalization.as_ref(), &mut errs);
    let strip_request_headers = ingress::strip_headers(&raw.strip_request_headers, &mut errs);
    let plugin_state = ingress::plugin_state(raw.plugin_state.as_ref(), &mut errs);
    if raw.workers == Some(0) {
        errs.push("workers", "must be at least 1");
    }
    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    Ok(Config {
        listeners,
        plugin_dir,
        redis,
        global_plugins,
        services,
        routes,
        workers: raw.workers,
        trusted_proxies,
        limits,
        access_log,
        tracing,
        admin,
        escaped_slashes,
        strip_request_headers,
        plugin_state,
        allow_precompiled: raw.allow_precompiled,
        cache: cache_store,
        consumers,
        consumer_store,
    })
}

/// The services, and where each name is (routes refer to services by name).
fn services(
    raw: &[RawService],
    base: &Path,
    errs: &mut Errors,
) -> (Vec<ServiceConfig>, HashMap<String, usize>) {
    let mut service_index = HashMap::new();
    let mut services = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let path = format!("services[{i}]");
        if service_index.insert(s.name.clone(), i).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("duplicate service name \"{}\"", s.name),
            );
        }
        services.push(service::service(s, &path, base, errs));
    }
    // Fallbacks name services, so they are resolved once all are known.
    for (i, s) in raw.iter().enumerate() {
        if let (Some(f), Some(svc)) = (&s.fallback, services.get_mut(i)) {
            let path = format!("services[{i}].fallback");
            svc.fallback = fallback::fallback(f, &path, &service_index, Some(&s.name), errs);
        }
    }
    (services, service_index)
}

/// The routes; ids are unique.
fn routes(
    raw: &[RawRoute],
    service_index: &HashMap<String, usize>,
    cache_defaults: Option<&cache::Partial>,
    base: &Path,
    errs: &mut Errors,
) -> Vec<RouteConfig> {
    let mut ids = HashMap::new();
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(prev) = ids.insert(r.id.clone(), i) {
            errs.push(
                format!("{path}.id"),
                format!("duplicate route id \"{}\" (also routes[{prev}])", r.id),
            );
        }
        let own_cache = r
            .cache
            .as_ref()
            .map(|c| cache::route_block(c, &format!("{path}.cache"), errs));
        if let Some(mut route) = route(r, &path, service_index, base, errs) {
            route.cache = cache::merge(cache_defaults, own_cache.as_ref());
            if route.cache.is_some() && route.fallback.is_some() {
                errs.push(
                    format!("{path}.fallback"),
                    "not available on a cached route (its `cache.stale_if_error` answers when the service fails)",
                );
            }
            routes.push(route);
        }
    }
    routes
}

/// The URL is checked for shape only: a gateway that never uses the Redis
/// backend never connects. Errors never echo the URL (it may hold a password).
fn redis(r: RawRedis, errs: &mut Errors) -> Option<RedisConfig> {
    if r.url.starts_with("rediss://") {
        errs.push(
            "redis.url",
            "TLS to Redis (rediss://) is not available in this version yet",
        );
        return None;
    }
    if !r.url.starts_with("redis://") {
        errs.push("redis.url", "expected a redis://host:port URL");
        return None;
    }
    if let Err(e) = redis::Client::open(r.url.as_str()) {
        errs.push("redis.url", format!("not a valid Redis URL: {e}"));
        return None;
    }
    let timeout = r.timeout.map_or(Duration::from_millis(50), |d| d.0);
    if timeout.is_zero() {
        errs.push("redis.timeout", "must be more than 0");
    }
    Some(RedisConfig {
        url: r.url,
        timeout,
    })
}

fn listener(l: &RawListener, path: &str, base: &Path, errs: &mut Errors) -> Option<ListenerConfig> {
    let tls = l
        .tls
        .as_ref()
        .and_then(|t| edge::listener_tls(t, &format!("{path}.tls"), base, errs));
    match l.addr.parse() {
        Ok(addr) => Some(ListenerConfig { addr, tls }),
        Err(_) => {
            errs.push(
                format!("{path}.addr"),
                format!("`{}` is not an ip:port address", l.addr),
            );
            None
        }
    }
}

fn limits(l: &RawLimits, errs: &mut Errors) -> Limits {
    let d = Limits::default();
    let max_header_bytes = l.max_header_bytes.unwrap_or(d.max_header_bytes);
    if max_header_bytes < 8192 {
        errs.push("limits.max_header_bytes", "must be at least 8192");
    }
    let positive = |v: Option<super::duration::Dur>,
                    default: Duration,
                    key: &str,
                    errs: &mut Errors| match v.map(|x| x.0) {
        Some(x) if x.is_zero() => {
            errs.push(format!("limits.{key}"), "must be more than 0");
            default
        }
        Some(x) => x,
        None => default,
    };
    if l.max_connections == Some(0) {
        errs.push("limits.max_connections", "must be at least 1");
    }
    if l.max_connections_per_ip == Some(0) {
        errs.push("limits.max_connections_per_ip", "must be at least 1");
    }
    Limits {
        header_read_timeout: l.header_read_timeout.map_or(d.header_read_timeout, |x| x.0),
        max_header_bytes,
        max_body_bytes: l.max_body_bytes.unwrap_or(d.max_body_bytes),
        drain_timeout: l.drain_timeout.map_or(d.drain_timeout, |x| x.0),
        drain_delay: l.drain_delay.map_or(d.drain_delay, |x| x.0),
        body_read_timeout: positive(
            l.body_read_timeout,
            d.body_read_timeout,
            "body_read_timeout",
            errs,
        ),
        idle_timeout: positive(l.idle_timeout, d.idle_timeout, "idle_timeout", errs),
        h2_keepalive_interval: positive(
            l.h2_keepalive_interval,
            d.h2_keepalive_interval,
            "h2_keepalive_interval",
            errs,
        ),
        h2_keepalive_timeout: positive(
            l.h2_keepalive_timeout,
            d.h2_keepalive_timeout,
            "h2_keepalive_timeout",
            errs,
        ),
        max_connections: l.max_connections.unwrap_or(d.max_connections),
        max_connections_per_ip: l.max_connections_per_ip,
    }
}
