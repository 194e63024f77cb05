//! When a connection has been quiet too long: no first request within
//! `header_read_timeout` (an HTTP/2 client that sends its preface and goes
//! silent), or no request for `idle_timeout`. HTTP/1.1 has hyper's own header
//! timer too; this covers both protocols the same way.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The limits a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time from accept to the first complete request head.
    pub first_request: Duration,
    /// Time without any request in flight.
    pub idle: Duration,
    /// After a graceful close starts, the longest it may take.
    pub close_grace: Duration,
}

/// Requests in flight on one connection and when the last one ended. Kept
/// with two atomics and one clock read per request: the connection's timer is
/// re-armed lazily, when it fires, never per request (a timer-wheel insert
/// and a task wake-up per request cost more than the rest of this stage).
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests started so far.
    started: AtomicU64,
    /// Milliseconds after `opened` when a request last ended.
    last_end_ms: AtomicU64,
}

/// One request in flight; ends on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.opened.elapsed().as_millis() as u64;
        self.0.last_end_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Activity {
    /// A connection accepted at `opened`.
    pub fn opened_at(opened: Instant) -> Self {
        Self {
            opened,
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    /// Marks a request as started (its head is complete).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The first time the connection's timer should look.
    pub fn first_check(&self, d: &Deadlines) -> Instant {
        self.opened + d.first_request.min(d.idle)
    }

    /// When the connection should close if nothing happens before: `None`
    /// while a request is in flight (look again after `idle`).
    pub fn deadline(&self, d: &Deadlines) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.started.load(Ordering::Relaxed) {
            0 => self.opened + d.first_request,
            _ => {
                self.opened
                    + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed))
                    + d.idle
            }
        })
    }
}

/// Why a connection's lifetime watch woke up.
#[derive(Debug, PartialEq, Eq)]
pub enum Close {
    /// Start a graceful close: finish in-flight requests, take no more.
    Graceful,
    /// The graceful close overran its grace period: drop the connection.
    Now,
}

/// Watches one connection's deadlines (first request, idle, close grace)
/// and the listener's shutdown signal, and says when to close it.
pub struct Lifetime {
    activity: Arc<Activity>,
    deadlines: Deadlines,
    shutdown: watch::Receiver<bool>,
    timer: Pin<Box<Sleep>>,
    /// Set once a graceful close started: the timer then bounds it.
    closing: bool,
}

impl Lifetime {
    /// A watch starting now, checking first at the first-request deadline.
    pub fn new(
        activity: Arc<Activity>,
        deadlines: Deadlines,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let timer = Box::pin(tokio::time::sleep_until(activity.first_check(&deadlines)));
        Self {
            activity,
            deadlines,
            shutdown,
            timer,
            closing: false,
        }
    }

    /// Waits for the next reason to close. Cancel-safe: the connection's
    /// own end races it in a `select!`.
    pub async fn next(&mut self) -> Close {
        loop {
            tokio::select! {
                _ = self.shutdown.changed(), if !self.closing => {
                    self.closing = true;
                    self.timer.as_mut().reset(Instant::now() + self.deadlines.close_grace);
                    return Close::Graceful;
                }
                () = self.timer.as_mut() => {
                    if self.closing {
                        return Close::Now;
                    }
                    let now = Instant::now();
                    match self.activity.deadline(&self.deadlines) {
                        Some(at) if at <= now => {
                            self.closing = true;
                            self.timer.as_mut().reset(now + Duration::from_secs(1));
                            return Close::Graceful;
                        }
                        Some(at) => self.timer.as_mut().reset(at),
                        None => self.timer.as_mut().reset(now + self.deadlines.idle),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_requests() {
        let d = Deadlines {
            first_request: Duration::from_secs(1),
            idle: Duration::from_secs(10),
            close_grace: Duration::from_secs(1),
        };
        let a = Arc::new(Activity::opened_at(Instant::now()));
        let opened = Instant::now();
        assert_eq!(a.first_check(&d), opened + Duration::from_secs(1));
        assert_eq!(a.deadline(&d), Some(opened + Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(500)).await;
        let req = a.start();
        assert_eq!(a.deadline(&d), None, "a request is in flight");
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(req);
        let at = a.deadline(&d).unwrap();
        assert_eq!(
            at,
            opened + Duration::from_millis(2500) + Duration::from_secs(10)
        );
    }
}
