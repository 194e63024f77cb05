//! The per-plugin key-value store behind `host.kv-*`: sharded maps with TTL, so
//! that concurrent requests rarely contend on one lock. Survives hot swaps.
//! Bounded in keys and bytes per plugin: a full shard drops expired entries,
//! then the ones written longest ago.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Default bound on the keys of one plugin's store.
pub const DEFAULT_MAX_KEYS: usize = crate::config::DEFAULT_KV_KEYS;
/// Default bound on the bytes (keys + values) of one plugin's store.
pub const DEFAULT_MAX_BYTES: usize = crate::config::DEFAULT_KV_BYTES;

/// A value, its expiry, and when it was written (eviction order).
type Entry = (Vec<u8>, Option<Instant>, Instant);

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<String, Entry>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some((v, _, _)) => {
                self.bytes -= key.len() + v.len();
                true
            }
            None => false,
        }
    }

    /// Makes room for `need` more bytes and one more key; returns how many
    /// live entries had to go.
    fn make_room(&mut self, need: usize, max_keys: usize, max_bytes: usize) -> usize {
        let full = |s: &Self| s.map.len() >= max_keys || s.bytes + need > max_bytes;
        if !full(self) {
            return 0;
        }
        let now = Instant::now();
        let bytes = &mut self.bytes;
        self.map.retain(|k, (v, e, _)| {
            let live = e.is_none_or(|e| e > now);
            if !live {
                *bytes -= k.len() + v.len();
            }
            live
        });
        let mut evicted = 0;
        if full(self) {
            let mut order: Vec<(Instant, String)> = self
                .map
                .iter()
                .map(|(k, (_, _, at))| (*at, k.clone()))
                .collect();
            order.sort_unstable();
            // Evict an eighth at once so that a stream of new keys sorts
            // once per many writes, then as many more as the bytes need.
            let batch = (max_keys / 8).max(1);
            for (i, (_, k)) in order.iter().enumerate() {
                if i >= batch && !full(self) {
                    break;
                }
                self.remove(k);
                evicted += 1;
            }
        }
        evicted
    }
}

/// A sharded in-memory map with optional expiry per key.
#[derive(Debug)]
pub struct Kv {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    max_keys: AtomicUsize,
    max_bytes: AtomicUsize,
}

impl Default for Kv {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
            max_bytes: AtomicUsize::new(DEFAULT_MAX_BYTES),
        }
    }
}

impl Kv {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the bounds (`plugin_state.kv_keys`, `plugin_state.kv_bytes`).
    pub fn set_bounds(&self, keys: usize, bytes: usize) {
        self.max_keys.store(keys.max(SHARDS), Ordering::Relaxed);
        self.max_bytes.store(bytes.max(SHARDS), Ordering::Relaxed);
    }

    /// The value of `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some((_, Some(exp), _)) if *exp <= Instant::now() => {
                shard.remove(key);
                None
            }
            Some((v, _, _)) => Some(v.clone()),
            None => None,
        }
    }

    /// Stores `value`; `ttl_ms` 0 keeps it until deleted. Returns how many
    /// other entries were evicted to make room. An entry larger than a
    /// shard's share of the byte bound is not stored.
    pub fn set(&self, key: String, value: Vec<u8>, ttl_ms: u64) -> usize {
        let exp = (ttl_ms > 0).then(|| Instant::now() + Duration::from_millis(ttl_ms));
        let max_keys = (self.max_keys.load(Ordering::Relaxed) / SHARDS).max(1);
        let max_bytes = (self.max_bytes.load(Ordering::Relaxed) / SHARDS).max(1);
        let need = key.len() + value.len();
        let mut shard = self.shard(&key);
        shard.remove(&key);
        if need > max_bytes {
            return 0;
        }
        let evicted = shard.make_room(need, max_keys, max_bytes);
        shard.bytes += need;
        shard.map.insert(key, (value, exp, Instant::now()));
        evicted
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        self.shard(key).remove(key);
    }

    /// Keys and bytes held (for tests and the admin API).
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(k, b), s| {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            (k + s.map.len(), b + s.bytes)
        })
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
        assert_eq!(kv.usage(), (0, 0));
    }

    #[test]
    fn keys_and_bytes_are_bounded() {
        let kv = Kv::default();
        kv.set_bounds(SHARDS * 10, SHARDS * 1000);
        let mut evicted = 0;
        for i in 0..5_000 {
            evicted += kv.set(format!("k{i}"), vec![0; 50], 0);
        }
        let (keys, bytes) = kv.usage();
        assert!(keys <= SHARDS * 10, "{keys} keys");
        assert!(bytes <= SHARDS * 1000, "{bytes} bytes");
        assert_eq!(evicted + keys, 5_000, "every write is held or counted out");
        // A value over a shard's byte share is refused, not stored.
        kv.set("huge".into(), vec![0; 5000], 0);
        assert_eq!(kv.get("huge"), None);
        // The newest survive.
        assert!(kv.get("k4999").is_some());
    }
}
