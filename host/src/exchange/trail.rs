//! The trail of one request: what the stages did, filled in as they run and
//! read once at the end for metrics, the access log and trace spans.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode};

use crate::telemetry::Telemetry;
use crate::telemetry::access_log::{Entry, rfc3339};
use crate::telemetry::trace::{Span, SpanKind, TraceContext};

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
    /// The client address (after `trusted_proxies`).
    pub client_ip: IpAddr,
    /// Plugin attributes at the end of the request (consumer, tenant).
    pub attributes: Vec<(String, String)>,
}

impl Done {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the forward stage learned, its one output besides the response:
/// the forward stage fills this record and nothing else of the trail.
#[derive(Debug, Default)]
pub struct Upstreamed {
    /// Tries sent.
    pub tries: u32,
    /// Service of the last try.
    pub service: Option<Arc<str>>,
    /// Instance of the last try.
    pub instance: Option<http::uri::Authority>,
    /// Time spent waiting for response heads, over all tries.
    pub upstream_time: Duration,
    /// One client span per try, when the request is sampled.
    pub spans: Vec<Span>,
}

/// What one request went through.
#[derive(Debug)]
pub struct Trail {
    /// When the request head arrived.
    pub started: Instant,
    /// Request body bytes, counted when telemetry needs them.
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// What the forward stage learned.
    pub upstream: Upstreamed,
    /// The plugin that answered the request, if one did.
    pub answered_by: Option<Arc<str>>,
    /// The trace, when tracing is configured.
    pub trace: Option<TraceContext>,
    /// Finished child spans (plugin calls, upstream tries), when sampled.
    pub spans: Vec<Span>,
    /// What the response cache did, on a cached route.
    pub cache: Option<crate::cache::Outcome>,
    /// Why the route's fallback answered (the error code it replaced, or
    /// `upstream_status`), when it did.
    pub fallback: Option<&'static str>,
    /// The version each plugin with `versions` ran (plugin, version label).
    pub plugin_versions: Vec<(Arc<str>, Arc<str>)>,
}

impl Trail {
    /// A trail starting now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            bytes_in: None,
            route: None,
            upstream: Upstreamed::default(),
            answered_by: None,
            trace: None,
            spans: Vec::new(),
            cache: None,
            fallback: None,
            plugin_versions: Vec::new(),
        }
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
        if let Some(span) = self
            .trace
            .as_ref()
            .and_then(|t| t.child(span_id, name, kind, start, attributes, error))
        {
            self.spans.push(span);
        }
    }

    /// Writes the access log line and exports the spans.
    pub fn finish(mut self, tel: &Telemetry, done: Done, bytes_out: u64) {
        // The wall-clock start, derived here rather than read on every request.
        let started_at = SystemTime::now() - self.started.elapsed();
        if let Some(sink) = &tel.spans {
            self.export_spans(sink, &done, started_at);
        }
        let Some(log) = &tel.access_log else { return };
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let consumer = done.attribute("consumer").map(str::to_string);
        let tenant = done.attribute("tenant").map(str::to_string);
        log.send(Entry {
            timestamp: rfc3339(started_at),
            request_id: done.request_id,
            trace_id: self.trace.as_ref().map(TraceContext::trace_id_hex),
            method: done.method.to_string(),
            path: done.path,
            route_id: done.route_id,
            service: self.upstream.service.take(),
            instance: self.upstream.instance.take().map(|a| a.to_string()),
            status: done.status.as_u16(),
            latency_ms: ms(self.started.elapsed()),
            upstream_latency_ms: (self.upstream.tries > 0).then(|| ms(self.upstream.upstream_time)),
            bytes_in: self
                .bytes_in
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            bytes_out,
            client_ip: done.client_ip,
            consumer,
            tenant,
            answered_by: self.answered_by.take(),
            upstream_tries: self.upstream.tries,
            cache: self.cache.map(crate::cache::Outcome::as_str),
            fallback: self.fallback,
            plugin_versions: std::mem::take(&mut self.plugin_versions)
                .into_iter()
                .map(|(p, v)| (p.to_string(), v.to_string()))
                .collect(),
        });
    }

    /// The request span (with its children) to the span exporter, when sampled.
    fn export_spans(
        &mut self,
        sink: &crate::telemetry::SpanSink,
        done: &Done,
        started_at: SystemTime,
    ) {
        let Some(trace) = self.trace.as_ref().filter(|t| t.sampled) else {
            return;
        };
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
            ("client.address", done.client_ip.to_string()),
        ];
        if let Some(c) = done.attribute("consumer") {
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
        self.spans.append(&mut self.upstream.spans);
        sink.send(std::mem::take(&mut self.spans));
    }
}
