//! An upstream service as requests and callouts use it: its instances, the
//! balancer that picks one, the pooled client, and its resilience state
//! (breaker, bulkhead, retry budget, health probes).

mod probes;

use std::sync::Arc;

use crate::balancer::{Balancer, Instance};
use crate::config::ServiceConfig;
use crate::metrics::ServiceMetrics;
use crate::resilience::breaker::Breaker;
use crate::resilience::bulkhead::Bulkhead;
use crate::resilience::retry::RetryBudget;
use crate::upstream::Upstream;

/// An upstream service with its instances, balancer, client and resilience state.
#[derive(Debug)]
pub struct Service {
    /// Service name.
    pub name: Arc<str>,
    /// Instances in config order.
    pub instances: Vec<Arc<Instance>>,
    /// Selection algorithm.
    pub balancer: Balancer,
    /// Pooled client.
    pub upstream: Upstream,
    /// The validated settings (timeouts, retries, outlier detection).
    pub config: ServiceConfig,
    /// Circuit breaker, when configured.
    pub breaker: Option<Breaker>,
    /// Concurrency cap, when configured.
    pub bulkhead: Option<Bulkhead>,
    /// Retry budget, when retries are configured.
    pub retry_budget: Option<RetryBudget>,
    /// Upstream counters and latency.
    pub metrics: Arc<ServiceMetrics>,
}

impl Service {
    /// Builds the service and starts its health probes (they stop when the
    /// service is dropped). Instances of `previous` still listed (same URL
    /// and weight) are kept with their health and ejection state: what a
    /// discovery change does to a service.
    pub(crate) fn build(
        cfg: &ServiceConfig,
        metrics: Arc<ServiceMetrics>,
        previous: &[Arc<Instance>],
    ) -> Result<Arc<Self>, crate::tls::TlsError> {
        let instances: Vec<Arc<Instance>> = cfg
            .instances
            .iter()
            .map(|i| {
                previous
                    .iter()
                    .find(|p| p.is(i))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Instance::new(i)))
            })
            .collect();
        let svc = Arc::new(Self {
            name: cfg.name.clone(),
            balancer: Balancer::build(&cfg.load_balancer, &instances),
            instances,
            upstream: Upstream::new(cfg)?,
            config: cfg.clone(),
            breaker: cfg.circuit_breaker.map(Breaker::new),
            bulkhead: cfg.max_concurrent_requests.map(Bulkhead::new),
            retry_budget: cfg.retries.as_ref().map(|r| RetryBudget::new(r.budget)),
            metrics,
        });
        if let Some(hc) = &cfg.health_check {
            probes::spawn(&svc, hc);
        }
        Ok(svc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(instances: &[&str]) -> ServiceConfig {
        let list: Vec<String> = instances
            .iter()
            .map(|u| format!("{{ url: \"{u}\" }}"))
            .collect();
        let yaml = format!(
            "services:\n  - name: s\n    instances: [{}]\n",
            list.join(", ")
        );
        let cfg = crate::config::parse(std::path::Path::new("t.yaml"), &yaml).expect("valid");
        cfg.services[0].clone()
    }

    #[tokio::test]
    async fn instances_still_listed_keep_their_health_across_a_rebuild() {
        let metrics = Arc::new(ServiceMetrics::default());
        let before = Service::build(
            &service(&["http://10.0.0.1:80", "http://10.0.0.2:80"]),
            metrics.clone(),
            &[],
        )
        .expect("builds");
        // Probes took 10.0.0.2 out.
        before.instances[1].set_healthy(false);
        // Discovery: 10.0.0.1 left, 10.0.0.3 joined, 10.0.0.2 stays.
        let after = Service::build(
            &service(&["http://10.0.0.2:80", "http://10.0.0.3:80"]),
            metrics,
            &before.instances,
        )
        .expect("builds");
        assert!(
            Arc::ptr_eq(&after.instances[0], &before.instances[1]),
            "the same instance, state and all"
        );
        assert!(!after.instances[0].is_healthy(), "still out");
        assert!(
            after.instances[1].is_healthy(),
            "a new instance starts healthy"
        );
    }
}
