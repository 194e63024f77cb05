//! A response body that lends its HTTP/1.1 connection: when the body is
//! dropped after its last byte, the connection goes back to the idle list of
//! the instance it came from (`upstream::pool` checks it out from there).
//!
//! It lives with the body types because the connection's sender carries
//! [`Body`] itself; so the upstream pool depends on the body and not the
//! other way round.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::Body;

/// Idle connections of one instance, most recently used last.
#[derive(Debug)]
pub struct IdleList {
    conns: Mutex<Vec<IdleConn>>,
}

#[derive(Debug)]
struct IdleConn {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// How long an unused connection is kept (upstreams close theirs sooner:
/// nginx after 60 s, so a closed one is usually found and skipped first).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per instance.
const MAX_IDLE: usize = 1024;

impl IdleList {
    pub(crate) fn new() -> Self {
        Self {
            conns: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn pop(&self) -> Option<http1::SendRequest<Body>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.pop().map(|c| c.sender)
    }

    /// Keeps a connection whose last exchange completed. The oldest idle one
    /// goes when it has waited too long: LIFO checkout leaves stale
    /// connections at the front once traffic drops.
    pub(crate) fn push(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns
            .first()
            .is_some_and(|c| now.duration_since(c.since) > IDLE_TIMEOUT)
        {
            conns.remove(0);
        }
        if conns.len() < MAX_IDLE {
            conns.push(IdleConn { sender, since: now });
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// A connection lent to one response; goes back to its instance's idle list
/// when the body it carries is dropped after its end.
#[derive(Debug)]
pub struct Lease {
    sender: http1::SendRequest<Body>,
    home: Arc<IdleList>,
}

/// An upstream response body, with the connection it arrived on when that
/// connection is pooled here.
#[derive(Debug)]
pub struct Leased {
    /// The body from the upstream.
    pub(crate) inner: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    /// A body whose connection is not pooled here (HTTP/2, hyper-util's pool).
    pub fn unpooled(inner: Incoming) -> Self {
        Self { inner, lease: None }
    }

    /// A body whose connection goes back to `home` once it is read to the end.
    pub fn pooled(inner: Incoming, sender: http1::SendRequest<Body>, home: Arc<IdleList>) -> Self {
        Self {
            inner,
            lease: Some(Lease { sender, home }),
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        use http_body::Body as _;
        // A body dropped half-way leaves unread bytes on the connection: it
        // cannot carry another request, so it closes with the sender.
        if let Some(lease) = self.lease.take()
            && self.inner.is_end_stream()
        {
            lease.home.push(lease.sender);
        }
    }
}
