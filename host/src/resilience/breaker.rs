//! The per-service circuit breaker: closed → open after consecutive failures
//! (or a failure rate over a window);
//! open answers at once; after `open_for`, half-open lets a few probes through;
//! a probe's success closes it, a failure opens it again.

use std::sync::Mutex;
use std::time::Duration;

use super::{Outcome, millis, now_ms};
use crate::config::{CircuitBreaker, FailureRate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32, window: Window },
    Open { until: u64 },
    HalfOpen { probes: u32 },
}

/// Tries and failures counted since `start` (the failure-rate trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Window {
    start: u64,
    tries: u32,
    failed: u32,
}

impl Window {
    /// Counts a try; true when the rate trigger fires.
    fn count(&mut self, failed: bool, rate: &FailureRate, now: u64) -> bool {
        if now.saturating_sub(self.start) > millis(rate.window) {
            *self = Window {
                start: now,
                ..Window::default()
            };
        }
        self.tries += 1;
        self.failed += u32::from(failed);
        self.tries >= rate.min_requests
            && u64::from(self.failed) * 1000 >= u64::from(rate.permille) * u64::from(self.tries)
    }
}

fn closed() -> State {
    State::Closed {
        failures: 0,
        window: Window {
            start: now_ms(),
            ..Window::default()
        },
    }
}

/// A breaker's state. The lock is held for a few instructions, never across an await.
#[derive(Debug)]
pub struct Breaker {
    cfg: CircuitBreaker,
    state: Mutex<State>,
}

/// Permission to send one try; report how it went with [`Ticket::finish`].
/// Dropped unfinished (the client went away), a probe slot is given back.
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

/// The breaker is open: answer 503 and tell the client when to come back.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// Time until the breaker lets probes through.
    pub retry_after: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: CircuitBreaker) -> Self {
        Self {
            cfg,
            state: Mutex::new(closed()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a try may go to the upstream now.
    pub fn admit(&self) -> Result<Ticket<'_>, Open> {
        let mut st = self.lock();
        let now = now_ms();
        if let State::Open { until } = *st {
            if now < until {
                return Err(Open {
                    retry_after: Duration::from_millis(until - now),
                });
            }
            *st = State::HalfOpen { probes: 0 };
        }
        match &mut *st {
            State::Closed { .. } => Ok(self.ticket(false)),
            State::HalfOpen { probes } if *probes < self.cfg.half_open_requests => {
                *probes += 1;
                Ok(self.ticket(true))
            }
            // Half-open with every probe slot taken: keep the rest away.
            _ => Err(Open {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    fn ticket(&self, probe: bool) -> Ticket<'_> {
        Ticket {
            breaker: self,
            probe,
            done: false,
        }
    }

    /// `closed`, `open` or `half_open` (logs, tests, metrics).
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { until } if now_ms() < until => "open",
            _ => "half_open",
        }
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        let mut st = self.lock();
        let now = now_ms();
        let open = State::Open {
            until: now + millis(self.cfg.open_for),
        };
        match (*st, outcome) {
            (State::HalfOpen { .. }, Outcome::Success) if probe => {
                *st = closed();
                tracing::info!("circuit breaker closed: probe succeeded");
            }
            (State::HalfOpen { .. }, Outcome::Failure) if probe => {
                *st = open;
                tracing::warn!("circuit breaker re-opened: probe failed");
            }
            (
                State::Closed {
                    failures,
                    mut window,
                },
                outcome,
            ) => {
                let failed = outcome == Outcome::Failure;
                let failures = if failed { failures + 1 } else { 0 };
                let rate_hit = self
                    .cfg
                    .failure_rate
                    .is_some_and(|r| window.count(failed, &r, now));
                if failures >= self.cfg.failure_threshold || rate_hit {
                    *st = open;
                    tracing::warn!(failures, rate_hit, "circuit breaker opened");
                } else {
                    *st = State::Closed { failures, window };
                }
            }
            // Tries admitted before the state changed do not move it again.
            _ => {}
        }
    }

    fn release_probe(&self) {
        if let State::HalfOpen { probes } = &mut *self.lock() {
            *probes = probes.saturating_sub(1);
        }
    }
}

impl Ticket<'_> {
    /// Reports the try's outcome.
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(self.probe, outcome);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new(CircuitBreaker {
            failure_threshold: 3,
            open_for,
            half_open_requests: 1,
            failure_rate: None,
        })
    }

    #[test]
    fn a_failure_rate_opens_it_without_consecutive_failures() {
        let b = Breaker::new(CircuitBreaker {
            failure_threshold: 1000,
            open_for: Duration::from_secs(60),
            half_open_requests: 1,
            failure_rate: Some(FailureRate {
                permille: 500,
                window: Duration::from_secs(60),
                min_requests: 10,
            }),
        });
        // Alternating: never two failures in a row, 50 % failed.
        for i in 0..9 {
            let outcome = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.admit().expect("closed").finish(outcome);
            assert_eq!(
                b.state_name(),
                "closed",
                "below min_requests after {}",
                i + 1
            );
        }
        b.admit().expect("closed").finish(Outcome::Success);
        assert_eq!(b.state_name(), "open", "5 of 10 failed");
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            b.admit().expect("closed").finish(Outcome::Failure);
        }
        b.admit().expect("closed").finish(Outcome::Success);
        for _ in 0..2 {
            b.admit().expect("closed").finish(Outcome::Failure);
        }
        assert_eq!(b.state_name(), "closed");
        b.admit().expect("closed").finish(Outcome::Failure);
        assert_eq!(b.state_name(), "open");
        let open = b.admit().expect_err("open");
        assert!(open.retry_after > Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_one_probe_and_its_outcome_decides() {
        let b = breaker(Duration::from_millis(200));
        for _ in 0..3 {
            b.admit().expect("closed").finish(Outcome::Failure);
        }
        tokio::time::advance(Duration::from_millis(250)).await;
        let probe = b.admit().expect("half-open probe");
        assert!(b.admit().is_err(), "a second request waits for the probe");
        probe.finish(Outcome::Failure);
        assert!(b.admit().is_err(), "re-opened");
        tokio::time::advance(Duration::from_millis(250)).await;
        let probe = b.admit().expect("probe again");
        assert!(b.admit().is_err(), "slot taken");
        probe.finish(Outcome::Success);
        assert_eq!(b.state_name(), "closed");
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let b = breaker(Duration::from_millis(1));
        for _ in 0..3 {
            b.admit().expect("closed").finish(Outcome::Failure);
        }
        tokio::time::advance(Duration::from_millis(5)).await;
        drop(b.admit().expect("probe"));
        assert!(b.admit().is_ok(), "slot given back");
    }
}
