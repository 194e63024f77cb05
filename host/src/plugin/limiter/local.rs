//! Local rate-limit counters: token bucket and sliding window (two-window
//! weighted), sharded so that the hot path takes one small lock, with idle keys
//! swept out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::plugin::bindings::host::{Algorithm, LimitDecision, LimitRequest};

const SHARDS: usize = 32;
const SWEEP_AT: usize = 8192;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Tokens left (scaled ×1000 for precision) and when they were counted.
    Bucket { tokens_milli: u64, at_ms: u64 },
    /// Count in the current window, count in the previous one, window start.
    Window {
        current: u64,
        previous: u64,
        start_ms: u64,
    },
}

/// Default bound on the keys one plugin's local limiter holds.
pub const DEFAULT_MAX_KEYS: usize = crate::config::DEFAULT_RATE_LIMIT_KEYS;

/// Sharded local counters, keyed by the plugin's key string, bounded in
/// number: a client that mints a new key per request (spoofed headers, many
/// addresses) cannot grow the process without limit.
#[derive(Debug)]
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, (State, u64)>>>,
    hasher: RandomState,
    epoch: Instant,
    max_keys: AtomicUsize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
        }
    }
}

impl RateLimiter {
    /// Sets the bound on keys (`plugin_state.rate_limit_keys`).
    pub fn set_max_keys(&self, n: usize) {
        self.max_keys.store(n.max(SHARDS), Ordering::Relaxed);
    }

    /// Checks and counts `req` now; also says how many keys were evicted.
    pub fn check(&self, req: &LimitRequest) -> (LimitDecision, usize) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.check_at(req, now)
    }

    /// Checks and counts `req` at `now_ms` (milliseconds on this limiter's
    /// clock). A new key in a full shard first sweeps idle keys, then evicts
    /// the least recently used eighth of the shard (amortised: one sort per
    /// shard/8 new keys, not a scan per request).
    pub fn check_at(&self, req: &LimitRequest, now_ms: u64) -> (LimitDecision, usize) {
        let i = (self.hasher.hash_one(&req.key) as usize) % SHARDS;
        let per_shard = (self.max_keys.load(Ordering::Relaxed) / SHARDS).max(1);
        let mut shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = 0;
        if let Some(entry) = shard.get_mut(&req.key) {
            entry.1 = now_ms;
            return (decide(&mut entry.0, req, now_ms), 0);
        }
        if shard.len() >= SWEEP_AT.min(per_shard) {
            let window = req.window_ms.max(1);
            shard.retain(|_, (_, last)| now_ms.saturating_sub(*last) < 2 * window);
        }
        if shard.len() >= per_shard {
            let mut ages: Vec<u64> = shard.values().map(|(_, last)| *last).collect();
            let n = (per_shard / 8).max(1).min(ages.len());
            ages.select_nth_unstable(n - 1);
            let cutoff = ages[n - 1];
            let before = shard.len();
            let mut budget = n;
            shard.retain(|_, (_, last)| {
                let evict = *last <= cutoff && budget > 0;
                budget -= usize::from(evict);
                !evict
            });
            evicted = before - shard.len();
        }
        let entry = shard
            .entry(req.key.clone())
            .or_insert_with(|| (initial(req, now_ms), now_ms));
        (decide(&mut entry.0, req, now_ms), evicted)
    }

    /// Keys held (for tests and the admin API).
    pub fn keys(&self) -> usize {
        let lock = |s: &Mutex<HashMap<String, (State, u64)>>| {
            s.lock().unwrap_or_else(|p| p.into_inner()).len()
        };
        self.shards.iter().map(lock).sum()
    }
}

fn initial(req: &LimitRequest, now_ms: u64) -> State {
    match req.algorithm {
        Algorithm::TokenBucket => State::Bucket {
            tokens_milli: u64::from(burst(req)) * 1000,
            at_ms: now_ms,
        },
        Algorithm::SlidingWindow => State::Window {
            current: 0,
            previous: 0,
            start_ms: now_ms,
        },
    }
}

fn burst(req: &LimitRequest) -> u32 {
    if req.burst == 0 { req.limit } else { req.burst }
}

/// The limiter math, pure so that it is testable without a clock.
fn decide(state: &mut State, req: &LimitRequest, now_ms: u64) -> LimitDecision {
    let window = req.window_ms.max(1);
    let cost = u64::from(req.cost.max(1));
    match state {
        State::Bucket {
            tokens_milli,
            at_ms,
        } => {
            let cap = u64::from(burst(req)) * 1000;
            // limit tokens per window → limit*1000/window milli-tokens per ms.
            let elapsed = now_ms.saturating_sub(*at_ms);
            let refill = elapsed.saturating_mul(u64::from(req.limit)) * 1000 / window;
            *tokens_milli = (*tokens_milli + refill).min(cap);
            *at_ms = now_ms;
            let need = cost * 1000;
            let per_token_ms = window.div_ceil(u64::from(req.limit.max(1)));
            let allowed = *tokens_milli >= need;
            if allowed {
                *tokens_milli -= need;
            }
            let missing = if allowed { 0 } else { need - *tokens_milli };
            let retry_after_ms = (missing * per_token_ms).div_ceil(1000);
            let reset_ms = ((cap - *tokens_milli) * per_token_ms).div_ceil(1000);
            LimitDecision {
                allowed,
                limit: burst(req),
                remaining: (*tokens_milli / 1000) as u32,
                reset_ms,
                retry_after_ms,
            }
        }
        State::Window {
            current,
            previous,
            start_ms,
        } => {
            let since = now_ms.saturating_sub(*start_ms);
            if since >= 2 * window {
                (*previous, *current) = (0, 0);
                *start_ms = now_ms - (since % window);
            } else if since >= window {
                (*previous, *current) = (*current, 0);
                *start_ms += window;
            }
            let into = now_ms - *start_ms;
            // The previous window counts in proportion to how much of it still overlaps.
            let weighted = *previous * (window - into) / window + *current;
            let limit = u64::from(req.limit);
            let allowed = weighted + cost <= limit;
            if allowed {
                *current += cost;
            }
            let used = weighted + if allowed { cost } else { 0 };
            LimitDecision {
                allowed,
                limit: req.limit,
                remaining: limit.saturating_sub(used) as u32,
                reset_ms: window - into,
                retry_after_ms: if allowed { 0 } else { window - into },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::host::Backend;

    fn req(algorithm: Algorithm, limit: u32, window_ms: u64) -> LimitRequest {
        LimitRequest {
            key: "k".into(),
            algorithm,
            backend: Backend::Local,
            limit,
            window_ms,
            burst: 0,
            cost: 1,
        }
    }

    #[test]
    fn token_bucket_admits_burst_then_refills() {
        let l = RateLimiter::default();
        let r = req(Algorithm::TokenBucket, 5, 1000);
        let allowed = (0..8).filter(|_| l.check_at(&r, 0).0.allowed).count();
        assert_eq!(allowed, 5);
        let (d, _) = l.check_at(&r, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 200);
        // 200 ms later exactly one token is back.
        assert!(l.check_at(&r, 200).0.allowed);
        assert!(!l.check_at(&r, 200).0.allowed);
    }

    #[test]
    fn sliding_window_weighs_previous_window() {
        let l = RateLimiter::default();
        let r = req(Algorithm::SlidingWindow, 10, 1000);
        assert_eq!((0..15).filter(|_| l.check_at(&r, 0).0.allowed).count(), 10);
        // Halfway through the next window, half of the previous 10 still count.
        assert_eq!(
            (0..15).filter(|_| l.check_at(&r, 1500).0.allowed).count(),
            5
        );
        // Two windows later everything is forgotten.
        assert_eq!(
            (0..15).filter(|_| l.check_at(&r, 3600).0.allowed).count(),
            10
        );
    }

    #[test]
    fn keys_are_bounded_and_the_oldest_go_first() {
        let l = RateLimiter::default();
        l.set_max_keys(SHARDS * 64);
        let mut r = req(Algorithm::TokenBucket, 1, 60_000);
        r.key = "old".into();
        assert!(l.check_at(&r, 0).0.allowed);
        let mut evicted = 0;
        for n in 0..20_000u64 {
            r.key = format!("k{n}");
            evicted += l.check_at(&r, 1 + n).1;
        }
        assert!(l.keys() <= SHARDS * 64, "{} keys", l.keys());
        assert!(evicted >= 20_000 - SHARDS * 64, "{evicted} evicted");
        // The oldest key was evicted: it starts afresh (allowed again).
        r.key = "old".into();
        assert!(l.check_at(&r, 30_000).0.allowed);
    }

    #[test]
    fn keys_are_isolated() {
        let l = RateLimiter::default();
        let mut a = req(Algorithm::TokenBucket, 1, 1000);
        assert!(l.check_at(&a, 0).0.allowed);
        assert!(!l.check_at(&a, 0).0.allowed);
        a.key = "other".into();
        assert!(l.check_at(&a, 0).0.allowed);
    }
}
