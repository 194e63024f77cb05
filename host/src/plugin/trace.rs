//! Live tracing of one plugin (`POST /plugins/{name}/trace`): the next N
//! hook calls of any attachment of the plugin, on this node, within a time
//! bound, each recorded with what went in (request head with secrets
//! redacted, attributes), what came out (outcome, edits, attributes), the
//! host calls it made, its time and its memory. Off, it costs one relaxed
//! atomic load per hook call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderName};
use serde::Serialize;

use crate::exchange::PluginView;

/// Header values never recorded unless the trace asks otherwise.
pub const DEFAULT_REDACT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Query parameter values never recorded unless the trace asks otherwise.
pub const DEFAULT_REDACT_QUERY: &[&str] = &["api_key", "access_token", "token", "key"];

/// The replacement of a redacted value.
const REDACTED: &str = "[redacted]";

/// A plugin's tracer: off, or recording into a [`Recorder`].
#[derive(Debug, Default)]
pub struct Tracer {
    on: AtomicBool,
    current: ArcSwapOption<Recorder>,
}

impl Tracer {
    /// The recorder, if one is active and this call may be recorded (it
    /// takes one of the recorder's remaining slots).
    pub fn claim(&self) -> Option<Arc<Recorder>> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        let r = self.current.load_full()?;
        if r.claim() {
            Some(r)
        } else {
            self.on.store(false, Ordering::Relaxed);
            None
        }
    }

    /// Starts recording into `r` (replacing any earlier trace).
    pub fn start(&self, r: Arc<Recorder>) {
        self.current.store(Some(r));
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stops and forgets the trace.
    pub fn clear(&self) {
        self.on.store(false, Ordering::Relaxed);
        self.current.store(None);
    }

    /// The current (or last) trace.
    pub fn current(&self) -> Option<Arc<Recorder>> {
        self.current.load_full()
    }
}

/// One trace: its bounds and what it recorded.
#[derive(Debug)]
pub struct Recorder {
    /// Calls still to record.
    left: AtomicUsize,
    /// Calls asked for.
    pub count: usize,
    /// Nothing is recorded after this.
    until: Instant,
    /// When it started.
    pub started: SystemTime,
    /// How long it may run.
    pub seconds: u64,
    redact_headers: Vec<HeaderName>,
    redact_query: Vec<String>,
    records: Mutex<Vec<Invocation>>,
}

impl Recorder {
    /// A trace of the next `count` calls within `seconds`.
    pub fn new(
        count: usize,
        seconds: u64,
        redact_headers: Vec<HeaderName>,
        redact_query: Vec<String>,
    ) -> Self {
        Self {
            left: AtomicUsize::new(count),
            count,
            until: Instant::now() + Duration::from_secs(seconds),
            started: SystemTime::now(),
            seconds,
            redact_headers,
            redact_query,
            records: Mutex::new(Vec::with_capacity(count)),
        }
    }

    fn claim(&self) -> bool {
        Instant::now() < self.until
            && self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Whether it can record no more (count reached or time up).
    pub fn done(&self) -> bool {
        self.left.load(Ordering::Relaxed) == 0 || Instant::now() >= self.until
    }

    /// The recorded calls, oldest first.
    pub fn records(&self) -> Vec<Invocation> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn push(&self, i: Invocation) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(i);
    }

    fn headers(&self, h: &HeaderMap) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in h {
            let v = if self.redact_headers.contains(name) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.entry(name.as_str().to_string()).or_default().push(v);
        }
        out
    }

    /// A response head as recorded.
    fn response(&self, status: u16, headers: &HeaderMap) -> Head {
        Head {
            method: None,
            path: None,
            query: None,
            status: Some(status),
            headers: self.headers(headers),
        }
    }

    fn query(&self, q: Option<&str>) -> Option<String> {
        let q = q?;
        let pairs = form_urlencoded::parse(q.as_bytes()).map(|(k, v)| {
            let v = if self.redact_query.iter().any(|r| *r == k) {
                REDACTED.into()
            } else {
                v
            };
            (k, v)
        });
        Some(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        )
    }
}

/// A request or response head as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    /// Method (requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path (requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query, redacted (requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Status (responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Headers, redacted.
    pub headers: BTreeMap<String, Vec<String>>,
}

/// What a call changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Edits {
    /// Headers of the request (or, in the response phase, of the response)
    /// set or changed, with their new values (redacted).
    pub headers_set: BTreeMap<String, Vec<String>>,
    /// Headers removed.
    pub headers_removed: Vec<String>,
    /// The new path, if changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The new query (`""`: removed), if changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The new status (response phase), if changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Attributes set or changed.
    pub attributes: BTreeMap<String, String>,
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    /// When it started (RFC 3339).
    pub at: String,
    /// The route.
    pub route: String,
    /// `on-request`, `on-request-body`, `on-response`, `on-response-body`.
    pub hook: &'static str,
    /// The plugin version that ran.
    pub version: String,
    /// The request id.
    pub request_id: String,
    /// The client address.
    pub client_ip: String,
    /// The request as the plugin saw it.
    pub request: Head,
    /// The response as the plugin saw it (response hooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Head>,
    /// Attributes when the call started.
    pub attributes: BTreeMap<String, String>,
    /// `continue`, `respond`, `replace`, or `error`.
    pub outcome: &'static str,
    /// The answer it gave (`respond` / `replace`): status and headers, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Head>,
    /// What it changed.
    pub edits: Edits,
    /// The host calls it made, in order.
    pub host_calls: Vec<String>,
    /// Wall time of the call, microseconds.
    pub duration_us: u64,
    /// The instance's linear memory after the call, bytes.
    pub memory_bytes: usize,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What is kept of a traced call before it runs.
pub struct Before {
    started: Instant,
    at: SystemTime,
    hook: &'static str,
    headers: HeaderMap,
    path: String,
    query: Option<String>,
    status: u16,
    attributes: Vec<(String, String)>,
    request: Head,
    response: Option<Head>,
}

impl Recorder {
    /// Takes what the call starts from. `response` is whether it is a response hook.
    pub fn before(&self, view: &PluginView, hook: &'static str, response: bool) -> Before {
        let req = &view.req;
        let request = Head {
            method: Some(req.method.to_string()),
            path: Some(req.uri.path().to_string()),
            query: self.query(req.uri.query()),
            status: None,
            headers: self.headers(&req.headers),
        };
        let (headers, resp) = if response {
            let head = self.response(view.resp.status.as_u16(), &view.resp.headers);
            (view.resp.headers.clone(), Some(head))
        } else {
            (req.headers.clone(), None)
        };
        Before {
            started: Instant::now(),
            at: SystemTime::now(),
            hook,
            headers,
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            status: view.resp.status.as_u16(),
            attributes: view.attributes.clone(),
            request,
            response: resp,
        }
    }

    /// Records the call `b` started, as it ended.
    #[allow(clippy::too_many_arguments)]
    pub fn after(
        &self,
        b: Before,
        view: &PluginView,
        version: &str,
        outcome: &'static str,
        answer: Option<(u16, &HeaderMap)>,
        host_calls: Vec<String>,
        memory_bytes: usize,
        error: Option<String>,
    ) {
        let response_phase = b.response.is_some();
        let now = if response_phase {
            &view.resp.headers
        } else {
            &view.req.headers
        };
        let mut edits = Edits::default();
        for name in now.keys() {
            let new: Vec<_> = now.get_all(name).iter().collect();
            let old: Vec<_> = b.headers.get_all(name).iter().collect();
            if new != old {
                let mut one = HeaderMap::new();
                for v in &new {
                    one.append(name.clone(), (*v).clone());
                }
                edits.headers_set.extend(self.headers(&one));
            }
        }
        edits.headers_removed = b
            .headers
            .keys()
            .filter(|n| !now.contains_key(*n))
            .map(|n| n.as_str().to_string())
            .collect();
        if view.req.uri.path() != b.path {
            edits.path = Some(view.req.uri.path().to_string());
        }
        if view.req.uri.query().map(str::to_string) != b.query {
            edits.query = Some(self.query(view.req.uri.query()).unwrap_or_default());
        }
        if response_phase && view.resp.status.as_u16() != b.status {
            edits.status = Some(view.resp.status.as_u16());
        }
        for (k, v) in &view.attributes {
            if !b.attributes.iter().any(|(bk, bv)| bk == k && bv == v) {
                edits.attributes.insert(k.clone(), v.clone());
            }
        }
        let answer = answer.map(|(status, headers)| self.response(status, headers));
        self.push(Invocation {
            at: crate::telemetry::access_log::rfc3339(b.at),
            route: view.route_id.to_string(),
            hook: b.hook,
            version: version.to_string(),
            request_id: String::from_utf8_lossy(view.request_id.as_bytes()).into_owned(),
            client_ip: view.client_ip.to_string(),
            request: b.request,
            response: b.response,
            attributes: b.attributes.into_iter().collect(),
            outcome,
            answer,
            edits,
            host_calls,
            duration_us: b.started.elapsed().as_micros() as u64,
            memory_bytes,
            error,
        });
    }
}
