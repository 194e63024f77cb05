//! What the request path reads, and nothing else: the live snapshot, the
//! metrics it records into and the telemetry sinks. The control plane
//! ([`crate::control`]) publishes snapshots here; listeners and the proxy
//! only ever load them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::metrics::{Metrics, RouteMetrics};
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;

/// The data plane's shared state.
pub struct DataPlane {
    snapshot: ArcSwap<Snapshot>,
    /// Every metric of this gateway.
    pub metrics: Arc<Metrics>,
    /// Counters of requests no route matched.
    pub unmatched: Arc<RouteMetrics>,
    /// Access log and span export.
    pub telemetry: Telemetry,
    /// Set when shutdown begins: `/ready` answers 503 from then on.
    draining: AtomicBool,
}

impl DataPlane {
    /// A data plane serving `snapshot`.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, telemetry: Telemetry) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            unmatched: metrics.route(&Arc::from(crate::metrics::UNMATCHED)),
            metrics,
            telemetry,
            draining: AtomicBool::new(false),
        }
    }

    /// Marks the start of shutdown (readiness fails from now on).
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The current snapshot (an `Arc` the caller keeps for the whole request).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Makes `snap` the one new requests run on; requests in flight finish
    /// on the one they started with.
    pub(crate) fn publish(&self, snap: Snapshot) {
        self.snapshot.store(Arc::new(snap));
    }
}
