//! The per-plugin key-value store behind `host.kv-*`: sharded maps with TTL, so
//! that concurrent requests rarely contend on one lock. Survives hot swaps.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Entries per shard before expired ones are swept on write.
const SWEEP_AT: usize = 4096;

type Entry = (Vec<u8>, Option<Instant>);

/// A sharded in-memory map with optional expiry per key.
#[derive(Debug)]
pub struct Kv {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: RandomState,
}

impl Default for Kv {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Kv {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some((_, Some(exp))) if *exp <= Instant::now() => {
                shard.remove(key);
                None
            }
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }

    /// Stores `value`; `ttl_ms` 0 keeps it until deleted.
    pub fn set(&self, key: String, value: Vec<u8>, ttl_ms: u64) {
        let exp = (ttl_ms > 0).then(|| Instant::now() + Duration::from_millis(ttl_ms));
        let mut shard = self.shard(&key);
        if shard.len() >= SWEEP_AT {
            let now = Instant::now();
            shard.retain(|_, (_, e)| e.is_none_or(|e| e > now));
        }
        shard.insert(key, (value, exp));
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        self.shard(key).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_delete_and_expiry() {
        let kv = Kv::default();
        kv.set("a".into(), b"1".to_vec(), 0);
        kv.set("b".into(), b"2".to_vec(), 1);
        assert_eq!(kv.get("a"), Some(b"1".to_vec()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("b"), None);
        kv.delete("a");
        assert_eq!(kv.get("a"), None);
    }
}
