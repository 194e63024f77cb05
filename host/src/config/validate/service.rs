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
    let discovery = s.discovery.as_ref().and_then(|d| {
        let prefix = &d.etcd.prefix;
        if !prefix.starts_with('/') {
            errs.push(
                format!("{path}.discovery.etcd.prefix"),
                format!("`{prefix}` must start with `/`"),
            );
            return None;
        }
        Some(EtcdDiscovery {
            prefix: prefix.clone(),
            endpoints: d.etcd.endpoints.clone(),
        })
    });
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
