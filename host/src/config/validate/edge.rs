//! Validation of the edge keys: listener TLS, upstream TLS and protocol, and
//! the resilience settings of services. Certificate files are loaded here so
//! that a bad one is a config error with its path, never a failure at runtime.

use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::Errors;
use crate::config::edge::*;
use crate::config::raw::*;
use crate::tls::certs;

pub(super) fn listener_tls(
    t: &RawTls,
    path: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<ListenerTls> {
    let before = errs.0.len();
    if t.certificates.is_empty() {
        errs.push(
            format!("{path}.certificates"),
            "at least one certificate is required",
        );
    }
    let certificates: Vec<CertPaths> = t
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let paths = CertPaths {
                cert_file: base.join(&c.cert_file),
                key_file: base.join(&c.key_file),
            };
            if let Err(e) = certs::certified_key(&paths) {
                errs.push(format!("{path}.certificates[{i}]"), e.to_string());
            }
            paths
        })
        .collect();
    let ca = t.client_ca_file.as_ref().map(|f| base.join(f));
    if let Some(ca) = &ca
        && let Err(e) = certs::root_store(ca)
    {
        errs.push(format!("{path}.client_ca_file"), e.to_string());
    }
    let client_auth = match (t.client_auth.as_deref().unwrap_or("none"), ca) {
        ("none", None) => ClientAuth::None,
        ("none", Some(_)) => {
            errs.push(
                format!("{path}.client_auth"),
                "client_ca_file is set: choose `optional` or `required`",
            );
            ClientAuth::None
        }
        ("optional", Some(ca)) => ClientAuth::Optional(ca),
        ("required", Some(ca)) => ClientAuth::Required(ca),
        ("optional" | "required", None) => {
            errs.push(
                format!("{path}.client_ca_file"),
                "required for client certificates",
            );
            ClientAuth::None
        }
        (other, _) => {
            errs.push(
                format!("{path}.client_auth"),
                format!("`{other}`: expected none, optional or required"),
            );
            ClientAuth::None
        }
    };
    let client_cert_header = t.client_cert_header.as_deref().and_then(|h| {
        HeaderName::try_from(h)
            .map_err(|_| {
                errs.push(
                    format!("{path}.client_cert_header"),
                    "not a valid header name",
                )
            })
            .ok()
    });
    if client_cert_header.is_some() && client_auth == ClientAuth::None {
        errs.push(
            format!("{path}.client_cert_header"),
            "needs client_auth optional or required",
        );
    }
    let watch_interval = positive(
        t.watch_interval.as_ref().map(|d| d.0),
        crate::tls::DEFAULT_WATCH_INTERVAL,
        &format!("{path}.watch_interval"),
        errs,
    );
    (errs.0.len() == before).then_some(ListenerTls {
        certificates,
        client_auth,
        client_cert_header,
        watch_interval,
    })
}

fn positive(d: Option<Duration>, default: Duration, path: &str, errs: &mut Errors) -> Duration {
    match d {
        Some(d) if d.is_zero() => {
            errs.push(path, "must be more than 0");
            default
        }
        Some(d) => d,
        None => default,
    }
}

fn at_least_one(n: Option<u32>, default: u32, path: &str, errs: &mut Errors) -> u32 {
    match n {
        Some(0) => {
            errs.push(path, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// What a service's edge keys validate to.
pub(super) struct ServiceEdge {
    pub protocol: UpstreamProtocol,
    pub tls: UpstreamTls,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub retries: Option<Retries>,
    pub per_try_timeout: Option<Duration>,
}

pub(super) fn service_edge(
    s: &RawService,
    path: &str,
    base: &Path,
    schemes: &[&str],
    errs: &mut Errors,
) -> ServiceEdge {
    let protocol = match s.protocol.as_deref().unwrap_or("http1") {
        "http1" => UpstreamProtocol::Http1,
        "h2" => UpstreamProtocol::H2,
        "h2c" => UpstreamProtocol::H2c,
        other => {
            errs.push(
                format!("{path}.protocol"),
                format!("`{other}`: expected http1, h2 or h2c"),
            );
            UpstreamProtocol::Http1
        }
    };
    match protocol {
        UpstreamProtocol::H2 if schemes.iter().any(|s| *s != "https") => errs.push(
            format!("{path}.protocol"),
            "h2 is HTTP/2 over TLS: every instance must be https:// (h2c is the cleartext form)",
        ),
        UpstreamProtocol::H2c if schemes.iter().any(|s| *s != "http") => errs.push(
            format!("{path}.protocol"),
            "h2c is cleartext HTTP/2: every instance must be http:// (use h2 for https://)",
        ),
        _ => {}
    }
    let tls = s
        .tls
        .as_ref()
        .map(|t| upstream_tls(t, &format!("{path}.tls"), base, errs))
        .unwrap_or_default();
    if s.tls.is_some() && !schemes.contains(&"https") {
        errs.push(
            format!("{path}.tls"),
            "only used by https:// instances; this service has none",
        );
    }
    let health_check = s.health_check.as_ref().map(|h| {
        let p = format!("{path}.health_check");
        if !h.path.starts_with('/') {
            errs.push(format!("{p}.path"), "must start with `/`");
        }
        HealthCheck {
            path: h.path.clone(),
            interval: positive(
                h.interval.as_ref().map(|d| d.0),
                Duration::from_secs(5),
                &format!("{p}.interval"),
                errs,
            ),
            timeout: positive(
                h.timeout.as_ref().map(|d| d.0),
                Duration::from_secs(1),
                &format!("{p}.timeout"),
                errs,
            ),
            healthy_threshold: at_least_one(
                h.healthy_threshold,
                2,
                &format!("{p}.healthy_threshold"),
                errs,
            ),
            unhealthy_threshold: at_least_one(
                h.unhealthy_threshold,
                3,
                &format!("{p}.unhealthy_threshold"),
                errs,
            ),
        }
    });
    let outlier_detection = s.outlier_detection.as_ref().map(|o| {
        let p = format!("{path}.outlier_detection");
        let base_ejection_time = positive(
            o.base_ejection_time.as_ref().map(|d| d.0),
            Duration::from_secs(30),
            &format!("{p}.base_ejection_time"),
            errs,
        );
        OutlierDetection {
            consecutive_failures: at_least_one(
                o.consecutive_failures,
                5,
                &format!("{p}.consecutive_failures"),
                errs,
            ),
            base_ejection_time,
            max_ejection_time: positive(
                o.max_ejection_time.as_ref().map(|d| d.0),
                Duration::from_secs(300),
                &format!("{p}.max_ejection_time"),
                errs,
            )
            .max(base_ejection_time),
        }
    });
    let circuit_breaker = s.circuit_breaker.as_ref().map(|c| {
        let p = format!("{path}.circuit_breaker");
        CircuitBreaker {
            failure_threshold: at_least_one(
                c.failure_threshold,
                5,
                &format!("{p}.failure_threshold"),
                errs,
            ),
            open_for: positive(
                c.open_for.as_ref().map(|d| d.0),
                Duration::from_secs(10),
                &format!("{p}.open_for"),
                errs,
            ),
            half_open_requests: at_least_one(
                c.half_open_requests,
                1,
                &format!("{p}.half_open_requests"),
                errs,
            ),
            failure_rate: failure_rate(c, &p, errs),
        }
    });
    let retries = s
        .retries
        .as_ref()
        .map(|r| retries(r, &format!("{path}.retries"), errs));
    let per_try_timeout = s
        .per_try_timeout
        .as_ref()
        .map(|d| positive(Some(d.0), d.0, &format!("{path}.per_try_timeout"), errs));
    ServiceEdge {
        protocol,
        tls,
        health_check,
        outlier_detection,
        circuit_breaker,
        retries,
        per_try_timeout,
    }
}

fn failure_rate(c: &RawCircuitBreaker, p: &str, errs: &mut Errors) -> Option<FailureRate> {
    let Some(rate) = c.failure_rate else {
        if c.window.is_some() || c.min_requests.is_some() {
            errs.push(
                format!("{p}.failure_rate"),
                "`window` and `min_requests` need `failure_rate`",
            );
        }
        return None;
    };
    if !(rate > 0.0 && rate <= 1.0) {
        errs.push(
            format!("{p}.failure_rate"),
            "must be a share of tries in (0, 1], e.g. 0.5",
        );
    }
    Some(FailureRate {
        permille: (rate * 1000.0).round().clamp(1.0, 1000.0) as u32,
        window: positive(
            c.window.as_ref().map(|d| d.0),
            Duration::from_secs(10),
            &format!("{p}.window"),
            errs,
        ),
        min_requests: at_least_one(c.min_requests, 20, &format!("{p}.min_requests"), errs),
    })
}

fn upstream_tls(t: &RawUpstreamTls, path: &str, base: &Path, errs: &mut Errors) -> UpstreamTls {
    let ca_file = t.ca_file.as_ref().map(|f| base.join(f));
    if let Some(ca) = &ca_file
        && let Err(e) = certs::root_store(ca)
    {
        errs.push(format!("{path}.ca_file"), e.to_string());
    }
    let client_cert = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let paths = CertPaths {
                cert_file: base.join(c),
                key_file: base.join(k),
            };
            if let Err(e) = certs::certified_key(&paths) {
                errs.push(path.to_string(), e.to_string());
            }
            Some(paths)
        }
        (None, None) => None,
        _ => {
            errs.push(path.to_string(), "cert_file and key_file go together");
            None
        }
    };
    if let Some(name) = &t.server_name
        && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        errs.push(
            format!("{path}.server_name"),
            format!("`{name}` is not a DNS name or IP address"),
        );
    }
    UpstreamTls {
        ca_file,
        client_cert,
        server_name: t.server_name.clone(),
    }
}

fn retries(r: &RawRetries, path: &str, errs: &mut Errors) -> Retries {
    let mut on = RetryOn::default();
    let list =
        r.on.clone()
            .unwrap_or_else(|| vec!["connect_failure".into(), "reset".into()]);
    for (i, cond) in list.iter().enumerate() {
        match cond.as_str() {
            "connect_failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "timeout" => on.timeout = true,
            code => match code.parse::<u16>() {
                Ok(c) if (500..600).contains(&c) => on.statuses.push(c),
                _ => errs.push(
                    format!("{path}.on[{i}]"),
                    format!("`{code}`: expected connect_failure, reset, timeout or a 5xx status"),
                ),
            },
        }
    }
    let budget = r.budget.unwrap_or(0.2);
    if !(budget > 0.0 && budget <= 1.0) {
        errs.push(
            format!("{path}.budget"),
            "must be a share of requests in (0, 1], e.g. 0.2",
        );
    }
    let backoff_base = positive(
        r.backoff_base.as_ref().map(|d| d.0),
        Duration::from_millis(25),
        &format!("{path}.backoff_base"),
        errs,
    );
    Retries {
        attempts: at_least_one(r.attempts, 2, &format!("{path}.attempts"), errs),
        on,
        backoff_base,
        backoff_max: r
            .backoff_max
            .as_ref()
            .map_or(Duration::from_millis(250), |d| d.0)
            .max(backoff_base),
        budget,
        max_body_bytes: r.max_body_bytes.unwrap_or(64 * 1024),
    }
}
