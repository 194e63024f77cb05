//! Validation of the edge keys: listener TLS, upstream TLS and protocol, and
//! the resilience settings of services. Certificate files are loaded here so
//! that a bad one is a config error with its path, never a failure at runtime.

use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::{Errors, resilience};
use crate::config::edge::*;
use crate::config::raw::*;
use crate::pem;

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
    let certificates = certificates(t, path, base, errs);
    let client_auth = client_auth(t, path, base, errs);
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
    let client_consumer = t
        .client_consumer
        .as_ref()
        .and_then(|c| self::client_consumer(c, &format!("{path}.client_consumer"), errs));
    if client_consumer.is_some() && client_auth == ClientAuth::None {
        errs.push(
            format!("{path}.client_consumer"),
            "needs client_auth optional or required",
        );
    }
    let watch_interval = positive(
        t.watch_interval.as_ref().map(|d| d.0),
        crate::config::DEFAULT_CERT_WATCH_INTERVAL,
        &format!("{path}.watch_interval"),
        errs,
    );
    (errs.0.len() == before).then_some(ListenerTls {
        certificates,
        client_auth,
        client_cert_header,
        client_consumer,
        watch_interval,
    })
}

/// `client_consumer`: which certificate field names the consumer.
fn client_consumer(c: &RawClientConsumer, path: &str, errs: &mut Errors) -> Option<ClientConsumer> {
    let from = match c.from.as_deref().unwrap_or("cn") {
        "cn" => CertField::Cn,
        "san_uri" => CertField::SanUri,
        "san_dns" => CertField::SanDns,
        "san_email" => CertField::SanEmail,
        other => {
            errs.push(
                format!("{path}.from"),
                format!("`{other}`: expected cn, san_uri, san_dns or san_email"),
            );
            return None;
        }
    };
    if c.strip_prefix.as_deref() == Some("") {
        errs.push(format!("{path}.strip_prefix"), "must not be empty");
        return None;
    }
    if let Some((k, _)) = c
        .table
        .iter()
        .flatten()
        .find(|(k, v)| k.is_empty() || v.is_empty())
    {
        errs.push(
            format!("{path}.table.{k}"),
            "certificate values and consumer names must not be empty",
        );
        return None;
    }
    Some(ClientConsumer {
        from,
        strip_prefix: c.strip_prefix.clone(),
        table: c.table.clone(),
    })
}

/// The listener's certificates, each loaded once so a bad file is named here.
fn certificates(t: &RawTls, path: &str, base: &Path, errs: &mut Errors) -> Vec<CertPaths> {
    t.certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let paths = CertPaths {
                cert_file: base.join(&c.cert_file),
                key_file: base.join(&c.key_file),
            };
            if let Err(e) = pem::certified_key(&paths.cert_file, &paths.key_file) {
                errs.push(format!("{path}.certificates[{i}]"), e.to_string());
            }
            paths
        })
        .collect()
}

/// Whether clients present certificates, and the CA that verifies them.
fn client_auth(t: &RawTls, path: &str, base: &Path, errs: &mut Errors) -> ClientAuth {
    let ca = t.client_ca_file.as_ref().map(|f| base.join(f));
    if let Some(ca) = &ca
        && let Err(e) = pem::root_store(ca)
    {
        errs.push(format!("{path}.client_ca_file"), e.to_string());
    }
    match (t.client_auth.as_deref().unwrap_or("none"), ca) {
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
    }
}

pub(super) fn positive(
    d: Option<Duration>,
    default: Duration,
    path: &str,
    errs: &mut Errors,
) -> Duration {
    match d {
        Some(d) if d.is_zero() => {
            errs.push(path, "must be more than 0");
            default
        }
        Some(d) => d,
        None => default,
    }
}

pub(super) fn at_least_one(n: Option<u32>, default: u32, path: &str, errs: &mut Errors) -> u32 {
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
    let protocol = protocol(s, path, schemes, errs);
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
    let health_check = s
        .health_check
        .as_ref()
        .map(|h| resilience::health_check(h, &format!("{path}.health_check"), errs));
    let outlier_detection = s
        .outlier_detection
        .as_ref()
        .map(|o| resilience::outlier_detection(o, &format!("{path}.outlier_detection"), errs));
    let circuit_breaker = s
        .circuit_breaker
        .as_ref()
        .map(|c| resilience::circuit_breaker(c, &format!("{path}.circuit_breaker"), errs));
    let retries = s
        .retries
        .as_ref()
        .map(|r| resilience::retries(r, &format!("{path}.retries"), errs));
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

fn protocol(s: &RawService, path: &str, schemes: &[&str], errs: &mut Errors) -> UpstreamProtocol {
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
    protocol
}

fn upstream_tls(t: &RawUpstreamTls, path: &str, base: &Path, errs: &mut Errors) -> UpstreamTls {
    let ca_file = t.ca_file.as_ref().map(|f| base.join(f));
    if let Some(ca) = &ca_file
        && let Err(e) = pem::root_store(ca)
    {
        errs.push(format!("{path}.ca_file"), e.to_string());
    }
    let client_cert = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let paths = CertPaths {
                cert_file: base.join(c),
                key_file: base.join(k),
            };
            if let Err(e) = pem::certified_key(&paths.cert_file, &paths.key_file) {
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
