//! The validated model of the edge: listener TLS, upstream TLS and protocol, and
//! the resilience settings of a service (health checks, outlier detection,
//! circuit breaker, retries, bulkhead).

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

/// A certificate and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// TLS termination on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Certificates, chosen by SNI against their SANs; the first is the default.
    pub certificates: Vec<CertPaths>,
    /// Whether clients present certificates.
    pub client_auth: ClientAuth,
    /// Header that carries the verified client certificate's identity upstream
    /// (any client-sent copy is removed first).
    pub client_cert_header: Option<HeaderName>,
    /// How a verified client certificate names a consumer, if it does.
    pub client_consumer: Option<ClientConsumer>,
    /// How often certificate files are checked for changes.
    pub watch_interval: Duration,
}

/// How a verified client certificate names the `consumer` (mTLS consumers):
/// one field of the certificate, optionally cut to what follows a prefix,
/// optionally looked up in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConsumer {
    /// The certificate field read.
    pub from: CertField,
    /// Only values starting with this count, and the consumer is the rest.
    pub strip_prefix: Option<String>,
    /// Value (after `strip_prefix`) → consumer; a value not in it names none.
    pub table: Option<std::collections::BTreeMap<String, String>>,
}

/// A field of a client certificate that can name a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// The subject's common name.
    Cn,
    /// A URI SAN (SPIFFE ids).
    SanUri,
    /// A DNS SAN.
    SanDns,
    /// An email SAN.
    SanEmail,
}

/// How often certificate files are checked when `watch_interval` is not set.
pub const DEFAULT_CERT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// mTLS policy of a listener. The CA file exists exactly when certificates are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// A certificate is verified when sent; clients without one still connect.
    Optional(PathBuf),
    /// The handshake fails without a certificate signed by this CA.
    Required(PathBuf),
}

/// How the gateway speaks to a service's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive (default).
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`); `https://` instances.
    H2,
    /// HTTP/2 over cleartext with prior knowledge; `http://` instances (gRPC).
    H2c,
}

/// TLS to `https://` instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// CA bundle to verify instances against; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for upstream mTLS.
    pub client_cert: Option<CertPaths>,
    /// Name sent in SNI and verified; `None`: the instance's host.
    pub server_name: Option<String>,
}

/// Active health checking: the gateway probes each instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with GET; 2xx and 3xx are healthy.
    pub path: String,
    /// Time between probes of one instance. Default 5s.
    pub interval: Duration,
    /// Longest wait for a probe's answer. Default 1s.
    pub timeout: Duration,
    /// Consecutive successes that bring an unhealthy instance back. Default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that take an instance out. Default 3.
    pub unhealthy_threshold: u32,
}

/// Passive health: instances that keep failing real requests are ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive connect failures or 5xx answers that eject. Default 5.
    pub consecutive_failures: u32,
    /// First ejection period; the n-th ejection lasts n times as long. Default 30s.
    pub base_ejection_time: Duration,
    /// Longest ejection. Default 300s.
    pub max_ejection_time: Duration,
}

/// Per-service circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long it stays open before probing. Default 10s.
    pub open_for: Duration,
    /// Probes let through while half-open. Default 1.
    pub half_open_requests: u32,
    /// Also open when this share of tries failed within a window.
    pub failure_rate: Option<FailureRate>,
}

/// The failure-rate trigger of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    /// Failed share, in thousandths (500 = 50 %).
    pub permille: u32,
    /// Length of the counting window (counts restart when it ends).
    pub window: Duration,
    /// Tries needed in a window before the rate counts. Default 20.
    pub min_requests: u32,
}

/// What makes a try worth repeating.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// No connection could be opened.
    pub connect_failure: bool,
    /// The connection failed after the request was sent.
    pub reset: bool,
    /// The try ran past `per_try_timeout`.
    pub timeout: bool,
    /// Upstream statuses to retry (e.g. 502, 503, 504).
    pub statuses: Vec<u16>,
}

/// Retry policy of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    /// Tries in total, the first included (2 = one retry).
    pub attempts: u32,
    /// Conditions.
    pub on: RetryOn,
    /// First backoff; doubled per retry, with full jitter. Default 25ms.
    pub backoff_base: Duration,
    /// Largest backoff. Default 250ms.
    pub backoff_max: Duration,
    /// Retries allowed as a share of requests (0.2 = 20 %).
    pub budget: f64,
    /// Largest request body kept for a retry; bigger bodies are tried once. Default 64 KiB.
    pub max_body_bytes: usize,
}
