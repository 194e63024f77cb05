//! A fixed-bucket latency histogram of atomics: one relaxed add per bucket,
//! sum and count on record; cumulated only when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds (Prometheus `le`), tuned for a proxy: 100 µs to 10 s.
pub const BOUNDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Counts of observations per bucket.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    /// Observations above the last bound (only in `+Inf`).
    over: AtomicU64,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A histogram's values at one moment, cumulative like Prometheus wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `(le, cumulative count)` for each bound.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BOUNDS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative view.
    pub fn snapshot(&self) -> Snapshot {
        let mut acc = 0;
        let buckets = BOUNDS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                acc += n.load(Ordering::Relaxed);
                (*le, acc)
            })
            .collect();
        Snapshot {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// The bucket bound under which `q` (0..1) of observations fall; an
    /// upper estimate, as precise as the buckets.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil() as u64;
        Some(
            self.buckets
                .iter()
                .find(|(_, n)| *n >= rank)
                .map_or(f64::INFINITY, |(le, _)| *le),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_quantiles_follow_them() {
        let h = Histogram::default();
        for ms in [0.05, 0.3, 0.3, 7.0, 20_000.0] {
            h.record(Duration::from_secs_f64(ms / 1000.0));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[2], (0.0005, 3));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(4), "20 s only in +Inf");
        assert_eq!(s.quantile(0.5), Some(0.0005));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
        assert!((s.sum - 20.00765).abs() < 1e-6);
    }
}
