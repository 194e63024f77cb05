//! Instance health: the verdict of active probes and passive outlier
//! ejection, read lock-free by the balancer on every selection.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use http::{Request, StatusCode, header};

use super::{Outcome, millis, now_ms};
use crate::body::Body;
use crate::config::{HealthCheck, OutlierDetection};
use crate::snapshot::Service;

/// Live health of one instance.
#[derive(Debug)]
pub struct InstanceHealth {
    /// Last verdict of active probes (true until probes say otherwise).
    probed_ok: AtomicBool,
    /// Ejected until this [`now_ms`]; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Consecutive failed tries (passive).
    failures: AtomicU32,
    /// Ejections so far; the next lasts one base period longer.
    ejections: AtomicU32,
}

impl Default for InstanceHealth {
    fn default() -> Self {
        Self {
            probed_ok: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
        }
    }
}

impl InstanceHealth {
    /// Whether the instance may get traffic now.
    pub fn is_healthy(&self) -> bool {
        if !self.probed_ok.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || now_ms() >= until
    }

    /// Sets the active verdict (probes, tests).
    pub fn set_probed(&self, ok: bool) {
        self.probed_ok.store(ok, Ordering::Relaxed);
    }

    /// Counts a try for outlier detection; ejects after
    /// `consecutive_failures` in a row, for `n × base` (capped) on the n-th ejection.
    pub fn record(&self, outcome: Outcome, od: &OutlierDetection) {
        match outcome {
            Outcome::Success => {
                self.failures.store(0, Ordering::Relaxed);
            }
            Outcome::Failure => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n < od.consecutive_failures {
                    return;
                }
                let now = now_ms();
                let until = self.ejected_until.load(Ordering::Relaxed);
                if until > now {
                    return;
                }
                // A long healthy stretch since the last ejection forgives the past.
                if until != 0 && now - until > millis(od.max_ejection_time) {
                    self.ejections.store(0, Ordering::Relaxed);
                }
                let k = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
                let period = od
                    .base_ejection_time
                    .saturating_mul(k)
                    .min(od.max_ejection_time);
                self.ejected_until
                    .store(now + millis(period).max(1), Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                tracing::warn!(
                    ejection = k,
                    ?period,
                    "upstream instance ejected after consecutive failures"
                );
            }
        }
    }
}

/// Starts one probe loop per instance of `service`; each ends when the service
/// is dropped (a reload replaced it and its last request finished).
pub fn spawn_probes(service: &Arc<Service>, hc: &HealthCheck) {
    for idx in 0..service.instances.len() {
        let weak = Arc::downgrade(service);
        tokio::spawn(probe_loop(weak, idx, hc.clone()));
    }
}

async fn probe_loop(service: Weak<Service>, idx: usize, hc: HealthCheck) {
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        let healthy = {
            let Some(svc) = service.upgrade() else { return };
            probe(&svc, idx, &hc).await
        };
        let Some(svc) = service.upgrade() else { return };
        let inst = &svc.instances[idx];
        if healthy {
            ok_run += 1;
            fail_run = 0;
        } else {
            fail_run += 1;
            ok_run = 0;
        }
        let was = inst.health.probed_ok.load(Ordering::Relaxed);
        if was && fail_run >= hc.unhealthy_threshold {
            inst.health.set_probed(false);
            tracing::warn!(service = &*svc.name, instance = %inst.authority, "health check failing: instance taken out");
        } else if !was && ok_run >= hc.healthy_threshold {
            inst.health.set_probed(true);
            tracing::info!(service = &*svc.name, instance = %inst.authority, "health check passing: instance back in");
        }
        drop(svc);
        tokio::time::sleep(hc.interval).await;
    }
}

/// One GET of the health path; 2xx and 3xx are healthy.
async fn probe(svc: &Service, idx: usize, hc: &HealthCheck) -> bool {
    let inst = &svc.instances[idx];
    let Ok(uri) = http::Uri::try_from(hc.path.as_str()) else {
        return false;
    };
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = uri;
    req.headers_mut().insert(header::HOST, inst.host.clone());
    req.headers_mut().insert(
        header::USER_AGENT,
        http::HeaderValue::from_static("gatehouse-health-check"),
    );
    match svc.upstream.send(idx, req, hc.timeout).await {
        Ok(resp) => {
            let s = resp.status();
            // Read a small body to its end so that the connection is reused.
            let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
            let _ = tokio::time::timeout(hc.timeout, http_body_util::BodyExt::collect(body)).await;
            s.is_success() || s.is_redirection() || s == StatusCode::NOT_MODIFIED
        }
        Err(_) => false,
    }
}
