//! Load balancing: picks a healthy instance of a service. Selection algorithms
//! (`build` + `select`) are kept apart from health, which lives on each
//! [`Instance`]. Stage four of the flow, after the plugin chain.

mod hash;
mod smooth;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue};

use crate::config::{InstanceConfig, LoadBalancerKind};
pub use hash::{Ring, stable_hash};

/// One upstream instance and its live state.
#[derive(Debug)]
pub struct Instance {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// `authority` as the `Host` header sent upstream.
    pub host: HeaderValue,
    /// Relative weight for weighted algorithms.
    pub weight: u32,
    active: AtomicUsize,
    /// Active and passive health.
    pub health: crate::resilience::health::InstanceHealth,
}

impl Instance {
    /// Whether this instance is the one `cfg` describes.
    pub fn is(&self, cfg: &InstanceConfig) -> bool {
        cfg.weight == self.weight
            && cfg.url.scheme() == Some(&self.scheme)
            && cfg.url.authority() == Some(&self.authority)
    }

    /// Creates a healthy, idle instance from its config.
    pub fn new(cfg: &InstanceConfig) -> Self {
        let parts = cfg.url.clone().into_parts();
        let authority = parts
            .authority
            .unwrap_or_else(|| Authority::from_static("invalid"));
        Self {
            scheme: parts.scheme.unwrap_or(Scheme::HTTP),
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
            authority,
            weight: cfg.weight,
            active: AtomicUsize::new(0),
            health: Default::default(),
        }
    }

    /// Requests currently in flight to this instance.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether health checking currently allows traffic here.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// Marks the instance healthy or not (health checks, tests).
    pub fn set_healthy(&self, healthy: bool) {
        self.health.set_probed(healthy);
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight to an instance; decrements the count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a selection may depend on.
#[derive(Debug, Clone, Copy)]
pub struct SelectKey<'a> {
    /// The client's address (for `ip_hash`).
    pub client_ip: IpAddr,
    /// Request headers (for `header_hash`).
    pub headers: &'a HeaderMap,
}

/// A selection algorithm built for one service's instances.
#[derive(Debug)]
pub enum Balancer {
    /// Each healthy instance in turn.
    RoundRobin(AtomicUsize),
    /// nginx's smooth weighted round robin.
    Weighted(smooth::Smooth),
    /// Fewest in flight; ties rotate.
    LeastConnections(AtomicUsize),
    /// Consistent hash ring keyed by client IP or a header.
    Hash(Ring, HashSource),
    /// Power of two random choices on in-flight counts.
    Random,
}

/// The key a hash balancer hashes.
#[derive(Debug)]
pub enum HashSource {
    /// The client IP.
    ClientIp,
    /// A header's value; requests without it fall back to the client IP.
    Header(http::HeaderName),
}

impl Balancer {
    /// Builds the algorithm's state for `instances`.
    pub fn build(kind: &LoadBalancerKind, instances: &[Arc<Instance>]) -> Self {
        match kind {
            LoadBalancerKind::RoundRobin => Self::RoundRobin(AtomicUsize::new(0)),
            LoadBalancerKind::WeightedRoundRobin => Self::Weighted(smooth::Smooth::new(instances)),
            LoadBalancerKind::LeastConnections => Self::LeastConnections(AtomicUsize::new(0)),
            LoadBalancerKind::IpHash => Self::Hash(Ring::new(instances), HashSource::ClientIp),
            LoadBalancerKind::HeaderHash(h) => {
                Self::Hash(Ring::new(instances), HashSource::Header(h.clone()))
            }
            LoadBalancerKind::Random => Self::Random,
        }
    }

    /// Picks a healthy instance's index, or `None` when none is healthy.
    pub fn select(&self, instances: &[Arc<Instance>], key: &SelectKey<'_>) -> Option<usize> {
        let n = instances.len();
        // A discovered service may have no instance registered (yet).
        if n == 0 {
            return None;
        }
        match self {
            Self::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| instances[i].is_healthy())
            }
            Self::Weighted(s) => s.select(instances),
            Self::LeastConnections(rot) => {
                let start = rot.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| instances[i].is_healthy())
                    .min_by_key(|&i| instances[i].active())
            }
            Self::Hash(ring, source) => {
                let h = match source {
                    HashSource::Header(name) => match key.headers.get(name) {
                        Some(v) => stable_hash(v.as_bytes()),
                        None => ip_hash(key.client_ip),
                    },
                    HashSource::ClientIp => ip_hash(key.client_ip),
                };
                ring.select(h, instances)
            }
            Self::Random => {
                let pick = || {
                    (0..4)
                        .map(|_| fastrand::usize(..n))
                        .find(|&i| instances[i].is_healthy())
                };
                match (pick(), pick()) {
                    (Some(a), Some(b)) => Some(if instances[b].active() < instances[a].active() {
                        b
                    } else {
                        a
                    }),
                    (a, b) => a
                        .or(b)
                        .or_else(|| (0..n).find(|&i| instances[i].is_healthy())),
                }
            }
        }
    }
}

impl Balancer {
    /// Like [`Balancer::select`], avoiding the instances in `tried` while
    /// another healthy one exists (retries go elsewhere when they can).
    pub fn select_avoiding(
        &self,
        instances: &[Arc<Instance>],
        key: &SelectKey<'_>,
        tried: &[usize],
    ) -> Option<usize> {
        let first = self.select(instances, key)?;
        if !tried.contains(&first) {
            return Some(first);
        }
        let n = instances.len();
        (1..n)
            .map(|k| (first + k) % n)
            .find(|i| !tried.contains(i) && instances[*i].is_healthy())
            .or(Some(first))
    }
}

/// Hash of a client IP for `ip_hash` and sticky splits.
pub fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => stable_hash(&v4.octets()),
        IpAddr::V6(v6) => stable_hash(&v6.octets()),
    }
}

#[cfg(test)]
mod tests;
