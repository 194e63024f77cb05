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
