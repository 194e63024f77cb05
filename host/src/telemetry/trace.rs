//! W3C Trace Context (`traceparent` / `tracestate`) and the spans one request
//! produces: the request itself, each plugin call, each upstream try.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A 16-byte trace id.
pub type TraceId = [u8; 16];
/// An 8-byte span id.
pub type SpanId = [u8; 8];

/// The trace a request belongs to.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// Accepted from the client or generated.
    pub trace_id: TraceId,
    /// The client's span (our request span's parent), if the client sent one.
    pub parent: Option<SpanId>,
    /// This gateway's span for the request.
    pub span_id: SpanId,
    /// Whether spans are recorded and exported.
    pub sampled: bool,
    /// Passed on to the upstream unchanged.
    pub tracestate: Option<HeaderValue>,
}

fn random<const N: usize>() -> [u8; N] {
    loop {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = fastrand::u8(..);
        }
        // All-zero ids are invalid (W3C §3.2.2.3).
        if b.iter().any(|x| *x != 0) {
            return b;
        }
    }
}

/// A new random span id.
pub fn new_span_id() -> SpanId {
    random()
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    out.iter().any(|b| *b != 0).then_some(out)
}

impl TraceContext {
    /// Continues the client's trace when its `traceparent` is valid (version
    /// 00, lowercase hex, non-zero ids); otherwise starts a new one, sampled
    /// with probability `ratio`.
    pub fn from_headers(headers: &HeaderMap, ratio: f64) -> Self {
        let parsed = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                let mut parts = s.trim().split('-');
                let (version, trace, parent, flags) =
                    (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if version != "00" || parts.next().is_some() {
                    return None;
                }
                let flags = parse_hex::<1>(flags).map_or(0, |f| f[0]);
                Some((
                    parse_hex::<16>(trace)?,
                    parse_hex::<8>(parent)?,
                    flags & 1 == 1,
                ))
            });
        match parsed {
            Some((trace_id, parent, sampled)) => Self {
                trace_id,
                parent: Some(parent),
                span_id: new_span_id(),
                sampled,
                tracestate: headers.get(&TRACESTATE).cloned(),
            },
            None => Self {
                trace_id: random(),
                parent: None,
                span_id: new_span_id(),
                sampled: ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio),
                tracestate: None,
            },
        }
    }

    /// The trace id as 32 hex digits (access log).
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` value naming `span` as the parent.
    pub fn header_for(&self, span: &SpanId) -> HeaderValue {
        let v = format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(span),
            u8::from(self.sampled)
        );
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Sets `traceparent` (with `span` as the parent) and the client's `tracestate`.
    pub fn propagate(&self, headers: &mut HeaderMap, span: &SpanId) {
        headers.insert(TRACEPARENT.clone(), self.header_for(span));
        match &self.tracestate {
            Some(ts) => headers.insert(TRACESTATE.clone(), ts.clone()),
            None => headers.remove(&TRACESTATE),
        };
    }

    /// A child of the request span ending now; `None` unless the trace is
    /// sampled (then nothing is recorded at all).
    pub fn child(
        &self,
        span_id: Option<SpanId>,
        name: String,
        kind: SpanKind,
        start: SystemTime,
        attributes: Vec<(&'static str, String)>,
        error: bool,
    ) -> Option<Span> {
        self.sampled.then(|| Span {
            trace_id: self.trace_id,
            span_id: span_id.unwrap_or_else(new_span_id),
            parent: Some(self.span_id),
            name,
            kind,
            start,
            end: SystemTime::now(),
            attributes,
            error,
        })
    }
}

/// Span kinds as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the gateway (plugin calls).
    Internal = 1,
    /// The request as received.
    Server = 2,
    /// A call to an upstream.
    Client = 3,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// The trace.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// Its parent, if any.
    pub parent: Option<SpanId>,
    /// `GET orders-get`, `plugin jwt-auth on-request`, `upstream orders`.
    pub name: String,
    /// Kind.
    pub kind: SpanKind,
    /// Start (wall clock).
    pub start: SystemTime,
    /// End (wall clock).
    pub end: SystemTime,
    /// String attributes.
    pub attributes: Vec<(&'static str, String)>,
    /// Whether it failed.
    pub error: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(tp: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&TRACEPARENT, HeaderValue::from_str(tp).expect("valid"));
        h.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        h
    }

    #[test]
    fn continues_a_valid_parent_and_refuses_malformed_ones() {
        let tc = TraceContext::from_headers(
            &headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            0.0,
        );
        assert_eq!(tc.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            tc.parent.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(tc.sampled, "the client's sampled flag wins over the ratio");
        let mut out = HeaderMap::new();
        tc.propagate(&mut out, &tc.span_id);
        let tp = out[&TRACEPARENT].to_str().expect("ascii");
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(tp.ends_with("-01"));
        assert_eq!(out[&TRACESTATE], "vendor=1");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            let tc = TraceContext::from_headers(&headers(bad), 0.0);
            assert!(tc.parent.is_none(), "{bad}");
            assert!(!tc.sampled);
            assert!(tc.tracestate.is_none(), "a new trace drops foreign state");
        }
    }
}
