//! The trail of one request: what the stages did, filled in as they run and
//! read once at the end for metrics, the access log and trace spans.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode};

use crate::telemetry::Telemetry;
use crate::telemetry::access_log::{Entry, rfc3339};
use crate::telemetry::trace::{Span, SpanKind, TraceContext, new_span_id};

/// What is known once the response head is out.
#[derive(Debug)]
pub struct Done {
    /// Request method.
    pub method: Method,
    /// Request path.
    pub path: String,
    /// Matched route id.
    pub route_id: Option<Arc<str>>,
    /// Status sent.
    pub status: StatusCode,
    /// Request id.
    pub request_id: String,
}

/// What one request went through.
#[derive(Debug)]
pub struct Trail {
    /// When the request head arrived.
    pub started: Instant,
    /// The client address (after `trusted_proxies`).
    pub client_ip: IpAddr,
    /// Request body bytes, counted when telemetry needs them.
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// Service of the last try.
    pub service: Option<Arc<str>>,
    /// Instance of the last try.
    pub instance: Option<http::uri::Authority>,
    /// Time spent waiting for upstream response heads.
    pub upstream_time: Duration,
    /// Tries sent upstream.
    pub tries: u32,
    /// The plugin that answered the request, if one did.
    pub answered_by: Option<Arc<str>>,
    /// Plugin attributes at the end of the request chain (consumer, tenant).
    pub attributes: Vec<(String, String)>,
    /// The trace, when tracing is configured.
    pub trace: Option<TraceContext>,
    /// Finished child spans (plugin calls, upstream tries), when sampled.
    pub spans: Vec<Span>,
}

impl Trail {
    /// A trail starting now, for a request from `client_ip`.
    pub fn start(client_ip: IpAddr) -> Self {
        Self {
            started: Instant::now(),
            client_ip,
            bytes_in: None,
            route: None,
            service: None,
            instance: None,
            upstream_time: Duration::ZERO,
            tries: 0,
            answered_by: None,
            attributes: Vec::new(),
            trace: None,
            spans: Vec::new(),
        }
    }

    /// Whether the request ends in an access log line or spans (only then
    /// are attributes copied out of the plugin exchange).
    pub fn reports(&self) -> bool {
        self.bytes_in.is_some()
    }

    /// Whether child spans are being recorded.
    pub fn sampled(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.sampled)
    }

    /// Records a finished child span of the request span (when sampled).
    pub fn child_span(
        &mut self,
        span_id: Option<[u8; 8]>,
        name: String,
        kind: SpanKind,
        start: SystemTime,
        attributes: Vec<(&'static str, String)>,
        error: bool,
    ) {
        let Some(t) = self.trace.as_ref().filter(|t| t.sampled) else {
            return;
        };
        self.spans.push(Span {
            trace_id: t.trace_id,
            span_id: span_id.unwrap_or_else(new_span_id),
            parent: Some(t.span_id),
            name,
            kind,
            start,
            end: SystemTime::now(),
            attributes,
            error,
        });
    }

    /// Writes the access log line and exports the spans.
    pub fn finish(mut self, tel: &Telemetry, done: Done, bytes_out: u64) {
        // The wall-clock start, derived here rather than read on every request.
        let started_at = SystemTime::now() - self.started.elapsed();
        if let (Some(sink), Some(trace)) = (&tel.spans, self.trace.as_ref().filter(|t| t.sampled)) {
            let route = done
                .route_id
                .as_deref()
                .unwrap_or(crate::metrics::UNMATCHED);
            let mut attributes = vec![
                ("http.request.method", done.method.to_string()),
                ("url.path", done.path.clone()),
                ("http.route", route.to_string()),
                (
                    "http.response.status_code",
                    done.status.as_u16().to_string(),
                ),
                ("client.address", self.client_ip.to_string()),
            ];
            if let Some(c) = self.attribute("consumer") {
                attributes.push(("enduser.id", c.to_string()));
            }
            let root = Span {
                trace_id: trace.trace_id,
                span_id: trace.span_id,
                parent: trace.parent,
                name: format!("{} {route}", done.method),
                kind: SpanKind::Server,
                start: started_at,
                end: SystemTime::now(),
                attributes,
                error: done.status.is_server_error(),
            };
            self.spans.push(root);
            sink.send(std::mem::take(&mut self.spans));
        }
        let Some(log) = &tel.access_log else { return };
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        log.send(Entry {
            timestamp: rfc3339(started_at),
            request_id: done.request_id,
            trace_id: self.trace.as_ref().map(TraceContext::trace_id_hex),
            method: done.method.to_string(),
            path: done.path,
            route_id: done.route_id,
            service: self.service.take(),
            instance: self.instance.take().map(|a| a.to_string()),
            status: done.status.as_u16(),
            latency_ms: ms(self.started.elapsed()),
            upstream_latency_ms: (self.tries > 0).then(|| ms(self.upstream_time)),
            bytes_in: self
                .bytes_in
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            bytes_out,
            client_ip: self.client_ip,
            consumer: self.attribute("consumer").map(str::to_string),
            tenant: self.attribute("tenant").map(str::to_string),
            answered_by: self.answered_by.take(),
            upstream_tries: self.tries,
        });
    }

    /// An attribute plugins set.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
