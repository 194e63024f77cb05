//! Validation of a service's resilience settings: health checks, outlier
//! detection, the circuit breaker and retries, each with its defaults.

use std::time::Duration;

use super::Errors;
use super::edge::{at_least_one, positive};
use crate::config::edge::*;
use crate::config::raw::*;

/// `health_check`, with its defaults.
pub(super) fn health_check(h: &RawHealthCheck, p: &str, errs: &mut Errors) -> HealthCheck {
    if !h.path.starts_with('/') {
        errs.push(format!("{p}.path"), "must start with `/`");
    }
    HealthCheck {
        path: h.path.clone(),
        interval: positive(
            h.interval.as_ref().map(|d| d.0),
            Duration::from_secs(5),
            &format!("{p}.interval"),
            errs,
        ),
        timeout: positive(
            h.timeout.as_ref().map(|d| d.0),
            Duration::from_secs(1),
            &format!("{p}.timeout"),
            errs,
        ),
        healthy_threshold: at_least_one(
            h.healthy_threshold,
            2,
            &format!("{p}.healthy_threshold"),
            errs,
        ),
        unhealthy_threshold: at_least_one(
            h.unhealthy_threshold,
            3,
            &format!("{p}.unhealthy_threshold"),
            errs,
        ),
    }
}

/// `outlier_detection`, with its defaults.
pub(super) fn outlier_detection(
    o: &RawOutlierDetection,
    p: &str,
    errs: &mut Errors,
) -> OutlierDetection {
    let base_ejection_time = positive(
        o.base_ejection_time.as_ref().map(|d| d.0),
        Duration::from_secs(30),
        &format!("{p}.base_ejection_time"),
        errs,
    );
    OutlierDetection {
        consecutive_failures: at_least_one(
            o.consecutive_failures,
            5,
            &format!("{p}.consecutive_failures"),
            errs,
        ),
        base_ejection_time,
        max_ejection_time: positive(
            o.max_ejection_time.as_ref().map(|d| d.0),
            Duration::from_secs(300),
            &format!("{p}.max_ejection_time"),
            errs,
        )
        .max(base_ejection_time),
    }
}

/// `circuit_breaker`, with its defaults.
pub(super) fn circuit_breaker(c: &RawCircuitBreaker, p: &str, errs: &mut Errors) -> CircuitBreaker {
    CircuitBreaker {
        failure_threshold: at_least_one(
            c.failure_threshold,
            5,
            &format!("{p}.failure_threshold"),
            errs,
        ),
        open_for: positive(
            c.open_for.as_ref().map(|d| d.0),
            Duration::from_secs(10),
            &format!("{p}.open_for"),
            errs,
        ),
        half_open_requests: at_least_one(
            c.half_open_requests,
            1,
            &format!("{p}.half_open_requests"),
            errs,
        ),
        failure_rate: failure_rate(c, p, errs),
    }
}

fn failure_rate(c: &RawCircuitBreaker, p: &str, errs: &mut Errors) -> Option<FailureRate> {
    let Some(rate) = c.failure_rate else {
        if c.window.is_some() || c.min_requests.is_some() {
            errs.push(
                format!("{p}.failure_rate"),
                "`window` and `min_requests` need `failure_rate`",
            );
        }
        return None;
    };
    if !(rate > 0.0 && rate <= 1.0) {
        errs.push(
            format!("{p}.failure_rate"),
            "must be a share of tries in (0, 1], e.g. 0.5",
        );
    }
    Some(FailureRate {
        permille: (rate * 1000.0).round().clamp(1.0, 1000.0) as u32,
        window: positive(
            c.window.as_ref().map(|d| d.0),
            Duration::from_secs(10),
            &format!("{p}.window"),
            errs,
        ),
        min_requests: at_least_one(c.min_requests, 20, &format!("{p}.min_requests"), errs),
    })
}

/// `retries`, with its defaults.
pub(super) fn retries(r: &RawRetries, path: &str, errs: &mut Errors) -> Retries {
    let mut on = RetryOn::default();
    let list =
        r.on.clone()
            .unwrap_or_else(|| vec!["connect_failure".into(), "reset".into()]);
    for (i, cond) in list.iter().enumerate() {
        match cond.as_str() {
            "connect_failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "timeout" => on.timeout = true,
            code => match code.parse::<u16>() {
                Ok(c) if (500..600).contains(&c) => on.statuses.push(c),
                _ => errs.push(
                    format!("{path}.on[{i}]"),
                    format!("`{code}`: expected connect_failure, reset, timeout or a 5xx status"),
                ),
            },
        }
    }
    let budget = r.budget.unwrap_or(0.2);
    if !(budget > 0.0 && budget <= 1.0) {
        errs.push(
            format!("{path}.budget"),
            "must be a share of requests in (0, 1], e.g. 0.2",
        );
    }
    let backoff_base = positive(
        r.backoff_base.as_ref().map(|d| d.0),
        Duration::from_millis(25),
        &format!("{path}.backoff_base"),
        errs,
    );
    Retries {
        attempts: at_least_one(r.attempts, 2, &format!("{path}.attempts"), errs),
        on,
        backoff_base,
        backoff_max: r
            .backoff_max
            .as_ref()
            .map_or(Duration::from_millis(250), |d| d.0)
            .max(backoff_base),
        budget,
        max_body_bytes: r.max_body_bytes.unwrap_or(64 * 1024),
    }
}
