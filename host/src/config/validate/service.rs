//! Validation of one service: balancer, instances, timeouts, and its edge
//! (protocol, TLS, resilience).

use std::path::Path;

use http::HeaderName;

use super::{Errors, edge};
use crate::config::model::*;
use crate::config::raw::*;

pub(super) fn service(s: &RawService, path: &str, base: &Path, errs: &mut Errors) -> ServiceConfig {
    if s.max_concurrent_requests == Some(0) {
        errs.push(
            format!("{path}.max_concurrent_requests"),
            "must be at least 1",
        );
    }
    let load_balancer = load_balancer(s, path, errs);
    let instances = instances(s, path, errs);
    let schemes: Vec<&str> = instances
        .iter()
        .filter_map(|i| i.url.scheme_str())
        .collect();
    let edge = edge::service_edge(s, path, base, &schemes, errs);
    let discovery = s
        .discovery
        .as_ref()
        .and_then(|d| discovery(d, &format!("{path}.discovery"), errs));
    ServiceConfig {
        name: s.name.as_str().into(),
        load_balancer,
        instances,
        discovery,
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
        fallback: None,
    }
}

/// The balancer a service names, round robin when it names none.
fn load_balancer(s: &RawService, path: &str, errs: &mut Errors) -> LoadBalancerKind {
    match s.load_balancer.as_deref().unwrap_or("round_robin") {
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
    }
}

/// The instances, each an http(s)://host:port URL with a weight.
fn instances(s: &RawService, path: &str, errs: &mut Errors) -> Vec<InstanceConfig> {
    if s.instances.is_empty() && s.discovery.is_none() {
        errs.push(
            format!("{path}.instances"),
            "a service needs at least one instance (or `discovery`)",
        );
    }
    s.instances
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| {
            let ipath = format!("{path}.instances[{i}]");
            let weight = inst.weight.unwrap_or(1);
            if weight == 0 {
                errs.push(format!("{ipath}.weight"), "must be at least 1");
            }
            match InstanceConfig::parse(&inst.url, weight.max(1)) {
                Ok(i) => Some(i),
                Err(e) => {
                    errs.push(format!("{ipath}.url"), e);
                    None
                }
            }
        })
        .collect()
}

/// `discovery`: exactly one of `etcd` and `dns`.
fn discovery(d: &RawDiscovery, path: &str, errs: &mut Errors) -> Option<Discovery> {
    match (&d.etcd, &d.dns) {
        (Some(e), None) => {
            if !e.prefix.starts_with('/') {
                errs.push(
                    format!("{path}.etcd.prefix"),
                    format!("`{}` must start with `/`", e.prefix),
                );
                return None;
            }
            Some(Discovery::Etcd(EtcdDiscovery {
                prefix: e.prefix.clone(),
                endpoints: e.endpoints.clone(),
            }))
        }
        (None, Some(n)) => dns(n, &format!("{path}.dns"), errs).map(Discovery::Dns),
        _ => {
            errs.push(path.to_string(), "set exactly one of `etcd` and `dns`");
            None
        }
    }
}

fn dns(d: &RawDnsDiscovery, path: &str, errs: &mut Errors) -> Option<DnsDiscovery> {
    let before = errs.len();
    if d.name.trim().is_empty() {
        errs.push(format!("{path}.name"), "must not be empty");
    }
    let record = match d.record_type.as_deref().unwrap_or("A") {
        "A" => DnsRecord::A,
        "AAAA" => DnsRecord::Aaaa,
        "SRV" => DnsRecord::Srv,
        other => {
            errs.push(
                format!("{path}.type"),
                format!("`{other}`: expected A, AAAA or SRV"),
            );
            DnsRecord::A
        }
    };
    match (record, d.port) {
        (DnsRecord::Srv, Some(_)) => errs.push(
            format!("{path}.port"),
            "SRV records carry their own ports; remove `port`",
        ),
        (DnsRecord::A | DnsRecord::Aaaa, None) => {
            errs.push(format!("{path}.port"), "required for A and AAAA records")
        }
        _ => {}
    }
    let scheme = match d.scheme.as_deref().unwrap_or("http") {
        "http" => "http",
        "https" => "https",
        other => {
            errs.push(
                format!("{path}.scheme"),
                format!("`{other}`: expected http or https"),
            );
            "http"
        }
    };
    let refresh = d
        .refresh
        .map_or(std::time::Duration::from_secs(30), |r| r.0);
    if refresh < std::time::Duration::from_secs(1) {
        errs.push(format!("{path}.refresh"), "must be at least 1s");
    }
    let servers = d
        .servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let parsed = s.parse::<std::net::SocketAddr>().or_else(|_| {
                s.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
            });
            match parsed {
                Ok(a) => Some(a),
                Err(_) => {
                    errs.push(
                        format!("{path}.servers[{i}]"),
                        format!("`{s}` is not an ip or ip:port"),
                    );
                    None
                }
            }
        })
        .collect();
    (errs.len() == before).then(|| DnsDiscovery {
        name: d.name.trim().to_string(),
        record,
        port: d.port,
        scheme,
        refresh,
        servers,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Discovery, DnsRecord, parse};
    use std::path::Path;

    fn errors(services: &str) -> Vec<String> {
        let text = format!("services:\n{services}");
        match parse(Path::new("t.yaml"), &text) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn discovery_is_one_source_with_what_its_records_need() {
        let ok = "  - name: s\n    discovery: { dns: { name: _http._tcp.s.test, type: SRV, servers: [\"127.0.0.1:5353\", \"::1\"] } }\n";
        let cfg = parse(Path::new("t.yaml"), &format!("services:\n{ok}")).expect("valid");
        match &cfg.services[0].discovery {
            Some(Discovery::Dns(d)) => {
                assert_eq!(d.record, DnsRecord::Srv);
                assert_eq!(d.servers[1].port(), 53);
                assert_eq!(d.refresh.as_secs(), 30);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            errors("  - name: s\n    discovery: { dns: { name: s.test, type: SRV, port: 80 } }\n"),
            ["services[0].discovery.dns.port: SRV records carry their own ports; remove `port`"]
        );
        assert_eq!(
            errors("  - name: s\n    discovery: { dns: { name: s.test, type: A } }\n"),
            ["services[0].discovery.dns.port: required for A and AAAA records"]
        );
        assert_eq!(
            errors(
                "  - name: s\n    discovery: { dns: { name: s.test, type: MX, port: 1, refresh: 100ms, servers: [nope] } }\n"
            ),
            [
                "services[0].discovery.dns.type: `MX`: expected A, AAAA or SRV",
                "services[0].discovery.dns.refresh: must be at least 1s",
                "services[0].discovery.dns.servers[0]: `nope` is not an ip or ip:port",
            ]
        );
        assert_eq!(
            errors(
                "  - name: s\n    discovery: { etcd: { prefix: /p/ }, dns: { name: s.test, port: 1 } }\n"
            ),
            ["services[0].discovery: set exactly one of `etcd` and `dns`"]
        );
        assert_eq!(
            errors("  - name: s\n    discovery: { etcd: { prefix: p/ } }\n"),
            ["services[0].discovery.etcd.prefix: `p/` must start with `/`"]
        );
    }
}
