//! When a connection has been quiet too long: no first request within
//! `header_read_timeout` (an HTTP/2 client that sends its preface and goes
//! silent), or no request for `idle_timeout`. HTTP/1.1 has hyper's own header
//! timer too; this covers both protocols the same way. And when an idle
//! HTTP/1 connection should be parked: its HTTP state dropped until the
//! client's next bytes (see `super::serve`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Time without any request in flight after which an HTTP/1 connection
    /// is parked; `None` for HTTP/2 (its state is the multiplexed session).
    pub park: Option<Duration>,
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
    /// Set while the connection is being parked: hyper's shutdown of the
    /// socket is then skipped (see `Replay`).
    parking: AtomicBool,
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

/// A response body that keeps its request in flight until hyper is done
/// with it: a connection streaming a response is neither idle nor parkable.
#[derive(Debug)]
pub struct Held {
    body: crate::body::Body,
    _request: InFlight,
}

impl Held {
    /// `body`, holding `request` until it is dropped.
    pub fn new(body: crate::body::Body, request: InFlight) -> Self {
        Self {
            body,
            _request: request,
        }
    }
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
            parking: AtomicBool::new(false),
        }
    }

    /// Whether the connection is being parked.
    pub fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Starts or ends parking.
    pub fn set_parking(&self, on: bool) {
        self.parking.store(on, Ordering::Relaxed);
    }

    /// Requests started so far.
    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// When the last request ended.
    fn last_end(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed))
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
            _ => self.last_end() + d.idle,
        })
    }
}

/// Why a connection's lifetime watch woke up.
#[derive(Debug, PartialEq, Eq)]
pub enum Close {
    /// Park the connection: it has been idle for `park` since its last
    /// request (HTTP/1 only; at most once per request served).
    Park,
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
    /// Requests started when the connection was last parked: it is parked
    /// again only after serving another.
    parked_at: u64,
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
            parked_at: 0,
        }
    }

    /// Holds the connection to HTTP/1's rules: parked once idle for `park`,
    /// and closed when its next request head is not complete within
    /// `next_head` of the last response (hyper's header timer would close
    /// it then too, but a parked connection has no hyper connection, and a
    /// rebuilt one would start its timer afresh).
    pub fn http1(&mut self, park: Duration, next_head: Duration) {
        self.deadlines.park = Some(park);
        self.deadlines.idle = self.deadlines.idle.min(next_head);
        self.resumed();
    }

    /// The parked connection's client sent bytes again: look at the
    /// connection again one park period after its next request ends, not
    /// at the (much later) idle deadline the timer may be set to.
    pub fn resumed(&mut self) {
        if let Some(park) = self.deadlines.park {
            let mut at = Instant::now() + park;
            if let Some(close) = self.activity.deadline(&self.deadlines) {
                // A head timeout shorter than the park delay still holds.
                at = at.min(close);
            }
            self.timer.as_mut().reset(at);
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
                    let park = self.deadlines.park;
                    match self.activity.deadline(&self.deadlines) {
                        Some(at) if at <= now => {
                            self.closing = true;
                            self.timer.as_mut().reset(now + Duration::from_secs(1));
                            return Close::Graceful;
                        }
                        Some(at) => match park.filter(|_| self.activity.started() > self.parked_at) {
                            Some(park) if self.activity.last_end() + park <= now => {
                                self.parked_at = self.activity.started();
                                self.timer.as_mut().reset(at);
                                return Close::Park;
                            }
                            Some(park) => self.timer.as_mut().reset(at.min(self.activity.last_end() + park)),
                            None => self.timer.as_mut().reset(at),
                        },
                        None => {
                            let look = park.map_or(self.deadlines.idle, |p| p.min(self.deadlines.idle));
                            self.timer.as_mut().reset(now + look);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/1 watch parking after 500 ms, and the shutdown sender it
    /// listens to (to be kept: a dropped sender reads as a shutdown).
    fn http1_lifetime(a: &Arc<Activity>, d: Deadlines) -> (watch::Sender<bool>, Lifetime) {
        let (tx, rx) = watch::channel(false);
        let mut life = Lifetime::new(a.clone(), d, rx);
        life.http1(Duration::from_millis(500), Duration::from_secs(10));
        (tx, life)
    }

    /// First request within 1 s, idle close after 10 s, no parking yet.
    fn deadlines() -> Deadlines {
        Deadlines {
            first_request: Duration::from_secs(1),
            idle: Duration::from_secs(10),
            close_grace: Duration::from_secs(1),
            park: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_requests() {
        let d = deadlines();
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

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_parked_once_per_request_served() {
        let d = deadlines();
        let opened = Instant::now();
        let a = Arc::new(Activity::opened_at(opened));
        let (_shutdown, mut life) = http1_lifetime(&a, d);
        tokio::time::advance(Duration::from_millis(100)).await;
        let req = a.start();
        tokio::time::advance(Duration::from_millis(700)).await;
        drop(req);
        let ended = Instant::now();
        assert_eq!(life.next().await, Close::Park);
        assert_eq!(Instant::now(), ended + Duration::from_millis(500));
        // Nothing served since: the next wake is the idle close.
        assert_eq!(life.next().await, Close::Graceful);
        assert_eq!(Instant::now(), ended + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_parked() {
        let d = deadlines();
        let a = Arc::new(Activity::opened_at(Instant::now()));
        let (_shutdown, mut life) = http1_lifetime(&a, d);
        let req = a.start();
        let waited = tokio::time::timeout(Duration::from_secs(5), life.next()).await;
        assert!(
            waited.is_err(),
            "woke while a request was in flight: {waited:?}"
        );
        drop(req);
        let ended = Instant::now();
        assert_eq!(life.next().await, Close::Park);
        assert!(Instant::now() >= ended + Duration::from_millis(500));
        assert!(Instant::now() <= ended + Duration::from_millis(1000));
    }
}
