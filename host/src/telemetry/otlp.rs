//! Span export over OTLP/HTTP with the JSON encoding (`POST /v1/traces`),
//! batched off the request path. Spans arrive through a bounded channel; when
//! it is full they are counted as dropped, never waited for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::trace::Span;
use crate::config::TracingConfig;
use crate::metrics::Metrics;

/// Sends finished spans to the exporter task.
#[derive(Debug, Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Vec<Span>>,
    metrics: Arc<Metrics>,
}

impl SpanSink {
    /// Starts the exporter for `cfg`; it runs until every sink is dropped.
    pub fn start(cfg: &TracingConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue);
        tokio::spawn(export(cfg.clone(), rx));
        Self { tx, metrics }
    }

    /// Queues one request's spans; drops them (counted) when the queue is full.
    pub fn send(&self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        if self.tx.try_send(spans).is_err() {
            self.metrics.spans_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn export(cfg: TracingConfig, mut rx: mpsc::Receiver<Vec<Span>>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut batch: Vec<Span> = Vec::new();
    loop {
        let next = tokio::time::timeout(cfg.flush_interval, rx.recv()).await;
        let closed = matches!(next, Ok(None));
        let timed_out = next.is_err();
        if let Ok(Some(spans)) = next {
            batch.extend(spans);
            while batch.len() < cfg.batch_size {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
        }
        let due = batch.len() >= cfg.batch_size || timed_out || closed;
        if due && !batch.is_empty() {
            let body = encode(&cfg.service_name, &batch);
            batch.clear();
            let req = Request::post(cfg.endpoint.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)));
            if let Ok(req) = req {
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(r)) if r.status().is_success() => {}
                    Ok(Ok(r)) => tracing::warn!(status = %r.status(), "OTLP export refused"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "OTLP export failed"),
                    Err(_) => tracing::warn!("OTLP export timed out"),
                }
            }
        }
        if closed {
            return;
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// The `ExportTraceServiceRequest` JSON for `spans`.
pub fn encode(service_name: &str, spans: &[Span]) -> String {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let attributes: Vec<Value> = s
                .attributes
                .iter()
                .map(|(k, v)| json!({ "key": k, "value": { "stringValue": v } }))
                .collect();
            let mut span = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind as u8,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": attributes,
                "status": { "code": if s.error { 2 } else { 1 } },
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = Value::String(hex::encode(p));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": service_name } }
            ]},
            "scopeSpans": [{ "scope": { "name": "gatehouse" }, "spans": spans }]
        }]
    })
    .to_string()
}
