//! nginx's smooth weighted round robin: for weights 5,1,1 it yields
//! a a b a c a a rather than a a a a a b c.

use std::sync::{Arc, Mutex};

use super::Instance;

/// Current weights, one per instance; the lock is held for a few additions only.
#[derive(Debug)]
pub struct Smooth {
    current: Mutex<Vec<i64>>,
}

impl Smooth {
    /// Starts every current weight at zero.
    pub fn new(instances: &[Arc<Instance>]) -> Self {
        Self {
            current: Mutex::new(vec![0; instances.len()]),
        }
    }

    /// Adds each healthy instance's weight to its current weight, picks the largest,
    /// and subtracts the total from the winner.
    pub fn select(&self, instances: &[Arc<Instance>]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, inst) in instances.iter().enumerate() {
            if !inst.is_healthy() {
                continue;
            }
            let w = i64::from(inst.weight);
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}
