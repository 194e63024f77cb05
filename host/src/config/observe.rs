//! The validated model of observability and control: access log, tracing
//! export and the admin listener.

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
