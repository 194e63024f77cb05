//! Consistent hashing (a ketama-style ring with virtual nodes): adding one
//! instance to n moves about 1/(n+1) of the keys.

use std::sync::Arc;

use super::Instance;

/// Virtual nodes per unit of weight: enough for an even spread with few instances.
const VNODES_PER_WEIGHT: u32 = 160;

/// A hash ring of `(point, instance index)`, sorted by point.
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Places `weight × 160` points per instance, keyed by its authority so that a
    /// given instance lands on the same points in every process.
    pub fn new(instances: &[Arc<Instance>]) -> Self {
        let mut points = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            let name = inst.authority.as_str().as_bytes();
            for v in 0..inst.weight.saturating_mul(VNODES_PER_WEIGHT).min(100_000) {
                let mut key = name.to_vec();
                key.extend_from_slice(&v.to_le_bytes());
                points.push((stable_hash(&key), i as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first healthy instance clockwise from `hash`.
    pub fn select(&self, hash: u64, instances: &[Arc<Instance>]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|&i| instances[i].is_healthy())
    }
}

/// FNV-1a with a splitmix64 finaliser: stable across processes and versions, so
/// several gateways agree on where a key goes.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
