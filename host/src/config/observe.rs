//! The validated model of observability and control: access log, tracing
//! export, the admin listener, and the consumers it manages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// The access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Destination.
    pub target: LogTarget,
    /// Entries queued before new ones are dropped (counted). Default 8192.
    pub buffer: usize,
}

/// Span export over OTLP/HTTP (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// `http://collector:4318/v1/traces`.
    pub endpoint: http::Uri,
    /// `service.name` of the exported resource. Default `gatehouse`.
    pub service_name: String,
    /// Share of new traces sampled (a client's sampled flag is followed). Default 1.0.
    pub sample_ratio: f64,
    /// Spans per export request. Default 512.
    pub batch_size: usize,
    /// Longest a span waits for its batch. Default 1s.
    pub flush_interval: Duration,
    /// Requests' span sets queued before new ones are dropped. Default 2048.
    pub queue: usize,
}

/// A bearer token of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Recorded as the author of config versions.
    pub name: String,
    /// The secret.
    pub token: String,
    /// Read-only tokens may not change anything.
    pub read_only: bool,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address; loopback is the default and the advice.
    pub addr: SocketAddr,
    /// Accepted tokens.
    pub tokens: Vec<AdminToken>,
}

/// A consumer of the config's `consumers:` list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// Its name (→ the `consumer` attribute).
    pub name: String,
    /// Its keys.
    pub keys: Vec<ConsumerKey>,
}

/// One key of a config consumer, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerKey {
    /// The key's SHA-256.
    pub hash: [u8; 32],
    /// `expires`, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// The key as written.
    pub record: crate::credentials::KeyRecord,
}

/// `consumer_store`: where the admin API keeps consumers on a single gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerStoreConfig {
    /// The journal file (`None`: `<config file stem>.consumers.jsonl` beside the config file).
    pub path: Option<PathBuf>,
    /// How often `last_used_at` stamps are written. Default 30 s.
    pub flush_interval: Duration,
}

impl Default for ConsumerStoreConfig {
    fn default() -> Self {
        Self {
            path: None,
            flush_interval: Duration::from_secs(30),
        }
    }
}

impl ConsumerStoreConfig {
    /// The journal for the gateway serving `config_path`.
    pub fn journal(&self, config_path: &std::path::Path) -> PathBuf {
        if let Some(p) = &self.path {
            return p.clone();
        }
        let stem = config_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("gatehouse");
        config_path.with_file_name(format!("{stem}.consumers.jsonl"))
    }
}
