//! Active health checks of a snapshot's services: one probe loop per
//! instance, for as long as the service is in a live snapshot (or serving
//! a request that started on one). The verdict goes to the instance's
//! [`InstanceHealth`](crate::resilience::health::InstanceHealth).

use std::sync::{Arc, Weak};

use http::{Request, StatusCode, header};

use super::Service;
use crate::body::Body;
use crate::config::HealthCheck;

/// Starts one probe loop per instance of `service`; each ends when the service
/// is dropped (a reload replaced it and its last request finished).
pub fn spawn(service: &Arc<Service>, hc: &HealthCheck) {
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
        let was = inst.health.probed();
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
