//! The config file as written: serde types with `deny_unknown_fields`. Nothing here
//! is trusted yet; `validate` turns it into the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use super::duration::Dur;

/// Parses YAML (a superset of JSON, so `.json` files load too), naming the path
/// of the first offending key.
pub fn parse(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let is_json = file.extension().is_some_and(|e| e == "json");
    if is_json {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::new(e.path().to_string(), e.inner().to_string()))
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::new(path, yaml_message(e.inner()))
        })
    }
}

/// serde_yaml prefixes its message with its own (less precise) path; ours is
/// already in front, so keep only the message and the position.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let full = e.to_string();
    let msg = match full.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') => rest,
        _ => full.as_str(),
    };
    match (msg.rfind(" at line "), e.location()) {
        (Some(i), Some(loc)) => format!(
            "{} (line {}, column {})",
            &msg[..i],
            loc.line(),
            loc.column()
        ),
        _ => msg.to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    pub admin: Option<RawAdmin>,
    pub plugin_dir: Option<PathBuf>,
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub plugins: Vec<RawAttachment>,
    #[serde(default)]
    pub policies: BTreeMap<String, RawAttachment>,
    #[serde(default)]
    pub services: Vec<RawService>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub workers: Option<usize>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub limits: Option<RawLimits>,
    pub access_log: Option<RawAccessLog>,
    pub tracing: Option<RawTracing>,
    #[serde(default)]
    pub consumers: Vec<RawConsumer>,
    pub consumer_store: Option<RawConsumerStore>,
    #[serde(default)]
    pub strip_request_headers: Vec<String>,
    pub path_normalization: Option<RawPathNormalization>,
    pub plugin_state: Option<RawPluginState>,
    #[serde(default)]
    pub allow_precompiled: bool,
    pub cache: Option<RawCache>,
}

/// A `cache:` block: at the top level the store and every route's
/// defaults, on a route its own policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub max_bytes: Option<u64>,
    pub default_ttl: Option<Dur>,
    pub status_ttl: Option<BTreeMap<StatusKey, Dur>>,
    pub max_object_bytes: Option<u64>,
    pub vary_by: Option<Vec<String>>,
    pub ignore_query: Option<Vec<String>>,
    pub store_set_cookie: Option<bool>,
    pub stale_while_revalidate: Option<Dur>,
    pub stale_if_error: Option<Dur>,
    pub coalesce: Option<bool>,
    pub coalesce_timeout: Option<Dur>,
    pub client_cache_control: Option<String>,
}

/// A status code as a map key: `200:` in YAML, `"200":` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusKey(pub String);

impl<'de> Deserialize<'de> for StatusKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum K {
            N(u64),
            S(String),
        }
        Ok(Self(match K::deserialize(d)? {
            K::N(n) => n.to_string(),
            K::S(s) => s,
        }))
    }
}

impl std::fmt::Display for StatusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginState {
    pub rate_limit_keys: Option<usize>,
    pub kv_keys: Option<usize>,
    pub kv_bytes: Option<usize>,
    pub callout_cache_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPathNormalization {
    pub escaped_slashes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub name: String,
    #[serde(default)]
    pub keys: Vec<RawConsumerKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumerStore {
    pub path: Option<PathBuf>,
    pub flush_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumerKey {
    pub id: String,
    pub hash: String,
    pub enabled: Option<bool>,
    /// When it was made (written by the admin API before the consumer store).
    pub created: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub tier: Option<String>,
    pub expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificates: Vec<RawCertificate>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: Option<String>,
    pub client_cert_header: Option<String>,
    pub client_consumer: Option<RawClientConsumer>,
    pub watch_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientConsumer {
    pub from: Option<String>,
    pub strip_prefix: Option<String>,
    pub table: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: String,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlierDetection {
    pub consecutive_failures: Option<u32>,
    pub base_ejection_time: Option<Dur>,
    pub max_ejection_time: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub failure_threshold: Option<u32>,
    pub open_for: Option<Dur>,
    pub half_open_requests: Option<u32>,
    pub failure_rate: Option<f64>,
    pub window: Option<Dur>,
    pub min_requests: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub attempts: Option<u32>,
    pub on: Option<Vec<String>>,
    pub backoff_base: Option<Dur>,
    pub backoff_max: Option<Dur>,
    pub budget: Option<f64>,
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub addr: Option<String>,
    pub token: Option<String>,
    pub read_token: Option<String>,
    #[serde(default)]
    pub tokens: Vec<RawAdminToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminToken {
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub path: Option<String>,
    pub buffer: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: String,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub batch_size: Option<usize>,
    pub flush_interval: Option<Dur>,
    pub queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: String,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_read_timeout: Option<Dur>,
    pub max_header_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub drain_timeout: Option<Dur>,
    pub drain_delay: Option<Dur>,
    pub body_read_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub h2_keepalive_interval: Option<Dur>,
    pub h2_keepalive_timeout: Option<Dur>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttachment {
    /// The plugin (empty when the attachment names a `policy`).
    #[serde(default)]
    pub name: String,
    /// A named policy (`policies:`) this attachment is a copy of.
    pub policy: Option<String>,
    pub on_error: Option<String>,
    #[serde(default)]
    pub config: serde_json::Value,
    pub timeout: Option<Dur>,
    pub memory_limit_mb: Option<u64>,
    pub max_instances: Option<usize>,
    pub body_limit_bytes: Option<usize>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub allow_read: Vec<PathBuf>,
    pub counter: Option<String>,
    #[serde(default)]
    pub callouts: Vec<String>,
    pub callout_timeout: Option<Dur>,
    pub callout_total_timeout: Option<Dur>,
    pub callout_max_body_bytes: Option<usize>,
    pub callout_cache_ttl: Option<Dur>,
    pub sha256: Option<String>,
    #[serde(default)]
    pub versions: Vec<RawPluginVersion>,
    pub version_key: Option<String>,
    pub shadow: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginVersion {
    pub file: String,
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    pub load_balancer: Option<String>,
    pub hash_header: Option<String>,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    pub health_check: Option<RawHealthCheck>,
    pub outlier_detection: Option<RawOutlierDetection>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
    pub connect_timeout: Option<Dur>,
    pub timeout: Option<Dur>,
    pub per_try_timeout: Option<Dur>,
    pub retries: Option<RawRetries>,
    pub max_concurrent_requests: Option<usize>,
    pub protocol: Option<String>,
    pub tls: Option<RawUpstreamTls>,
    pub discovery: Option<RawDiscovery>,
    pub fallback: Option<RawFallback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub on_status: Vec<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub etcd: Option<RawEtcdDiscovery>,
    pub dns: Option<RawDnsDiscovery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsDiscovery {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    pub refresh: Option<Dur>,
    #[serde(default)]
    pub servers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdDiscovery {
    pub prefix: String,
    #[serde(default)]
    pub endpoints: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub url: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub priority: i32,
    pub rewrite: Option<RawRewrite>,
    pub upstream: Option<String>,
    pub split: Option<Vec<RawSplitArm>>,
    pub split_key: Option<String>,
    #[serde(default)]
    pub plugins: Vec<RawAttachment>,
    pub preserve_host: Option<bool>,
    #[serde(default)]
    pub retry_non_idempotent: bool,
    pub cache: Option<RawCache>,
    pub enabled: Option<bool>,
    pub timeout: Option<Dur>,
    pub per_try_timeout: Option<Dur>,
    pub retries: Option<RawRetries>,
    pub fallback: Option<RawFallback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub path_regex: Option<String>,
    /// A value, or `{exact|present|regex}`: checked when validated, so a
    /// wrong shape gets a named error rather than serde's "no variant".
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub query: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub strip_prefix: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitArm {
    pub service: String,
    pub weight: u32,
}
