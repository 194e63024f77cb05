//! Upstream resilience, consulted by the forward stage around every try:
//! instance health (active probes and passive outlier ejection), the circuit
//! breaker, the bulkhead, and the retry policy with its budget.

pub mod breaker;
pub mod bulkhead;
pub mod health;
pub mod retry;

use std::sync::LazyLock;
use std::time::Duration;

use tokio::time::Instant;

/// Milliseconds since the process started: a cheap monotonic clock that fits
/// in an atomic. Tokio's clock, so tests with a paused runtime clock move the
/// breaker and ejections forward with `tokio::time::advance` instead of
/// sleeping (without tokio's `test-util` feature it is `std`'s clock).
pub fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How one try ended, as health and the breaker count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer below 500.
    Success,
    /// No connection, a reset, a timeout or a 5xx answer.
    Failure,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
