//! The access log: one JSON line per request, written by a background task.
//! Requests hand their entry over a bounded channel and never wait: when the
//! writer falls behind, entries are dropped and counted.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{AccessLogConfig, LogTarget};
use crate::metrics::Metrics;

/// One request, as logged. Field names are the documented log format.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339 time the request arrived, UTC, milliseconds.
    pub timestamp: String,
    /// `x-request-id`.
    pub request_id: String,
    /// W3C trace id (32 hex digits).
    pub trace_id: Option<String>,
    /// Method.
    pub method: String,
    /// Path (without the query, which may hold secrets).
    pub path: String,
    /// Matched route, if any.
    pub route_id: Option<Arc<str>>,
    /// Service of the last upstream try.
    pub service: Option<Arc<str>>,
    /// `host:port` of the last upstream try.
    pub instance: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Time until the last response byte was handed to the connection.
    pub latency_ms: f64,
    /// Time spent waiting for upstream response heads (all tries).
    pub upstream_latency_ms: Option<f64>,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Client address (after `trusted_proxies`).
    pub client_ip: IpAddr,
    /// `consumer` attribute set by an auth plugin.
    pub consumer: Option<String>,
    /// `tenant` attribute.
    pub tenant: Option<String>,
    /// The plugin that answered the request itself, if one did.
    pub answered_by: Option<Arc<str>>,
    /// Tries sent upstream (more than one when retried).
    pub upstream_tries: u32,
    /// On cached routes, what the cache did: `hit`, `stale`, `revalidated`,
    /// `coalesced`, `miss` or `bypass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// When the route's fallback answered, why: the gateway error code it
    /// replaced (`circuit_open`, `upstream_timeout`, ...) or `upstream_status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
    /// The version each plugin with `versions` ran (`{"auth": "auth-v2"}`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub plugin_versions: std::collections::BTreeMap<String, String>,
}

/// Sends entries to the writer task.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Opens the destination and starts the writer; fails if the file cannot
    /// be opened for appending.
    pub fn start(cfg: &AccessLogConfig, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match &cfg.target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
            LogTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = mpsc::channel(cfg.buffer);
        // Writes block; they get a thread of their own instead of a runtime worker.
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(Self { tx, metrics })
    }

    /// Queues `entry`; counts it as dropped when the queue is full.
    pub fn send(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            self.metrics
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_loop(mut rx: mpsc::Receiver<Entry>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(e) = next {
            if serde_json::to_writer(&mut out, &e).is_ok() {
                let _ = out.write_all(b"\n");
            }
            next = rx.try_recv().ok();
        }
        // Flush once the queue is empty: one write per burst, not per line.
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "access log write failed");
        }
    }
}

/// RFC 3339 UTC with milliseconds (`2026-11-22T20:31:07.412Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
