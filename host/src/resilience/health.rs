//! Instance health: the verdict of active probes and passive outlier
//! ejection, read lock-free by the balancer on every selection.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{Outcome, millis, now_ms};
use crate::config::OutlierDetection;

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
    /// The last verdict of active probes.
    pub fn probed(&self) -> bool {
        self.probed_ok.load(Ordering::Relaxed)
    }

    /// Records a new verdict of active probes.
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
