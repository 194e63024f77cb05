//! Local rate-limit counters: token bucket and sliding window (two-window
//! weighted), sharded so that the hot path takes one small lock, with idle keys
//! swept out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
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

/// Sharded local counters, keyed by the plugin's key string.
#[derive(Debug)]
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, (State, u64)>>>,
    hasher: RandomState,
    epoch: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

impl RateLimiter {
    /// Checks and counts `req` now.
    pub fn check(&self, req: &LimitRequest) -> LimitDecision {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.check_at(req, now)
    }

    /// Checks and counts `req` at `now_ms` (milliseconds on this limiter's clock).
    pub fn check_at(&self, req: &LimitRequest, now_ms: u64) -> LimitDecision {
        let i = (self.hasher.hash_one(&req.key) as usize) % SHARDS;
        let mut shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= SWEEP_AT {
            let window = req.window_ms.max(1);
            shard.retain(|_, (_, last)| now_ms.saturating_sub(*last) < 2 * window);
        }
        let entry = shard
            .entry(req.key.clone())
            .or_insert_with(|| (initial(req, now_ms), now_ms));
        entry.1 = now_ms;
        decide(&mut entry.0, req, now_ms)
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
        let allowed = (0..8).filter(|_| l.check_at(&r, 0).allowed).count();
        assert_eq!(allowed, 5);
        let d = l.check_at(&r, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 200);
        // 200 ms later exactly one token is back.
        assert!(l.check_at(&r, 200).allowed);
        assert!(!l.check_at(&r, 200).allowed);
    }

    #[test]
    fn sliding_window_weighs_previous_window() {
        let l = RateLimiter::default();
        let r = req(Algorithm::SlidingWindow, 10, 1000);
        assert_eq!((0..15).filter(|_| l.check_at(&r, 0).allowed).count(), 10);
        // Halfway through the next window, half of the previous 10 still count.
        assert_eq!((0..15).filter(|_| l.check_at(&r, 1500).allowed).count(), 5);
        // Two windows later everything is forgotten.
        assert_eq!((0..15).filter(|_| l.check_at(&r, 3600).allowed).count(), 10);
    }

    #[test]
    fn keys_are_isolated() {
        let l = RateLimiter::default();
        let mut a = req(Algorithm::TokenBucket, 1, 1000);
        assert!(l.check_at(&a, 0).allowed);
        assert!(!l.check_at(&a, 0).allowed);
        a.key = "other".into();
        assert!(l.check_at(&a, 0).allowed);
    }
}
