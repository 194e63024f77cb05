//! Retries: which tries may be repeated, the exponential backoff with full
//! jitter between them, and the budget that keeps retries to a share of
//! requests so that a failing upstream does not face a retry storm.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::Method;

use crate::config::Retries;

/// Whether `method` may be sent twice without changing the result
/// (RFC 9110 §9.2.2, TRACE left out).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Why a try failed, as retry conditions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryFailure {
    /// No connection.
    ConnectFailure,
    /// The connection broke after sending.
    Reset,
    /// The try ran out of time.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// Whether the policy retries this failure.
pub fn retries_on(policy: &Retries, f: TryFailure) -> bool {
    match f {
        TryFailure::ConnectFailure => policy.on.connect_failure,
        TryFailure::Reset => policy.on.reset,
        TryFailure::Timeout => policy.on.timeout,
        TryFailure::Status(s) => policy.on.statuses.contains(&s),
    }
}

/// Sleep before retry number `n` (1-based): uniform in `[0, min(max, base × 2^(n-1))]`.
pub fn backoff(policy: &Retries, n: u32) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
        .min(policy.backoff_max);
    let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// Tokens in thousandths: every request earns `budget` of a retry, a retry
/// spends one, and the balance is capped so that a quiet hour cannot be spent
/// in one burst.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    earn: i64,
}

const TOKEN: i64 = 1000;
/// Retries that may be banked (and the balance a service starts with).
const CAP: i64 = 10 * TOKEN;

impl RetryBudget {
    /// A budget allowing `share` retries per request (0.2 = 20 %).
    pub fn new(share: f64) -> Self {
        Self {
            balance: AtomicI64::new(CAP),
            earn: (share * TOKEN as f64).round() as i64,
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < CAP).then(|| (b + self.earn).min(CAP))
            });
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= TOKEN).then_some(b - TOKEN)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_total_failure_retries_stay_near_the_share() {
        let b = RetryBudget::new(0.2);
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.withdraw() {
                retries += 1;
            }
        }
        // 20 % of 1000 plus the banked 10.
        assert!((200..=210).contains(&retries), "{retries}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Retries {
            attempts: 5,
            on: Default::default(),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            budget: 0.2,
            max_body_bytes: 0,
        };
        for n in 1..10 {
            assert!(backoff(&p, n) <= Duration::from_millis(40));
        }
        assert!(backoff(&p, 1) <= Duration::from_millis(10));
    }
}
