//! Raw → model. Collects every error with its path instead of stopping at the first.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::ConfigError;
use super::model::*;
use super::raw::*;

mod edge;
mod ingress;
mod observe;

/// Collects errors while walking the raw document.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(ConfigError::new(path, msg));
    }
}

pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());
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

    let mut service_index = HashMap::new();
    let mut services = Vec::with_capacity(raw.services.len());
    for (i, s) in raw.services.iter().enumerate() {
        let path = format!("services[{i}]");
        if service_index.insert(s.name.clone(), i).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("duplicate service name \"{}\"", s.name),
            );
        }
        services.push(service(s, &path, base, &mut errs));
    }

    let mut ids = HashMap::new();
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(prev) = ids.insert(r.id.clone(), i) {
            errs.push(
                format!("{path}.id"),
                format!("duplicate route id \"{}\" (also routes[{prev}])", r.id),
            );
        }
        if let Some(route) = route(r, &path, &service_index, base, &mut errs) {
            routes.push(route);
        }
    }
    let limits = raw
        .limits
        .as_ref()
        .map(|l| limits(l, &mut errs))
        .unwrap_or_default();
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
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
        .collect();
    let keys = observe::consumer_keys(&raw.consumers, &mut errs);
    let mut global_plugins = global_plugins;
    observe::inject_keys(&mut global_plugins, &keys, "plugins", &mut errs);
    for (i, r) in routes.iter_mut().enumerate() {
        observe::inject_keys(
            &mut r.plugins,
            &keys,
            &format!("routes[{i}].plugins"),
            &mut errs,
        );
    }
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
    })
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (one host).
fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
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

fn service(s: &RawService, path: &str, base: &Path, errs: &mut Errors) -> ServiceConfig {
    if s.max_concurrent_requests == Some(0) {
        errs.push(
            format!("{path}.max_concurrent_requests"),
            "must be at least 1",
        );
    }
    let load_balancer = match s.load_balancer.as_deref().unwrap_or("round_robin") {
        "round_robin" => LoadBalancerKind::RoundRobin,
        "weighted_round_robin" => LoadBalancerKind::WeightedRoundRobin,
        "least_connections" => LoadBalancerKind::LeastConnections,
        "ip_hash" => LoadBalancerKind::IpHash,
        "random" => LoadBalancerKind::Random,
        "header_hash" => match s.hash_header.as_deref().map(HeaderName::try_from) {
            Some(Ok(h)) => LoadBalancerKind::HeaderHash(h),
            Some(Err(_)) => {
                errs.push(format!("{path}.hash_header"), "not a valid header name");
                LoadBalancerKind::RoundRobin
            }
            None => {
                errs.push(
                    format!("{path}.hash_header"),
                    "required when load_balancer is header_hash",
                );
                LoadBalancerKind::RoundRobin
            }
        },
        other => {
            errs.push(
                format!("{path}.load_balancer"),
                format!("unknown load balancer `{other}` (round_robin, weighted_round_robin, least_connections, ip_hash, header_hash, random)"),
            );
            LoadBalancerKind::RoundRobin
        }
    };
    if s.instances.is_empty() {
        errs.push(
            format!("{path}.instances"),
            "a service needs at least one instance",
        );
    }
    let instances = s
        .instances
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| {
            let ipath = format!("{path}.instances[{i}]");
            let weight = inst.weight.unwrap_or(1);
            if weight == 0 {
                errs.push(format!("{ipath}.weight"), "must be at least 1");
            }
            match inst.url.parse::<http::Uri>() {
                Ok(url)
                    if matches!(url.scheme_str(), Some("http" | "https"))
                        && url.authority().is_some() =>
                {
                    Some(InstanceConfig { url, weight })
                }
                _ => {
                    errs.push(
                        format!("{ipath}.url"),
                        format!("`{}` is not an http(s)://host:port URL", inst.url),
                    );
                    None
                }
            }
        })
        .collect::<Vec<InstanceConfig>>();
    let schemes: Vec<&str> = instances
        .iter()
        .filter_map(|i| i.url.scheme_str())
        .collect();
    let edge = edge::service_edge(s, path, base, &schemes, errs);
    ServiceConfig {
        name: s.name.as_str().into(),
        load_balancer,
        instances,
        connect_timeout: s
            .connect_timeout
            .map_or(std::time::Duration::from_secs(1), |d| d.0),
        timeout: s
            .timeout
            .map_or(std::time::Duration::from_secs(30), |d| d.0),
        per_try_timeout: edge.per_try_timeout,
        protocol: edge.protocol,
        tls: edge.tls,
        health_check: edge.health_check,
        outlier_detection: edge.outlier_detection,
        circuit_breaker: edge.circuit_breaker,
        retries: edge.retries,
        max_concurrent_requests: s.max_concurrent_requests,
    }
}

fn route(
    r: &RawRoute,
    path: &str,
    services: &HashMap<String, usize>,
    base: &Path,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let before = errs.0.len();
    let m = &r.matcher;
    let pattern = match parse_path_pattern(&m.path) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(format!("{path}.match.path"), e);
            None
        }
    };
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(
                |(i, s)| match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        errs.push(
                            format!("{path}.match.methods[{i}]"),
                            format!("`{s}` is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect()
    });
    let hosts = m
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match parse_host_pattern(h) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.push(format!("{path}.match.hosts[{i}]"), e);
                None
            }
        })
        .collect();
    let headers = m
        .headers
        .iter()
        .filter_map(|(k, v)| {
            match (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(k), Ok(v)) => Some((k, v)),
                _ => {
                    errs.push(
                        format!("{path}.match.headers.{k}"),
                        "not a valid header name and value",
                    );
                    None
                }
            }
        })
        .collect();
    let target = target(r, path, services, errs);
    let rewrite = r
        .rewrite
        .as_ref()
        .and_then(|rw| rewrite(rw, pattern.as_ref(), path, errs));
    let plugins = attachments(&r.plugins, &format!("{path}.plugins"), base, errs);
    if errs.0.len() > before {
        return None;
    }
    Some(RouteConfig {
        id: r.id.as_str().into(),
        methods,
        hosts,
        path: pattern?,
        headers,
        priority: r.priority,
        rewrite,
        target: target?,
        plugins,
        preserve_host: r.preserve_host.unwrap_or(true),
        retry_non_idempotent: r.retry_non_idempotent,
    })
}

fn target(
    r: &RawRoute,
    path: &str,
    services: &HashMap<String, usize>,
    errs: &mut Errors,
) -> Option<Target> {
    let lookup = |name: &str, at: String, errs: &mut Errors| match services.get(name) {
        Some(&i) => Some(i),
        None => {
            errs.push(at, format!("unknown service \"{name}\""));
            None
        }
    };
    match (&r.upstream, &r.split) {
        (Some(name), None) => {
            if r.split_key.is_some() {
                errs.push(format!("{path}.split_key"), "only meaningful with `split`");
            }
            lookup(name, format!("{path}.upstream"), errs).map(Target::Service)
        }
        (None, Some(arms)) => {
            if arms.is_empty() {
                errs.push(format!("{path}.split"), "needs at least one service");
            }
            let mut out = Vec::new();
            for (i, arm) in arms.iter().enumerate() {
                if arm.weight == 0 {
                    errs.push(format!("{path}.split[{i}].weight"), "must be at least 1");
                }
                if let Some(s) = lookup(&arm.service, format!("{path}.split[{i}].service"), errs) {
                    out.push((s, arm.weight));
                }
            }
            let key = match r.split_key.as_deref() {
                None | Some("random") => SplitKey::Random,
                Some("ip") => SplitKey::ClientIp,
                Some(k) => match k.strip_prefix("header:").map(HeaderName::try_from) {
                    Some(Ok(h)) => SplitKey::Header(h),
                    _ => {
                        errs.push(
                            format!("{path}.split_key"),
                            format!("`{k}`: expected `ip`, `random` or `header:<name>`"),
                        );
                        SplitKey::Random
                    }
                },
            };
            Some(Target::Split { arms: out, key })
        }
        (Some(_), Some(_)) => {
            errs.push(
                path.to_string(),
                "set either `upstream` or `split`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(path.to_string(), "missing `upstream` (or `split`)");
            None
        }
    }
}

fn rewrite(
    rw: &RawRewrite,
    pattern: Option<&PathPattern>,
    path: &str,
    errs: &mut Errors,
) -> Option<Rewrite> {
    match (&rw.strip_prefix, &rw.path) {
        (Some(p), None) if p.starts_with('/') => Some(Rewrite::StripPrefix(p.clone())),
        (Some(_), None) => {
            errs.push(
                format!("{path}.rewrite.strip_prefix"),
                "must start with `/`",
            );
            None
        }
        (None, Some(t)) => match parse_template(t) {
            Ok(parts) => {
                let names = pattern.map(PathPattern::param_names).unwrap_or_default();
                for part in &parts {
                    if let TemplatePart::Param(p) = part
                        && pattern.is_some()
                        && !names.contains(&p.as_str())
                    {
                        errs.push(
                            format!("{path}.rewrite.path"),
                            format!("`{{{p}}}` is not a parameter of match.path"),
                        );
                    }
                }
                Some(Rewrite::Template(parts))
            }
            Err(e) => {
                errs.push(format!("{path}.rewrite.path"), e);
                None
            }
        },
        _ => {
            errs.push(
                format!("{path}.rewrite"),
                "set exactly one of `strip_prefix` or `path`",
            );
            None
        }
    }
}

fn attachments(
    raw: &[RawAttachment],
    path: &str,
    base: &Path,
    errs: &mut Errors,
) -> Vec<AttachmentConfig> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let p = format!("{path}[{i}]");
            let valid_name = !a.name.is_empty()
                && a.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                errs.push(
                    format!("{p}.name"),
                    format!(
                        "`{}`: plugin names use letters, digits, `-` and `_`",
                        a.name
                    ),
                );
                return None;
            }
            let on_error = match a.on_error.as_deref() {
                None | Some("deny") => OnError::Deny,
                Some("allow") => OnError::Allow,
                Some(other) => {
                    errs.push(
                        format!("{p}.on_error"),
                        format!("`{other}`: expected `deny` or `allow`"),
                    );
                    return None;
                }
            };
            let config = if a.config.is_null() {
                "{}".to_string()
            } else {
                a.config.to_string()
            };
            Some(AttachmentConfig {
                name: a.name.as_str().into(),
                on_error,
                config: config.into(),
                timeout: a.timeout.map_or(DEFAULT_PLUGIN_TIMEOUT, |d| d.0),
                memory_limit: a
                    .memory_limit_mb
                    .map_or(DEFAULT_PLUGIN_MEMORY, |m| (m as usize) << 20),
                max_instances: a.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES).max(1),
                body_limit: a.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT),
                optional: a.optional,
                allow_read: a.allow_read.iter().map(|d| base.join(d)).collect(),
                counter: ingress::counter(a.counter.as_deref(), &p, errs),
            })
        })
        .collect()
}

/// Parses `*.example.com` or `api.example.com` (lower-cased, no port).
pub fn parse_host_pattern(h: &str) -> Result<HostPattern, String> {
    let h = h.to_ascii_lowercase();
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match h.strip_prefix("*.") {
        Some(suffix) if ok(suffix) => Ok(HostPattern::Wildcard(suffix.to_string())),
        None if ok(&h) => Ok(HostPattern::Exact(h)),
        _ => Err(format!("`{h}` is not a host name or `*.suffix` wildcard")),
    }
}

/// Parses a route path pattern: `/exact`, `/a/{param}/b`, `/prefix/*`, `/prefix/{*rest}`.
pub fn parse_path_pattern(p: &str) -> Result<PathPattern, String> {
    let Some(body) = p.strip_prefix('/') else {
        return Err(format!("`{p}` must start with `/`"));
    };
    let mut segments = Vec::new();
    let mut tail = None;
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    for (i, seg) in parts.iter().enumerate() {
        if *seg == "*" || (seg.starts_with("{*") && seg.ends_with('}')) {
            if i != last {
                return Err(format!("`{p}`: a `*` tail must be the last segment"));
            }
            let name = if *seg == "*" {
                "rest"
            } else {
                &seg[2..seg.len() - 1]
            };
            check_name(name, p)?;
            tail = Some(name.to_string());
        } else if seg.starts_with('{') && seg.ends_with('}') {
            let name = &seg[1..seg.len() - 1];
            check_name(name, p)?;
            segments.push(Segment::Param(name.to_string()));
        } else if seg.contains(['{', '}', '*']) {
            return Err(format!(
                "`{p}`: `{seg}` mixes literal text with `{{`, `}}` or `*`"
            ));
        } else {
            segments.push(Segment::Static(seg.to_string()));
        }
    }
    let pattern = PathPattern {
        raw: p.to_string(),
        segments,
        tail,
    };
    let names = pattern.param_names();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("`{p}`: parameter `{n}` appears twice"));
        }
    }
    Ok(pattern)
}

fn check_name(name: &str, p: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{p}`: `{name}` is not a valid parameter name"))
    }
}

impl PathPattern {
    /// Names of `{param}` segments, then the tail's name, in order.
    pub fn param_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) => Some(n.as_str()),
                Segment::Static(_) => None,
            })
            .collect();
        out.extend(self.tail.as_deref());
        out
    }
}

fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    if !t.starts_with('/') {
        return Err(format!("`{t}` must start with `/`"));
    }
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("`{t}`: unclosed `{{`"))?
            + open;
        let name = rest[open + 1..close].trim_start_matches('*');
        check_name(name, t)?;
        parts.push(TemplatePart::Param(name.to_string()));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = parse_path_pattern("/api/orders/{id}").unwrap();
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.tail, None);
        let p = parse_path_pattern("/api/*").unwrap();
        assert_eq!(p.tail.as_deref(), Some("rest"));
        let p = parse_path_pattern("/files/{*path}").unwrap();
        assert_eq!(p.param_names(), vec!["path"]);
        assert!(parse_path_pattern("api").is_err());
        assert!(parse_path_pattern("/a/*/b").is_err());
        assert!(
            parse_path_pattern("/a/{x}/{x}")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse_path_pattern("/a/x{y}").is_err());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("API.example.com"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host_pattern("*.example.com"),
            Ok(HostPattern::Wildcard("example.com".into()))
        );
        assert!(parse_host_pattern("a*.b").is_err());
    }

    #[test]
    fn templates() {
        let t = parse_template("/v1/orders/{order_id}/x").unwrap();
        assert_eq!(
            t,
            vec![
                TemplatePart::Literal("/v1/orders/".into()),
                TemplatePart::Param("order_id".into()),
                TemplatePart::Literal("/x".into())
            ]
        );
    }
}
