//! When a connection has been quiet too long: no first request within
//! `header_read_timeout` (an HTTP/2 client that sends its preface and goes
//! silent), or no request for `idle_timeout`. HTTP/1.1 has hyper's own header
//! timer too; this covers both protocols the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last started or ended;
    /// `u64::MAX` until the first request.
    last_ms: AtomicU64,
    /// Told when the last request in flight ends, so that the connection's
    /// task re-arms its idle deadline.
    pub quiet: tokio::sync::Notify,
}

/// One request in flight; ends on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.quiet.notify_one();
        }
    }
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(u64::MAX),
            quiet: tokio::sync::Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as started (its head is complete).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// When the connection should close if nothing happens before, as seen at
    /// `now`: `None` while a request is in flight.
    pub fn deadline(&self, d: &Deadlines) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => self.opened + d.first_request,
            ms => self.opened + Duration::from_millis(ms) + d.idle,
        })
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
        let a = Arc::new(Activity::new());
        let opened = Instant::now();
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
