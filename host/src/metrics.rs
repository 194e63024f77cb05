//! Metrics: counters and histograms kept in atomics, handed to the request
//! path as `Arc`s when a snapshot is built (so recording never looks anything
//! up), and rendered in the Prometheus text format by the admin listener.
//! Label values are route ids, service and plugin names: bounded by the config,
//! never raw paths.

pub mod histogram;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Method, StatusCode};

pub use histogram::Histogram;

/// Methods counted under their own label; the rest count as `OTHER`.
pub(crate) const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "OTHER",
];
/// Status classes.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(m: &Method) -> usize {
    METHODS[..8]
        .iter()
        .position(|x| *x == m.as_str())
        .unwrap_or(8)
}

fn class_index(s: StatusCode) -> usize {
    usize::from(s.as_u16() / 100).clamp(1, 5) - 1
}

/// Per-route request counters and latency.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub(crate) requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    /// Time from request head to response head, gateway and upstream together.
    pub duration: Histogram,
}

impl RouteMetrics {
    /// Counts one finished request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        self.requests[method_index(method)][class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.duration.record(elapsed);
    }

    /// Requests per status class (`2xx` ...), all methods.
    pub fn by_class(&self) -> [(&'static str, u64); CLASSES.len()] {
        let mut out = CLASSES.map(|c| (c, 0));
        for per_method in &self.requests {
            for (i, n) in per_method.iter().enumerate() {
                out[i].1 += n.load(Ordering::Relaxed);
            }
        }
        out
    }
}

/// Per-service upstream counters and latency.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    /// Answers by status class, then transport failures (`error`).
    pub(crate) tries: [AtomicU64; CLASSES.len() + 1],
    /// Time to the upstream's response head, per try.
    pub duration: Histogram,
    /// Retries sent.
    pub retries: AtomicU64,
}

impl ServiceMetrics {
    /// Counts one try: its status, or `None` for a transport failure.
    pub fn record(&self, status: Option<StatusCode>, elapsed: Duration) {
        let i = status.map_or(CLASSES.len(), class_index);
        self.tries[i].fetch_add(1, Ordering::Relaxed);
        self.duration.record(elapsed);
    }
}

/// Per plugin and route: calls, time, failures, short-circuits.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    /// Hook calls.
    pub calls: AtomicU64,
    /// Time per call.
    pub duration: Histogram,
    /// Calls that trapped or failed.
    pub errors: AtomicU64,
    /// Calls past their deadline.
    pub timeouts: AtomicU64,
    /// Requests the plugin answered itself.
    pub short_circuits: AtomicU64,
}

/// Callouts of one plugin to one service.
#[derive(Debug, Default)]
pub struct CalloutMetrics {
    /// Callouts that got an answer from the service (any status).
    pub answered: AtomicU64,
    /// Callouts answered from the host's callout cache.
    pub cached: AtomicU64,
    /// Callouts refused: service not granted, or an invalid request.
    pub refused: AtomicU64,
    /// Callouts past their timeout.
    pub timeouts: AtomicU64,
    /// Callouts no instance could take, or whose answer was too large.
    pub failed: AtomicU64,
    /// Time from send to the whole answer.
    pub duration: Histogram,
}

/// Rate-limit decisions of one plugin.
#[derive(Debug, Default)]
pub struct LimitMetrics {
    /// Requests under the limit.
    pub allowed: AtomicU64,
    /// Requests refused.
    pub limited: AtomicU64,
    /// Checks the backend could not answer.
    pub backend_errors: AtomicU64,
    /// Local rate-limit keys evicted to stay within `plugin_state.rate_limit_keys`.
    pub evicted: AtomicU64,
    /// Key-value entries evicted to stay within `plugin_state.kv_keys`/`kv_bytes`.
    pub kv_evicted: AtomicU64,
}

/// Metrics a plugin records through `counter-add` and `histogram-record`.
#[derive(Debug, Default)]
pub struct PluginCustom {
    pub(crate) counters: Registry<String, AtomicU64>,
    pub(crate) histograms: Registry<String, Histogram>,
}

/// Distinct metric names one plugin may create (label cardinality stays bounded).
pub const CUSTOM_NAMES: usize = 64;

/// Keeps `[a-zA-Z0-9_]`, replacing the rest with `_`; `None` for an empty name.
fn metric_name(name: &str) -> Option<String> {
    let n: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!n.is_empty()).then_some(n)
}

fn custom_entry<V: Default>(reg: &Registry<String, V>, name: &str) -> Option<Arc<V>> {
    let name = metric_name(name)?;
    if let Some(v) = reg.read().unwrap_or_else(|p| p.into_inner()).get(&name) {
        return Some(v.clone());
    }
    let mut w = reg.write().unwrap_or_else(|p| p.into_inner());
    if w.len() >= CUSTOM_NAMES && !w.contains_key(&name) {
        return None;
    }
    Some(w.entry(name).or_default().clone())
}

impl PluginCustom {
    /// Adds to counter `name` (dropped past [`CUSTOM_NAMES`] names).
    pub fn counter_add(&self, name: &str, delta: u64) {
        if let Some(c) = custom_entry(&self.counters, name) {
            c.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Records `seconds` in histogram `name`.
    pub fn histogram_record(&self, name: &str, seconds: f64) {
        if seconds.is_finite()
            && seconds >= 0.0
            && let Some(h) = custom_entry(&self.histograms, name)
        {
            h.record(Duration::from_secs_f64(seconds.min(1e9)));
        }
    }
}

pub(crate) type Registry<K, V> = RwLock<BTreeMap<K, Arc<V>>>;

fn entry<K: Ord + Clone, V: Default>(reg: &Registry<K, V>, key: &K) -> Arc<V> {
    if let Some(v) = reg.read().unwrap_or_else(|p| p.into_inner()).get(key) {
        return v.clone();
    }
    reg.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.clone())
        .or_default()
        .clone()
}

/// Every metric of one gateway. Entries live as long as the gateway, so a
/// reload never resets a counter.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) routes: Registry<Arc<str>, RouteMetrics>,
    pub(crate) services: Registry<Arc<str>, ServiceMetrics>,
    pub(crate) plugins: Registry<(Arc<str>, Arc<str>), PluginMetrics>,
    pub(crate) callouts: Registry<(Arc<str>, Arc<str>), CalloutMetrics>,
    pub(crate) limits: Registry<Arc<str>, LimitMetrics>,
    pub(crate) shadows: Registry<Arc<str>, crate::plugin::shadow::ShadowStats>,
    /// Requests that ran each version of a plugin with `versions`, by (plugin, version).
    pub(crate) plugin_versions: Registry<(Arc<str>, Arc<str>), AtomicU64>,
    pub(crate) custom: Registry<Arc<str>, PluginCustom>,
    pub(crate) caches: Registry<Arc<str>, crate::cache::CacheMetrics>,
    /// Requests the gateway itself answered with an error, by error code.
    pub(crate) errors: Registry<&'static str, AtomicU64>,
    /// Open downstream connections.
    pub connections_active: AtomicI64,
    /// Downstream connections accepted.
    pub connections_total: AtomicU64,
    /// Open HTTP/1 connections parked while idle: their HTTP state (hyper's
    /// buffers) is dropped until the client's next bytes.
    pub connections_parked: AtomicI64,
    /// Connections closed at accept: the listener's `max_connections` was reached.
    pub connections_rejected_listener: AtomicU64,
    /// Connections closed at accept: the address's `max_connections_per_ip` was reached.
    pub connections_rejected_per_ip: AtomicU64,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: AtomicU64,
    /// Spans dropped because the exporter fell behind.
    pub spans_dropped: AtomicU64,
}

impl Metrics {
    /// Requests answered on every route (unmatched included), and how many
    /// of them were 5xx: what a fleet node reports for a canary.
    pub fn answered(&self) -> (u64, u64) {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.values().fold((0, 0), |(all, bad), r| {
            let c = r.by_class();
            (all + c.iter().map(|(_, n)| n).sum::<u64>(), bad + c[4].1)
        })
    }

    /// The counters of route `id` (`_unmatched` for requests no route took).
    pub fn route(&self, id: &Arc<str>) -> Arc<RouteMetrics> {
        entry(&self.routes, id)
    }

    /// The counters of service `name`.
    pub fn service(&self, name: &Arc<str>) -> Arc<ServiceMetrics> {
        entry(&self.services, name)
    }

    /// The counters of plugin `name` on route `route`.
    pub fn plugin(&self, name: &Arc<str>, route: &Arc<str>) -> Arc<PluginMetrics> {
        entry(&self.plugins, &(name.clone(), route.clone()))
    }

    /// The callouts of plugin `name` to service `service`.
    pub fn callouts(&self, name: &Arc<str>, service: &Arc<str>) -> Arc<CalloutMetrics> {
        entry(&self.callouts, &(name.clone(), service.clone()))
    }

    /// The rate-limit decisions of plugin `name`.
    pub fn limits(&self, name: &Arc<str>) -> Arc<LimitMetrics> {
        entry(&self.limits, name)
    }

    /// The request counter of version `label` of plugin `name`.
    pub fn plugin_version(&self, name: &Arc<str>, label: &Arc<str>) -> Arc<AtomicU64> {
        entry(&self.plugin_versions, &(name.clone(), label.clone()))
    }

    /// The shadow comparisons of plugin `name`.
    pub fn shadow(&self, name: &Arc<str>) -> Arc<crate::plugin::shadow::ShadowStats> {
        entry(&self.shadows, name)
    }

    /// The shadow comparisons of plugin `name`, if it has run a shadow.
    pub fn shadow_of(&self, name: &str) -> Option<Arc<crate::plugin::shadow::ShadowStats>> {
        let map = self.shadows.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).cloned()
    }

    /// The response cache counters of route `id`.
    pub fn cache(&self, id: &Arc<str>) -> Arc<crate::cache::CacheMetrics> {
        entry(&self.caches, id)
    }

    /// The metrics plugin `name` records itself.
    pub fn custom(&self, name: &Arc<str>) -> Arc<PluginCustom> {
        entry(&self.custom, name)
    }

    /// Counts one error answer with `code` (`no_route`, `upstream_timeout`, ...).
    /// Codes are the fixed set of [`crate::error::GatewayError::status`], so the
    /// label stays bounded.
    pub fn error(&self, code: &'static str) {
        entry(&self.errors, &code).fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of route `id`, if it served anything.
    pub fn route_if_seen(&self, id: &str) -> Option<Arc<RouteMetrics>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// The id under which requests that matched no route are counted.
pub const UNMATCHED: &str = "_unmatched";
