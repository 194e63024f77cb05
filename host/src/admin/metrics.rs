//! `GET /metrics`: every metric in the Prometheus text exposition format (0.0.4).

use std::sync::atomic::Ordering;

use super::exposition::{Out, escape, read};

use crate::control::{ControlPlane, Stats};
use crate::metrics::{CLASSES, METHODS, Metrics};
use crate::snapshot::Snapshot;

/// Renders every metric of the gateway `shared` controls.
pub fn render(shared: &ControlPlane) -> String {
    let m: &Metrics = &shared.data.metrics;
    let mut out = Out(String::with_capacity(16 * 1024));
    let o = &mut out;
    requests(o, m);
    errors(o, m);
    services(o, m);
    health(o, &shared.snapshot());
    connections(o, m);
    plugins(o, m);
    callouts(o, m);
    cache(o, m, &shared.snapshot());
    plugin_state(o, m);
    control(o, m, &shared.stats);
    out.0
}

/// Requests per route, method and status class; their latency.
fn requests(o: &mut Out, m: &Metrics) {
    let routes = read(&m.routes);
    o.family(
        "gatehouse_requests_total",
        "counter",
        "Requests answered, by route, method and status class.",
    );
    for (route, r) in &routes {
        for (mi, per_method) in r.requests.iter().enumerate() {
            for (ci, n) in per_method.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let labels = format!(
                        "route=\"{}\",method=\"{}\",status_class=\"{}\"",
                        escape(route),
                        METHODS[mi],
                        CLASSES[ci]
                    );
                    o.sample("gatehouse_requests_total", &labels, n);
                }
            }
        }
    }
    o.family(
        "gatehouse_request_duration_seconds",
        "histogram",
        "Time from request head to response head, by route.",
    );
    for (route, r) in &routes {
        o.histogram(
            "gatehouse_request_duration_seconds",
            &format!("route=\"{}\"", escape(route)),
            &r.duration,
        );
    }
}

/// The gateway's own error answers, by code.
fn errors(o: &mut Out, m: &Metrics) {
    o.family(
        "gatehouse_errors_total",
        "counter",
        "Requests the gateway answered with an error of its own, by error code (the `error` field of the JSON body).",
    );
    for (code, n) in &read(&m.errors) {
        let labels = format!("code=\"{code}\"");
        o.sample("gatehouse_errors_total", &labels, n.load(Ordering::Relaxed));
    }
}

/// The response cache: answers by route and outcome, stores, and the
/// store's bytes, entries and evictions.
fn cache(o: &mut Out, m: &Metrics, snap: &Snapshot) {
    let routes = read(&m.caches);
    o.family(
        "gatehouse_cache_requests_total",
        "counter",
        "Answers on cached routes, by route and outcome (hit, stale, revalidated, coalesced, miss, bypass).",
    );
    for (route, c) in &routes {
        for (outcome, n) in c.by_outcome() {
            let labels = format!("route=\"{}\",result=\"{outcome}\"", escape(route));
            o.sample("gatehouse_cache_requests_total", &labels, n);
        }
    }
    o.family(
        "gatehouse_cache_stored_total",
        "counter",
        "Responses stored, by route.",
    );
    for (route, c) in &routes {
        let labels = format!("route=\"{}\"", escape(route));
        o.sample(
            "gatehouse_cache_stored_total",
            &labels,
            c.stored.load(Ordering::Relaxed),
        );
    }
    let Some(store) = &snap.cache else { return };
    let t = store.totals();
    for (name, kind, help, v) in [
        (
            "gatehouse_cache_bytes",
            "gauge",
            "Bytes the response cache holds (bodies, headers, keys).",
            t.bytes,
        ),
        (
            "gatehouse_cache_max_bytes",
            "gauge",
            "The response cache's bound (cache.max_bytes).",
            t.max_bytes,
        ),
        (
            "gatehouse_cache_entries",
            "gauge",
            "Entries in the response cache (objects and markers).",
            t.entries,
        ),
        (
            "gatehouse_cache_evictions_total",
            "counter",
            "Entries evicted to stay within the bound.",
            t.evictions,
        ),
    ] {
        o.family(name, kind, help);
        o.sample(name, "", v);
    }
}

/// Upstream tries and their latency, per service.
fn services(o: &mut Out, m: &Metrics) {
    let services = read(&m.services);
    o.family(
        "gatehouse_upstream_requests_total",
        "counter",
        "Tries sent upstream, by service and status class (error: no answer).",
    );
    for (svc, s) in &services {
        for (i, n) in s.tries.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let class = CLASSES.get(i).copied().unwrap_or("error");
                o.sample(
                    "gatehouse_upstream_requests_total",
                    &format!("service=\"{}\",status_class=\"{class}\"", escape(svc)),
                    n,
                );
            }
        }
    }
    o.family(
        "gatehouse_upstream_retries_total",
        "counter",
        "Retries sent, by service.",
    );
    for (svc, s) in &services {
        o.sample(
            "gatehouse_upstream_retries_total",
            &format!("service=\"{}\"", escape(svc)),
            s.retries.load(Ordering::Relaxed),
        );
    }
    o.family(
        "gatehouse_upstream_request_duration_seconds",
        "histogram",
        "Time to the upstream's response head, per try, by service.",
    );
    for (svc, s) in &services {
        o.histogram(
            "gatehouse_upstream_request_duration_seconds",
            &format!("service=\"{}\"", escape(svc)),
            &s.duration,
        );
    }
}

/// Instance health, ejections and breakers of the live snapshot.
fn health(o: &mut Out, snap: &Snapshot) {
    o.family(
        "gatehouse_upstream_healthy",
        "gauge",
        "1 when an instance may get traffic (health checks, outlier ejection).",
    );
    for svc in &snap.services {
        for inst in &svc.instances {
            let labels = format!(
                "service=\"{}\",instance=\"{}\"",
                escape(&svc.name),
                escape(inst.authority.as_str())
            );
            o.sample(
                "gatehouse_upstream_healthy",
                &labels,
                u8::from(inst.is_healthy()),
            );
        }
    }
    o.family(
        "gatehouse_circuit_breaker_state",
        "gauge",
        "1 for the breaker's current state, by service.",
    );
    for svc in &snap.services {
        if let Some(b) = &svc.breaker {
            let now = b.state_name();
            for state in ["closed", "open", "half_open"] {
                let labels = format!("service=\"{}\",state=\"{state}\"", escape(&svc.name));
                o.sample(
                    "gatehouse_circuit_breaker_state",
                    &labels,
                    u8::from(state == now),
                );
            }
        }
    }
}

/// Downstream connections: open, accepted, refused at accept.
fn connections(o: &mut Out, m: &Metrics) {
    o.family(
        "gatehouse_connections_active",
        "gauge",
        "Open downstream connections.",
    );
    o.sample(
        "gatehouse_connections_active",
        "",
        m.connections_active.load(Ordering::Relaxed),
    );
    o.family(
        "gatehouse_connections_parked",
        "gauge",
        "Open HTTP/1 connections parked while idle, holding no HTTP state.",
    );
    o.sample(
        "gatehouse_connections_parked",
        "",
        m.connections_parked.load(Ordering::Relaxed),
    );
    o.family(
        "gatehouse_connections_total",
        "counter",
        "Downstream connections accepted.",
    );
    o.sample(
        "gatehouse_connections_total",
        "",
        m.connections_total.load(Ordering::Relaxed),
    );
    o.family(
        "gatehouse_connections_rejected_total",
        "counter",
        "Downstream connections closed at accept, by the cap they hit.",
    );
    for (reason, n) in [
        ("max_connections", &m.connections_rejected_listener),
        ("max_connections_per_ip", &m.connections_rejected_per_ip),
    ] {
        o.sample(
            "gatehouse_connections_rejected_total",
            &format!("reason=\"{reason}\""),
            n.load(Ordering::Relaxed),
        );
    }
}

/// Plugin calls, errors, timeouts and latency per plugin and route.
fn plugins(o: &mut Out, m: &Metrics) {
    let plugins = read(&m.plugins);
    let pr = |p: &str, r: &str| format!("plugin=\"{}\",route=\"{}\"", escape(p), escape(r));
    o.family(
        "gatehouse_plugin_calls_total",
        "counter",
        "Plugin hook calls, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        o.sample(
            "gatehouse_plugin_calls_total",
            &pr(p, r),
            v.calls.load(Ordering::Relaxed),
        );
    }
    o.family(
        "gatehouse_plugin_errors_total",
        "counter",
        "Failed plugin calls, by plugin, route and kind (error, timeout).",
    );
    for ((p, r), v) in &plugins {
        for (kind, n) in [("error", &v.errors), ("timeout", &v.timeouts)] {
            o.sample(
                "gatehouse_plugin_errors_total",
                &format!("{},kind=\"{kind}\"", pr(p, r)),
                n.load(Ordering::Relaxed),
            );
        }
    }
    o.family(
        "gatehouse_plugin_short_circuits_total",
        "counter",
        "Requests a plugin answered itself, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        o.sample(
            "gatehouse_plugin_short_circuits_total",
            &pr(p, r),
            v.short_circuits.load(Ordering::Relaxed),
        );
    }
    o.family(
        "gatehouse_plugin_call_duration_seconds",
        "histogram",
        "Time per plugin hook call, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        o.histogram(
            "gatehouse_plugin_call_duration_seconds",
            &pr(p, r),
            &v.duration,
        );
    }
}

/// Plugin callouts, by plugin, service and result; their duration.
fn callouts(o: &mut Out, m: &Metrics) {
    let callouts = read(&m.callouts);
    let ps = |p: &str, s: &str| format!("plugin=\"{}\",service=\"{}\"", escape(p), escape(s));
    o.family(
        "gatehouse_plugin_callouts_total",
        "counter",
        "Plugin callouts, by plugin, service and result (answered, cached, refused, timeout, failed).",
    );
    for ((p, s), v) in &callouts {
        for (result, n) in [
            ("answered", &v.answered),
            ("cached", &v.cached),
            ("refused", &v.refused),
            ("timeout", &v.timeouts),
            ("failed", &v.failed),
        ] {
            o.sample(
                "gatehouse_plugin_callouts_total",
                &format!("{},result=\"{result}\"", ps(p, s)),
                n.load(Ordering::Relaxed),
            );
        }
    }
    o.family(
        "gatehouse_plugin_callout_duration_seconds",
        "histogram",
        "Time per plugin callout, send to whole answer, by plugin and service.",
    );
    for ((p, s), v) in &callouts {
        o.histogram(
            "gatehouse_plugin_callout_duration_seconds",
            &ps(p, s),
            &v.duration,
        );
    }
}

/// Rate-limit decisions, state evictions and plugins' own metrics.
fn plugin_state(o: &mut Out, m: &Metrics) {
    o.family(
        "gatehouse_rate_limit_decisions_total",
        "counter",
        "Rate-limit checks, by plugin and decision (allowed, limited, backend_error).",
    );
    for (p, l) in &read(&m.limits) {
        for (d, n) in [
            ("allowed", &l.allowed),
            ("limited", &l.limited),
            ("backend_error", &l.backend_errors),
        ] {
            o.sample(
                "gatehouse_rate_limit_decisions_total",
                &format!("plugin=\"{}\",decision=\"{d}\"", escape(p)),
                n.load(Ordering::Relaxed),
            );
        }
    }
    o.family(
        "gatehouse_plugin_version_requests_total",
        "counter",
        "Requests that ran each version of a plugin rolled out by `versions`, by plugin and version.",
    );
    for ((p, v), n) in &read(&m.plugin_versions) {
        o.sample(
            "gatehouse_plugin_version_requests_total",
            &format!("plugin=\"{}\",version=\"{}\"", escape(p), escape(v)),
            n.load(Ordering::Relaxed),
        );
    }
    o.family(
        "gatehouse_plugin_shadow_total",
        "counter",
        "Shadow-version comparisons, by plugin and result (same, differ, error, skipped).",
    );
    for (p, s) in &read(&m.shadows) {
        for (r, n) in [
            ("same", &s.same),
            ("differ", &s.differ),
            ("error", &s.error),
            ("skipped", &s.skipped),
        ] {
            o.sample(
                "gatehouse_plugin_shadow_total",
                &format!("plugin=\"{}\",result=\"{r}\"", escape(p)),
                n.load(Ordering::Relaxed),
            );
        }
    }
    o.family(
        "gatehouse_plugin_state_evictions_total",
        "counter",
        "Entries evicted from a plugin's host-side state to stay within its bounds, by plugin and store (rate_limit, kv).",
    );
    for (p, l) in &read(&m.limits) {
        for (store, n) in [("rate_limit", &l.evicted), ("kv", &l.kv_evicted)] {
            o.sample(
                "gatehouse_plugin_state_evictions_total",
                &format!("plugin=\"{}\",store=\"{store}\"", escape(p)),
                n.load(Ordering::Relaxed),
            );
        }
    }
    let custom = read(&m.custom);
    o.family(
        "gatehouse_plugin_counter_total",
        "counter",
        "Counters plugins add to (host counter-add), by plugin and name.",
    );
    for (p, c) in &custom {
        for (name, v) in &read(&c.counters) {
            o.sample(
                "gatehouse_plugin_counter_total",
                &format!("plugin=\"{}\",name=\"{name}\"", escape(p)),
                v.load(Ordering::Relaxed),
            );
        }
    }
    o.family(
        "gatehouse_plugin_histogram_seconds",
        "histogram",
        "Observations plugins record (host histogram-record), by plugin and name.",
    );
    for (p, c) in &custom {
        for (name, h) in &read(&c.histograms) {
            o.histogram(
                "gatehouse_plugin_histogram_seconds",
                &format!("plugin=\"{}\",name=\"{name}\"", escape(p)),
                h,
            );
        }
    }
}

/// Reloads, swaps, and telemetry the writers dropped.
fn control(o: &mut Out, m: &Metrics, st: &Stats) {
    o.by_label(
        "gatehouse_config_reloads_total",
        "Config reloads, by result.",
        "result",
        &[("success", &st.reloads_ok), ("failure", &st.reloads_failed)],
    );
    o.by_label(
        "gatehouse_plugin_swaps_total",
        "Plugin hot swaps, by result.",
        "result",
        &[("success", &st.swaps_ok), ("failure", &st.swaps_failed)],
    );
    o.family(
        "gatehouse_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    o.sample(
        "gatehouse_access_log_dropped_total",
        "",
        m.access_log_dropped.load(Ordering::Relaxed),
    );
    o.family(
        "gatehouse_trace_spans_dropped_total",
        "counter",
        "Spans dropped because the exporter fell behind.",
    );
    o.sample(
        "gatehouse_trace_spans_dropped_total",
        "",
        m.spans_dropped.load(Ordering::Relaxed),
    );
}
