//! The Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::histogram::Histogram;
use super::{CLASSES, METHODS, Metrics};
use crate::gateway::Shared;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let s = h.snapshot();
    for (le, n) in &s.buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", s.count);
}

/// Renders every metric of the gateway behind `shared`.
pub fn render(shared: &Shared) -> String {
    let m: &Metrics = &shared.metrics;
    let mut out = String::with_capacity(16 * 1024);
    let routes = m.routes.read().unwrap_or_else(|p| p.into_inner()).clone();
    header(
        &mut out,
        "gatehouse_requests_total",
        "counter",
        "Requests answered, by route, method and status class.",
    );
    for (route, r) in &routes {
        for (mi, per_method) in r.requests.iter().enumerate() {
            for (ci, n) in per_method.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gatehouse_requests_total{{route=\"{}\",method=\"{}\",status_class=\"{}\"}} {n}",
                        escape(route),
                        METHODS[mi],
                        CLASSES[ci]
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "gatehouse_request_duration_seconds",
        "histogram",
        "Time from request head to response head, by route.",
    );
    for (route, r) in &routes {
        histogram(
            &mut out,
            "gatehouse_request_duration_seconds",
            &format!("route=\"{}\"", escape(route)),
            &r.duration,
        );
    }
    let services = m.services.read().unwrap_or_else(|p| p.into_inner()).clone();
    header(
        &mut out,
        "gatehouse_upstream_requests_total",
        "counter",
        "Tries sent upstream, by service and status class (error: no answer).",
    );
    for (svc, s) in &services {
        for (i, n) in s.tries.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let class = CLASSES.get(i).copied().unwrap_or("error");
                let _ = writeln!(
                    out,
                    "gatehouse_upstream_requests_total{{service=\"{}\",status_class=\"{class}\"}} {n}",
                    escape(svc)
                );
            }
        }
    }
    header(
        &mut out,
        "gatehouse_upstream_retries_total",
        "counter",
        "Retries sent, by service.",
    );
    for (svc, s) in &services {
        let _ = writeln!(
            out,
            "gatehouse_upstream_retries_total{{service=\"{}\"}} {}",
            escape(svc),
            s.retries.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "gatehouse_upstream_request_duration_seconds",
        "histogram",
        "Time to the upstream's response head, per try, by service.",
    );
    for (svc, s) in &services {
        histogram(
            &mut out,
            "gatehouse_upstream_request_duration_seconds",
            &format!("service=\"{}\"", escape(svc)),
            &s.duration,
        );
    }
    let snap = shared.snapshot();
    header(
        &mut out,
        "gatehouse_upstream_healthy",
        "gauge",
        "1 when an instance may get traffic (health checks, outlier ejection).",
    );
    for svc in &snap.services {
        for inst in &svc.instances {
            let _ = writeln!(
                out,
                "gatehouse_upstream_healthy{{service=\"{}\",instance=\"{}\"}} {}",
                escape(&svc.name),
                escape(inst.authority.as_str()),
                u8::from(inst.is_healthy())
            );
        }
    }
    header(
        &mut out,
        "gatehouse_circuit_breaker_state",
        "gauge",
        "1 for the breaker's current state, by service.",
    );
    for svc in &snap.services {
        if let Some(b) = &svc.breaker {
            let now = b.state_name();
            for state in ["closed", "open", "half_open"] {
                let _ = writeln!(
                    out,
                    "gatehouse_circuit_breaker_state{{service=\"{}\",state=\"{state}\"}} {}",
                    escape(&svc.name),
                    u8::from(state == now)
                );
            }
        }
    }
    header(
        &mut out,
        "gatehouse_connections_active",
        "gauge",
        "Open downstream connections.",
    );
    let _ = writeln!(
        out,
        "gatehouse_connections_active {}",
        m.connections_active.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "gatehouse_connections_total",
        "counter",
        "Downstream connections accepted.",
    );
    let _ = writeln!(
        out,
        "gatehouse_connections_total {}",
        m.connections_total.load(Ordering::Relaxed)
    );
    let plugins = m.plugins.read().unwrap_or_else(|p| p.into_inner()).clone();
    header(
        &mut out,
        "gatehouse_plugin_calls_total",
        "counter",
        "Plugin hook calls, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        let _ = writeln!(
            out,
            "gatehouse_plugin_calls_total{{plugin=\"{}\",route=\"{}\"}} {}",
            escape(p),
            escape(r),
            v.calls.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "gatehouse_plugin_errors_total",
        "counter",
        "Failed plugin calls, by plugin, route and kind (error, timeout).",
    );
    for ((p, r), v) in &plugins {
        for (kind, n) in [("error", &v.errors), ("timeout", &v.timeouts)] {
            let _ = writeln!(
                out,
                "gatehouse_plugin_errors_total{{plugin=\"{}\",route=\"{}\",kind=\"{kind}\"}} {}",
                escape(p),
                escape(r),
                n.load(Ordering::Relaxed)
            );
        }
    }
    header(
        &mut out,
        "gatehouse_plugin_short_circuits_total",
        "counter",
        "Requests a plugin answered itself, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        let _ = writeln!(
            out,
            "gatehouse_plugin_short_circuits_total{{plugin=\"{}\",route=\"{}\"}} {}",
            escape(p),
            escape(r),
            v.short_circuits.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "gatehouse_plugin_call_duration_seconds",
        "histogram",
        "Time per plugin hook call, by plugin and route.",
    );
    for ((p, r), v) in &plugins {
        histogram(
            &mut out,
            "gatehouse_plugin_call_duration_seconds",
            &format!("plugin=\"{}\",route=\"{}\"", escape(p), escape(r)),
            &v.duration,
        );
    }
    let limits = m.limits.read().unwrap_or_else(|p| p.into_inner()).clone();
    header(
        &mut out,
        "gatehouse_rate_limit_decisions_total",
        "counter",
        "Rate-limit checks, by plugin and decision (allowed, limited, backend_error).",
    );
    for (p, l) in &limits {
        for (d, n) in [
            ("allowed", &l.allowed),
            ("limited", &l.limited),
            ("backend_error", &l.backend_errors),
        ] {
            let _ = writeln!(
                out,
                "gatehouse_rate_limit_decisions_total{{plugin=\"{}\",decision=\"{d}\"}} {}",
                escape(p),
                n.load(Ordering::Relaxed)
            );
        }
    }
    let custom = m.custom.read().unwrap_or_else(|p| p.into_inner()).clone();
    header(
        &mut out,
        "gatehouse_plugin_counter_total",
        "counter",
        "Counters plugins add to (host counter-add), by plugin and name.",
    );
    for (p, c) in &custom {
        for (name, v) in c.counters.read().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "gatehouse_plugin_counter_total{{plugin=\"{}\",name=\"{name}\"}} {}",
                escape(p),
                v.load(Ordering::Relaxed)
            );
        }
    }
    header(
        &mut out,
        "gatehouse_plugin_histogram_seconds",
        "histogram",
        "Observations plugins record (host histogram-record), by plugin and name.",
    );
    for (p, c) in &custom {
        for (name, h) in c
            .histograms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            histogram(
                &mut out,
                "gatehouse_plugin_histogram_seconds",
                &format!("plugin=\"{}\",name=\"{name}\"", escape(p)),
                h,
            );
        }
    }
    let st = &shared.stats;
    header(
        &mut out,
        "gatehouse_config_reloads_total",
        "counter",
        "Config reloads, by result.",
    );
    let _ = writeln!(
        out,
        "gatehouse_config_reloads_total{{result=\"success\"}} {}",
        st.reloads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "gatehouse_config_reloads_total{{result=\"failure\"}} {}",
        st.reloads_failed.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "gatehouse_plugin_swaps_total",
        "counter",
        "Plugin hot swaps, by result.",
    );
    let _ = writeln!(
        out,
        "gatehouse_plugin_swaps_total{{result=\"success\"}} {}",
        st.swaps_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "gatehouse_plugin_swaps_total{{result=\"failure\"}} {}",
        st.swaps_failed.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "gatehouse_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    let _ = writeln!(
        out,
        "gatehouse_access_log_dropped_total {}",
        m.access_log_dropped.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "gatehouse_trace_spans_dropped_total",
        "counter",
        "Spans dropped because the exporter fell behind.",
    );
    let _ = writeln!(
        out,
        "gatehouse_trace_spans_dropped_total {}",
        m.spans_dropped.load(Ordering::Relaxed)
    );
    out
}
