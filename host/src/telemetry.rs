//! What the gateway reports about the requests it served: the access log and
//! trace spans (metrics live in [`crate::metrics`]). Both are written off the
//! request path; the request only hands over a finished record.

pub mod access_log;
pub mod otlp;
pub mod trace;

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
pub use access_log::AccessLog;
pub use otlp::SpanSink;

/// The sinks configured at start.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// The access log, when configured.
    pub access_log: Option<AccessLog>,
    /// Span export, when configured.
    pub spans: Option<SpanSink>,
    /// Share of new traces that are sampled.
    pub sample_ratio: f64,
}

impl Telemetry {
    /// Starts the sinks `config` asks for.
    pub fn start(config: &Config, metrics: &Arc<Metrics>) -> std::io::Result<Self> {
        let access_log = match &config.access_log {
            Some(c) => Some(AccessLog::start(c, metrics.clone())?),
            None => None,
        };
        let spans = config
            .tracing
            .as_ref()
            .map(|t| SpanSink::start(t, metrics.clone()));
        Ok(Self {
            access_log,
            spans,
            sample_ratio: config.tracing.as_ref().map_or(0.0, |t| t.sample_ratio),
        })
    }

    /// Whether requests need a trail to the end of their body.
    pub fn is_on(&self) -> bool {
        self.access_log.is_some() || self.spans.is_some()
    }
}
